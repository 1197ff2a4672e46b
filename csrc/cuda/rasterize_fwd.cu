// CUDA forward of rasterize_to_pixels: one 16x16-thread block per (tile, view),
// one thread per pixel. The tile's depth-sorted Gaussians are staged through
// shared memory in batches of 256; each pixel blends front to back with the
// rules of ua3d/raster_math.h and the block leaves once every pixel is done.
#include "cuda/rasterize_cuda.h"

#include "cuda/launch.h"
#include "ua3d/raster_math.h"

namespace ua3d::cuda {
namespace {

// kC > 0: channel count known at compile time (accumulated in registers);
// kC == 0: any C, accumulated in the output buffer (zeroed first).
template <int kC>
__global__ void __launch_bounds__(kTilePixels)
    ForwardKernel(RasterInputs<float> in, DeviceBins bins, ForwardOutputs<float> out) {
  const int C = kC > 0 ? kC : in.channels;
  const int64_t b = blockIdx.z;
  const int tx = blockIdx.x, ty = blockIdx.y;
  const int lx = threadIdx.x, ly = threadIdx.y, tid = ly * kTileSize + lx;
  const int x = tx * kTileSize + lx, y = ty * kTileSize + ly;
  const bool inside = x < in.width && y < in.height;
  const int64_t n = in.n;
  const float* means2d = in.means2d + b * n * 2;  // [N, 2]
  const float* conics = in.conics + b * n * 3;    // [N, 3]
  const float* colors = in.colors + b * n * C;    // [N, C]
  const float* opac = in.opacities + b * n;       // [N]
  const int32_t* radii = in.radii + b * n * 2;    // [N, 2]
  const float* bg = in.background + b * C;        // [C]
  const int64_t list = b * bins.tiles_x * bins.tiles_y + int64_t(ty) * bins.tiles_x + tx;
  const int64_t start = bins.tile_offsets[list], end = bins.tile_offsets[list + 1];
  const int64_t p = b * in.width * in.height + int64_t(y) * in.width + x;

  __shared__ int32_t s_id[kTilePixels];
  __shared__ float3 s_xyo[kTilePixels];
  __shared__ float3 s_conic[kTilePixels];

  // Same expressions as the CPU kernel: dx = (mx - (x0 + 0.5)) - lane.
  const float x0h = float(tx * kTileSize) + 0.5f;
  float acc[kC > 0 ? kC : 1];
  for (int ch = 0; ch < (kC > 0 ? kC : 1); ++ch) acc[ch] = 0.f;
  float* acc_out = out.render + p * C;  // [C] used when kC == 0
  if (kC == 0 && inside)
    for (int ch = 0; ch < C; ++ch) acc_out[ch] = 0.f;
  float trans = 1.f;
  int32_t last = -1;
  bool done = !inside;

  for (int64_t batch = start; batch < end; batch += kTilePixels) {
    if (__syncthreads_count(done) == kTilePixels) break;
    const int64_t k = batch + tid;
    if (k < end) {
      const int32_t g = bins.ids[k];
      s_id[tid] = g;
      s_xyo[tid] = make_float3(means2d[2 * g], means2d[2 * g + 1], opac[g]);
      s_conic[tid] = make_float3(conics[3 * g], conics[3 * g + 1], conics[3 * g + 2]);
    }
    __syncthreads();
    const int count = end - batch < kTilePixels ? int(end - batch) : kTilePixels;
    for (int j = 0; j < count && !done; ++j) {
      const float3 xyo = s_xyo[j], cn = s_conic[j];
      const int32_t g = s_id[j];
      // Only pixels inside the Gaussian's box, as on the CPU.
      const int32_t rx = radii[2 * g], ry = radii[2 * g + 1];
      int xl, xh, yl, yh;
      pixel_span(xyo.x, rx, x, x, &xl, &xh);
      pixel_span(xyo.y, ry, y, y, &yl, &yh);
      if (xl > xh || yl > yh) continue;
      const float dx = (xyo.x - x0h) - float(lx);
      const float dy = xyo.y - (float(y) + 0.5f);
      const float hc = 0.5f * cn.z * dy * dy, bdy = cn.y * dy;
      float e;
      bool valid;
      const float al = eval_alpha(row_sigma(cn.x, dx, bdy, hc), xyo.z, &e, &valid);
      if (!valid) continue;
      const float next_t = trans * (1.f - al);
      if (next_t <= kTransmittanceMin) {
        done = true;
        break;
      }
      const float w = al * trans;
      const float* col = colors + int64_t(g) * C;
      if (kC > 0) {
        for (int ch = 0; ch < (kC > 0 ? kC : 1); ++ch) acc[ch] += w * col[ch];
      } else {
        for (int ch = 0; ch < C; ++ch) acc_out[ch] += w * col[ch];
      }
      trans = next_t;
      last = int32_t(batch + j - start);
    }
  }
  if (!inside) return;
  for (int ch = 0; ch < C; ++ch) {
    const float a = kC > 0 ? acc[kC > 0 ? ch : 0] : acc_out[ch];
    out.render[p * C + ch] = a + trans * bg[ch];
  }
  out.transmittance[p] = trans;
  out.last[p] = last;
}

__global__ void WriteTokens(int32_t* tokens, int64_t batch, int32_t low, int32_t high) {  // [B, 2]
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  tokens[2 * b] = low;
  tokens[2 * b + 1] = high;
}

// Device memory for lists that outlive the call: stream-ordered allocations, freed when this
// goes out of scope unless released to the kept-bins store.
class KeptMemory final : public DeviceScratch {
 public:
  explicit KeptMemory(cudaStream_t stream) : stream_(stream) {}
  ~KeptMemory() override {
    for (void* p : blocks_) cudaFreeAsync(p, stream_);
  }
  void* Allocate(size_t bytes) override {
    void* p = nullptr;
    if (cudaMallocAsync(&p, bytes > 0 ? bytes : 1, stream_) != cudaSuccess) return nullptr;
    blocks_.push_back(p);
    return p;
  }
  std::vector<void*> Release() { return std::move(blocks_); }

 private:
  cudaStream_t stream_;
  std::vector<void*> blocks_;
};

}  // namespace

cudaError_t RasterizeToPixelsFwd(const RasterInputs<float>& in, const ForwardOutputs<float>& out,
                                 DeviceScratch& scratch, cudaStream_t stream, int32_t* bins_token) {
  if (in.batch == 0) return cudaSuccess;
  KeptMemory kept(stream);
  DeviceBins bins;
  DeviceScratch& lists = bins_token != nullptr ? static_cast<DeviceScratch&>(kept) : scratch;
  if (cudaError_t err = BinTiles(in, scratch, lists, stream, &bins); err != cudaSuccess) return err;
  const dim3 grid(bins.tiles_x, bins.tiles_y, unsigned(in.batch));
  const dim3 block(kTileSize, kTileSize, 1);
  switch (in.channels) {
    case 1:
      UA3D_LAUNCH(ForwardKernel<1>, grid, block, 0, stream)(in, bins, out);
      break;
    case 3:
      UA3D_LAUNCH(ForwardKernel<3>, grid, block, 0, stream)(in, bins, out);
      break;
    case 4:
      UA3D_LAUNCH(ForwardKernel<4>, grid, block, 0, stream)(in, bins, out);
      break;
    default:
      UA3D_LAUNCH(ForwardKernel<0>, grid, block, 0, stream)(in, bins, out);
      break;
  }
  if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
  if (bins_token == nullptr) return cudaSuccess;
  const uint64_t token = KeepBins(in, KeptBins{bins, kept.Release(), stream});
  constexpr int kThreads = 256;
  UA3D_LAUNCH(WriteTokens, (in.batch + kThreads - 1) / kThreads, kThreads, 0, stream)(
      bins_token, in.batch, int32_t(uint32_t(token)), int32_t(uint32_t(token >> 32)));
  return cudaGetLastError();
}

}  // namespace ua3d::cuda
