// CUDA backward of rasterize_to_pixels: same grid as the forward; each pixel
// walks its tile's list back to front from its last blended Gaussian, with
// T_i = T_{i+1} / (1 - alpha_i) from T_final and S the colour behind:
//   dL/dalpha_i = sum_c v_c (c_i T_i - S_c / (1 - alpha_i)) + T_L (v_alpha - bg . v) / (1 -
//   alpha_i).
// Per-Gaussian gradients are summed over a warp with shuffles, then one atomicAdd
// per warp (so results match the CPU kernel to rounding, not bit for bit).
#include "cuda/rasterize_cuda.h"

#include "cuda/launch.h"
#include "ua3d/bins_cache.h"
#include "ua3d/raster_math.h"

namespace ua3d::cuda {
namespace {

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// kC > 0: channels in registers; kC == 0: any C, S kept in `behind`.
template <int kC>
__global__ void __launch_bounds__(kTilePixels)
    BackwardKernel(RasterInputs<float> in, DeviceBins bins, BackwardInputs<float> gin,
                   BackwardOutputs<float> out,
                   float* behind) {  // [B, H, W, C] zeroed, used when kC == 0
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
  float* v_means2d = out.v_means2d + b * n * 2;   // [N, 2]
  float* v_conics = out.v_conics + b * n * 3;     // [N, 3]
  float* v_colors = out.v_colors + b * n * C;     // [N, C]
  float* v_opac = out.v_opacities + b * n;        // [N]
  const int64_t list = b * bins.tiles_x * bins.tiles_y + int64_t(ty) * bins.tiles_x + tx;
  const int64_t start = bins.tile_offsets[list];
  const int64_t p = b * in.width * in.height + int64_t(y) * in.width + x;

  __shared__ int32_t s_id[kTilePixels];
  __shared__ float3 s_xyo[kTilePixels];
  __shared__ float3 s_conic[kTilePixels];
  __shared__ int32_t s_max_last;

  float t_cur = inside ? gin.transmittance[p] : 1.f;
  const int32_t last = inside ? gin.last[p] : -1;
  const float* vr = gin.v_render + p * C;                          // [C]
  float* s_behind = kC == 0 && inside ? behind + p * C : nullptr;  // [C]
  float v_reg[kC > 0 ? kC : 1], s_reg[kC > 0 ? kC : 1];
  float bg_dot = 0.f;
  for (int ch = 0; ch < C; ++ch) {
    const float v = inside ? vr[ch] : 0.f;
    if (kC > 0) {
      v_reg[kC > 0 ? ch : 0] = v;
      s_reg[kC > 0 ? ch : 0] = 0.f;
    }
    bg_dot += bg[ch] * v;
  }
  const float t_l = inside ? t_cur * (gin.v_alpha[p] - bg_dot) : 0.f;

  if (tid == 0) s_max_last = -1;
  __syncthreads();
  atomicMax(&s_max_last, last);
  __syncthreads();
  // s_max_last < the list length whenever `last` comes from the forward of the
  // same inputs (binning is deterministic); clamped so that any other `last`
  // cannot read past the list.
  const int64_t list_end = bins.tile_offsets[list + 1];
  const int64_t range_end = min(start + int64_t(s_max_last) + 1, list_end);
  const float x0h = float(tx * kTileSize) + 0.5f;

  for (int64_t batch_end = range_end; batch_end > start; batch_end -= kTilePixels) {
    const int64_t batch_start = batch_end - kTilePixels > start ? batch_end - kTilePixels : start;
    const int count = int(batch_end - batch_start);
    __syncthreads();
    if (tid < count) {
      const int32_t g = bins.ids[batch_start + tid];
      s_id[tid] = g;
      s_xyo[tid] = make_float3(means2d[2 * g], means2d[2 * g + 1], opac[g]);
      s_conic[tid] = make_float3(conics[3 * g], conics[3 * g + 1], conics[3 * g + 2]);
    }
    __syncthreads();
    for (int j = count - 1; j >= 0; --j) {
      const int32_t k = int32_t(batch_start + j - start);
      const int32_t g = s_id[j];
      const float3 xyo = s_xyo[j], cn = s_conic[j];
      int xl, xh, yl, yh;
      pixel_span(xyo.x, radii[2 * g], x, x, &xl, &xh);
      pixel_span(xyo.y, radii[2 * g + 1], y, y, &yl, &yh);
      const float dx = (xyo.x - x0h) - float(lx);
      const float dy = xyo.y - (float(y) + 0.5f);
      const float hc = 0.5f * cn.z * dy * dy, bdy = cn.y * dy;
      float e;
      bool valid;
      const float al = eval_alpha(row_sigma(cn.x, dx, bdy, hc), xyo.z, &e, &valid);
      valid = valid && inside && k <= last && xl <= xh && yl <= yh;
      if (!__any_sync(0xffffffffu, valid)) continue;
      const float* col = colors + int64_t(g) * C;
      float g_mx = 0.f, g_my = 0.f, g_a = 0.f, g_b = 0.f, g_c = 0.f, g_o = 0.f;
      float inv = 1.f, t_before = t_cur, w = 0.f;
      if (valid) {
        inv = 1.f / (1.f - al);
        t_before = t_cur * inv;
        w = al * t_before;
        float v_alpha = t_l * inv;
        for (int ch = 0; ch < C; ++ch) {
          const float v = kC > 0 ? v_reg[kC > 0 ? ch : 0] : vr[ch];
          const float s = kC > 0 ? s_reg[kC > 0 ? ch : 0] : s_behind[ch];
          v_alpha += v * (col[ch] * t_before - s * inv);
        }
        if (xyo.z * e <= kAlphaMax) {  // no gradient through the 0.99 clamp (o e > 0.99)
          const float v_sigma = -xyo.z * e * v_alpha;
          g_o = e * v_alpha;
          g_a = 0.5f * v_sigma * dx * dx;
          g_b = v_sigma * dx * dy;
          g_c = 0.5f * v_sigma * dy * dy;
          g_mx = v_sigma * (cn.x * dx + cn.y * dy);
          g_my = v_sigma * (cn.y * dx + cn.z * dy);
        }
        t_cur = t_before;
      }
      const bool lead = (tid & 31) == 0;
      g_mx = WarpSum(g_mx);
      g_my = WarpSum(g_my);
      g_a = WarpSum(g_a);
      g_b = WarpSum(g_b);
      g_c = WarpSum(g_c);
      g_o = WarpSum(g_o);
      if (lead) {
        atomicAdd(v_means2d + 2 * g, g_mx);
        atomicAdd(v_means2d + 2 * g + 1, g_my);
        atomicAdd(v_conics + 3 * g, g_a);
        atomicAdd(v_conics + 3 * g + 1, g_b);
        atomicAdd(v_conics + 3 * g + 2, g_c);
        atomicAdd(v_opac + g, g_o);
      }
      for (int ch = 0; ch < C; ++ch) {
        float g_col = 0.f;
        if (valid) {
          g_col = w * (kC > 0 ? v_reg[kC > 0 ? ch : 0] : vr[ch]);
          if (kC > 0) {
            s_reg[kC > 0 ? ch : 0] += w * col[ch];
          } else {
            s_behind[ch] += w * col[ch];
          }
        }
        g_col = WarpSum(g_col);
        if (lead) atomicAdd(v_colors + int64_t(g) * C + ch, g_col);
      }
    }
  }
}

}  // namespace

cudaError_t RasterizeToPixelsBwd(const RasterInputs<float>& in, const BackwardInputs<float>& gin,
                                 const BackwardOutputs<float>& out, DeviceScratch& scratch,
                                 cudaStream_t stream, const int32_t* bins_token) {
  const int64_t n = in.batch * in.n;
  cudaMemsetAsync(out.v_means2d, 0, sizeof(float) * n * 2, stream);
  cudaMemsetAsync(out.v_conics, 0, sizeof(float) * n * 3, stream);
  cudaMemsetAsync(out.v_colors, 0, sizeof(float) * n * in.channels, stream);
  cudaMemsetAsync(out.v_opacities, 0, sizeof(float) * n, stream);
  if (in.batch == 0 || in.n == 0) return cudaGetLastError();
  std::optional<KeptBins> kept;
  if (bins_token != nullptr) {  // the backward's one wait: the token, instead of binning
    int32_t pair[2] = {0, 0};
    cudaMemcpyAsync(pair, bins_token, sizeof(pair), cudaMemcpyDeviceToHost, stream);
    if (cudaError_t err = cudaStreamSynchronize(stream); err != cudaSuccess) return err;
    kept = TakeBins(in, ReadToken(pair), stream);
  }
  DeviceBins bins;
  if (kept.has_value()) {
    bins = kept->bins;
  } else if (cudaError_t err = BinTiles(in, scratch, scratch, stream, &bins); err != cudaSuccess) {
    return err;
  }
  const dim3 grid(bins.tiles_x, bins.tiles_y, unsigned(in.batch));
  const dim3 block(kTileSize, kTileSize, 1);
  switch (in.channels) {
    case 1:
      UA3D_LAUNCH(BackwardKernel<1>, grid, block, 0, stream)(in, bins, gin, out, nullptr);
      break;
    case 3:
      UA3D_LAUNCH(BackwardKernel<3>, grid, block, 0, stream)(in, bins, gin, out, nullptr);
      break;
    case 4:
      UA3D_LAUNCH(BackwardKernel<4>, grid, block, 0, stream)(in, bins, gin, out, nullptr);
      break;
    default: {
      const int64_t size = in.batch * in.width * in.height * in.channels;
      float* behind = static_cast<float*>(scratch.Allocate(sizeof(float) * size));
      if (behind == nullptr) {
        if (kept.has_value()) ReleaseBins(*kept, stream);
        return cudaErrorMemoryAllocation;
      }
      cudaMemsetAsync(behind, 0, sizeof(float) * size, stream);
      UA3D_LAUNCH(BackwardKernel<0>, grid, block, 0, stream)(in, bins, gin, out, behind);
    }
  }
  if (kept.has_value()) ReleaseBins(*kept, stream);  // stream order: after the kernel
  return cudaGetLastError();
}

}  // namespace ua3d::cuda
