// CPU implementations of the pac:: operators (schemas and conventions: csrc/ops.cpp).
//
// Tiled and fused: the output is cut into tiles of whole output rows of one image (about
// kTilePixels pixels); each tile computes its kernel values K[C_K, k*k, n] from the guidance on
// the fly (or reads them from a precomputed kernel), builds the kernel-scaled column matrix
// col[C*k*k, n] = K(tap)·X̄(tap) in a per-thread buffer and multiplies it with the weight
// (at::mm per group, written straight into the output). Nothing image-sized besides the output
// is allocated; the backward pass recomputes K and the columns per tile.
//
// Parallelism: rt::parallel_for over tiles. Forward tiles write disjoint outputs. In the
// backward pass, the scatters into the input and guidance gradients overlap between neighbouring
// tiles only: tiles are processed in two phases (even bands, then odd bands) with bands at least
// as tall as the kernel's reach, so tiles running concurrently never touch the same sample.
// Weight / alpha / lambda gradients are summed per thread and reduced at the end.
#include <algorithm>
#include <mutex>
#include <type_traits>
#include <vector>

#include "cpu/direct_conv.h"
#include "cpu/isa.h"
#include "cpu/vec_math.h"
#include "kernels/geometry.h"
#include "kernels/im2col.h"
#include "kernels/kernel_fn.h"
#include "pac_args.h"
#include "runtime/runtime.h"
#include "subpixel.h"

#ifndef PAC_CPU_ISA
#define PAC_CPU_ISA baseline
#endif

namespace pac {
namespace cpu {
// This file is compiled once per instruction set, into its own namespace (see cpu/isa.h).
namespace PAC_CPU_ISA {
namespace {

using namespace pac::kernels;
using pac::cpu::exp_scaled_array;

constexpr rt::DeviceType kCPU = rt::DeviceType::CPU;
// Target working-set of a tile's column / kernel buffers (bytes; about L2-sized, so that they
// are reused from cache) and pixel bounds of a tile.
constexpr int64_t kTileBytes = 512 << 10;
constexpr int64_t kMinTilePixels = 256;
constexpr int64_t kMaxTilePixels = 4096;

// Source tables: for every tap offset and output coordinate, the sample index or -1.
struct SourceTables {
  std::vector<int64_t> in_row, in_col;  // [kh*Ho], [kw*Wo] on the input
  std::vector<int64_t> g_row, g_col;    // same on the guidance (guided ops)
  // Without zero insertion (upsample 1) the column of tap e is affine in x: q = x*s + base[e],
  // inside the image for x in [lo[e], hi[e]). The inner loops use this (contiguous for s = 1).
  bool in_affine = false;
  std::vector<int64_t> in_lo, in_hi, in_base, g_lo, g_hi, g_base;
};

// Affine column range of tap e: q = x*s + (e*d - p) in [0, extent).
void affine_range(int64_t e, int64_t s, int64_t p, int64_t d, int64_t extent, int64_t Wo,
                  int64_t& lo, int64_t& hi, int64_t& base) {
  base = e * d - p;
  // smallest x with x*s + base >= 0, and one past the largest with x*s + base <= extent - 1
  lo = base >= 0 ? 0 : (-base + s - 1) / s;
  const int64_t last = extent - 1 - base;
  hi = last < 0 ? 0 : last / s + 1;
  lo = std::min(std::max<int64_t>(lo, 0), Wo);
  hi = std::min(std::max(hi, lo), Wo);
}

SourceTables make_tables(const Problem& p) {
  const Geometry& g = p.geo;
  SourceTables t;
  t.in_row.resize(g.kh * p.Ho);
  t.in_col.resize(g.kw * p.Wo);
  for (int64_t a = 0; a < g.kh; ++a)
    for (int64_t y = 0; y < p.Ho; ++y)
      t.in_row[a * p.Ho + y] = tap_source(y, a, g.sh, g.ph, g.dh, g.uh, p.H);
  for (int64_t e = 0; e < g.kw; ++e)
    for (int64_t x = 0; x < p.Wo; ++x)
      t.in_col[e * p.Wo + x] = tap_source(x, e, g.sw, g.pw, g.dw, g.uw, p.W);
  t.in_affine = g.uw == 1;
  t.in_lo.resize(g.kw); t.in_hi.resize(g.kw); t.in_base.resize(g.kw);
  for (int64_t e = 0; e < g.kw; ++e)
    affine_range(e, g.sw, g.pw, g.dw, p.W, p.Wo, t.in_lo[e], t.in_hi[e], t.in_base[e]);
  if (p.guided) {
    t.g_row.resize(g.kh * p.Ho);
    t.g_col.resize(g.kw * p.Wo);
    for (int64_t a = 0; a < g.kh; ++a)
      for (int64_t y = 0; y < p.Ho; ++y)
        t.g_row[a * p.Ho + y] = tap_source(y, a, g.gsh, g.gph, g.dh, 1, p.Hg);
    for (int64_t e = 0; e < g.kw; ++e)
      for (int64_t x = 0; x < p.Wo; ++x)
        t.g_col[e * p.Wo + x] = tap_source(x, e, g.gsw, g.gpw, g.dw, 1, p.Wg);
    t.g_lo.resize(g.kw); t.g_hi.resize(g.kw); t.g_base.resize(g.kw);
    for (int64_t e = 0; e < g.kw; ++e)
      affine_range(e, g.gsw, g.gpw, g.dw, p.Wg, p.Wo, t.g_lo[e], t.g_hi[e], t.g_base[e]);
  }
  return t;
}

// Rows per tile. `halo`: minimum band height for race-free two-phase scatters (0: none).
int64_t rows_per_tile(const Problem& p, int64_t col_rows, int64_t elem_size, bool halo) {
  int64_t pixels = kTileBytes / std::max<int64_t>(1, col_rows * elem_size);
  pixels = std::min(std::max(pixels, kMinTilePixels), kMaxTilePixels);
  int64_t rows = std::max<int64_t>(1, pixels / std::max<int64_t>(1, p.Wo));
  // Enough tiles to keep every thread busy.
  const int64_t want_tiles = 2 * static_cast<int64_t>(rt::get_num_threads());
  if (p.B * ((p.Ho + rows - 1) / rows) < want_tiles) {
    const int64_t bands = (want_tiles + p.B - 1) / p.B;
    rows = std::max<int64_t>(1, (p.Ho + bands - 1) / bands);
  }
  if (halo) {
    // Bands i and i+2 must read disjoint input / guidance rows: rows*s > (k-1)d - s.
    const int64_t reach = (p.geo.kh - 1) * p.geo.dh;
    rows = std::max(rows, (reach + p.geo.sh - 1) / p.geo.sh);
    if (p.guided) rows = std::max(rows, (reach + p.geo.gsh - 1) / p.geo.gsh);
  }
  return std::min(std::max<int64_t>(rows, 1), std::max<int64_t>(p.Ho, 1));
}

// A band of output rows [y0, y1) of image b: n = (y1 - y0) * Wo pixels, contiguous per channel.
struct Tile {
  int64_t b, y0, y1, n;
};

// Strided view of kernel values of one tile: K[ck][t][j] = base[ck*ld_c + t*ld_t + j].
template <typename T>
struct KView {
  T* base;
  int64_t ld_t, ld_c;
  T* at(int64_t ck, int64_t t) const { return base + ck * ld_c + t * ld_t; }
};

// Typed raw pointers of a Problem.
template <typename T>
struct Ptrs {
  const T* x;
  const T* g;
  const T* phi;
  const T* kern;
  const T* w;
  const T* alpha;
  const T* lambda;
  explicit Ptrs(const Problem& p)
      : x(p.input.data_ptr<T>()),
        g(p.guided ? p.guidance.data_ptr<T>() : nullptr),
        phi(p.guided ? p.phi.data_ptr<T>() : nullptr),
        kern(p.guided ? nullptr : p.kernel.data_ptr<T>()),
        w(p.weight.defined() ? p.weight.data_ptr<T>() : nullptr),
        alpha(p.alpha.defined() ? p.alpha.data_ptr<T>() : nullptr),
        lambda(p.lambda.defined() ? p.lambda.data_ptr<T>() : nullptr) {}
  T alpha_of(int64_t ck) const {
    return alpha ? alpha[ck < 0 ? 0 : ck] : T(0);
  }
};

// Index of channel ck into a 1- or C_K-element parameter.
inline int64_t param_index(const rt::Tensor& t, int64_t ck) {
  return t.defined() && t.numel() > 1 ? ck : 0;
}

// Adds the squared guidance differences of one channel along one output row to Dr:
// Dr[x] += Δ(F̄(tap of x), φ[x])², F̄ read from row Fr (nullptr: the tap row is outside, F̄ = 0)
// at column x*gs + base inside [lo, hi) and 0 outside.
template <typename T, bool ASYM>
inline void add_sq_delta_row(T* Dr, const T* phir, const T* Fr, int64_t Wo, int64_t lo,
                             int64_t hi, int64_t base, int64_t gs) {
  auto sq = [](T f, T ph) {
    const T d = guidance_delta(f, ph, ASYM);
    return d * d;
  };
  if (Fr == nullptr) {
    for (int64_t x = 0; x < Wo; ++x) Dr[x] += sq(T(0), phir[x]);
    return;
  }
  for (int64_t x = 0; x < lo; ++x) Dr[x] += sq(T(0), phir[x]);
  if (gs == 1) {
    const T* Fs = Fr + base;
    for (int64_t x = lo; x < hi; ++x) Dr[x] += sq(Fs[x], phir[x]);
  } else {
    for (int64_t x = lo; x < hi; ++x) Dr[x] += sq(Fr[x * gs + base], phir[x]);
  }
  for (int64_t x = hi; x < Wo; ++x) Dr[x] += sq(T(0), phir[x]);
}

// Guidance source of a span of output columns: none (the tap lies in the zero padding, F̄ = 0),
// contiguous (F̄ at Fs[x]) or strided (F̄ at Fs[x * gs]).
enum class GSrc { kZero, kUnit, kStrided };

// Offset from Fs of the guidance sample F̄_c(tap of x) (SRC kUnit or kStrided).
template <GSrc SRC>
inline int64_t guidance_offset(int64_t c, int64_t ldF, int64_t x, int64_t gs) {
  return c * ldF + (SRC == GSrc::kUnit ? x : x * gs);
}

// Guidance samples F̄_c of one vector of pixels starting at x (SRC as in sq_dist_span).
template <typename T, typename V, GSrc SRC>
inline V guidance_vec(const T* Fc, int64_t x, int64_t gs) {
  V f{};
  if constexpr (SRC == GSrc::kUnit) {
    f = cpu::load_as<V>(Fc + x);
  } else if constexpr (SRC == GSrc::kStrided) {
    for (int64_t l = 0; l < static_cast<int64_t>(sizeof(V) / sizeof(T)); ++l) f[l] = Fc[(x + l) * gs];
  }
  return f;
}

// Δ of one vector (after the optional ReLU; NaN stays NaN, as guidance_delta).
template <typename V, bool ASYM>
inline V delta_vec(V f, V ph) {
  V d = f - ph;
  if constexpr (ASYM) d = d <= V{} ? V{} : d;
  return d;
}

// Dr[x] = Σ_c Δ(F̄_c(tap of x), φ_c[x])² over all guidance channels c, for x in [x0, x1). The
// channel sums of U vectors of pixels are kept in registers at once (independent chains), so
// each distance is written once. Channel c of the guidance row is Fs + c * ldF, of φ:
// phir + c * ldphi. A span of at least one vector ends with one vector that overlaps the
// previous ones (its distances are recomputed identically) instead of a scalar tail.
template <typename T, bool ASYM, GSrc SRC>
inline void sq_dist_span(T* Dr, const T* phir, int64_t ldphi, const T* Fs, int64_t ldF,
                         int64_t gs, int64_t Cf, int64_t x0, int64_t x1) {
  using V = cpu::Vec<T>;
  constexpr int64_t VL = sizeof(V) / sizeof(T);
  constexpr int U = 4;
  // NU vectors of pixels at xs[0..NU), their channel sums in independent registers.
  auto vectors = [&](const int64_t* xs, auto u_const) {
    constexpr int NU = decltype(u_const)::value;
    V acc[NU];
    for (int u = 0; u < NU; ++u) acc[u] = V{};
    for (int64_t c = 0; c < Cf; ++c) {
      const T* Fc = Fs + c * ldF;
      const T* phc = phir + c * ldphi;
#pragma GCC unroll 4
      for (int u = 0; u < NU; ++u) {
        const V d = delta_vec<V, ASYM>(guidance_vec<T, V, SRC>(Fc, xs[u], gs),
                                       cpu::load_as<V>(phc + xs[u]));
        acc[u] += d * d;
      }
    }
    for (int u = 0; u < NU; ++u) cpu::store_as(Dr + xs[u], acc[u]);
  };
  int64_t x = x0;
  if (x1 - x0 >= VL) {
    int64_t xs[U];
    for (; x + U * VL <= x1; x += U * VL) {
      for (int u = 0; u < U; ++u) xs[u] = x + u * VL;
      vectors(xs, std::integral_constant<int, U>{});
    }
    // The rest (fewer than U*VL pixels, so at most U vectors) in one group: whole vectors, the
    // last one ending at x1 (overlapping the previous).
    const int64_t m = (x1 - x + VL - 1) / VL;
    for (int64_t u = 0; u < m; ++u) xs[u] = std::min(x + u * VL, x1 - VL);
    if (m == 1) vectors(xs, std::integral_constant<int, 1>{});
    if (m == 2) vectors(xs, std::integral_constant<int, 2>{});
    if (m == 3) vectors(xs, std::integral_constant<int, 3>{});
    if (m == 4) vectors(xs, std::integral_constant<int, 4>{});
    return;
  }
  for (; x < x1; ++x) {
    T acc = 0;
    for (int64_t c = 0; c < Cf; ++c) {
      T f = 0;
      if constexpr (SRC != GSrc::kZero) f = Fs[guidance_offset<SRC>(c, ldF, x, gs)];
      const T d = guidance_delta(f, phir[c * ldphi + x], ASYM);
      acc += d * d;
    }
    Dr[x] = acc;
  }
}

// One output row of one tap: the distances of columns [0, lo) and [hi, Wo) read F̄ = 0, those of
// [lo, hi) the guidance row Fr (nullptr: the tap row is outside, F̄ = 0 everywhere) at x*gs + base.
// A distance that reads F̄ = 0 does not depend on the tap: it is copied from zrow, the row's
// distances to zero guidance (sq_dist_span with GSrc::kZero over the whole row).
template <typename T, bool ASYM>
inline void sq_dist_row(T* Dr, const T* phir, int64_t ldphi, const T* Fr, int64_t ldF,
                        int64_t Cf, int64_t Wo, int64_t lo, int64_t hi, int64_t base, int64_t gs,
                        const T* zrow) {
  if (Fr == nullptr) {
    std::copy(zrow, zrow + Wo, Dr);
    return;
  }
  std::copy(zrow, zrow + lo, Dr);
  if (gs == 1) {
    sq_dist_span<T, ASYM, GSrc::kUnit>(Dr, phir, ldphi, Fr + base, ldF, 1, Cf, lo, hi);
  } else {
    sq_dist_span<T, ASYM, GSrc::kStrided>(Dr, phir, ldphi, Fr + base, ldF, gs, Cf, lo, hi);
  }
  std::copy(zrow + hi, zrow + Wo, Dr + hi);
}

// K = kernel(D) over n values of kernel channel ck.
template <typename T>
inline void kernel_values(const Problem& p, const Ptrs<T>& P, int64_t ck, const T* D, T* K,
                          int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (p.kernel_type == kGaussian) {  // K = exp(-D/2), vectorised (cpu/vec_math.h)
      exp_scaled_array(D, -0.5f, K, n);
      return;
    }
  }
  const T al = P.alpha ? P.alpha[param_index(p.alpha, ck)] : T(0);
  const T la = P.lambda ? P.lambda[param_index(p.lambda, ck)] : T(0);
  for (int64_t j = 0; j < n; ++j) K[j] = kernel_value(p.kernel_type, D[j], al, la);
}

// Computes the kernel values (and the distances D) of a tile from the guidance:
// K[ck][t][j], D[ck][t][j] with ld_t = n, ld_c = kk*n. One pass, row by row: each (tap, output
// row) sums the squared differences of all guidance channels into its D row while it is in L1,
// then turns it into K.
template <typename T>
void guided_kernel_tile(const Problem& p, const Ptrs<T>& P, const SourceTables& st,
                        const Tile& tile, T* K, T* D) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, n = tile.n, Wo = p.Wo;
  const int64_t plane_g = p.Hg * p.Wg, plane_o = p.Ho * p.Wo;
  const int64_t CK = p.CK;
  if (CK == 1) {
    // One kernel for all channels: D[t][j] over all guidance channels at once, then K over the
    // whole tile in one vectorised pass. The guidance rows the tile reads and the tile's φ rows
    // are first copied channel after channel with a row stride that is not a multiple of 4 KiB
    // (channel planes of a power-of-two size would map every channel's row onto the same L1 sets).
    const int64_t Cf = p.Cf;
    const int64_t ldg = (p.Wg + 15) / 16 * 16 + 16, ldp = (Wo + 15) / 16 * 16 + 16;
    int64_t gr0 = p.Hg, gr1 = 0;
    for (int64_t a = 0; a < g.kh; ++a)
      for (int64_t y = tile.y0; y < tile.y1; ++y) {
        const int64_t r = st.g_row[a * p.Ho + y];
        if (r < 0) continue;
        gr0 = std::min(gr0, r);
        gr1 = std::max(gr1, r + 1);
      }
    thread_local std::vector<T> gbuf, phibuf, zrow;
    gbuf.resize(std::max<int64_t>(gr1 - gr0, 0) * Cf * ldg);
    phibuf.resize(Cf * ldp);
    zrow.resize(Wo);
    for (int64_t r = gr0; r < gr1; ++r)
      for (int64_t c = 0; c < Cf; ++c) {
        const T* src = P.g + (tile.b * Cf + c) * plane_g + r * p.Wg;
        std::copy(src, src + p.Wg, gbuf.data() + ((r - gr0) * Cf + c) * ldg);
      }
    for (int64_t y = tile.y0; y < tile.y1; ++y) {
      for (int64_t c = 0; c < Cf; ++c) {
        const T* src = P.phi + (tile.b * Cf + c) * plane_o + y * Wo;
        std::copy(src, src + Wo, phibuf.data() + c * ldp);
      }
      const T* phir = phibuf.data();
      const int64_t off = (y - tile.y0) * Wo;
      T* z = zrow.data();
      if (p.asym) {
        sq_dist_span<T, true, GSrc::kZero>(z, phir, ldp, nullptr, 0, 0, Cf, 0, Wo);
      } else {
        sq_dist_span<T, false, GSrc::kZero>(z, phir, ldp, nullptr, 0, 0, Cf, 0, Wo);
      }
      for (int64_t t = 0; t < kk; ++t) {
        const int64_t a = t / g.kw, e = t % g.kw;
        const int64_t r = st.g_row[a * p.Ho + y];
        const T* Fr = r >= 0 ? gbuf.data() + (r - gr0) * Cf * ldg : nullptr;
        T* Dr = D + t * n + off;
        if (p.asym) {
          sq_dist_row<T, true>(Dr, phir, ldp, Fr, ldg, Cf, Wo, st.g_lo[e], st.g_hi[e],
                               st.g_base[e], g.gsw, z);
        } else {
          sq_dist_row<T, false>(Dr, phir, ldp, Fr, ldg, Cf, Wo, st.g_lo[e], st.g_hi[e],
                                st.g_base[e], g.gsw, z);
        }
      }
    }
    kernel_values<T>(p, P, 0, D, K, kk * n);
    return;
  }
  for (int64_t t = 0; t < kk; ++t) {
    const int64_t a = t / g.kw, e = t % g.kw;
    const int64_t lo = st.g_lo[e], hi = st.g_hi[e], base = st.g_base[e];
    for (int64_t y = tile.y0; y < tile.y1; ++y) {
      const int64_t r = st.g_row[a * p.Ho + y];
      const int64_t off = (y - tile.y0) * Wo;
      for (int64_t ck = 0; ck < CK; ++ck) {
        T* Dr = D + (ck * kk + t) * n + off;
        std::fill(Dr, Dr + Wo, T(0));
      }
      for (int64_t c = 0; c < p.Cf; ++c) {
        const int64_t ck = p.channel_wise ? c : 0;
        const T* Fr = r >= 0 ? P.g + (tile.b * p.Cf + c) * plane_g + r * p.Wg : nullptr;
        const T* phir = P.phi + (tile.b * p.Cf + c) * plane_o + y * Wo;
        T* Dr = D + (ck * kk + t) * n + off;
        if (p.asym) {
          add_sq_delta_row<T, true>(Dr, phir, Fr, Wo, lo, hi, base, g.gsw);
        } else {
          add_sq_delta_row<T, false>(Dr, phir, Fr, Wo, lo, hi, base, g.gsw);
        }
      }
      for (int64_t ck = 0; ck < CK; ++ck) {
        const int64_t o = (ck * kk + t) * n + off;
        kernel_values<T>(p, P, ck, D + o, K + o, Wo);
      }
    }
  }
}

// Guidance and φ gradients of one span of output columns of one tap, all channels: with
// gD = dL/dD of the tap, dL/dF̄_c(tap) = 2Δ_c·gD and dL/dφ_c = −2Δ_c·gD (docs/semantics.md §2.3).
// dFs (nullptr: not wanted) and Fs address the guidance row as in sq_dist_span; dphir may be
// nullptr. Writes only within the span's own samples (disjoint between concurrent tiles).
template <typename T, bool ASYM, GSrc SRC>
inline void guidance_grad_span(const T* gDr, const T* phir, T* dphir, int64_t ldphi,
                               const T* Fs, T* dFs, int64_t ldF, int64_t gs, int64_t Cf,
                               int64_t x0, int64_t x1) {
  using V = cpu::Vec<T>;
  constexpr int64_t VL = sizeof(V) / sizeof(T);
  // One vector of pixels at x; lanes below `first` are left alone (their gradient is 0).
  auto vector = [&](int64_t x, int64_t first) {
    const V gd2 = cpu::load_as<V>(gDr + x) * T(2);
    V lane;
    for (int64_t l = 0; l < VL; ++l) lane[l] = T(l);
    const auto keep = lane >= T(first);
    for (int64_t c = 0; c < Cf; ++c) {
      const V d = delta_vec<V, ASYM>(guidance_vec<T, V, SRC>(Fs + c * ldF, x, gs),
                                     cpu::load_as<V>(phir + c * ldphi + x));
      V g2 = d * gd2;
      if (first > 0) g2 = keep ? g2 : V{};  // the lanes left alone add exactly 0
      if constexpr (SRC == GSrc::kUnit) {
        if (dFs) {
          T* p = dFs + c * ldF + x;
          cpu::store_as(p, cpu::load_as<V>(p) + g2);
        }
      } else if constexpr (SRC == GSrc::kStrided) {
        if (dFs) {
          T* dFc = dFs + c * ldF;
          for (int64_t l = first; l < VL; ++l) dFc[(x + l) * gs] += g2[l];
        }
      }
      if (dphir) {
        T* p = dphir + c * ldphi + x;
        cpu::store_as(p, cpu::load_as<V>(p) - g2);
      }
    }
  };
  int64_t x = x0;
  if (x1 - x0 >= VL) {
    for (; x + VL <= x1; x += VL) vector(x, 0);
    if (x < x1) vector(x1 - VL, x - (x1 - VL));
    return;
  }
  for (; x < x1; ++x) {
    const T gd2 = gDr[x] * T(2);
    for (int64_t c = 0; c < Cf; ++c) {
      T f = 0;
      if constexpr (SRC != GSrc::kZero) f = Fs[guidance_offset<SRC>(c, ldF, x, gs)];
      const T g2 = guidance_delta(f, phir[c * ldphi + x], ASYM) * gd2;
      if constexpr (SRC != GSrc::kZero) {
        if (dFs) dFs[guidance_offset<SRC>(c, ldF, x, gs)] += g2;
      }
      if (dphir) dphir[c * ldphi + x] -= g2;
    }
  }
}

// guidance_grad_span over one output row of one tap, split as in sq_dist_row.
template <typename T, bool ASYM>
inline void guidance_grad_row(const T* gDr, const T* phir, T* dphir, int64_t ldphi,
                              const T* Fr, T* dFr, int64_t ldF, int64_t Cf, int64_t Wo,
                              int64_t lo, int64_t hi, int64_t base, int64_t gs) {
  if (Fr == nullptr) {
    guidance_grad_span<T, ASYM, GSrc::kZero>(gDr, phir, dphir, ldphi, nullptr, nullptr, 0, 0,
                                             Cf, 0, Wo);
    return;
  }
  guidance_grad_span<T, ASYM, GSrc::kZero>(gDr, phir, dphir, ldphi, nullptr, nullptr, 0, 0, Cf,
                                           0, lo);
  T* dFs = dFr ? dFr + base : nullptr;
  if (gs == 1) {
    guidance_grad_span<T, ASYM, GSrc::kUnit>(gDr, phir, dphir, ldphi, Fr + base, dFs, ldF, 1,
                                             Cf, lo, hi);
  } else {
    guidance_grad_span<T, ASYM, GSrc::kStrided>(gDr, phir, dphir, ldphi, Fr + base, dFs, ldF,
                                                gs, Cf, lo, hi);
  }
  guidance_grad_span<T, ASYM, GSrc::kZero>(gDr, phir, dphir, ldphi, nullptr, nullptr, 0, 0, Cf,
                                           hi, Wo);
}

// Chain rule from dL/dK of a tile (gK, same layout as K/D; overwritten with dL/dD) to the
// guidance, phi, alpha and lambda gradients.
template <typename T>
void guided_kernel_backward_tile(const Problem& p, const Ptrs<T>& P, const SourceTables& st,
                                 const Tile& tile, const T* K, const T* D, T* gK, T* dF,
                                 T* dphi, T* dalpha, T* dlambda) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, n = tile.n, Wo = p.Wo;
  const int64_t plane_g = p.Hg * p.Wg, plane_o = p.Ho * p.Wo;
  if (p.kernel_type == kGaussian) {
    // dK/dD = −K/2; no α or λ.
    const int64_t m = p.CK * kk * n;
#pragma GCC ivdep
    for (int64_t j = 0; j < m; ++j) gK[j] = gK[j] * (K[j] * T(-0.5));
  } else {
    for (int64_t ck = 0; ck < p.CK; ++ck) {
      const int64_t ia = param_index(p.alpha, ck), il = param_index(p.lambda, ck);
      const T al = P.alpha ? P.alpha[ia] : T(0);
      const T la = P.lambda ? P.lambda[il] : T(0);
      T sum_a = 0, sum_l = 0;
      for (int64_t j = ck * kk * n; j < (ck + 1) * kk * n; ++j) {
        const T gk = gK[j];
        if (dalpha) sum_a += gk * kernel_grad_alpha<T>(p.kernel_type);
        if (dlambda) sum_l += gk * kernel_grad_lambda(p.kernel_type, D[j], K[j], al);
        gK[j] = gk * kernel_grad_D(p.kernel_type, D[j], K[j], la);
      }
      if (dalpha) dalpha[ia] += sum_a;
      if (dlambda) dlambda[il] += sum_l;
    }
  }
  if (!dF && !dphi) return;
  if (p.CK == 1) {
    // One kernel for all channels: every guidance channel's gradient from the one gD row.
    for (int64_t y = tile.y0; y < tile.y1; ++y) {
      const int64_t off = (y - tile.y0) * Wo;
      const T* phir = P.phi + tile.b * p.Cf * plane_o + y * Wo;
      T* dphir = dphi ? dphi + tile.b * p.Cf * plane_o + y * Wo : nullptr;
      for (int64_t t = 0; t < kk; ++t) {
        const int64_t a = t / g.kw, e = t % g.kw;
        const int64_t r = st.g_row[a * p.Ho + y];
        const T* Fr = r >= 0 ? P.g + tile.b * p.Cf * plane_g + r * p.Wg : nullptr;
        T* dFr = (r >= 0 && dF) ? dF + tile.b * p.Cf * plane_g + r * p.Wg : nullptr;
        const T* gDr = gK + t * n + off;
        if (p.asym) {
          guidance_grad_row<T, true>(gDr, phir, dphir, plane_o, Fr, dFr, plane_g, p.Cf, Wo,
                                     st.g_lo[e], st.g_hi[e], st.g_base[e], g.gsw);
        } else {
          guidance_grad_row<T, false>(gDr, phir, dphir, plane_o, Fr, dFr, plane_g, p.Cf, Wo,
                                      st.g_lo[e], st.g_hi[e], st.g_base[e], g.gsw);
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < p.Cf; ++c) {
    const int64_t ck = p.channel_wise ? c : 0;
    const T* Fc = P.g + (tile.b * p.Cf + c) * plane_g;
    T* dFc = dF ? dF + (tile.b * p.Cf + c) * plane_g : nullptr;
    const T* phic = P.phi + (tile.b * p.Cf + c) * plane_o + tile.y0 * Wo;
    T* dphic = dphi ? dphi + (tile.b * p.Cf + c) * plane_o + tile.y0 * Wo : nullptr;
    for (int64_t t = 0; t < kk; ++t) {
      const int64_t a = t / g.kw, e = t % g.kw;
      const int64_t* gcol = st.g_col.data() + e * Wo;
      const T* gDt = gK + (ck * kk + t) * n;
      for (int64_t y = tile.y0; y < tile.y1; ++y) {
        const int64_t r = st.g_row[a * p.Ho + y];
        const int64_t off = (y - tile.y0) * Wo;
        const T* Fr = r >= 0 ? Fc + r * p.Wg : nullptr;
        T* dFr = (r >= 0 && dFc) ? dFc + r * p.Wg : nullptr;
        for (int64_t x = 0; x < Wo; ++x) {
          const int64_t q = Fr ? gcol[x] : -1;
          const T f = q >= 0 ? Fr[q] : T(0);
          const T dl = guidance_delta(f, phic[off + x], p.asym);
          const T gd = T(2) * dl * gDt[off + x];
          if (dFr && q >= 0) accumulate(dFr + q, gd);
          if (dphic) dphic[off + x] -= gd;
        }
      }
    }
  }
}

// Kernel-scaled column matrix of a tile: col[c][t][j] = K[0][t][j] · X̄[c, tap t of pixel j].
template <typename T>
void scaled_im2col_tile(const Problem& p, const Ptrs<T>& P, const SourceTables& st,
                        const Tile& tile, const KView<T>& K, T* col) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, n = tile.n, Wo = p.Wo, plane = p.H * p.W;
  for (int64_t c = 0; c < p.C; ++c) {
    const T* Xc = P.x + (tile.b * p.C + c) * plane;
    for (int64_t t = 0; t < kk; ++t) {
      const int64_t a = t / g.kw, e = t % g.kw;
      const int64_t* icol = st.in_col.data() + e * Wo;
      const T* Kt = K.at(0, t);
      T* colr = col + (c * kk + t) * n;
      for (int64_t y = tile.y0; y < tile.y1; ++y) {
        const int64_t r = st.in_row[a * p.Ho + y];
        const int64_t off = (y - tile.y0) * Wo;
        if (r < 0) {
          std::fill(colr + off, colr + off + Wo, T(0));
          continue;
        }
        const T* Xr = Xc + r * p.W;
        if (st.in_affine) {
          const int64_t lo = st.in_lo[e], hi = st.in_hi[e], base = st.in_base[e];
          T* cr = colr + off;
          const T* Kr = Kt + off;
          std::fill(cr, cr + lo, T(0));
          if (g.sw == 1) {
            const T* Xs = Xr + base;
            for (int64_t x = lo; x < hi; ++x) cr[x] = Kr[x] * Xs[x];
          } else {
            for (int64_t x = lo; x < hi; ++x) cr[x] = Kr[x] * Xr[x * g.sw + base];
          }
          std::fill(cr + hi, cr + Wo, T(0));
        } else {
          for (int64_t x = 0; x < Wo; ++x)
            colr[off + x] = scaled_im2col(Kt[off + x], Xr, 0, 0, icol[x]);
        }
      }
    }
  }
}

// Per-thread scratch buffers of a parallel_for chunk.
struct Scratch {
  rt::Tensor K, D, gK, col, dcol, dw, dalpha, dlambda, xpad, kpad, gpad, acc, gpack;
};

std::vector<Tile> make_tiles(const Problem& p, int64_t rows, int parity) {
  std::vector<Tile> tiles;
  const int64_t bands = (p.Ho + rows - 1) / rows;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t i = 0; i < bands; ++i) {
      if (parity >= 0 && i % 2 != parity) continue;
      const int64_t y0 = i * rows, y1 = std::min(p.Ho, y0 + rows);
      tiles.push_back({b, y0, y1, (y1 - y0) * p.Wo});
    }
  return tiles;
}

// -------------------------------------------------------------------------------------------
// Forward
// -------------------------------------------------------------------------------------------
// Whether the direct convolution (cpu/direct_conv.h) computes the forward pass: input columns
// read with stride 1 and affine (ordinary stride-1 convolutions and every sub-pixel class of a
// transposed one), and each tap's valid columns exactly those inside the input, so that a
// zero-padded copy of the input rows stands for the validity tests. Sets the padding
// `lpad` and the padded row width `wp`.
bool direct_applies(const Problem& p, const SourceTables& st, int64_t& lpad, int64_t& wp) {
  const Geometry& g = p.geo;
  if (p.pool || !st.in_affine || g.sw != 1 || p.CK != 1) return false;
  int64_t min_base = 0, max_base = 0;
  for (int64_t e = 0; e < g.kw; ++e) {
    const int64_t b = st.in_base[e];
    const int64_t lo = std::min(std::max<int64_t>(-b, 0), p.Wo);
    const int64_t hi = std::max(std::min(p.W - b, p.Wo), lo);
    if (st.in_lo[e] != lo || st.in_hi[e] != hi) return false;
    min_base = std::min(min_base, b);
    max_base = std::max(max_base, b);
  }
  // The kernel columns must be evenly spaced (direct_block walks them with one step).
  for (int64_t e = 2; e < g.kw; ++e)
    if (st.in_base[e] - st.in_base[e - 1] != st.in_base[1] - st.in_base[0]) return false;
  lpad = -min_base;
  wp = std::max(p.W, p.Wo + max_base) + lpad;
  return true;
}

// Input rows [r0, r1) that tile reads (r0 = r1 when none).
void tile_input_rows(const Problem& p, const SourceTables& st, const Tile& tile, int64_t& r0,
                     int64_t& r1) {
  r0 = p.H;
  r1 = 0;
  for (int64_t a = 0; a < p.geo.kh; ++a)
    for (int64_t y = tile.y0; y < tile.y1; ++y) {
      const int64_t r = st.in_row[a * p.Ho + y];
      if (r < 0) continue;
      r0 = std::min(r0, r);
      r1 = std::max(r1, r + 1);
    }
  if (r1 <= r0) r0 = r1 = 0;
}

// Copies the input rows [r0, r1) that tile reads (tile_input_rows), zero-padded to width wp
// with lpad zeros in front, into xpad: C channels × (r1 - r0) rows of wp.
template <typename T>
void pad_tile_input(const Problem& p, const Ptrs<T>& P, const SourceTables& st, const Tile& tile,
                    int64_t lpad, int64_t wp, T* xpad, int64_t& r0, int64_t& r1) {
  const int64_t plane_i = p.H * p.W;
  tile_input_rows(p, st, tile, r0, r1);
  const int64_t ldXc = (r1 - r0) * wp;
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = r0; r < r1; ++r) {
      T* dst = xpad + c * ldXc + (r - r0) * wp;
      const T* src = P.x + (tile.b * p.C + c) * plane_i + r * p.W;
      std::fill(dst, dst + lpad, T(0));
      std::copy(src, src + p.W, dst + lpad);
      std::fill(dst + lpad + p.W, dst + wp, T(0));
    }
}

// Direct convolution of one tile: copies the tile's input rows, zero-padded to width wp, into
// xpad (C channels × (r1 - r0) rows), then runs direct_row for every output row and group.
// wt: each group's weights packed by cpu::pack_out_blocks.
template <typename T>
void direct_conv_tile(const Problem& p, const Ptrs<T>& P, const SourceTables& st,
                      const Tile& tile, const KView<T>& K, const T* wt, int64_t lpad, int64_t wp,
                      T* xpad, T* outp) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, Wo = p.Wo, plane_o = p.Ho * p.Wo;
  const int64_t Og = p.O / p.groups, Cg = p.C / p.groups;
  int64_t r0, r1;
  pad_tile_input(p, P, st, tile, lpad, wp, xpad, r0, r1);
  const int64_t ldXc = (r1 - r0) * wp;
  std::vector<int64_t> xrow(g.kh);
  const int64_t xcol0 = st.in_base[0] + lpad;
  const int64_t xstep = g.kw > 1 ? st.in_base[1] - st.in_base[0] : 0;  // even (direct_applies)
  const T* bias = p.bias.defined() ? p.bias.data_ptr<T>() : nullptr;
  for (int64_t y = tile.y0; y < tile.y1; ++y) {
    for (int64_t a = 0; a < g.kh; ++a) {
      const int64_t r = st.in_row[a * p.Ho + y];
      xrow[a] = r < 0 ? -1 : r - r0;
    }
    const int64_t off = (y - tile.y0) * Wo;
    for (int64_t gi = 0; gi < p.groups; ++gi) {
      cpu::DirectRow<T> R{K.base + off, K.ld_t,
                          xpad + gi * Cg * ldXc, ldXc, wp,
                          xrow.data(), xcol0, xstep, g.kh, g.kw, Cg,
                          wt + gi * Cg * kk * Og, Og,
                          bias ? bias + gi * Og : nullptr,
                          outp + (tile.b * p.O + gi * Og) * plane_o + y * Wo, plane_o};
      cpu::direct_row<T>(R, Wo);
    }
  }
}

template <typename T>
void forward_impl(const Problem& p, const SourceTables& st, rt::Tensor& out) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, Wo = p.Wo, plane_o = p.Ho * p.Wo;
  const Ptrs<T> P(p);
  int64_t lpad = 0, wp = 0;
  const bool direct = direct_applies(p, st, lpad, wp);
  // Per-tile buffers: kernel values and distances (guided), columns (conv without direct).
  const int64_t col_rows = p.pool ? p.CK * kk : (direct ? 2 * kk : p.C * kk);
  const int64_t rows = rows_per_tile(p, col_rows, sizeof(T), false);
  const std::vector<Tile> tiles = make_tiles(p, rows, -1);
  const int64_t nmax = rows * Wo;
  const auto opts = p.input.options();
  T* outp = out.data_ptr<T>();
  const int64_t Og = p.O / p.groups, Cg = p.C / p.groups;
  rt::Tensor wdirect;  // direct: each group's weights packed by cpu::pack_out_blocks
  int64_t xpad_rows = 0;
  if (direct) {
    const rt::Tensor w = p.weight.contiguous();
    wdirect = rt::empty({p.O * Cg * kk}, opts);
    for (int64_t gi = 0; gi < p.groups; ++gi)
      cpu::pack_out_blocks<T>(w.data_ptr<T>() + gi * Og * Cg * kk, Og, Cg * kk,
                              wdirect.data_ptr<T>() + gi * Og * Cg * kk);
    for (const Tile& tile : tiles) {
      int64_t r0, r1;
      tile_input_rows(p, st, tile, r0, r1);
      xpad_rows = std::max(xpad_rows, r1 - r0);
    }
  }

  // Pool: depthwise weighted window sum, row by row: the output rows of all channels stay in L1
  // while every tap's kernel row is applied to every channel.
  auto pool_tile = [&](const Tile& tile, const KView<T>& K) {
    const int64_t n = tile.n;
    if (st.in_affine && g.sw == 1) {
      // Each output vector sums its taps in registers (in tap order, as the general path). Per
      // output row, the taps that read a real row are listed once; vectors inside every tap's
      // column range [lo, hi) take the unchecked loop.
      using V = cpu::Vec<T>;
      constexpr int64_t VL = sizeof(V) / sizeof(T);
      std::vector<int64_t> tap(kk), xoff(kk), lo(kk), hi(kk);
      std::vector<T> wts(kk);
      for (int64_t y = tile.y0; y < tile.y1; ++y) {
        const int64_t off = (y - tile.y0) * Wo;
        int64_t nt = 0, in_lo = 0, in_hi = Wo;
        for (int64_t t = 0; t < kk; ++t) {
          const int64_t a = t / g.kw, e = t % g.kw;
          const int64_t r = st.in_row[a * p.Ho + y];
          if (r < 0) continue;
          tap[nt] = t;
          xoff[nt] = r * p.W + st.in_base[e];
          lo[nt] = st.in_lo[e];
          hi[nt] = st.in_hi[e];
          wts[nt] = P.w ? P.w[t] : T(1);
          in_lo = std::max(in_lo, lo[nt]);
          in_hi = std::min(in_hi, hi[nt]);
          ++nt;
        }
        for (int64_t c = 0; c < p.O; ++c) {
          const int64_t ck = p.CK == 1 ? 0 : c, cx = p.C == 1 ? 0 : c;
          const T* Xc = P.x + (tile.b * p.C + cx) * p.H * p.W;
          const T* Kc = K.at(ck, 0) + off;
          T* Yr = outp + (tile.b * p.O + c) * plane_o + y * Wo;
          int64_t x0 = 0;
          // Interior blocks of four vectors: four independent sums hide the add latency.
          constexpr int64_t U = 4;
          for (; x0 < Wo; x0 += VL) {
            if (x0 >= in_lo && x0 + U * VL <= in_hi) {
              V acc[U] = {};
              for (int64_t i = 0; i < nt; ++i) {
                const T* Kr = Kc + tap[i] * K.ld_t + x0;
                const T* Xs = Xc + xoff[i] + x0;
#pragma GCC unroll 4
                for (int64_t u = 0; u < U; ++u)
                  acc[u] += wts[i] * (cpu::load_as<V>(Kr + u * VL) * cpu::load_as<V>(Xs + u * VL));
              }
#pragma GCC unroll 4
              for (int64_t u = 0; u < U; ++u) cpu::store_as(Yr + x0 + u * VL, acc[u]);
              x0 += (U - 1) * VL;
              continue;
            }
            const int64_t len = std::min(VL, Wo - x0);
            V acc{};
            if (len == VL && x0 >= in_lo && x0 + VL <= in_hi) {
              for (int64_t i = 0; i < nt; ++i)
                acc += wts[i] * (cpu::load_as<V>(Kc + tap[i] * K.ld_t + x0) *
                                 cpu::load_as<V>(Xc + xoff[i] + x0));
            } else {
              for (int64_t i = 0; i < nt; ++i) {
                const T* Kr = Kc + tap[i] * K.ld_t;
                const T* Xs = Xc + xoff[i];
                for (int64_t l = 0; l < len; ++l) {
                  const int64_t x = x0 + l;
                  if (x >= lo[i] && x < hi[i]) acc[l] += wts[i] * (Kr[x] * Xs[x]);
                }
              }
            }
            if (len == VL) {
              cpu::store_as(Yr + x0, acc);
            } else {
              for (int64_t l = 0; l < len; ++l) Yr[x0 + l] = acc[l];
            }
          }
        }
      }
      return;
    }
    for (int64_t c = 0; c < p.O; ++c) {
      T* Yc = outp + (tile.b * p.O + c) * plane_o + tile.y0 * Wo;
      std::fill(Yc, Yc + n, T(0));
    }
    for (int64_t y = tile.y0; y < tile.y1; ++y) {
      const int64_t off = (y - tile.y0) * Wo;
      for (int64_t t = 0; t < kk; ++t) {
        const int64_t a = t / g.kw, e = t % g.kw;
        const int64_t r = st.in_row[a * p.Ho + y];
        if (r < 0) continue;
        const T wt = P.w ? P.w[t] : T(1);
        const int64_t* icol = st.in_col.data() + e * Wo;
        for (int64_t c = 0; c < p.O; ++c) {
          const int64_t ck = p.CK == 1 ? 0 : c, cx = p.C == 1 ? 0 : c;
          const T* Xr = P.x + (tile.b * p.C + cx) * p.H * p.W + r * p.W;
          T* Yr = outp + (tile.b * p.O + c) * plane_o + y * Wo;
          const T* Kr = K.at(ck, t) + off;
          if (st.in_affine && g.sw == 1) {
            const int64_t lo = st.in_lo[e], hi = st.in_hi[e];
            const T* Xs = Xr + st.in_base[e];
            for (int64_t x = lo; x < hi; ++x) Yr[x] += wt * (Kr[x] * Xs[x]);
          } else if (st.in_affine) {
            const int64_t lo = st.in_lo[e], hi = st.in_hi[e], base = st.in_base[e];
            const int64_t sw = g.sw;
            for (int64_t x = lo; x < hi; ++x) Yr[x] += wt * (Kr[x] * Xr[x * sw + base]);
          } else {
            for (int64_t x = 0; x < Wo; ++x)
              Yr[x] += wt * scaled_im2col(Kr[x], Xr, 0, 0, icol[x]);
          }
        }
      }
    }
  };

  rt::parallel_for(0, static_cast<int64_t>(tiles.size()), 1, [&](int64_t begin, int64_t end) {
    // Plain tensor math on buffers: no autograd (also on the worker threads).
    rt::NoAutogradGuard no_autograd;
    rt::Tensor Kbuf, Dbuf, colbuf, xpad;
    if (p.guided) {
      Kbuf = rt::empty({p.CK * kk * nmax}, opts);
      Dbuf = rt::empty({p.CK * kk * nmax}, opts);
    }
    if (direct) {
      xpad = rt::empty({std::max<int64_t>(1, p.C * xpad_rows * wp)}, opts);
    } else if (!p.pool) {
      colbuf = rt::empty({p.C * kk * nmax}, opts);
    }
    for (int64_t ti = begin; ti < end; ++ti) {
      const Tile& tile = tiles[ti];
      const int64_t n = tile.n;
      if (p.pool && p.guided) {
        // Kernel values one output row at a time (L1-sized), each row pooled right away.
        for (int64_t y = tile.y0; y < tile.y1; ++y) {
          const Tile row{tile.b, y, y + 1, Wo};
          guided_kernel_tile<T>(p, P, st, row, Kbuf.data_ptr<T>(), Dbuf.data_ptr<T>());
          pool_tile(row, KView<T>{Kbuf.data_ptr<T>(), Wo, kk * Wo});
        }
        continue;
      }
      KView<T> K;
      if (p.guided) {
        guided_kernel_tile<T>(p, P, st, tile, Kbuf.data_ptr<T>(), Dbuf.data_ptr<T>());
        K = {Kbuf.data_ptr<T>(), n, kk * n};
      } else {
        K = {const_cast<T*>(P.kern) + tile.b * p.CK * kk * plane_o + tile.y0 * Wo, plane_o,
             kk * plane_o};
      }
      if (p.pool) {
        pool_tile(tile, K);
        continue;
      }
      if (direct) {
        direct_conv_tile<T>(p, P, st, tile, K, wdirect.data_ptr<T>(), lpad, wp, xpad.data_ptr<T>(),
                            outp);
        continue;
      }
      // Conv: scaled columns, then one GEMM per group straight into the output.
      rt::Tensor col = colbuf.narrow(0, 0, p.C * kk * n).view({p.C * kk, n});
      scaled_im2col_tile<T>(p, P, st, tile, K, col.data_ptr<T>());
      rt::Tensor out_b = out.select(0, tile.b).view({p.O, plane_o}).narrow(1, tile.y0 * Wo, n);
      rt::Tensor w2 = p.weight.view({p.O, Cg * kk});
      for (int64_t gi = 0; gi < p.groups; ++gi) {
        rt::Tensor og = out_b.narrow(0, gi * Og, Og);
        rt::Tensor wg = w2.narrow(0, gi * Og, Og);
        rt::Tensor cg = col.narrow(0, gi * Cg * kk, Cg * kk);
        if (p.bias.defined()) {
          rt::addmm_out(og, p.bias.narrow(0, gi * Og, Og).unsqueeze(1).expand({Og, n}), wg, cg);
        } else {
          rt::mm_out(og, wg, cg);
        }
      }
    }
  });
}

// -------------------------------------------------------------------------------------------
// Sub-pixel classes (convolution of an upsampled input, input stride 1: the transposed layers)
// -------------------------------------------------------------------------------------------
// With zero insertion by u, output row y reads a real sample through kernel row a only when
// (y - p + a·d) mod u = 0, which depends on y mod u alone. The output pixels with equal
// (y mod uh, x mod uw) form a class that reads through the same na × ne taps; the other taps
// read inserted zeros. Each class is an ordinary convolution of the input (stride 1, no zero
// insertion) on the class's Hc × Wc pixels with the sub-kernel of its taps: it runs through
// forward_impl with a derived Problem and source tables, and about uh·uw times fewer
// multiply-adds than the zero-inserted convolution.
struct ClassPlan {
  int64_t py, px, Hc, Wc;
  std::vector<int64_t> a, e;  // kernel rows / columns that read real samples
};

std::vector<ClassPlan> make_class_plans(const Problem& p) {
  const Geometry& g = p.geo;
  std::vector<ClassPlan> plans;
  if (!subpixel_applies(p.pool, g.sh, g.sw, g.uh, g.uw)) return plans;
  for (const SubpixelAxis& ay : subpixel_axis(p.Ho, g.kh, g.ph, g.dh, g.uh))
    for (const SubpixelAxis& ax : subpixel_axis(p.Wo, g.kw, g.pw, g.dw, g.uw))
      plans.push_back({ay.residue, ax.residue, ay.extent, ax.extent, ay.taps, ax.taps});
  return plans;
}

// Affine ranges of a class's column table (q = x*stride + base inside [lo, hi), -1 outside);
// false when a table is not of that form (then the tables are used as they are).
bool class_affine(const std::vector<int64_t>& col, int64_t taps, int64_t Wc, int64_t stride,
                  std::vector<int64_t>& lo, std::vector<int64_t>& hi,
                  std::vector<int64_t>& base) {
  lo.assign(taps, 0); hi.assign(taps, 0); base.assign(taps, 0);
  for (int64_t i = 0; i < taps; ++i) {
    const int64_t* c = col.data() + i * Wc;
    int64_t l = 0;
    while (l < Wc && c[l] < 0) ++l;
    int64_t h = l;
    while (h < Wc && c[h] >= 0) ++h;
    const int64_t b = l < Wc ? c[l] - l * stride : 0;
    for (int64_t x = 0; x < Wc; ++x) {
      const bool inside = x >= l && x < h;
      if (inside ? c[x] != x * stride + b : c[x] >= 0) return false;
    }
    lo[i] = l; hi[i] = std::max(l, h); base[i] = b;
  }
  return true;
}

// A strided slice along dim of the indices idx (an arithmetic progression, see make_class_plans).
rt::Tensor take_taps(const rt::Tensor& t, int64_t dim, const std::vector<int64_t>& idx) {
  const int64_t step = idx.size() > 1 ? idx[1] - idx[0] : 1;
  return t.slice(dim, idx.front(), idx.back() + 1, step);
}

// Rows of a class's source table: out[i*n + y] = full[taps[i]*N + r + u*y] (N: the full table's
// output extent, n: the class's).
std::vector<int64_t> class_table(const std::vector<int64_t>& full, int64_t N,
                                 const std::vector<int64_t>& taps, int64_t r, int64_t u,
                                 int64_t n) {
  std::vector<int64_t> t(taps.size() * n);
  for (size_t i = 0; i < taps.size(); ++i)
    for (int64_t y = 0; y < n; ++y) t[i * n + y] = full[taps[i] * N + r + u * y];
  return t;
}

// The ordinary convolution that computes class c of p: Problem (sub-kernel, class phi or kernel,
// class output size) and source tables taken from p's tables `full`. dh / dw become the class's
// tap spacing so that rows_per_tile's race-free band height covers the class's reach.
struct ClassProblem {
  Problem q;
  SourceTables st;
};

ClassProblem make_class_problem(const Problem& p, const ClassPlan& c, const SourceTables& full) {
  const Geometry& g = p.geo;
  const int64_t na = static_cast<int64_t>(c.a.size()), ne = static_cast<int64_t>(c.e.size());
  ClassProblem cp;
  Problem& q = cp.q;
  q = p;
  q.geo.kh = na; q.geo.kw = ne;
  q.geo.uh = 1; q.geo.uw = 1;
  q.geo.dh = na > 1 ? (c.a[1] - c.a[0]) * g.dh : g.dh;
  q.geo.dw = ne > 1 ? (c.e[1] - c.e[0]) * g.dw : g.dw;
  q.geo.gsh = g.gsh * g.uh; q.geo.gsw = g.gsw * g.uw;
  q.Ho = c.Hc; q.Wo = c.Wc;
  q.weight = take_taps(take_taps(p.weight, 2, c.a), 3, c.e).contiguous();
  if (p.guided) {
    q.phi = p.phi.slice(2, c.py, p.Ho, g.uh).slice(3, c.px, p.Wo, g.uw).contiguous();
  } else {
    q.kernel = take_taps(take_taps(p.kernel, 2, c.a), 3, c.e)
                   .slice(4, c.py, p.Ho, g.uh).slice(5, c.px, p.Wo, g.uw).contiguous();
  }
  SourceTables& st = cp.st;
  st.in_row = class_table(full.in_row, p.Ho, c.a, c.py, g.uh, c.Hc);
  st.in_col = class_table(full.in_col, p.Wo, c.e, c.px, g.uw, c.Wc);
  // The class reads its columns with stride 1 (the affine paths use g.sw = 1).
  st.in_affine = class_affine(st.in_col, ne, c.Wc, 1, st.in_lo, st.in_hi, st.in_base);
  if (p.guided) {
    st.g_row = class_table(full.g_row, p.Ho, c.a, c.py, g.uh, c.Hc);
    st.g_col = class_table(full.g_col, p.Wo, c.e, c.px, g.uw, c.Wc);
    // guided_kernel_tile always takes the affine guidance path: it must hold.
    const bool ok = class_affine(st.g_col, ne, c.Wc, q.geo.gsw, st.g_lo, st.g_hi, st.g_base);
    PAC_CHECK(ok, "pac: internal error: guidance columns of a sub-pixel class are not affine");
  }
  return cp;
}

// View of the class's output pixels in a [B, O, Ho, Wo] tensor.
rt::Tensor class_view(const rt::Tensor& t, const Geometry& g, const ClassPlan& c) {
  return t.slice(2, c.py, t.size(2), g.uh).slice(3, c.px, t.size(3), g.uw);
}

template <typename T>
void forward_classes(const Problem& p, const std::vector<ClassPlan>& plans, rt::Tensor& out) {
  const SourceTables full = make_tables(p);
  for (const ClassPlan& c : plans) {
    rt::Tensor ov = class_view(out, p.geo, c);
    if (c.a.empty() || c.e.empty()) {  // every tap reads an inserted zero: the bias, or 0
      if (p.bias.defined()) {
        ov.copy_(p.bias.view({1, p.O, 1, 1}).expand_as(ov));
      } else {
        ov.zero_();
      }
      continue;
    }
    const ClassProblem cp = make_class_problem(p, c, full);
    rt::Tensor oc = rt::empty({p.B, p.O, c.Hc, c.Wc}, p.input.options());
    forward_impl<T>(cp.q, cp.st, oc);
    ov.copy_(oc);
  }
}

rt::Tensor run_forward(const Problem& p) {
  rt::NoAutogradGuard no_autograd;
  rt::Tensor out = rt::empty({p.B, p.O, p.Ho, p.Wo}, p.input.options());
  if (out.numel() == 0) return out;
  if (p.C == 0 || (p.pool && p.CK == 0)) {
    // Nothing to sum over.
    out.zero_();
    if (p.bias.defined()) out.add_(p.bias.view({1, p.O, 1, 1}));
    return out;
  }
  const std::vector<ClassPlan> plans = make_class_plans(p);
  PAC_DISPATCH_FLOATING_TYPES(p.input.scalar_type(), "pac_forward_cpu", [&] {
    if (plans.empty()) {
      forward_impl<scalar_t>(p, make_tables(p), out);
    } else {
      forward_classes<scalar_t>(p, plans, out);
    }
  });
  return out;
}

// -------------------------------------------------------------------------------------------
// Backward
// -------------------------------------------------------------------------------------------
struct Grads {
  rt::Tensor dx, dg, dphi, dw, dalpha, dlambda, dkernel;
};

// Input and weight gradients of one tile, direct (cpu/direct_conv.h). The weight gradient reads
// the tile's padded input rows; the input gradient is summed into the input rows the tile reads
// (the backward's two phases keep concurrent tiles apart), from padded copies of the tile's
// kernel values and output gradient. dwp: the thread's weight-gradient partial or nullptr;
// dxp: the input gradient or nullptr. wdx: each group's weights as [Cg][Og*k*k], packed by
// cpu::pack_out_blocks; gcol0 + e * gstep: padded column of input column 0 through kernel
// column e. flush: add the per-lane weight-gradient sums (s.acc) into dwp after this tile.
template <typename T>
void direct_backward_tile(const Problem& p, const Ptrs<T>& P, const SourceTables& st,
                          const Tile& tile, const KView<T>& K, const T* gp, int64_t lpad,
                          int64_t wp, int64_t gpad_l, int64_t gpad_w, int64_t rows,
                          int64_t gcol0, int64_t gstep, const T* wdx, Scratch& s, T* dwp,
                          T* dxp,
                          bool flush) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, Wo = p.Wo, plane_o = p.Ho * p.Wo, plane_i = p.H * p.W;
  const int64_t Og = p.O / p.groups, Cg = p.C / p.groups, nrows = tile.y1 - tile.y0;
  int64_t r0, r1;
  tile_input_rows(p, st, tile, r0, r1);
  const T* G = gp + tile.b * p.O * plane_o + tile.y0 * Wo;
  if (dwp) {
    T* xpad = s.xpad.data_ptr<T>();
    pad_tile_input(p, P, st, tile, lpad, wp, xpad, r0, r1);
    const int64_t ldXc = (r1 - r0) * wp;
    std::vector<int64_t> xrow(nrows * g.kh), xcol(g.kw);
    for (int64_t e = 0; e < g.kw; ++e) xcol[e] = st.in_base[e] + lpad;
    for (int64_t yy = 0; yy < nrows; ++yy)
      for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t r = st.in_row[a * p.Ho + tile.y0 + yy];
        xrow[yy * g.kh + a] = r < 0 ? -1 : r - r0;
      }
    for (int64_t gi = 0; gi < p.groups; ++gi) {
      cpu::DirectDw<T> R{K.base, K.ld_t, xpad + gi * Cg * ldXc, ldXc, wp, xrow.data(),
                         xcol.data(), g.kh, g.kw, Cg, Wo, G + gi * Og * plane_o, plane_o,
                         dwp + gi * Og * Cg * kk, Og,
                         s.acc.data_ptr<T>() + gi * cpu::dw_acc_numel<T>(Og, Cg, kk),
                         s.gpack.data_ptr<T>()};
      cpu::direct_dw_tile<T>(R, nrows);
      if (flush) cpu::direct_dw_flush<T>(R);
    }
  }
  if (dxp && r1 > r0) {
    // Zero-padded copies: kernel values [k*k][rows][gpad_w], output gradient [O][rows][gpad_w].
    T* kpad = s.kpad.data_ptr<T>();
    T* gpad = s.gpad.data_ptr<T>();
    const int64_t ld_row = gpad_w, ld_plane = rows * gpad_w;
    auto pad_rows = [&](T* dst, const T* src) {
      for (int64_t yy = 0; yy < nrows; ++yy) {
        T* d = dst + yy * ld_row;
        std::fill(d, d + gpad_l, T(0));
        std::copy(src + yy * Wo, src + yy * Wo + Wo, d + gpad_l);
        std::fill(d + gpad_l + Wo, d + gpad_w, T(0));
      }
    };
    for (int64_t t = 0; t < kk; ++t) pad_rows(kpad + t * ld_plane, K.at(0, t));
    for (int64_t o = 0; o < p.O; ++o) pad_rows(gpad + o * ld_plane, G + o * plane_o);
    // grow[(r - r0) * kh + a]: tile row that reads input row r through kernel row a, or -1 (for
    // a fixed kernel row, distinct output rows read distinct input rows).
    std::vector<int64_t> grow((r1 - r0) * g.kh, -1);
    for (int64_t yy = 0; yy < nrows; ++yy)
      for (int64_t a = 0; a < g.kh; ++a) {
        const int64_t r = st.in_row[a * p.Ho + tile.y0 + yy];
        if (r >= 0) grow[(r - r0) * g.kh + a] = yy;
      }
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t gi = 0; gi < p.groups; ++gi) {
        cpu::DirectDxRow<T> R{kpad, ld_plane, ld_row, gpad + gi * Og * ld_plane, ld_plane, ld_row,
                              grow.data() + (r - r0) * g.kh, gcol0, gstep, g.kh, g.kw, Og,
                              wdx + gi * Og * kk * Cg, Cg,
                              dxp + (tile.b * p.C + gi * Cg) * plane_i + r * p.W, plane_i};
        cpu::direct_dx_row<T>(R, p.W);
      }
  }
}

template <typename T>
void backward_impl(const Problem& p, const SourceTables& st, const rt::Tensor& grad, Grads& gr) {
  const Geometry& g = p.geo;
  const int64_t kk = g.kh * g.kw, Wo = p.Wo, plane_o = p.Ho * p.Wo, plane_i = p.H * p.W;
  const Ptrs<T> P(p);
  const bool need_dx = gr.dx.defined(), need_dg = gr.dg.defined(), need_dphi = gr.dphi.defined();
  const bool need_dw = gr.dw.defined(), need_da = gr.dalpha.defined();
  const bool need_dl = gr.dlambda.defined(), need_dk = gr.dkernel.defined();
  const bool need_gK = need_dg || need_dphi || need_da || need_dl || need_dk;
  const bool phased = need_dx || need_dg;
  // Direct backward (cpu/direct_conv.h) where the forward runs direct and only the input and
  // weight gradients are asked for; otherwise kernel-scaled columns and GEMMs.
  int64_t lpad = 0, wp = 0;
  const bool direct = !p.pool && !need_gK && direct_applies(p, st, lpad, wp);
  const int64_t col_rows = p.pool ? p.CK * kk : (direct ? 3 * kk + p.O : p.C * kk);
  const int64_t rows = rows_per_tile(p, col_rows, sizeof(T), phased);
  const int64_t nmax = rows * Wo;
  const auto opts = p.input.options();
  const int64_t Og = p.O / std::max<int64_t>(p.groups, 1), Cg = p.C / std::max<int64_t>(p.groups, 1);
  // Direct: padded input rows (weight gradient), padded kernel values and output gradient of a
  // tile (input gradient, zero columns around the output's), weights as [groups][Og][k*k][Cg].
  int64_t xpad_rows = 0, gpad_l = 0, gpad_w = 0;
  int64_t gcol0 = 0, gstep = 0;
  rt::Tensor wdx;
  if (direct) {
    for (const Tile& tile : make_tiles(p, rows, -1)) {
      int64_t r0, r1;
      tile_input_rows(p, st, tile, r0, r1);
      xpad_rows = std::max(xpad_rows, r1 - r0);
    }
    int64_t min_base = 0, max_base = 0;
    for (int64_t e = 0; e < g.kw; ++e) {
      min_base = std::min(min_base, st.in_base[e]);
      max_base = std::max(max_base, st.in_base[e]);
    }
    gpad_l = max_base;
    gpad_w = std::max(p.W - min_base, Wo) + gpad_l;
    gcol0 = gpad_l - st.in_base[0];
    gstep = g.kw > 1 ? st.in_base[0] - st.in_base[1] : 0;  // even spacing (direct_applies)
    if (need_dx) {
      // Per group [Cg][Og*k*k], packed by blocks of input channels.
      const rt::Tensor wt = p.weight.view({p.groups, Og, Cg, kk}).permute({0, 2, 1, 3})
                                .contiguous();
      wdx = rt::empty({p.O * Cg * kk}, opts);
      for (int64_t gi = 0; gi < p.groups; ++gi)
        cpu::pack_out_blocks<T>(wt.data_ptr<T>() + gi * Og * Cg * kk, Cg, Og * kk,
                                wdx.data_ptr<T>() + gi * Og * Cg * kk);
    }
  }
  // Per-lane weight-gradient accumulators: kept per thread across its tiles (their lanes added
  // into the thread's partial once, at the end) unless that would take more than 8 MiB a thread.
  const int64_t acc_numel = p.groups * cpu::dw_acc_numel<T>(Og, Cg, kk);
  const bool acc_per_tile = acc_numel * int64_t(sizeof(T)) > (int64_t{8} << 20);
  const T* gp = grad.data_ptr<T>();
  T* dxp = need_dx ? gr.dx.data_ptr<T>() : nullptr;
  T* dgp = need_dg ? gr.dg.data_ptr<T>() : nullptr;
  T* dphip = need_dphi ? gr.dphi.data_ptr<T>() : nullptr;
  T* dkp = need_dk ? gr.dkernel.data_ptr<T>() : nullptr;
  // Per-chunk partial sums of the parameter gradients, added up in chunk order at the end
  // (not in the order the threads finish), so that the result is deterministic.
  struct Partial {
    int phase;
    int64_t begin;
    rt::Tensor dw, dalpha, dlambda;
  };
  std::vector<Partial> partials;
  std::mutex reduce_mutex;

  for (int phase = phased ? 0 : -1; phase < (phased ? 2 : 0); ++phase) {
    const std::vector<Tile> tiles = make_tiles(p, rows, phase);
    rt::parallel_for(0, static_cast<int64_t>(tiles.size()), 1, [&](int64_t begin, int64_t end) {
      rt::NoAutogradGuard no_autograd;
      Scratch s;
      if (p.guided) {
        s.K = rt::empty({p.CK * kk * nmax}, opts);
        s.D = rt::empty({p.CK * kk * nmax}, opts);
        if (need_gK) s.gK = rt::empty({p.CK * kk * nmax}, opts);
      }
      if (direct) {
        if (need_dw) {
          s.xpad = rt::empty({std::max<int64_t>(1, p.C * xpad_rows * wp)}, opts);
          s.acc = rt::zeros({acc_numel}, opts);
          s.gpack = rt::empty({std::max<int64_t>(1, nmax * cpu::kOutBlock)}, opts);
        }
        if (need_dx) {
          s.kpad = rt::empty({kk * rows * gpad_w}, opts);
          s.gpad = rt::empty({p.O * rows * gpad_w}, opts);
        }
      } else if (!p.pool) {
        if (need_dw) s.col = rt::empty({p.C * kk * nmax}, opts);
        if (need_dx || need_gK) s.dcol = rt::empty({p.C * kk * nmax}, opts);
      }
      if (need_dw) s.dw = rt::zeros(gr.dw.sizes(), opts);
      if (need_da) s.dalpha = rt::zeros({gr.dalpha.numel()}, opts);
      if (need_dl) s.dlambda = rt::zeros({gr.dlambda.numel()}, opts);
      T* dwp = need_dw ? s.dw.data_ptr<T>() : nullptr;

      for (int64_t ti = begin; ti < end; ++ti) {
        const Tile& tile = tiles[ti];
        const int64_t n = tile.n;
        KView<T> K, gK{nullptr, 0, 0};
        if (p.guided) {
          guided_kernel_tile<T>(p, P, st, tile, s.K.data_ptr<T>(), s.D.data_ptr<T>());
          K = {s.K.data_ptr<T>(), n, kk * n};
          if (need_gK) {
            gK = {s.gK.data_ptr<T>(), n, kk * n};
            std::fill(gK.base, gK.base + p.CK * kk * n, T(0));
          }
        } else {
          const int64_t off = tile.b * p.CK * kk * plane_o + tile.y0 * Wo;
          K = {const_cast<T*>(P.kern) + off, plane_o, kk * plane_o};
          if (need_dk) gK = {dkp + off, plane_o, kk * plane_o};  // zero-initialised, disjoint
        }

        if (direct) {
          direct_backward_tile<T>(p, P, st, tile, K, gp, lpad, wp, gpad_l, gpad_w, rows,
                                  gcol0, gstep, wdx.defined() ? wdx.data_ptr<T>() : nullptr, s,
                                  dwp, dxp, acc_per_tile || ti + 1 == end);
        } else if (p.pool) {
          for (int64_t c = 0; c < p.O; ++c) {
            const int64_t ck = p.CK == 1 ? 0 : c, cx = p.C == 1 ? 0 : c;
            const T* Xc = P.x + (tile.b * p.C + cx) * plane_i;
            T* dXc = need_dx ? dxp + (tile.b * p.C + cx) * plane_i : nullptr;
            const T* Gc = gp + (tile.b * p.O + c) * plane_o + tile.y0 * Wo;
            for (int64_t t = 0; t < kk; ++t) {
              const int64_t a = t / g.kw, e = t % g.kw;
              const T wt = P.w ? P.w[t] : T(1);
              const int64_t* icol = st.in_col.data() + e * Wo;
              const T* Kt = K.at(ck, t);
              T* gKt = need_gK ? gK.at(ck, t) : nullptr;
              T accw = 0;
              for (int64_t y = tile.y0; y < tile.y1; ++y) {
                const int64_t r = st.in_row[a * p.Ho + y];
                if (r < 0) continue;
                const int64_t off = (y - tile.y0) * Wo;
                const T* Xr = Xc + r * p.W;
                T* dXr = dXc ? dXc + r * p.W : nullptr;
                for (int64_t x = 0; x < Wo; ++x) {
                  const int64_t q = icol[x];
                  if (q < 0) continue;
                  const T gy = Gc[off + x];
                  const T xv = Xr[q];
                  if (gKt) gKt[off + x] += wt * gy * xv;
                  if (dXr) col2im_accumulate(dXr, 0, 0, q, Kt[off + x], wt * gy);
                  accw += Kt[off + x] * xv * gy;
                }
              }
              if (dwp) dwp[t] += accw;
            }
          }
        } else {
          rt::Tensor g_b = grad.select(0, tile.b).view({p.O, plane_o}).narrow(1, tile.y0 * Wo, n);
          rt::Tensor w2 = p.weight.view({p.O, Cg * kk});
          if (need_dw) {
            rt::Tensor col = s.col.narrow(0, 0, p.C * kk * n).view({p.C * kk, n});
            scaled_im2col_tile<T>(p, P, st, tile, K, col.data_ptr<T>());
            rt::Tensor dw2 = s.dw.view({p.O, Cg * kk});
            for (int64_t gi = 0; gi < p.groups; ++gi)
              dw2.narrow(0, gi * Og, Og)
                  .addmm_(g_b.narrow(0, gi * Og, Og), col.narrow(0, gi * Cg * kk, Cg * kk).t());
          }
          if (need_dx || need_gK) {
            rt::Tensor dcol = s.dcol.narrow(0, 0, p.C * kk * n).view({p.C * kk, n});
            for (int64_t gi = 0; gi < p.groups; ++gi) {
              rt::Tensor dg = dcol.narrow(0, gi * Cg * kk, Cg * kk);
              rt::mm_out(dg, w2.narrow(0, gi * Og, Og).t(), g_b.narrow(0, gi * Og, Og));
            }
            const T* dc = dcol.data_ptr<T>();
            for (int64_t c = 0; c < p.C; ++c) {
              const T* Xc = P.x + (tile.b * p.C + c) * plane_i;
              T* dXc = need_dx ? dxp + (tile.b * p.C + c) * plane_i : nullptr;
              for (int64_t t = 0; t < kk; ++t) {
                const int64_t a = t / g.kw, e = t % g.kw;
                const int64_t* icol = st.in_col.data() + e * Wo;
                const T* Kt = K.at(0, t);
                T* gKt = need_gK ? gK.at(0, t) : nullptr;
                const T* dcr = dc + (c * kk + t) * n;
                for (int64_t y = tile.y0; y < tile.y1; ++y) {
                  const int64_t r = st.in_row[a * p.Ho + y];
                  if (r < 0) continue;
                  const int64_t off = (y - tile.y0) * Wo;
                  const T* Xr = Xc + r * p.W;
                  T* dXr = dXc ? dXc + r * p.W : nullptr;
                  if (st.in_affine) {
                    const int64_t lo = st.in_lo[e], hi = st.in_hi[e], base = st.in_base[e];
                    const int64_t sw = g.sw;
                    const T* dr = dcr + off;
                    const T* Kr = Kt + off;
                    if (gKt) {
                      T* gr = gKt + off;
                      for (int64_t x = lo; x < hi; ++x) gr[x] += dr[x] * Xr[x * sw + base];
                    }
                    if (dXr)
                      for (int64_t x = lo; x < hi; ++x) dXr[x * sw + base] += Kr[x] * dr[x];
                  } else {
                    for (int64_t x = 0; x < Wo; ++x) {
                      const int64_t q = icol[x];
                      if (q < 0) continue;
                      const T d = dcr[off + x];
                      if (gKt) gKt[off + x] += d * Xr[q];
                      if (dXr) col2im_accumulate(dXr, 0, 0, q, Kt[off + x], d);
                    }
                  }
                }
              }
            }
          }
        }

        if (p.guided && need_gK) {
          guided_kernel_backward_tile<T>(
              p, P, st, tile, s.K.data_ptr<T>(), s.D.data_ptr<T>(), s.gK.data_ptr<T>(), dgp,
              dphip, need_da ? s.dalpha.data_ptr<T>() : nullptr,
              need_dl ? s.dlambda.data_ptr<T>() : nullptr);
        }
      }

      if (need_dw || need_da || need_dl) {
        std::lock_guard<std::mutex> lock(reduce_mutex);
        partials.push_back({phase, begin, s.dw, s.dalpha, s.dlambda});
      }
    });
  }
  std::sort(partials.begin(), partials.end(), [](const Partial& a, const Partial& b) {
    return a.phase != b.phase ? a.phase < b.phase : a.begin < b.begin;
  });
  for (const Partial& part : partials) {
    if (need_dw) gr.dw.add_(part.dw);
    if (need_da) gr.dalpha.view({-1}).add_(part.dalpha);
    if (need_dl) gr.dlambda.view({-1}).add_(part.dlambda);
  }
}

// Backward class by class (see make_class_plans): each class's gradients from its ordinary
// convolution. dx, dguidance, dalpha and dlambda accumulate straight into the full tensors;
// dphi, dweight and dkernel go through class-sized buffers into their slices.
template <typename T>
void backward_classes(const Problem& p, const std::vector<ClassPlan>& plans,
                      const rt::Tensor& grad, Grads& gr) {
  const SourceTables full = make_tables(p);
  const auto opts = p.input.options();
  for (const ClassPlan& c : plans) {
    if (c.a.empty() || c.e.empty()) continue;  // the class's outputs depend on nothing
    const ClassProblem cp = make_class_problem(p, c, full);
    const Problem& q = cp.q;
    const rt::Tensor gq = class_view(grad, p.geo, c).contiguous();
    Grads cg;
    cg.dx = gr.dx;
    cg.dg = gr.dg;
    cg.dalpha = gr.dalpha;
    cg.dlambda = gr.dlambda;
    if (gr.dphi.defined()) cg.dphi = rt::zeros({p.B, p.Cf, c.Hc, c.Wc}, opts);
    if (gr.dw.defined()) cg.dw = rt::zeros(q.weight.sizes(), opts);
    if (gr.dkernel.defined()) cg.dkernel = rt::zeros(q.kernel.sizes(), opts);
    backward_impl<T>(q, cp.st, gq, cg);
    if (cg.dphi.defined()) class_view(gr.dphi, p.geo, c).copy_(cg.dphi);
    if (cg.dw.defined()) take_taps(take_taps(gr.dw, 2, c.a), 3, c.e).add_(cg.dw);
    if (cg.dkernel.defined()) {
      take_taps(take_taps(gr.dkernel, 2, c.a), 3, c.e)
          .slice(4, c.py, p.Ho, p.geo.uh).slice(5, c.px, p.Wo, p.geo.uw).copy_(cg.dkernel);
    }
  }
}

rt::Tensor empty_grad(const Problem& p) { return rt::empty({0}, p.input.options()); }

// Allocates the requested gradients (zeros), runs the backward pass, returns
// (dx, dguidance, dphi, dweight, dalpha, dlambda, dkernel) with empty [0] tensors where absent.
Grads run_backward(const Problem& p, const rt::Tensor& grad_in, bool want_dx, bool want_dg,
                   bool want_dphi, bool want_dw, bool want_da, bool want_dl, bool want_dk) {
  rt::NoAutogradGuard no_autograd;
  const auto opts = p.input.options();
  Grads gr;
  if (want_dx) gr.dx = rt::zeros({p.B, p.C, p.H, p.W}, opts);
  if (want_dg && p.guided) gr.dg = rt::zeros({p.B, p.Cf, p.Hg, p.Wg}, opts);
  if (want_dphi && p.guided) gr.dphi = rt::zeros({p.B, p.Cf, p.Ho, p.Wo}, opts);
  if (want_dw && p.weight.defined()) gr.dw = rt::zeros(p.weight.sizes(), opts);
  if (want_da && p.alpha.defined()) gr.dalpha = rt::zeros(p.alpha.sizes(), opts);
  if (want_dl && p.lambda.defined()) gr.dlambda = rt::zeros(p.lambda.sizes(), opts);
  if (want_dk && !p.guided) gr.dkernel = rt::zeros(p.kernel.sizes(), opts);
  const bool any = gr.dx.defined() || gr.dg.defined() || gr.dphi.defined() || gr.dw.defined() ||
                   gr.dalpha.defined() || gr.dlambda.defined() || gr.dkernel.defined();
  const bool empty = p.B == 0 || p.O == 0 || p.Ho == 0 || p.Wo == 0 || p.C == 0;
  if (any && !empty) {
    rt::Tensor grad = grad_in.contiguous();
    const std::vector<ClassPlan> plans = make_class_plans(p);
    PAC_DISPATCH_FLOATING_TYPES(p.input.scalar_type(), "pac_backward_cpu", [&] {
      if (plans.empty()) {
        backward_impl<scalar_t>(p, make_tables(p), grad, gr);
      } else {
        backward_classes<scalar_t>(p, plans, grad, gr);
      }
    });
  }
  auto fill = [&](rt::Tensor& t) {
    if (!t.defined()) t = empty_grad(p);
  };
  fill(gr.dx); fill(gr.dg); fill(gr.dphi); fill(gr.dw); fill(gr.dalpha); fill(gr.dlambda);
  fill(gr.dkernel);
  return gr;
}

// -------------------------------------------------------------------------------------------
// Op entry points
// -------------------------------------------------------------------------------------------

rt::Tensor conv2d_guided_cpu(const rt::Tensor& input, const rt::Tensor& guidance,
                             const rt::Tensor& phi, const rt::Tensor& weight,
                             const rt::OptTensor& bias,
                             const rt::OptTensor& alpha,
                             const rt::OptTensor& lambda, rt::IntArr stride,
                             rt::IntArr padding, rt::IntArr dilation,
                             rt::IntArr upsample, rt::IntArr gstride,
                             rt::IntArr gpadding, int64_t groups, int64_t kernel_type,
                             bool asym) {
  Problem p = conv_guided_problem<kCPU>("pac::conv2d_guided", input, guidance, phi, weight, bias,
                                        alpha, lambda, stride, padding, dilation, upsample, gstride,
                                        gpadding, groups, kernel_type, asym);
  return run_forward(p);
}

std::tuple<rt::Tensor, rt::Tensor, rt::Tensor, rt::Tensor, rt::Tensor, rt::Tensor>
conv2d_guided_backward_cpu(const rt::Tensor& grad, const rt::Tensor& input,
                           const rt::Tensor& guidance, const rt::Tensor& phi,
                           const rt::Tensor& weight, const rt::OptTensor& alpha,
                           const rt::OptTensor& lambda, rt::IntArr stride,
                           rt::IntArr padding, rt::IntArr dilation,
                           rt::IntArr upsample, rt::IntArr gstride,
                           rt::IntArr gpadding, int64_t groups, int64_t kernel_type,
                           bool asym, const rt::BoolList& output_mask) {
  const char* op = "pac::conv2d_guided_backward";
  Problem p = conv_guided_problem<kCPU>(op, input, guidance, phi, weight, rt::nullopt, alpha,
                                        lambda, stride, padding, dilation, upsample, gstride,
                                        gpadding, groups, kernel_type, asym);
  check_grad_out(op, p, grad, kCPU);
  const auto m = output_mask_arg<6>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], m[1], m[2], m[3], m[4], m[5], false);
  return {gr.dx, gr.dg, gr.dphi, gr.dw, gr.dalpha, gr.dlambda};
}

rt::Tensor pool2d_guided_cpu(const rt::Tensor& input, const rt::Tensor& guidance,
                             const rt::Tensor& phi, const rt::OptTensor& weight,
                             const rt::OptTensor& alpha,
                             const rt::OptTensor& lambda,
                             rt::IntArr kernel_size, rt::IntArr stride,
                             rt::IntArr padding, rt::IntArr dilation,
                             rt::IntArr upsample, rt::IntArr gstride,
                             rt::IntArr gpadding, int64_t kernel_type, bool asym,
                             bool channel_wise) {
  Problem p = pool_guided_problem<kCPU>("pac::pool2d_guided", input, guidance, phi, weight, alpha,
                                        lambda, kernel_size, stride, padding, dilation, upsample,
                                        gstride, gpadding, kernel_type, asym, channel_wise);
  return run_forward(p);
}

std::tuple<rt::Tensor, rt::Tensor, rt::Tensor, rt::Tensor, rt::Tensor, rt::Tensor>
pool2d_guided_backward_cpu(const rt::Tensor& grad, const rt::Tensor& input,
                           const rt::Tensor& guidance, const rt::Tensor& phi,
                           const rt::OptTensor& weight,
                           const rt::OptTensor& alpha,
                           const rt::OptTensor& lambda, rt::IntArr kernel_size,
                           rt::IntArr stride, rt::IntArr padding,
                           rt::IntArr dilation, rt::IntArr upsample,
                           rt::IntArr gstride, rt::IntArr gpadding,
                           int64_t kernel_type, bool asym, bool channel_wise,
                           const rt::BoolList& output_mask) {
  const char* op = "pac::pool2d_guided_backward";
  Problem p = pool_guided_problem<kCPU>(op, input, guidance, phi, weight, alpha, lambda,
                                        kernel_size, stride, padding, dilation, upsample, gstride,
                                        gpadding, kernel_type, asym, channel_wise);
  check_grad_out(op, p, grad, kCPU);
  const auto m = output_mask_arg<6>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], m[1], m[2], m[3], m[4], m[5], false);
  return {gr.dx, gr.dg, gr.dphi, gr.dw, gr.dalpha, gr.dlambda};
}

rt::Tensor conv2d_kernel_cpu(const rt::Tensor& input, const rt::Tensor& kernel,
                             const rt::Tensor& weight, const rt::OptTensor& bias,
                             rt::IntArr stride, rt::IntArr padding,
                             rt::IntArr dilation, rt::IntArr upsample, int64_t groups) {
  Problem p = conv_kernel_problem<kCPU>("pac::conv2d_kernel", input, kernel, weight, bias, stride,
                                        padding, dilation, upsample, groups);
  return run_forward(p);
}

std::tuple<rt::Tensor, rt::Tensor, rt::Tensor> conv2d_kernel_backward_cpu(
    const rt::Tensor& grad, const rt::Tensor& input, const rt::Tensor& kernel,
    const rt::Tensor& weight, rt::IntArr stride, rt::IntArr padding,
    rt::IntArr dilation, rt::IntArr upsample, int64_t groups,
    const rt::BoolList& output_mask) {
  const char* op = "pac::conv2d_kernel_backward";
  Problem p = conv_kernel_problem<kCPU>(op, input, kernel, weight, rt::nullopt, stride, padding,
                                        dilation, upsample, groups);
  check_grad_out(op, p, grad, kCPU);
  const auto m = output_mask_arg<3>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], false, false, m[2], false, false, m[1]);
  return {gr.dx, gr.dkernel, gr.dw};
}

rt::Tensor pool2d_kernel_cpu(const rt::Tensor& input, const rt::Tensor& kernel,
                             const rt::OptTensor& weight, rt::IntArr stride,
                             rt::IntArr padding, rt::IntArr dilation,
                             rt::IntArr upsample) {
  Problem p = pool_kernel_problem<kCPU>("pac::pool2d_kernel", input, kernel, weight, stride,
                                        padding, dilation, upsample);
  return run_forward(p);
}

std::tuple<rt::Tensor, rt::Tensor, rt::Tensor> pool2d_kernel_backward_cpu(
    const rt::Tensor& grad, const rt::Tensor& input, const rt::Tensor& kernel,
    const rt::OptTensor& weight, rt::IntArr stride, rt::IntArr padding,
    rt::IntArr dilation, rt::IntArr upsample, const rt::BoolList& output_mask) {
  const char* op = "pac::pool2d_kernel_backward";
  Problem p =
      pool_kernel_problem<kCPU>(op, input, kernel, weight, stride, padding, dilation, upsample);
  check_grad_out(op, p, grad, kCPU);
  const auto m = output_mask_arg<3>(op, output_mask);
  Grads gr = run_backward(p, grad, m[0], false, false, m[2], false, false, m[1]);
  return {gr.dx, gr.dkernel, gr.dw};
}

void exp_float(const float* x, float* y, int64_t n) { pac::cpu::exp_array(x, y, n); }

}  // namespace

// The operator table of this instruction set.
const CpuOps& ops() {
#define PAC_STR2(x) #x
#define PAC_STR(x) PAC_STR2(x)
  static const CpuOps table = {
      PAC_STR(PAC_CPU_ISA),
      &conv2d_guided_cpu,
      &conv2d_guided_backward_cpu,
      &pool2d_guided_cpu,
      &pool2d_guided_backward_cpu,
      &conv2d_kernel_cpu,
      &conv2d_kernel_backward_cpu,
      &pool2d_kernel_cpu,
      &pool2d_kernel_backward_cpu,
      &exp_float,
  };
#undef PAC_STR
#undef PAC_STR2
  return table;
}

}  // namespace PAC_CPU_ISA
}  // namespace cpu
}  // namespace pac
