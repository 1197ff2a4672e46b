// CUDA tile binning: per Gaussian tile count -> CUB inclusive scan -> one
// 64-bit key per (Gaussian, tile) = list index (view * tiles + tile, the index
// TileOffsets and the kernels use) in the upper 32 bits | the order-preserving
// depth bits (`depth_bits`) in the lower 32 -> CUB radix sort over only the
// bits in use -> start offset of each (view, tile) list. Also the store of the
// lists a forward keeps for its backward (ua3d/bins_cache.h), one per device.
#include "cuda/rasterize_cuda.h"

#include <map>
#include <memory>
#include <mutex>

#include "cuda/launch.h"
#include "ua3d/bins_cache.h"
#include "ua3d/raster_math.h"

namespace ua3d::cuda {
namespace {

__device__ TileRect GaussianRect(const RasterInputs<float>& in, int64_t i, int tiles_x,
                                 int tiles_y) {
  const float mx = in.means2d[2 * i], my = in.means2d[2 * i + 1];
  const float* conic = in.conics + 3 * i;
  const int32_t rx = in.radii[2 * i], ry = in.radii[2 * i + 1];
  if (!is_active(mx, my, conic[0], conic[1], conic[2], in.opacities[i], in.depths[i], rx, ry))
    return TileRect{0, 0, 0, 0};
  return tile_rect(mx, my, rx, ry, tiles_x, tiles_y);
}

__global__ void CountTiles(RasterInputs<float> in, int tiles_x, int tiles_y,
                           int64_t* counts) {  // [B * N]
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= in.batch * in.n) return;
  counts[i] = GaussianRect(in, i, tiles_x, tiles_y).count();
}

__global__ void EmitKeys(RasterInputs<float> in, int tiles_x, int tiles_y,
                         const int64_t* ends,  // [B * N] inclusive scan of the counts
                         uint64_t* keys,       // [n_isects]
                         int32_t* ids) {       // [n_isects]
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= in.batch * in.n) return;
  const TileRect r = GaussianRect(in, i, tiles_x, tiles_y);
  int64_t out = ends[i] - r.count();
  // The list index must be view * tiles + tile exactly: a (view << tile_bits)
  // packing would skip indices (2^tile_bits > tiles) and send views >= 1 past
  // the offsets array.
  const uint64_t list0 = uint64_t(i / in.n) * (uint64_t(tiles_x) * uint64_t(tiles_y));
  const uint64_t depth = depth_bits(in.depths[i]);
  for (int ty = r.y0; ty < r.y1; ++ty) {
    for (int tx = r.x0; tx < r.x1; ++tx) {
      const uint64_t list = list0 + uint64_t(ty) * uint64_t(tiles_x) + uint64_t(tx);
      keys[out] = (list << 32) | depth;
      ids[out] = int32_t(i % in.n);
      ++out;
    }
  }
}

// offsets[t] = first intersection of (view, tile) t = view * tiles + tile.
__global__ void TileOffsets(const uint64_t* keys,  // [n] sorted
                            int64_t n, int64_t num_lists,
                            int64_t* offsets) {  // [num_lists + 1]
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t list = int64_t(keys[i] >> 32);
  const int64_t prev = i == 0 ? -1 : int64_t(keys[i - 1] >> 32);
  for (int64_t t = prev + 1; t <= list; ++t) offsets[t] = i;
  if (i == n - 1)
    for (int64_t t = list + 1; t <= num_lists; ++t) offsets[t] = n;
}

int BitWidth(uint64_t v) {
  int bits = 0;
  while (v > 0) {
    ++bits;
    v >>= 1;
  }
  return bits;
}

template <typename T>
T* Alloc(DeviceScratch& scratch, int64_t count) {
  return static_cast<T*>(scratch.Allocate(size_t(count > 0 ? count : 1) * sizeof(T)));
}

// A training step keeps one forward's lists per device until its backward.
constexpr size_t kKeptEntries = 16;
constexpr size_t kKeptBytes = size_t(1) << 30;
using Cache = BinsCache<KeptBins>;

// One cache per device: device pointers are valid on their own device only.
class DeviceCaches {
 public:
  Cache& Get(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<Cache>& cache = caches_[device];
    if (!cache) cache = std::make_unique<Cache>(kKeptEntries, kKeptBytes);
    return *cache;
  }
  size_t Count() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t total = 0;
    for (const auto& [device, cache] : caches_) total += cache->size();
    return total;
  }

 private:
  std::mutex mu_;
  std::map<int, std::unique_ptr<Cache>> caches_;
};

DeviceCaches& Caches() {
  static DeviceCaches caches;
  return caches;
}

int CurrentDevice() {
  int device = 0;
  cudaGetDevice(&device);
  return device;
}

BinsKey KeyOf(const RasterInputs<float>& in, int device) {
  return BinsKey{in.batch, in.n, in.width, in.height, 4, device};
}

}  // namespace

uint64_t KeepBins(const RasterInputs<float>& in, KeptBins kept) {
  const int device = CurrentDevice();
  const size_t bytes = size_t(kept.bins.n_isects) * 4 +
                       (size_t(in.batch) * kept.bins.tiles_x * kept.bins.tiles_y + 1) * 8;
  std::vector<Cache::Entry> dropped;
  const uint64_t token =
      Caches().Get(device).Put(KeyOf(in, device), std::move(kept), bytes, &dropped);
  for (Cache::Entry& e : dropped) ReleaseBins(e.bins, e.bins.stream);
  return token;
}

std::optional<KeptBins> TakeBins(const RasterInputs<float>& in, uint64_t token,
                                 cudaStream_t stream) {
  if (token == 0) return std::nullopt;
  const int device = CurrentDevice();
  std::optional<Cache::Entry> entry = Caches().Get(device).Take(token);
  if (!entry.has_value()) return std::nullopt;
  if (!(entry->key == KeyOf(in, device))) {
    ReleaseBins(entry->bins, stream);
    return std::nullopt;
  }
  return std::move(entry->bins);
}

void ReleaseBins(KeptBins& kept, cudaStream_t stream) {
  for (void* p : kept.blocks) cudaFreeAsync(p, stream);
  kept.blocks.clear();
}

size_t KeptBinsCount() { return Caches().Count(); }

cudaError_t BinTiles(const RasterInputs<float>& in, DeviceScratch& scratch, DeviceScratch& lists,
                     cudaStream_t stream, DeviceBins* bins) {
  bins->tiles_x = (in.width + kTileSize - 1) / kTileSize;
  bins->tiles_y = (in.height + kTileSize - 1) / kTileSize;
  const int64_t tiles = int64_t(bins->tiles_x) * bins->tiles_y;
  const int64_t num_lists = in.batch * tiles;
  const int64_t total = in.batch * in.n;
  int64_t* offsets = Alloc<int64_t>(lists, num_lists + 1);
  if (offsets == nullptr) return cudaErrorMemoryAllocation;
  bins->tile_offsets = offsets;
  cudaMemsetAsync(offsets, 0, sizeof(int64_t) * (num_lists + 1), stream);
  bins->n_isects = 0;
  if (total == 0) return cudaGetLastError();

  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  int64_t* counts = Alloc<int64_t>(scratch, total);
  int64_t* ends = Alloc<int64_t>(scratch, total);
  if (counts == nullptr || ends == nullptr) return cudaErrorMemoryAllocation;
  UA3D_LAUNCH(CountTiles, blocks, kThreads, 0, stream)(in, bins->tiles_x, bins->tiles_y, counts);
  if (cudaError_t err = InclusiveSum(counts, ends, total, scratch, stream); err != cudaSuccess)
    return err;
  int64_t n_isects = 0;
  cudaMemcpyAsync(&n_isects, ends + total - 1, sizeof(int64_t), cudaMemcpyDeviceToHost, stream);
  if (cudaError_t err = cudaStreamSynchronize(stream); err != cudaSuccess) return err;
  bins->n_isects = n_isects;
  if (n_isects == 0) return cudaGetLastError();

  const int list_bits = BitWidth(uint64_t(num_lists - 1));  // lists 0 .. num_lists - 1
  if (list_bits > 32) return cudaErrorInvalidValue;
  uint64_t* keys_in = Alloc<uint64_t>(scratch, n_isects);
  uint64_t* keys_out = Alloc<uint64_t>(scratch, n_isects);
  int32_t* ids_in = Alloc<int32_t>(scratch, n_isects);
  int32_t* ids_out = Alloc<int32_t>(lists, n_isects);
  if (!keys_in || !keys_out || !ids_in || !ids_out) return cudaErrorMemoryAllocation;
  UA3D_LAUNCH(EmitKeys, blocks, kThreads, 0, stream)(in, bins->tiles_x, bins->tiles_y, ends,
                                                     keys_in, ids_in);
  const int end_bit = 32 + list_bits;
  if (cudaError_t err =
          SortPairs(keys_in, keys_out, ids_in, ids_out, n_isects, end_bit, scratch, stream);
      err != cudaSuccess)
    return err;
  const int64_t isect_blocks = (n_isects + kThreads - 1) / kThreads;
  UA3D_LAUNCH(TileOffsets, isect_blocks, kThreads, 0, stream)(keys_out, n_isects, num_lists,
                                                              offsets);
  bins->ids = ids_out;
  return cudaGetLastError();
}

}  // namespace ua3d::cuda
