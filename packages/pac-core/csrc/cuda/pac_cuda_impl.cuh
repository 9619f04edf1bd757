// The CUDA backend of the pac:: operators: kernels and host drivers (see pac_cuda.cu).
//
// Compiled by nvcc for csrc/cuda/pac_cuda.cu. Without __CUDACC__ and with PAC_CUDA_EMULATE
// defined, the same code compiles as plain C++ in which every kernel launch is a serial loop and
// the entry points take CPU tensors: the tests use that to check the CUDA index math, tiling and
// gather formulation against the CPU backend on machines without a GPU.
#if !defined(__CUDACC__) && !defined(PAC_CUDA_EMULATE)
#error "pac_cuda_impl.cuh: compile with nvcc, or define PAC_CUDA_EMULATE for the host emulation"
#endif
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#if defined(__CUDACC__)
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <tuple>
#include <vector>

#include "kernels/geometry.h"
#include "kernels/im2col.h"
#include "kernels/kernel_fn.h"
#include "pac_args.h"
#include "subpixel.h"

namespace pac {
namespace cuda_impl {
namespace {

using namespace pac::kernels;

#if defined(__CUDACC__)
constexpr c10::DeviceType kCUDA = c10::DeviceType::CUDA;
#define PAC_GLOBAL __global__
#define PAC_DEVICE __device__ __forceinline__
#define PAC_OP_SUFFIX " (CUDA)"
#else
// Host emulation (tests only, PAC_CUDA_EMULATE): the same kernels and drivers on CPU tensors,
// each "launch" a serial loop over the kernel's index space.
constexpr c10::DeviceType kCUDA = c10::DeviceType::CPU;
#define PAC_GLOBAL
#define PAC_DEVICE inline
#define PAC_OP_SUFFIX " (CUDA emulation)"
#endif
// Upper bound on the elements of a tile's scratch buffers (all of them together), and the
// smallest tile. Overridable at compile time (the emulation tests use tiny tiles).
#ifndef PAC_CUDA_TILE_ELEMS
#define PAC_CUDA_TILE_ELEMS (int64_t(1) << 24)
#endif
#ifndef PAC_CUDA_MIN_TILE_PIXELS
#define PAC_CUDA_MIN_TILE_PIXELS 1024
#endif
#ifndef PAC_CUDA_MIN_TILE_ELEMS
#define PAC_CUDA_MIN_TILE_ELEMS (int64_t(1) << 20)
#endif
#ifndef PAC_CUDA_GEMM_PIXELS
#define PAC_CUDA_GEMM_PIXELS 16384
#endif
constexpr int64_t kTileElems = PAC_CUDA_TILE_ELEMS;
constexpr int64_t kGemmPixels = PAC_CUDA_GEMM_PIXELS;
#ifndef PAC_CUDA_MIN_CHUNK_ROWS
#define PAC_CUDA_MIN_CHUNK_ROWS 256
#endif
constexpr int64_t kMinChunkRows = PAC_CUDA_MIN_CHUNK_ROWS;
constexpr int64_t kMinTileElems = PAC_CUDA_MIN_TILE_ELEMS;
constexpr int64_t kMinTilePixels = PAC_CUDA_MIN_TILE_PIXELS;
constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------
// Plain-old-data descriptions passed to the kernels by value
// ---------------------------------------------------------------------------------------------

// Sizes and geometry of one op call (see pac::Problem).
struct Dev {
  int64_t B, C, H, W;     // input
  int64_t Cf, Hg, Wg;     // guidance
  int64_t Ho, Wo, HW;     // output
  int64_t kh, kw, T;      // taps
  int64_t CK, O;          // kernel channels, output channels
  int64_t sh, sw, ph, pw, dh, dw, uh, uw;  // input geometry
  int64_t gsh, gsw, gph, gpw;              // guidance geometry
  int64_t kernel_type;
  int64_t n_alpha, n_lambda;  // elements of inv_alpha / inv_lambda (0 when absent)
  bool asym, channel_wise;
};

Dev make_dev(const Problem& p) {
  const Geometry& g = p.geo;
  Dev d{};
  d.B = p.B; d.C = p.C; d.H = p.H; d.W = p.W;
  d.Cf = p.Cf; d.Hg = p.Hg; d.Wg = p.Wg;
  d.Ho = p.Ho; d.Wo = p.Wo; d.HW = p.Ho * p.Wo;
  d.kh = g.kh; d.kw = g.kw; d.T = g.kh * g.kw;
  d.CK = p.CK; d.O = p.O;
  d.sh = g.sh; d.sw = g.sw; d.ph = g.ph; d.pw = g.pw;
  d.dh = g.dh; d.dw = g.dw; d.uh = g.uh; d.uw = g.uw;
  d.gsh = g.gsh; d.gsw = g.gsw; d.gph = g.gph; d.gpw = g.gpw;
  d.kernel_type = p.kernel_type;
  d.n_alpha = p.alpha.defined() ? p.alpha.numel() : 0;
  d.n_lambda = p.lambda.defined() ? p.lambda.numel() : 0;
  d.asym = p.asym;
  d.channel_wise = p.channel_wise;
  return d;
}

// Output pixels [j0, j0 + P) of images [b0, b0 + nb). Tile buffers are laid out
// [nb, ..., P]; the column matrices [rows, nb * P].
struct TileR {
  int64_t b0, nb, j0, P;
};

// Kernel values K(bb, k, t, jj) of a tile: base[bb*sB + k*sK + t*sT + jj]. Either a tile buffer
// or a window into a precomputed [B, C_K, kh, kw, Ho, Wo] kernel (or its gradient).
template <typename T>
struct KV {
  T* base;
  int64_t sB, sK, sT;
  PAC_DEVICE T& operator()(int64_t bb, int64_t k, int64_t t, int64_t jj) const {
    return base[bb * sB + k * sK + t * sT + jj];
  }
};

template <typename T>
KV<T> tile_view(T* buf, const Dev& d, const TileR& tl) {
  return {buf, d.CK * d.T * tl.P, d.T * tl.P, tl.P};
}

template <typename T>
KV<T> kernel_view(T* kernel, const Dev& d, const TileR& tl) {
  return {kernel + tl.b0 * d.CK * d.T * d.HW + tl.j0, d.CK * d.T * d.HW, d.T * d.HW, d.HW};
}

#if defined(__CUDACC__)
#define PAC_KERNEL_LOOP(i, n)                                                             \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
#else
#define PAC_KERNEL_LOOP(i, n) for (int64_t i = 0; i < (n); ++i)
#endif

inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20));
}

// Quotient and remainder of a non-negative a by a positive b. On the device the 32-bit hardware
// path is taken when both fit (64-bit division is emulated and much slower).
struct QR {
  int64_t q, r;
};

PAC_DEVICE QR divmod(int64_t a, int64_t b) {
#if defined(__CUDA_ARCH__)
  if (((a | b) >> 31) == 0) {
    const uint32_t q = static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
    return {static_cast<int64_t>(q), a - static_cast<int64_t>(q) * b};
  }
#endif
  const int64_t q = a / b;
  return {q, a - q * b};
}

// The output coordinate whose tap `a` reads sample `i` along one axis (the inverse of
// kernels::tap_source), or -1 when no output coordinate in [0, extent) does.
PAC_DEVICE int64_t tap_target(int64_t i, int64_t a, int64_t stride,
                                              int64_t padding, int64_t dilation,
                                              int64_t upsample, int64_t extent) {
  const int64_t num = i * upsample + padding - a * dilation;
  if (num < 0) return -1;
  int64_t y = num;
  if (stride != 1) {
    const QR qr = divmod(num, stride);
    if (qr.r != 0) return -1;
    y = qr.q;
  }
  return y < extent ? y : -1;
}

template <typename T>
PAC_DEVICE T param_of(const T* p, int64_t n, int64_t k) {
  return p ? p[n > 1 ? k : 0] : T(0);
}

// D of kernel channel k at tap t of output pixel (y, x) of image b (docs/semantics.md §2.3).
template <typename T>
PAC_DEVICE T tap_distance(const Dev& d, const T* F, const T* phi, int64_t b, int64_t k,
                          int64_t t, int64_t y, int64_t x) {
  const QR ae = divmod(t, d.kw);
  const int64_t a = ae.q, e = ae.r;
  const int64_t r = tap_source(y, a, d.gsh, d.gph, d.dh, 1, d.Hg);
  const int64_t q = tap_source(x, e, d.gsw, d.gpw, d.dw, 1, d.Wg);
  const int64_t c0 = d.channel_wise ? k : 0, c1 = d.channel_wise ? k + 1 : d.Cf;
  T D = T(0);
  for (int64_t c = c0; c < c1; ++c) {
    const T f = read_zero_ext(F + (b * d.Cf + c) * d.Hg * d.Wg, d.Wg, r, q);
    const T dl = guidance_delta(f, phi[((b * d.Cf + c) * d.Ho + y) * d.Wo + x], d.asym);
    D += dl * dl;
  }
  return D;
}

// ---------------------------------------------------------------------------------------------
// Forward kernels
// ---------------------------------------------------------------------------------------------

// K[bb, k, t, jj] of a tile from the guidance.
template <typename T>
PAC_GLOBAL void kernel_tile_kernel(int64_t n, Dev d, TileR tl, const T* __restrict__ F,
                                   const T* __restrict__ phi, const T* alpha, const T* lambda,
                                   T* __restrict__ K) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.T), i3 = divmod(i2.q, d.CK);
    const int64_t jj = i1.r, t = i2.r, k = i3.r, bb = i3.q;
    const int64_t j = tl.j0 + jj;
    const QR yx = divmod(j, d.Wo);
    const int64_t y = yx.q, x = yx.r;
    const T D = tap_distance(d, F, phi, tl.b0 + bb, k, t, y, x);
    K[idx] = kernel_value(d.kernel_type, D, param_of(alpha, d.n_alpha, k),
                          param_of(lambda, d.n_lambda, k));
  }
}

// Kernel-scaled columns col[c*T + t, bb*P + jj] = K(bb, 0, t, jj) · X̄[b, c0 + c, tap t of pixel
// j] for the cc channels c0 ... c0 + cc - 1. One thread per (bb, t, jj): the tap's source sample and kernel value are found once and the
// thread walks the C channels (consecutive threads: consecutive pixels, so reads of X and writes
// of col are coalesced).
template <typename T>
PAC_GLOBAL void fill_col_kernel(int64_t n, Dev d, TileR tl, int64_t c0, int64_t cc,
                                const T* __restrict__ X, KV<T> K, T* __restrict__ col) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.T);
    const int64_t jj = i1.r, t = i2.r, bb = i2.q;
    const int64_t j = tl.j0 + jj;
    const QR yx = divmod(j, d.Wo);
    const QR ae = divmod(t, d.kw);
    const int64_t r = tap_source(yx.q, ae.q, d.sh, d.ph, d.dh, d.uh, d.H);
    const int64_t q = tap_source(yx.r, ae.r, d.sw, d.pw, d.dw, d.uw, d.W);
    const int64_t plane = d.H * d.W, cstride = d.T * tl.nb * tl.P;
    T* dst = col + (t * tl.nb + bb) * tl.P + jj;
    if (r < 0 || q < 0) {
      for (int64_t c = 0; c < cc; ++c) dst[c * cstride] = T(0);
      continue;
    }
    const T kv = K(bb, 0, t, jj);
    const T* src = X + ((tl.b0 + bb) * d.C + c0) * plane + r * d.W + q;
    for (int64_t c = 0; c < cc; ++c) dst[c * cstride] = kv * src[c * plane];
  }
}

// Pool: out[b, o, j] = Σ_t w[t] K(bb, κ(o), t, jj) X̄[b, χ(o), tap t]. One thread per pixel and
// kPoolOuts consecutive output channels (a shared kernel value is read once for all of them).
// The source row of each kernel row and the source column of each kernel column are found once
// per row / column (tap_source per tap would redo a division per tap when the input is
// upsampled).
constexpr int kPoolOuts = 4;

template <typename T>
PAC_GLOBAL void pool_forward_kernel(int64_t n, Dev d, TileR tl, const T* __restrict__ X,
                                    KV<T> K, const T* w, T* __restrict__ out) {
  PAC_KERNEL_LOOP(idx, n) {
    const int64_t nob = (d.O + kPoolOuts - 1) / kPoolOuts;
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, nob);
    const int64_t jj = i1.r, o0 = i2.r * kPoolOuts, bb = i2.q;
    const int64_t b = tl.b0 + bb, j = tl.j0 + jj;
    const int64_t no = std::min<int64_t>(kPoolOuts, d.O - o0);
    const QR yx = divmod(j, d.Wo);
    const int64_t y = yx.q, x = yx.r;
    const T* kp[kPoolOuts];
    const T* plane[kPoolOuts];
    T acc[kPoolOuts];
#pragma unroll
    for (int i = 0; i < kPoolOuts; ++i) {
      const int64_t o = o0 + (i < no ? i : 0);
      kp[i] = &K(bb, d.CK == 1 ? 0 : o, 0, jj);
      plane[i] = X + (b * d.C + (d.C == 1 ? 0 : o)) * d.H * d.W;
      acc[i] = T(0);
    }
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t r = tap_source(y, a, d.sh, d.ph, d.dh, d.uh, d.H);
      if (r < 0) continue;
      for (int64_t e = 0; e < d.kw; ++e) {
        const int64_t q = tap_source(x, e, d.sw, d.pw, d.dw, d.uw, d.W);
        if (q < 0) continue;
        const int64_t t = a * d.kw + e, off = r * d.W + q;
        const T wt = w ? w[t] : T(1);
#pragma unroll
        for (int i = 0; i < kPoolOuts; ++i) acc[i] += wt * (kp[i][t * K.sT] * plane[i][off]);
      }
    }
    for (int i = 0; i < no; ++i) out[(b * d.O + o0 + i) * d.HW + j] = acc[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Sub-pixel classes (convolution of an upsampled input, input stride 1: the transposed layers)
// ---------------------------------------------------------------------------------------------
// With zero insertion by u, output row y reads a real sample through kernel row a only when
// (y - p + a·d) mod u = 0, which depends on y mod u alone. So the output pixels with equal
// (y mod uh, x mod uw) form a class that reads through the same na × ne taps; the others read
// inserted zeros. Convolving class by class drops those zero taps from the columns and the
// matrix product (about uh·uw times fewer rows for a stride-u transposed convolution).

constexpr int kMaxClassTaps = 16;

struct Cls {
  int64_t py, px;  // residues of y mod uh and x mod uw
  int64_t Hc, Wc;  // rows and columns of the class: y = py + uh·yy, x = px + uw·xx
  int64_t na, ne;  // kernel rows and columns that read real samples
  int64_t a[kMaxClassTaps], e[kMaxClassTaps];
};

// Output pixel (y, x) of class-local pixel jc, and the kernel tap t of class tap tc.
PAC_DEVICE void class_pixel(const Dev& d, const Cls& cl, int64_t jc, int64_t& y, int64_t& x) {
  const QR yx = divmod(jc, cl.Wc);
  y = cl.py + d.uh * yx.q;
  x = cl.px + d.uw * yx.r;
}

PAC_DEVICE int64_t class_tap(const Dev& d, const Cls& cl, int64_t tc) {
  const QR ae = divmod(tc, cl.ne);
  return cl.a[ae.q] * d.kw + cl.e[ae.r];
}

// Chain rule through the kernel function at element idx of a tile buffer (kernel channel k), in
// place: g[idx] = dL/dK becomes dL/dD; dlam[idx] = dL/dK · dK/dλ when dlam is given.
template <typename T>
PAC_DEVICE void kernel_chain_at(const Dev& d, int64_t idx, int64_t k, T D, const T* K,
                                const T* alpha, const T* lambda, T* g, T* dlam) {
  const T Kv = K[idx], gk = g[idx];
  if (dlam) {
    dlam[idx] = gk * kernel_grad_lambda(d.kernel_type, D, Kv, param_of(alpha, d.n_alpha, k));
  }
  g[idx] = gk * kernel_grad_D(d.kernel_type, D, Kv, param_of(lambda, d.n_lambda, k));
}

// dL/dphi of guidance channel plane Fp at output pixel (y, x), phi value ph: −Σ_i dD_i · 2Δ over
// the taps i of the pixel (all d.T taps, or the class's taps when cl is given), dD_i = g[i * P].
template <typename T>
PAC_DEVICE T phi_grad(const Dev& d, const Cls* cl, const T* Fp, T ph, const T* g, int64_t P,
                      int64_t y, int64_t x) {
  const int64_t n = cl ? cl->na * cl->ne : d.T;
  T acc = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const QR ae = divmod(cl ? class_tap(d, *cl, i) : i, d.kw);
    const int64_t r = tap_source(y, ae.q, d.gsh, d.gph, d.dh, 1, d.Hg);
    const int64_t q = tap_source(x, ae.r, d.gsw, d.gpw, d.dw, 1, d.Wg);
    const T dl = guidance_delta(read_zero_ext(Fp, d.Wg, r, q), ph, d.asym);
    acc += T(2) * dl * g[i * P];
  }
  return -acc;
}

// Kc[bb, tc, jj] of a class tile from the guidance (kernel channel 0: the convolution path).
template <typename T>
PAC_GLOBAL void class_kernel_kernel(int64_t n, Dev d, TileR tl, Cls cl, const T* __restrict__ F,
                                    const T* __restrict__ phi, const T* alpha, const T* lambda,
                                    T* __restrict__ Kc) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, cl.na * cl.ne);
    const int64_t jj = i1.r, tc = i2.r, bb = i2.q;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    const T D = tap_distance(d, F, phi, tl.b0 + bb, 0, class_tap(d, cl, tc), y, x);
    Kc[idx] = kernel_value(d.kernel_type, D, param_of(alpha, d.n_alpha, 0),
                           param_of(lambda, d.n_lambda, 0));
  }
}

// Class columns col[c*Tc + tc, bb*P + jj] = K · X̄[b, c, tap of pixel]. K from the class tile
// buffer Kc[bb, tc, jj] (guided ops) or from the precomputed kernel Kfull(bb, 0, t, j).
template <typename T>
PAC_GLOBAL void class_fill_col_kernel(int64_t n, Dev d, TileR tl, Cls cl,
                                      const T* __restrict__ X, const T* __restrict__ Kc,
                                      KV<T> Kfull, T* __restrict__ col) {
  PAC_KERNEL_LOOP(idx, n) {
    const int64_t Tc = cl.na * cl.ne;
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, Tc);
    const int64_t jj = i1.r, tc = i2.r, bb = i2.q;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    const int64_t t = class_tap(d, cl, tc);
    const QR ae = divmod(t, d.kw);
    const int64_t r = tap_source(y, ae.q, d.sh, d.ph, d.dh, d.uh, d.H);
    const int64_t q = tap_source(x, ae.r, d.sw, d.pw, d.dw, d.uw, d.W);
    const int64_t plane = d.H * d.W, cstride = Tc * tl.nb * tl.P;
    T* dst = col + (tc * tl.nb + bb) * tl.P + jj;
    if (r < 0 || q < 0) {
      for (int64_t c = 0; c < d.C; ++c) dst[c * cstride] = T(0);
      continue;
    }
    const T kv = Kc ? Kc[idx] : Kfull(bb, 0, t, y * d.Wo + x);
    const T* src = X + (tl.b0 + bb) * d.C * plane + r * d.W + q;
    for (int64_t c = 0; c < d.C; ++c) dst[c * cstride] = kv * src[c * plane];
  }
}

// out[b, o, y, x] = res[o, bb*P + jj] for the pixels of a class tile.
template <typename T>
PAC_GLOBAL void class_scatter_kernel(int64_t n, Dev d, TileR tl, Cls cl,
                                     const T* __restrict__ res, T* __restrict__ out) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, tl.nb);
    const int64_t jj = i1.r, bb = i2.r, o = i2.q;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    out[((tl.b0 + bb) * d.O + o) * d.HW + y * d.Wo + x] = res[idx];
  }
}

// gt[o, bb*P + jj] = dY[b, o, pixel jj of the class tile] (the inverse of class_scatter_kernel).
template <typename T>
PAC_GLOBAL void class_gather_kernel(int64_t n, Dev d, TileR tl, Cls cl, const T* __restrict__ dY,
                                    T* __restrict__ gt) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, tl.nb);
    const int64_t jj = i1.r, bb = i2.r, o = i2.q;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    gt[idx] = dY[((tl.b0 + bb) * d.O + o) * d.HW + y * d.Wo + x];
  }
}

// Class-local pixel (in the tile) of output coordinate (y, x), or -1 when (y, x) is not in the
// class or not in the tile.
PAC_DEVICE int64_t class_local(const Dev& d, const Cls& cl, const TileR& tl, int64_t y,
                               int64_t x) {
  const int64_t dy = y - cl.py, dx = x - cl.px;
  if (dy < 0 || dx < 0) return -1;
  const QR qy = divmod(dy, d.uh), qx = divmod(dx, d.uw);
  if (qy.r != 0 || qx.r != 0) return -1;
  const int64_t jj = qy.q * cl.Wc + qx.q - tl.j0;
  return (jj >= 0 && jj < tl.P) ? jj : -1;
}

// Class input gradient, gathered: dX[b, c, ir, ic] += Σ over the class taps (a, e) and the
// class pixels of the tile that read (ir, ic) through them of K · dcol[c*Tc + tc, bb*P + jj].
template <typename T>
PAC_GLOBAL void class_dx_kernel(int64_t n, Dev d, TileR tl, Cls cl, int64_t r0, int64_t R,
                                const T* __restrict__ Kc, KV<T> Kfull,
                                const T* __restrict__ dcol, T* __restrict__ dX) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, d.W), i2 = divmod(i1.q, R), i3 = divmod(i2.q, d.C);
    const int64_t ic = i1.r, ir = r0 + i2.r, c = i3.r, bb = i3.q;
    const int64_t Tc = cl.na * cl.ne;
    T acc = T(0);
    for (int64_t ia = 0; ia < cl.na; ++ia) {
      const int64_t y = tap_target(ir, cl.a[ia], d.sh, d.ph, d.dh, d.uh, d.Ho);
      if (y < 0) continue;
      for (int64_t ie = 0; ie < cl.ne; ++ie) {
        const int64_t x = tap_target(ic, cl.e[ie], d.sw, d.pw, d.dw, d.uw, d.Wo);
        if (x < 0) continue;
        const int64_t jj = class_local(d, cl, tl, y, x);
        if (jj < 0) continue;
        const int64_t tc = ia * cl.ne + ie;
        const T kv = Kc ? Kc[(bb * Tc + tc) * tl.P + jj]
                        : Kfull(bb, 0, cl.a[ia] * d.kw + cl.e[ie], y * d.Wo + x);
        acc += kv * dcol[((c * Tc + tc) * tl.nb + bb) * tl.P + jj];
      }
    }
    dX[(((tl.b0 + bb) * d.C + c) * d.H + ir) * d.W + ic] += acc;
  }
}

// Class kernel gradient: Σ_c dcol[c*Tc + tc, bb*P + jj] · X̄[b, c, tap of the pixel], into the
// class tile buffer gKc[bb, tc, jj] or, without one, the full kernel gradient gKfull.
template <typename T>
PAC_GLOBAL void class_dk_kernel(int64_t n, Dev d, TileR tl, Cls cl, const T* __restrict__ X,
                                const T* __restrict__ dcol, T* __restrict__ gKc, KV<T> gKfull) {
  PAC_KERNEL_LOOP(idx, n) {
    const int64_t Tc = cl.na * cl.ne;
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, Tc);
    const int64_t jj = i1.r, tc = i2.r, bb = i2.q;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    const int64_t t = class_tap(d, cl, tc);
    const QR ae = divmod(t, d.kw);
    const int64_t r = tap_source(y, ae.q, d.sh, d.ph, d.dh, d.uh, d.H);
    const int64_t q = tap_source(x, ae.r, d.sw, d.pw, d.dw, d.uw, d.W);
    T acc = T(0);
    if (r >= 0 && q >= 0) {
      const int64_t plane = d.H * d.W, dstride = Tc * tl.nb * tl.P;
      const T* xp = X + (tl.b0 + bb) * d.C * plane + r * d.W + q;
      const T* dp = dcol + (tc * tl.nb + bb) * tl.P + jj;
      for (int64_t c = 0; c < d.C; ++c) acc += dp[c * dstride] * xp[c * plane];
    }
    if (gKc) {
      gKc[idx] = acc;
    } else {
      gKfull(bb, 0, t, y * d.Wo + x) = acc;
    }
  }
}

// kernel_chain_kernel on a class tile buffer (kernel channel 0).
template <typename T>
PAC_GLOBAL void class_chain_kernel(int64_t n, Dev d, TileR tl, Cls cl, const T* __restrict__ F,
                                   const T* __restrict__ phi, const T* alpha, const T* lambda,
                                   const T* __restrict__ Kc, T* __restrict__ g,
                                   T* __restrict__ dlam) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, cl.na * cl.ne);
    const int64_t jj = i1.r, tc = i2.r, bb = i2.q;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    const T D = tap_distance(d, F, phi, tl.b0 + bb, 0, class_tap(d, cl, tc), y, x);
    kernel_chain_at(d, idx, 0, D, Kc, alpha, lambda, g, dlam);
  }
}

// dphi of the class pixels: −Σ_tc dD(tc, jj) · 2Δ_c (the other taps read inserted zeros, so
// their dD is 0; each output pixel belongs to one class and one tile).
template <typename T>
PAC_GLOBAL void class_dphi_kernel(int64_t n, Dev d, TileR tl, Cls cl, const T* __restrict__ F,
                                  const T* __restrict__ phi, const T* __restrict__ dD,
                                  T* __restrict__ dphi) {
  PAC_KERNEL_LOOP(idx, n) {
    const int64_t Tc = cl.na * cl.ne;
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.Cf);
    const int64_t jj = i1.r, c = i2.r, bb = i2.q;
    const int64_t b = tl.b0 + bb;
    int64_t y, x;
    class_pixel(d, cl, tl.j0 + jj, y, x);
    const int64_t j = y * d.Wo + x;
    dphi[(b * d.Cf + c) * d.HW + j] =
        phi_grad(d, &cl, F + (b * d.Cf + c) * d.Hg * d.Wg, phi[(b * d.Cf + c) * d.HW + j],
                 dD + bb * Tc * tl.P + jj, tl.P, y, x);
  }
}

// Guidance gradient of a class tile, gathered: dF[b, c, r, q] += Σ over the class taps and the
// class pixels of the tile reading (r, q) of dD · 2Δ_c.
template <typename T>
PAC_GLOBAL void class_dguidance_kernel(int64_t n, Dev d, TileR tl, Cls cl, int64_t r0, int64_t R,
                                       const T* __restrict__ F, const T* __restrict__ phi,
                                       const T* __restrict__ dD, T* __restrict__ dF) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, d.Wg), i2 = divmod(i1.q, R), i3 = divmod(i2.q, d.Cf);
    const int64_t q = i1.r, r = r0 + i2.r, c = i3.r, bb = i3.q;
    const int64_t b = tl.b0 + bb;
    const int64_t fi = ((b * d.Cf + c) * d.Hg + r) * d.Wg + q;
    const T f = F[fi];
    const T* php = phi + (b * d.Cf + c) * d.HW;
    const T* g = dD + bb * cl.na * cl.ne * tl.P;
    T acc = T(0);
    for (int64_t ia = 0; ia < cl.na; ++ia) {
      const int64_t y = tap_target(r, cl.a[ia], d.gsh, d.gph, d.dh, 1, d.Ho);
      if (y < 0) continue;
      for (int64_t ie = 0; ie < cl.ne; ++ie) {
        const int64_t x = tap_target(q, cl.e[ie], d.gsw, d.gpw, d.dw, 1, d.Wo);
        if (x < 0) continue;
        const int64_t jj = class_local(d, cl, tl, y, x);
        if (jj < 0) continue;
        const T dl = guidance_delta(f, php[y * d.Wo + x], d.asym);
        acc += T(2) * dl * g[(ia * cl.ne + ie) * tl.P + jj];
      }
    }
    dF[fi] += acc;
  }
}

// ---------------------------------------------------------------------------------------------
// Backward kernels
// ---------------------------------------------------------------------------------------------

// Conv input gradient, gathered: dX[b, c, ir, ic] += Σ_{taps t, pixels j of the tile reading it}
// K(t, j) · dcol[c*T + t, j]. Rows [r0, r0 + R) of the input.
template <typename T>
PAC_GLOBAL void conv_dx_kernel(int64_t n, Dev d, TileR tl, int64_t r0, int64_t R, KV<T> K,
                               const T* __restrict__ dcol, T* __restrict__ dX) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, d.W), i2 = divmod(i1.q, R), i3 = divmod(i2.q, d.C);
    const int64_t ic = i1.r, ir = r0 + i2.r, c = i3.r, bb = i3.q;
    T acc = T(0);
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t y = tap_target(ir, a, d.sh, d.ph, d.dh, d.uh, d.Ho);
      if (y < 0) continue;
      for (int64_t e = 0; e < d.kw; ++e) {
        const int64_t x = tap_target(ic, e, d.sw, d.pw, d.dw, d.uw, d.Wo);
        if (x < 0) continue;
        const int64_t jj = y * d.Wo + x - tl.j0;
        if (jj < 0 || jj >= tl.P) continue;
        const int64_t t = a * d.kw + e;
        acc += K(bb, 0, t, jj) * dcol[((c * d.T + t) * tl.nb + bb) * tl.P + jj];
      }
    }
    dX[(((tl.b0 + bb) * d.C + c) * d.H + ir) * d.W + ic] += acc;
  }
}

// Pool input gradient, gathered: dX[b, c, ir, ic] += Σ_{o: χ(o) = c} Σ_{t, j} w[t] K(κ(o), t, j)
// dY[b, o, j].
template <typename T>
PAC_GLOBAL void pool_dx_kernel(int64_t n, Dev d, TileR tl, int64_t r0, int64_t R, KV<T> K,
                               const T* w, const T* __restrict__ dY, T* __restrict__ dX) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, d.W), i2 = divmod(i1.q, R), i3 = divmod(i2.q, d.C);
    const int64_t ic = i1.r, ir = r0 + i2.r, c = i3.r, bb = i3.q;
    const int64_t b = tl.b0 + bb;
    // C > 1: output channel o = c only; C == 1: every output channel reads channel 0.
    const int64_t o0 = d.C == 1 ? 0 : c, o1 = d.C == 1 ? d.O : c + 1;
    T acc = T(0);
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t y = tap_target(ir, a, d.sh, d.ph, d.dh, d.uh, d.Ho);
      if (y < 0) continue;
      for (int64_t e = 0; e < d.kw; ++e) {
        const int64_t x = tap_target(ic, e, d.sw, d.pw, d.dw, d.uw, d.Wo);
        if (x < 0) continue;
        const int64_t j = y * d.Wo + x, jj = j - tl.j0;
        if (jj < 0 || jj >= tl.P) continue;
        const int64_t t = a * d.kw + e;
        const T wt = w ? w[t] : T(1);
        for (int64_t o = o0; o < o1; ++o) {
          const int64_t ck = d.CK == 1 ? 0 : o;
          acc += wt * K(bb, ck, t, jj) * dY[(b * d.O + o) * d.HW + j];
        }
      }
    }
    dX[((b * d.C + c) * d.H + ir) * d.W + ic] += acc;
  }
}

// Conv kernel gradient: gK(bb, 0, t, jj) = Σ_c dcol[c*T + t, j] · X̄[b, c, tap t of j].
template <typename T>
PAC_GLOBAL void conv_dk_kernel(int64_t n, Dev d, TileR tl, const T* __restrict__ X,
                               const T* __restrict__ dcol, KV<T> gK) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.T);
    const int64_t jj = i1.r, t = i2.r, bb = i2.q;
    const int64_t j = tl.j0 + jj;
    const QR yx = divmod(j, d.Wo);
    const int64_t y = yx.q, x = yx.r;
    const QR ae = divmod(t, d.kw);
    const int64_t r = tap_source(y, ae.q, d.sh, d.ph, d.dh, d.uh, d.H);
    const int64_t q = tap_source(x, ae.r, d.sw, d.pw, d.dw, d.uw, d.W);
    T acc = T(0);
    if (r >= 0 && q >= 0) {
      const int64_t plane = d.H * d.W;
      const T* xp = X + (tl.b0 + bb) * d.C * plane + r * d.W + q;
      const T* dp = dcol + (t * tl.nb + bb) * tl.P + jj;
      const int64_t dstride = d.T * tl.nb * tl.P;
      for (int64_t c = 0; c < d.C; ++c) acc += dp[c * dstride] * xp[c * plane];
    }
    gK(bb, 0, t, jj) = acc;
  }
}

// Pool kernel gradient: v = Σ_{o: κ(o) = k} dY[b, o, j] X̄[b, χ(o), tap t of j];
// gK(bb, k, t, jj) = w[t] v (if gK.base) and dw_buf[bb, k, t, jj] = K v (if dw_buf).
template <typename T>
PAC_GLOBAL void pool_dk_kernel(int64_t n, Dev d, TileR tl, const T* __restrict__ X,
                               const T* __restrict__ dY, const T* w, KV<T> K, KV<T> gK,
                               T* __restrict__ dw_buf) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.T), i3 = divmod(i2.q, d.CK);
    const int64_t jj = i1.r, t = i2.r, k = i3.r, bb = i3.q;
    const int64_t b = tl.b0 + bb, j = tl.j0 + jj;
    const QR yx = divmod(j, d.Wo);
    const int64_t y = yx.q, x = yx.r;
    const QR ae = divmod(t, d.kw);
    const int64_t r = tap_source(y, ae.q, d.sh, d.ph, d.dh, d.uh, d.H);
    const int64_t q = tap_source(x, ae.r, d.sw, d.pw, d.dw, d.uw, d.W);
    T v = T(0);
    if (r >= 0 && q >= 0) {
      const int64_t o0 = d.CK == 1 ? 0 : k, o1 = d.CK == 1 ? d.O : k + 1;
      for (int64_t o = o0; o < o1; ++o) {
        const int64_t cx = d.C == 1 ? 0 : o;
        v += dY[(b * d.O + o) * d.HW + j] * X[((b * d.C + cx) * d.H + r) * d.W + q];
      }
    }
    if (gK.base) gK(bb, k, t, jj) = (w ? w[t] : T(1)) * v;
    if (dw_buf) dw_buf[idx] = K(bb, k, t, jj) * v;
  }
}

// Chain rule through the kernel function, in place on the tile buffer g: dL/dK -> dL/dD.
// dlam[idx] = dL/dK · dK/dλ when dlam is given.
template <typename T>
PAC_GLOBAL void kernel_chain_kernel(int64_t n, Dev d, TileR tl, const T* __restrict__ F,
                                    const T* __restrict__ phi, const T* alpha, const T* lambda,
                                    const T* __restrict__ K, T* __restrict__ g,
                                    T* __restrict__ dlam) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.T), i3 = divmod(i2.q, d.CK);
    const int64_t jj = i1.r, t = i2.r, k = i3.r, bb = i3.q;
    const int64_t j = tl.j0 + jj;
    const QR yx = divmod(j, d.Wo);
    const int64_t y = yx.q, x = yx.r;
    const T D = tap_distance(d, F, phi, tl.b0 + bb, k, t, y, x);
    kernel_chain_at(d, idx, k, D, K, alpha, lambda, g, dlam);
  }
}

// dphi[b, c, j] = −Σ_t dD(κ_f(c), t, j) · 2Δ_c(t, j) (each pixel belongs to one tile).
template <typename T>
PAC_GLOBAL void dphi_kernel(int64_t n, Dev d, TileR tl, const T* __restrict__ F,
                            const T* __restrict__ phi, const T* __restrict__ dD,
                            T* __restrict__ dphi) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, tl.P), i2 = divmod(i1.q, d.Cf);
    const int64_t jj = i1.r, c = i2.r, bb = i2.q;
    const int64_t b = tl.b0 + bb, j = tl.j0 + jj;
    const QR yx = divmod(j, d.Wo);
    const int64_t y = yx.q, x = yx.r;
    const int64_t k = d.channel_wise ? c : 0;
    dphi[(b * d.Cf + c) * d.HW + j] =
        phi_grad(d, static_cast<const Cls*>(nullptr), F + (b * d.Cf + c) * d.Hg * d.Wg,
                 phi[(b * d.Cf + c) * d.HW + j], dD + (bb * d.CK + k) * d.T * tl.P + jj, tl.P, y,
                 x);
  }
}

// Guidance gradient, gathered: dF[b, c, r, q] += Σ_{t, j of the tile reading it} dD · 2Δ_c.
template <typename T>
PAC_GLOBAL void dguidance_kernel(int64_t n, Dev d, TileR tl, int64_t r0, int64_t R,
                                 const T* __restrict__ F, const T* __restrict__ phi,
                                 const T* __restrict__ dD, T* __restrict__ dF) {
  PAC_KERNEL_LOOP(idx, n) {
    const QR i1 = divmod(idx, d.Wg), i2 = divmod(i1.q, R), i3 = divmod(i2.q, d.Cf);
    const int64_t q = i1.r, r = r0 + i2.r, c = i3.r, bb = i3.q;
    const int64_t b = tl.b0 + bb;
    const int64_t k = d.channel_wise ? c : 0;
    const int64_t fi = ((b * d.Cf + c) * d.Hg + r) * d.Wg + q;
    const T f = F[fi];
    const T* php = phi + (b * d.Cf + c) * d.HW;
    const T* g = dD + (bb * d.CK + k) * d.T * tl.P;
    T acc = T(0);
    for (int64_t a = 0; a < d.kh; ++a) {
      const int64_t y = tap_target(r, a, d.gsh, d.gph, d.dh, 1, d.Ho);
      if (y < 0) continue;
      for (int64_t e = 0; e < d.kw; ++e) {
        const int64_t x = tap_target(q, e, d.gsw, d.gpw, d.dw, 1, d.Wo);
        if (x < 0) continue;
        const int64_t j = y * d.Wo + x, jj = j - tl.j0;
        if (jj < 0 || jj >= tl.P) continue;
        const T dl = guidance_delta(f, php[j], d.asym);
        acc += T(2) * dl * g[(a * d.kw + e) * tl.P + jj];
      }
    }
    dF[fi] += acc;
  }
}

// ---------------------------------------------------------------------------------------------
// Host drivers
// ---------------------------------------------------------------------------------------------

template <typename Kernel, typename... Args>
void launch(Kernel kernel, int64_t n, Args... args) {
  if (n <= 0) return;
#if defined(__CUDACC__)
  kernel<<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(n, args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
#else
  kernel(n, args...);
#endif
}

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Scratch elements a tile may use: half the output's elements (so that the scratch never
// exceeds half of what the call must allocate anyway), but at least kMinTileElems (small calls
// stay few launches) and at most kTileElems. PAC_CUDA_TILE_ELEMS in the environment overrides it
// (a tuning knob: larger tiles mean fewer, larger matrix products and more memory).
int64_t tile_cap(const Dev& d) {
  if (const char* env = std::getenv("PAC_CUDA_TILE_ELEMS")) {
    const long long v = std::atoll(env);
    if (v > 0) return static_cast<int64_t>(v);
  }
  const int64_t out_elems = d.B * std::max(d.O, int64_t(1)) * d.HW;
  const int64_t lo = std::min(kMinTileElems, kTileElems);
  return std::clamp(out_elems / 2, lo, kTileElems);
}

// Tiles of the HW output pixels of B images such that per_pixel scratch elements per pixel stay
// under cap.
std::vector<TileR> make_tiles(int64_t B, int64_t HW, int64_t per_pixel, int64_t cap) {
  std::vector<TileR> tiles;
  if (B == 0 || HW == 0) return tiles;
  const int64_t max_px = std::max(kMinTilePixels, cap / std::max<int64_t>(per_pixel, 1));
  if (HW <= max_px) {
    const int64_t nb = std::min(B, std::max<int64_t>(1, max_px / HW));
    for (int64_t b0 = 0; b0 < B; b0 += nb) tiles.push_back({b0, std::min(nb, B - b0), 0, HW});
  } else {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j0 = 0; j0 < HW; j0 += max_px)
        tiles.push_back({b, 1, j0, std::min(max_px, HW - j0)});
  }
  return tiles;
}

// Rows [r0, r0 + R) of a sampled plane (extent rows, zero insertion `up`) that the taps of
// output rows y0 ... y1 can read.
void rows_read(int64_t y0, int64_t y1, int64_t stride, int64_t padding, int64_t dilation,
               int64_t k, int64_t up, int64_t extent, int64_t& r0, int64_t& R) {
  const int64_t lo = std::max<int64_t>(0, y0 * stride - padding);
  const int64_t hi = y1 * stride - padding + (k - 1) * dilation;
  if (hi < 0) {
    r0 = 0;
    R = 0;
    return;
  }
  r0 = (lo + up - 1) / up;
  const int64_t r1 = std::min(extent - 1, hi / up);
  R = std::max<int64_t>(0, r1 - r0 + 1);
}

// The same for the output rows of a tile.
void tile_rows(const Dev& d, const TileR& tl, int64_t stride, int64_t padding, int64_t dilation,
               int64_t k, int64_t up, int64_t extent, int64_t& r0, int64_t& R) {
  if (tl.j0 == 0 && tl.P == d.HW) {
    r0 = 0;
    R = extent;
    return;
  }
  rows_read(tl.j0 / d.Wo, (tl.j0 + tl.P - 1) / d.Wo, stride, padding, dilation, k, up, extent,
            r0, R);
}

// The sub-pixel classes of a convolution of an upsampled input, or none when the call does not
// qualify (pool path, input stride > 1, no upsampling, or more than kMaxClassTaps taps per axis).
std::vector<Cls> make_classes(const Problem& p) {
  const Geometry& g = p.geo;
  std::vector<Cls> classes;
  if (!subpixel_applies(p.pool, g.sh, g.sw, g.uh, g.uw)) return classes;
  const auto rows = subpixel_axis(p.Ho, g.kh, g.ph, g.dh, g.uh);
  const auto cols = subpixel_axis(p.Wo, g.kw, g.pw, g.dw, g.uw);
  for (const SubpixelAxis& ay : rows) {
    for (const SubpixelAxis& ax : cols) {
      if (ay.taps.size() > kMaxClassTaps || ax.taps.size() > kMaxClassTaps) return {};
      Cls cl{};
      cl.py = ay.residue;
      cl.px = ax.residue;
      cl.Hc = ay.extent;
      cl.Wc = ax.extent;
      cl.na = static_cast<int64_t>(ay.taps.size());
      cl.ne = static_cast<int64_t>(ax.taps.size());
      std::copy(ay.taps.begin(), ay.taps.end(), cl.a);
      std::copy(ax.taps.begin(), ax.taps.end(), cl.e);
      classes.push_back(cl);
    }
  }
  return classes;
}

// Convolution forward class by class (see Cls). Needs p.CK == 1 (the convolution path).
template <typename T>
void forward_classes(const Problem& p, const std::vector<Cls>& classes, at::Tensor& out) {
  const Dev d = make_dev(p);
  const auto opts = p.input.options();
  const T* X = p.input.data_ptr<T>();
  const T* F = opt_ptr<T>(p.guidance);
  const T* phi = opt_ptr<T>(p.phi);
  const T* alpha = opt_ptr<T>(p.alpha);
  const T* lambda = opt_ptr<T>(p.lambda);
  const int64_t G = p.groups, Og = p.O / G, Cg = p.C / G;
  const int64_t cap = tile_cap(d);
  for (const Cls& cl : classes) {
    const int64_t Tc = cl.na * cl.ne, HWc = cl.Hc * cl.Wc;
    if (Tc == 0) {  // every tap reads an inserted zero: the class's outputs are 0
      out.view({p.B, p.O, p.Ho, p.Wo})
          .slice(2, cl.py, p.Ho, p.geo.uh)
          .slice(3, cl.px, p.Wo, p.geo.uw)
          .zero_();
      continue;
    }
    // The valid rows (columns) solve a·d ≡ p − py (mod u): an arithmetic progression, so the
    // class's weight is a strided slice (no index tensor, no host-to-device copy).
    const int64_t sa = cl.na > 1 ? cl.a[1] - cl.a[0] : 1, se = cl.ne > 1 ? cl.e[1] - cl.e[0] : 1;
    const at::Tensor wc = p.weight.slice(2, cl.a[0], cl.a[cl.na - 1] + 1, sa)
                              .slice(3, cl.e[0], cl.e[cl.ne - 1] + 1, se)
                              .reshape({p.O, Cg * Tc});
    const int64_t per_px = (p.guided ? Tc : 0) + d.C * Tc + p.O;
    for (const TileR& tl : make_tiles(d.B, HWc, per_px, cap)) {
      const int64_t n = tl.nb * Tc * tl.P;
      at::Tensor Kc;
      if (p.guided) {
        Kc = at::empty({n}, opts);
        launch(class_kernel_kernel<T>, n, d, tl, cl, F, phi, alpha, lambda, Kc.data_ptr<T>());
      }
      const KV<T> Kfull = p.guided ? KV<T>{nullptr, 0, 0, 0}
                                   : kernel_view<T>(const_cast<T*>(p.kernel.data_ptr<T>()), d,
                                                    TileR{tl.b0, tl.nb, 0, d.HW});
      at::Tensor col = at::empty({d.C * Tc, tl.nb * tl.P}, opts);
      launch(class_fill_col_kernel<T>, n, d, tl, cl, X,
             static_cast<const T*>(p.guided ? Kc.data_ptr<T>() : nullptr), Kfull,
             col.data_ptr<T>());
      at::Tensor res = at::empty({p.O, tl.nb * tl.P}, opts);
      for (int64_t g = 0; g < G; ++g) {
        at::Tensor rg = res.narrow(0, g * Og, Og);
        at::mm_out(rg, wc.narrow(0, g * Og, Og), col.narrow(0, g * Cg * Tc, Cg * Tc));
      }
      launch(class_scatter_kernel<T>, res.numel(), d, tl, cl,
             static_cast<const T*>(res.data_ptr<T>()), out.data_ptr<T>());
    }
  }
  if (p.bias.defined()) out.add_(p.bias.view({1, p.O, 1, 1}));
}

template <typename T>
void forward_impl(const Problem& p, at::Tensor& out) {
  const Dev d = make_dev(p);
  const auto opts = p.input.options();
  const int64_t T_ = d.T;
  const int64_t k_px = p.guided ? d.CK * T_ : 0;
  const T* X = p.input.data_ptr<T>();
  const T* F = opt_ptr<T>(p.guidance);
  const T* phi = opt_ptr<T>(p.phi);
  const T* alpha = opt_ptr<T>(p.alpha);
  const T* lambda = opt_ptr<T>(p.lambda);
  const T* w = opt_ptr<T>(p.weight);
  const int64_t G = p.groups, Og = p.O / G, Cg = p.C / G;
  const int64_t cap = tile_cap(d);

  // Channels per column chunk. A matrix product needs many pixels (columns) to fill the GPU;
  // when the scratch cap leaves fewer than kGemmPixels pixels for all C·T column rows, the
  // columns of an ungrouped convolution are built and multiplied cc channels at a time and
  // accumulated into the output (same memory, larger products).
  // Chunks of fewer than kMinChunkRows rows make products too thin to pay (H100, 2x32x128x128
  // k5: one channel per chunk took 1.9 ms against 0.85 ms unchunked), so then nothing is chunked.
  int64_t cc = d.C;
  if (!p.pool && G == 1) {
    const int64_t want = std::min(kGemmPixels, d.B * d.HW);
    if (cap / (k_px + d.C * T_) < want) {
      const int64_t c = std::clamp((cap / want - k_px) / T_, int64_t(1), d.C);
      if (c * T_ >= kMinChunkRows) cc = c;
    }
  }
  const int64_t per_px = k_px + (p.pool ? 0 : cc * T_);

  for (const TileR& tl : make_tiles(d.B, d.HW, per_px, cap)) {
    at::Tensor Kbuf;
    KV<T> K;
    if (p.guided) {
      Kbuf = at::empty({tl.nb * d.CK * T_ * tl.P}, opts);
      launch(kernel_tile_kernel<T>, Kbuf.numel(), d, tl, F, phi, alpha, lambda,
             Kbuf.data_ptr<T>());
      K = tile_view<T>(Kbuf.data_ptr<T>(), d, tl);
    } else {
      K = kernel_view<T>(const_cast<T*>(p.kernel.data_ptr<T>()), d, tl);
    }
    if (p.pool) {
      launch(pool_forward_kernel<T>, tl.nb * ((d.O + kPoolOuts - 1) / kPoolOuts) * tl.P, d, tl, X,
             K, w, out.data_ptr<T>());
      continue;
    }
    const at::Tensor w2 = p.weight.view({p.O, Cg * T_});
    if (cc < d.C) {  // G == 1: out(tile) = Σ_chunks W[:, chunk] · col(chunk)
      at::Tensor col_buf = at::empty({cc * T_, tl.nb * tl.P}, opts);
      at::Tensor res = tl.nb == 1 ? out.select(0, tl.b0).view({p.O, d.HW}).narrow(1, tl.j0, tl.P)
                                  : at::empty({p.O, tl.nb * tl.P}, opts);
      for (int64_t c0 = 0; c0 < d.C; c0 += cc) {
        const int64_t n_c = std::min(cc, d.C - c0);
        at::Tensor col = col_buf.narrow(0, 0, n_c * T_);
        launch(fill_col_kernel<T>, tl.nb * T_ * tl.P, d, tl, c0, n_c, X, K, col.data_ptr<T>());
        const at::Tensor wc = w2.narrow(1, c0 * T_, n_c * T_);
        if (c0 == 0) {
          at::mm_out(res, wc, col);
        } else {
          res.addmm_(wc, col);
        }
      }
      if (tl.nb > 1) {
        out.narrow(0, tl.b0, tl.nb).view({tl.nb, p.O, d.HW})
            .copy_(res.view({p.O, tl.nb, d.HW}).transpose(0, 1));
      }
      continue;
    }
    at::Tensor col = at::empty({d.C * T_, tl.nb * tl.P}, opts);
    launch(fill_col_kernel<T>, tl.nb * T_ * tl.P, d, tl, int64_t(0), d.C, X, K,
           col.data_ptr<T>());
    for (int64_t g = 0; g < G; ++g) {
      const at::Tensor wg = w2.narrow(0, g * Og, Og);
      const at::Tensor cg = col.narrow(0, g * Cg * T_, Cg * T_);
      if (tl.nb == 1) {
        at::Tensor og = out.select(0, tl.b0).view({p.O, d.HW}).narrow(0, g * Og, Og)
                            .narrow(1, tl.j0, tl.P);
        at::mm_out(og, wg, cg);
      } else {
        at::Tensor res = at::mm(wg, cg);  // [Og, nb * HW]
        out.narrow(0, tl.b0, tl.nb).view({tl.nb, p.O, d.HW}).narrow(1, g * Og, Og)
            .copy_(res.view({Og, tl.nb, d.HW}).transpose(0, 1));
      }
    }
  }
  if (!p.pool && p.bias.defined()) out.add_(p.bias.view({1, p.O, 1, 1}));
}

at::Tensor run_forward(const Problem& p) {
#if defined(__CUDACC__)
  c10::cuda::CUDAGuard guard(p.input.device());
#endif
  at::Tensor out = at::empty({p.B, p.O, p.Ho, p.Wo}, p.input.options());
  if (out.numel() == 0) return out;
  if (p.C == 0 || (p.pool && p.CK == 0)) {
    out.zero_();
    if (!p.pool && p.bias.defined()) out.add_(p.bias.view({1, p.O, 1, 1}));
    return out;
  }
  const std::vector<Cls> classes = make_classes(p);
  AT_DISPATCH_FLOATING_TYPES(p.input.scalar_type(), "pac_forward_cuda", [&] {
    if (classes.empty()) {
      forward_impl<scalar_t>(p, out);
    } else {
      forward_classes<scalar_t>(p, classes, out);
    }
  });
  return out;
}

struct Grads {
  at::Tensor dx, dg, dphi, dw, dalpha, dlambda, dkernel;
};

// Which gradients a backward call computes, and what they take: gK (the gradient of the kernel
// values) for any guidance/parameter gradient or dkernel; guided (the chain through the kernel
// function) for the guidance, phi and inv-parameter gradients of a guided op.
struct Needs {
  bool dx, dg, dphi, dw, dk, da, dl, gK, guided;
  Needs(const Problem& p, const Grads& gr) {
    const bool inv = p.kernel_type == kInv;
    dx = gr.dx.defined();
    dg = gr.dg.defined();
    dphi = gr.dphi.defined();
    dw = gr.dw.defined();
    dk = gr.dkernel.defined();
    da = gr.dalpha.defined() && inv;
    dl = gr.dlambda.defined() && inv;
    gK = dg || dphi || da || dl || dk;
    guided = p.guided && (dg || dphi || da || dl);
  }
};

// dalpha and dlambda from their per-kernel-channel accumulators (one value for a scalar).
void finish_inv_params(Grads& gr, const at::Tensor& acc_alpha, const at::Tensor& acc_lambda) {
  if (acc_alpha.defined()) {
    gr.dalpha.copy_((gr.dalpha.numel() == 1 ? acc_alpha.sum() : acc_alpha).view(gr.dalpha.sizes()));
  }
  if (acc_lambda.defined()) {
    gr.dlambda.copy_(
        (gr.dlambda.numel() == 1 ? acc_lambda.sum() : acc_lambda).view(gr.dlambda.sizes()));
  }
}

template <typename T>
void backward_impl(const Problem& p, const at::Tensor& grad, Grads& gr) {
  const Dev d = make_dev(p);
  const auto opts = p.input.options();
  const int64_t T_ = d.T;
  const Needs need(p, gr);

  int64_t per_px = 0;
  if (p.guided) per_px += d.CK * T_ * (1 + (need.gK ? 1 : 0) + (need.dl ? 1 : 0));
  if (p.pool) {
    if (need.dw) per_px += d.CK * T_;
  } else {
    per_px += d.C * T_ * ((need.dw ? 1 : 0) + ((need.dx || need.gK) ? 1 : 0)) + d.O;
  }

  const T* X = p.input.data_ptr<T>();
  const T* F = opt_ptr<T>(p.guidance);
  const T* phi = opt_ptr<T>(p.phi);
  const T* alpha = opt_ptr<T>(p.alpha);
  const T* lambda = opt_ptr<T>(p.lambda);
  const T* w = opt_ptr<T>(p.weight);
  const T* dY = grad.data_ptr<T>();
  const int64_t G = std::max<int64_t>(p.groups, 1), Og = p.O / G, Cg = p.C / G;
  at::Tensor acc_alpha = need.da ? at::zeros({d.CK}, opts) : at::Tensor();
  at::Tensor acc_lambda = need.dl ? at::zeros({d.CK}, opts) : at::Tensor();

  for (const TileR& tl : make_tiles(d.B, d.HW, per_px, tile_cap(d))) {
    const int64_t nK = tl.nb * d.CK * T_ * tl.P;
    at::Tensor Kbuf, gKbuf;
    KV<T> K, gK{nullptr, 0, 0, 0};
    if (p.guided) {
      Kbuf = at::empty({nK}, opts);
      launch(kernel_tile_kernel<T>, nK, d, tl, F, phi, alpha, lambda, Kbuf.data_ptr<T>());
      K = tile_view<T>(Kbuf.data_ptr<T>(), d, tl);
      if (need.gK) {
        gKbuf = at::empty({nK}, opts);  // fully written by the dk kernels
        gK = tile_view<T>(gKbuf.data_ptr<T>(), d, tl);
      }
    } else {
      K = kernel_view<T>(const_cast<T*>(p.kernel.data_ptr<T>()), d, tl);
      if (need.dk) gK = kernel_view<T>(gr.dkernel.data_ptr<T>(), d, tl);
    }

    if (p.pool) {
      if (need.dx) {
        int64_t r0, R;
        tile_rows(d, tl, d.sh, d.ph, d.dh, d.kh, d.uh, d.H, r0, R);
        launch(pool_dx_kernel<T>, tl.nb * d.C * R * d.W, d, tl, r0, R, K, w, dY,
               gr.dx.data_ptr<T>());
      }
      if (need.gK || need.dw) {
        at::Tensor dwbuf = need.dw ? at::empty({nK}, opts) : at::Tensor();
        launch(pool_dk_kernel<T>, nK, d, tl, X, dY, w, K, gK, need.dw ? dwbuf.data_ptr<T>() : nullptr);
        if (need.dw) gr.dw.view({T_}).add_(dwbuf.view({tl.nb * d.CK, T_, tl.P}).sum(at::IntArrayRef{0, 2}));
      }
    } else {
      at::Tensor gt;  // dY of the tile as [O, nb * P]
      if (tl.nb == 1) {
        gt = grad.select(0, tl.b0).view({p.O, d.HW}).narrow(1, tl.j0, tl.P);
      } else {
        gt = grad.narrow(0, tl.b0, tl.nb).view({tl.nb, p.O, d.HW}).permute({1, 0, 2})
                 .reshape({p.O, tl.nb * d.HW});
      }
      const at::Tensor w2 = p.weight.view({p.O, Cg * T_});
      if (need.dw) {
        at::Tensor col = at::empty({d.C * T_, tl.nb * tl.P}, opts);
        launch(fill_col_kernel<T>, tl.nb * T_ * tl.P, d, tl, int64_t(0), d.C, X, K,
               col.data_ptr<T>());
        at::Tensor dw2 = gr.dw.view({p.O, Cg * T_});
        for (int64_t g = 0; g < G; ++g) {
          dw2.narrow(0, g * Og, Og)
              .addmm_(gt.narrow(0, g * Og, Og), col.narrow(0, g * Cg * T_, Cg * T_).t());
        }
      }
      if (need.dx || need.gK) {
        at::Tensor dcol = at::empty({d.C * T_, tl.nb * tl.P}, opts);
        for (int64_t g = 0; g < G; ++g) {
          at::Tensor dg = dcol.narrow(0, g * Cg * T_, Cg * T_);
          at::mm_out(dg, w2.narrow(0, g * Og, Og).t(), gt.narrow(0, g * Og, Og));
        }
        if (need.dx) {
          int64_t r0, R;
          tile_rows(d, tl, d.sh, d.ph, d.dh, d.kh, d.uh, d.H, r0, R);
          launch(conv_dx_kernel<T>, tl.nb * d.C * R * d.W, d, tl, r0, R, K,
                 static_cast<const T*>(dcol.data_ptr<T>()), gr.dx.data_ptr<T>());
        }
        if (need.gK) {
          launch(conv_dk_kernel<T>, tl.nb * T_ * tl.P, d, tl, X,
                 static_cast<const T*>(dcol.data_ptr<T>()), gK);
        }
      }
    }

    if (need.guided) {
      T* g = gKbuf.data_ptr<T>();
      if (need.da) {  // dK/dα = 1 for inv kernels
        acc_alpha.add_(gKbuf.view({tl.nb, d.CK, T_ * tl.P}).sum(at::IntArrayRef{0, 2}));
      }
      at::Tensor dlam = need.dl ? at::empty({nK}, opts) : at::Tensor();
      launch(kernel_chain_kernel<T>, nK, d, tl, F, phi, alpha, lambda,
             static_cast<const T*>(Kbuf.data_ptr<T>()), g, need.dl ? dlam.data_ptr<T>() : nullptr);
      if (need.dl) acc_lambda.add_(dlam.view({tl.nb, d.CK, T_ * tl.P}).sum(at::IntArrayRef{0, 2}));
      if (need.dphi) {
        launch(dphi_kernel<T>, tl.nb * d.Cf * tl.P, d, tl, F, phi, static_cast<const T*>(g),
               gr.dphi.data_ptr<T>());
      }
      if (need.dg) {
        int64_t r0, R;
        tile_rows(d, tl, d.gsh, d.gph, d.dh, d.kh, 1, d.Hg, r0, R);
        launch(dguidance_kernel<T>, tl.nb * d.Cf * R * d.Wg, d, tl, r0, R, F, phi,
               static_cast<const T*>(g), gr.dg.data_ptr<T>());
      }
    }
  }
  finish_inv_params(gr, acc_alpha, acc_lambda);
}

// Backward class by class (see Cls), the convolution path of a transposed layer: each class's
// gradients from its own taps only (the other taps read inserted zeros, so their gradient terms
// vanish). dx, dguidance, dphi and dkernel are written or accumulated in place; dweight gets
// each class's [O, Cg, na, ne] block added to its taps' strided slice.
template <typename T>
void backward_classes(const Problem& p, const std::vector<Cls>& classes, const at::Tensor& grad,
                      Grads& gr) {
  const Dev d = make_dev(p);
  TORCH_CHECK(d.CK == 1, "pac: internal error: class backward needs one kernel channel");
  const auto opts = p.input.options();
  const Needs need(p, gr);

  const T* X = p.input.data_ptr<T>();
  const T* F = opt_ptr<T>(p.guidance);
  const T* phi = opt_ptr<T>(p.phi);
  const T* alpha = opt_ptr<T>(p.alpha);
  const T* lambda = opt_ptr<T>(p.lambda);
  const T* dY = grad.data_ptr<T>();
  const int64_t G = std::max<int64_t>(p.groups, 1), Og = p.O / G, Cg = p.C / G;
  const int64_t cap = tile_cap(d);
  at::Tensor acc_alpha = need.da ? at::zeros({1}, opts) : at::Tensor();
  at::Tensor acc_lambda = need.dl ? at::zeros({1}, opts) : at::Tensor();

  for (const Cls& cl : classes) {
    const int64_t Tc = cl.na * cl.ne, HWc = cl.Hc * cl.Wc;
    if (Tc == 0) continue;  // the class's outputs depend on nothing
    const int64_t sa = cl.na > 1 ? cl.a[1] - cl.a[0] : 1, se = cl.ne > 1 ? cl.e[1] - cl.e[0] : 1;
    auto taps_of = [&](const at::Tensor& t) {
      return t.slice(2, cl.a[0], cl.a[cl.na - 1] + 1, sa).slice(3, cl.e[0], cl.e[cl.ne - 1] + 1, se);
    };
    const at::Tensor wc = taps_of(p.weight).reshape({p.O, Cg * Tc});
    int64_t per_px = d.O + d.C * Tc * ((need.dw ? 1 : 0) + ((need.dx || need.gK) ? 1 : 0));
    if (p.guided) per_px += Tc * (1 + (need.gK ? 1 : 0) + (need.dl ? 1 : 0));
    for (const TileR& tl : make_tiles(d.B, HWc, per_px, cap)) {
      const int64_t n = tl.nb * Tc * tl.P;
      const TileR whole{tl.b0, tl.nb, 0, d.HW};
      at::Tensor Kc, gKc;
      KV<T> Kfull{nullptr, 0, 0, 0}, gKfull{nullptr, 0, 0, 0};
      if (p.guided) {
        Kc = at::empty({n}, opts);
        launch(class_kernel_kernel<T>, n, d, tl, cl, F, phi, alpha, lambda, Kc.data_ptr<T>());
        if (need.gK) gKc = at::empty({n}, opts);  // fully written by class_dk_kernel
      } else {
        Kfull = kernel_view<T>(const_cast<T*>(p.kernel.data_ptr<T>()), d, whole);
        if (need.dk) gKfull = kernel_view<T>(gr.dkernel.data_ptr<T>(), d, whole);
      }
      const T* kc = p.guided ? static_cast<const T*>(Kc.data_ptr<T>()) : nullptr;
      at::Tensor gt = at::empty({p.O, tl.nb * tl.P}, opts);
      launch(class_gather_kernel<T>, gt.numel(), d, tl, cl, dY, gt.data_ptr<T>());
      if (need.dw) {
        at::Tensor col = at::empty({d.C * Tc, tl.nb * tl.P}, opts);
        launch(class_fill_col_kernel<T>, n, d, tl, cl, X, kc, Kfull, col.data_ptr<T>());
        at::Tensor dwc = at::empty({p.O, Cg * Tc}, opts);
        for (int64_t g = 0; g < G; ++g) {
          at::Tensor dg = dwc.narrow(0, g * Og, Og);
          at::mm_out(dg, gt.narrow(0, g * Og, Og), col.narrow(0, g * Cg * Tc, Cg * Tc).t());
        }
        taps_of(gr.dw).add_(dwc.view({p.O, Cg, cl.na, cl.ne}));
      }
      if (need.dx || need.gK) {
        at::Tensor dcol = at::empty({d.C * Tc, tl.nb * tl.P}, opts);
        for (int64_t g = 0; g < G; ++g) {
          at::Tensor dg = dcol.narrow(0, g * Cg * Tc, Cg * Tc);
          at::mm_out(dg, wc.narrow(0, g * Og, Og).t(), gt.narrow(0, g * Og, Og));
        }
        const T* dc = dcol.data_ptr<T>();
        if (need.dx) {
          int64_t r0, R;
          rows_read(cl.py + d.uh * (tl.j0 / cl.Wc), cl.py + d.uh * ((tl.j0 + tl.P - 1) / cl.Wc),
                    d.sh, d.ph, d.dh, d.kh, d.uh, d.H, r0, R);
          launch(class_dx_kernel<T>, tl.nb * d.C * R * d.W, d, tl, cl, r0, R, kc, Kfull, dc,
                 gr.dx.data_ptr<T>());
        }
        if (need.gK) {
          launch(class_dk_kernel<T>, n, d, tl, cl, X, dc,
                 p.guided ? gKc.data_ptr<T>() : static_cast<T*>(nullptr), gKfull);
        }
      }
      if (need.guided) {
        T* g = gKc.data_ptr<T>();
        if (need.da) acc_alpha.add_(gKc.sum());  // dK/dα = 1 for inv kernels
        at::Tensor dlam = need.dl ? at::empty({n}, opts) : at::Tensor();
        launch(class_chain_kernel<T>, n, d, tl, cl, F, phi, alpha, lambda, kc, g,
               need.dl ? dlam.data_ptr<T>() : nullptr);
        if (need.dl) acc_lambda.add_(dlam.sum());
        if (need.dphi) {
          launch(class_dphi_kernel<T>, tl.nb * d.Cf * tl.P, d, tl, cl, F, phi,
                 static_cast<const T*>(g), gr.dphi.data_ptr<T>());
        }
        if (need.dg) {
          int64_t r0, R;
          rows_read(cl.py + d.uh * (tl.j0 / cl.Wc), cl.py + d.uh * ((tl.j0 + tl.P - 1) / cl.Wc),
                    d.gsh, d.gph, d.dh, d.kh, 1, d.Hg, r0, R);
          launch(class_dguidance_kernel<T>, tl.nb * d.Cf * R * d.Wg, d, tl, cl, r0, R, F, phi,
                 static_cast<const T*>(g), gr.dg.data_ptr<T>());
        }
      }
    }
  }
  finish_inv_params(gr, acc_alpha, acc_lambda);
}

at::Tensor empty_grad(const Problem& p) { return at::empty({0}, p.input.options()); }

// Allocates the requested gradients (zeros), runs the backward pass, returns them with empty
// [0] tensors where absent (same contract as the CPU backend).
Grads run_backward(const Problem& p, const at::Tensor& grad_in, bool want_dx, bool want_dg,
                   bool want_dphi, bool want_dw, bool want_da, bool want_dl, bool want_dk) {
#if defined(__CUDACC__)
  c10::cuda::CUDAGuard guard(p.input.device());
#endif
  const auto opts = p.input.options();
  Grads gr;
  if (want_dx) gr.dx = at::zeros({p.B, p.C, p.H, p.W}, opts);
  if (want_dg && p.guided) gr.dg = at::zeros({p.B, p.Cf, p.Hg, p.Wg}, opts);
  if (want_dphi && p.guided) gr.dphi = at::zeros({p.B, p.Cf, p.Ho, p.Wo}, opts);
  if (want_dw && p.weight.defined()) gr.dw = at::zeros(p.weight.sizes(), opts);
  if (want_da && p.alpha.defined()) gr.dalpha = at::zeros(p.alpha.sizes(), opts);
  if (want_dl && p.lambda.defined()) gr.dlambda = at::zeros(p.lambda.sizes(), opts);
  if (want_dk && !p.guided) gr.dkernel = at::zeros(p.kernel.sizes(), opts);
  const bool any = gr.dx.defined() || gr.dg.defined() || gr.dphi.defined() || gr.dw.defined() ||
                   gr.dalpha.defined() || gr.dlambda.defined() || gr.dkernel.defined();
  const bool empty = p.B == 0 || p.O == 0 || p.Ho == 0 || p.Wo == 0 || p.C == 0;
  if (any && !empty) {
    at::Tensor grad = grad_in.contiguous();
    const std::vector<Cls> classes = p.CK == 1 ? make_classes(p) : std::vector<Cls>{};
    AT_DISPATCH_FLOATING_TYPES(p.input.scalar_type(), "pac_backward_cuda", [&] {
      if (classes.empty()) {
        backward_impl<scalar_t>(p, grad, gr);
      } else {
        backward_classes<scalar_t>(p, classes, grad, gr);
      }
    });
  }
  auto fill = [&](at::Tensor& t) {
    if (!t.defined()) t = empty_grad(p);
  };
  fill(gr.dx); fill(gr.dg); fill(gr.dphi); fill(gr.dw); fill(gr.dalpha); fill(gr.dlambda);
  fill(gr.dkernel);
  return gr;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Op entry points (argument checks shared with the CPU backend: pac_args.h)
// ---------------------------------------------------------------------------------------------

at::Tensor conv2d_guided_cuda(const at::Tensor& input, const at::Tensor& guidance,
                              const at::Tensor& phi, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias,
                              const c10::optional<at::Tensor>& alpha,
                              const c10::optional<at::Tensor>& lambda, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation,
                              at::IntArrayRef upsample, at::IntArrayRef gstride,
                              at::IntArrayRef gpadding, int64_t groups, int64_t kernel_type,
                              bool asym) {
  Problem p = conv_guided_problem<kCUDA>("pac::conv2d_guided" PAC_OP_SUFFIX, input, guidance, phi,
                                         weight, bias, alpha, lambda, stride, padding, dilation,
                                         upsample, gstride, gpadding, groups, kernel_type, asym);
  return run_forward(p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
conv2d_guided_backward_cuda(const at::Tensor& grad, const at::Tensor& input,
                            const at::Tensor& guidance, const at::Tensor& phi,
                            const at::Tensor& weight, const c10::optional<at::Tensor>& alpha,
                            const c10::optional<at::Tensor>& lambda, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation,
                            at::IntArrayRef upsample, at::IntArrayRef gstride,
                            at::IntArrayRef gpadding, int64_t groups, int64_t kernel_type,
                            bool asym, const c10::List<bool>& output_mask) {
  const char* op = "pac::conv2d_guided_backward" PAC_OP_SUFFIX;
  Problem p = conv_guided_problem<kCUDA>(op, input, guidance, phi, weight, c10::nullopt, alpha,
                                         lambda, stride, padding, dilation, upsample, gstride,
                                         gpadding, groups, kernel_type, asym);
  check_grad_out(op, p, grad, kCUDA);
  const auto m = output_mask_arg<6>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], m[1], m[2], m[3], m[4], m[5], false);
  return {gr.dx, gr.dg, gr.dphi, gr.dw, gr.dalpha, gr.dlambda};
}

at::Tensor pool2d_guided_cuda(const at::Tensor& input, const at::Tensor& guidance,
                              const at::Tensor& phi, const c10::optional<at::Tensor>& weight,
                              const c10::optional<at::Tensor>& alpha,
                              const c10::optional<at::Tensor>& lambda,
                              at::IntArrayRef kernel_size, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation,
                              at::IntArrayRef upsample, at::IntArrayRef gstride,
                              at::IntArrayRef gpadding, int64_t kernel_type, bool asym,
                              bool channel_wise) {
  Problem p = pool_guided_problem<kCUDA>(
      "pac::pool2d_guided" PAC_OP_SUFFIX, input, guidance, phi, weight, alpha, lambda, kernel_size,
      stride, padding, dilation, upsample, gstride, gpadding, kernel_type, asym, channel_wise);
  return run_forward(p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
pool2d_guided_backward_cuda(const at::Tensor& grad, const at::Tensor& input,
                            const at::Tensor& guidance, const at::Tensor& phi,
                            const c10::optional<at::Tensor>& weight,
                            const c10::optional<at::Tensor>& alpha,
                            const c10::optional<at::Tensor>& lambda, at::IntArrayRef kernel_size,
                            at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, at::IntArrayRef upsample,
                            at::IntArrayRef gstride, at::IntArrayRef gpadding,
                            int64_t kernel_type, bool asym, bool channel_wise,
                            const c10::List<bool>& output_mask) {
  const char* op = "pac::pool2d_guided_backward" PAC_OP_SUFFIX;
  Problem p = pool_guided_problem<kCUDA>(op, input, guidance, phi, weight, alpha, lambda,
                                         kernel_size, stride, padding, dilation, upsample, gstride,
                                         gpadding, kernel_type, asym, channel_wise);
  check_grad_out(op, p, grad, kCUDA);
  const auto m = output_mask_arg<6>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], m[1], m[2], m[3], m[4], m[5], false);
  return {gr.dx, gr.dg, gr.dphi, gr.dw, gr.dalpha, gr.dlambda};
}

at::Tensor conv2d_kernel_cuda(const at::Tensor& input, const at::Tensor& kernel,
                              const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, at::IntArrayRef upsample,
                              int64_t groups) {
  Problem p = conv_kernel_problem<kCUDA>("pac::conv2d_kernel" PAC_OP_SUFFIX, input, kernel, weight,
                                         bias, stride, padding, dilation, upsample, groups);
  return run_forward(p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_kernel_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& kernel,
    const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, at::IntArrayRef upsample, int64_t groups,
    const c10::List<bool>& output_mask) {
  const char* op = "pac::conv2d_kernel_backward" PAC_OP_SUFFIX;
  Problem p = conv_kernel_problem<kCUDA>(op, input, kernel, weight, c10::nullopt, stride, padding,
                                         dilation, upsample, groups);
  check_grad_out(op, p, grad, kCUDA);
  const auto m = output_mask_arg<3>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], false, false, m[2], false, false, m[1]);
  return {gr.dx, gr.dkernel, gr.dw};
}

at::Tensor pool2d_kernel_cuda(const at::Tensor& input, const at::Tensor& kernel,
                              const c10::optional<at::Tensor>& weight, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation,
                              at::IntArrayRef upsample) {
  Problem p = pool_kernel_problem<kCUDA>("pac::pool2d_kernel" PAC_OP_SUFFIX, input, kernel, weight,
                                         stride, padding, dilation, upsample);
  return run_forward(p);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pool2d_kernel_backward_cuda(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& kernel,
    const c10::optional<at::Tensor>& weight, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, at::IntArrayRef upsample, const c10::List<bool>& output_mask) {
  const char* op = "pac::pool2d_kernel_backward" PAC_OP_SUFFIX;
  Problem p =
      pool_kernel_problem<kCUDA>(op, input, kernel, weight, stride, padding, dilation, upsample);
  check_grad_out(op, p, grad, kCUDA);
  const auto m = output_mask_arg<3>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], false, false, m[2], false, false, m[1]);
  return {gr.dx, gr.dkernel, gr.dw};
}

}  // namespace cuda_impl
}  // namespace pac
