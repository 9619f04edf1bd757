// Register-blocked direct PAC convolution (forward and backward, input stride 1): no column
// matrix.
//
// For one output row and a block of VL consecutive pixels (one vector of the instruction set
// this file is compiled for), OB output channels are accumulated in registers over every
// (input channel, tap): the kernel-scaled input K(tap)·X̄(tap) is formed once per vector and
// multiplied into all OB accumulators with the weights of that (channel, tap), which lie
// contiguously (layout [C/groups, k*k, O/groups] per group). The input is read from a
// zero-padded copy of the rows a tile needs, so the inner loop has no bounds checks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace pac {
namespace cpu {
// Internal linkage: this header is compiled once per instruction set (cpu/isa.h) with
// different vector widths; the linker must not merge the copies.
namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
constexpr int kOutBlock = 16;
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;
constexpr int kOutBlock = 8;
#else
constexpr int kVecBytes = 16;
constexpr int kOutBlock = 8;
#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;

template <typename V, typename T>
inline V load_as(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename V, typename T>
inline void store_as(T* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

// Calls f(integral_constant<int, OB>, o0) for the blocks of channels the register-blocked loops
// run in: kOutBlock at a time, then 4, then 1.
template <typename F>
inline void for_each_out_block(int64_t Og, F&& f) {
  int64_t o0 = 0;
  for (; o0 + kOutBlock <= Og; o0 += kOutBlock) f(std::integral_constant<int, kOutBlock>{}, o0);
  for (; o0 + 4 <= Og; o0 += 4) f(std::integral_constant<int, 4>{}, o0);
  for (; o0 < Og; ++o0) f(std::integral_constant<int, 1>{}, o0);
}

// The lane type of a block call: V, a vector, or T, one element.
template <typename V>
struct Lanes {
  using type = V;
};

// Calls f(integral_constant<int, B>, Lanes<V or T>, c0, x0) for every block [c0, c0 + B) of n
// channels (for_each_out_block) and every pixel run of a row of W pixels: full vectors of the
// instruction set's width, then the remaining pixels one at a time.
template <typename T, typename F>
inline void for_each_block_vector(int64_t n, int64_t W, F&& f) {
  using V = Vec<T>;
  constexpr int64_t VL = sizeof(V) / sizeof(T);
  const int64_t xv = W - W % VL;
  for_each_out_block(n, [&](auto ob, int64_t c0) {
    for (int64_t x0 = 0; x0 < xv; x0 += VL) f(ob, Lanes<V>{}, c0, x0);
    for (int64_t x0 = xv; x0 < W; ++x0) f(ob, Lanes<T>{}, c0, x0);
  });
}

// Packs the rows of a [n][m] matrix (n channels of m weights each) block by block as
// for_each_out_block cuts the channels: block [o0, o0 + OB) goes to dst + o0 * m as [m][OB], so
// that the OB weights of one (input channel, tap) are adjacent and consecutive taps OB apart.
template <typename T>
void pack_out_blocks(const T* w, int64_t n, int64_t m, T* dst) {
  for_each_out_block(n, [&](auto ob, int64_t o0) {
    constexpr int OB = decltype(ob)::value;
    for (int64_t j = 0; j < m; ++j)
      for (int o = 0; o < OB; ++o) dst[o0 * m + j * OB + o] = w[(o0 + o) * m + j];
  });
}

// Operands of one output row of the direct convolution of one group.
template <typename T>
struct DirectRow {
  const T* K;            // kernel values of the row, tap t at K + t * ldK
  int64_t ldK;
  const T* X;            // padded input of the group's first channel
  int64_t ldXc, ldXr;    // channel and row strides of the padded input
  const int64_t* xrow;   // kh entries: padded row read by kernel row a, or -1 (zero)
  int64_t xcol0, xstep;  // column offset of kernel column e in the padded row: xcol0 + e * xstep
  int64_t kh, kw, Cg;
  const T* W;            // the group's weights, packed by pack_out_blocks ([Og][Cg*kh*kw])
  int64_t Og;
  const T* bias;         // Og entries or nullptr
  T* out;                // the group's first output channel at this row
  int64_t ld_out;        // output channel stride
};

// Output channels [o0, o0 + OB) at pixels [x0, x0 + lanes of V) of row R (V = T: one pixel).
// The inner loop walks the kernel columns of one kernel row with three pointer increments.
template <typename T, typename V, int OB>
inline void direct_block(const DirectRow<T>& R, int64_t o0, int64_t x0) {
  V acc[OB];
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o) acc[o] = V{} + (R.bias ? R.bias[o0 + o] : T(0));
  const int64_t kw = R.kw, kk = R.kh * kw, ldK = R.ldK, xstep = R.xstep;
  const T* Wb = R.W + o0 * R.Cg * kk;
  for (int64_t c = 0; c < R.Cg; ++c) {
    const T* Xc = R.X + c * R.ldXc + R.xcol0 + x0;
    for (int64_t a = 0; a < R.kh; ++a) {
      const int64_t r = R.xrow[a];
      if (r < 0) continue;
      const T* xp = Xc + r * R.ldXr;
      const T* kp = R.K + a * kw * ldK + x0;
      const T* wp = Wb + (c * kk + a * kw) * OB;
      for (int64_t e = 0; e < kw; ++e, xp += xstep, kp += ldK, wp += OB) {
        const V kx = load_as<V>(kp) * load_as<V>(xp);
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) acc[o] += kx * wp[o];
      }
    }
  }
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o) store_as(R.out + (o0 + o) * R.ld_out + x0, acc[o]);
}

// One output row: full vectors of pixels, then the remaining pixels one by one.
template <typename T>
void direct_row(const DirectRow<T>& R, int64_t Wo) {
  for_each_block_vector<T>(R.Og, Wo, [&](auto ob, auto lanes, int64_t o0, int64_t x0) {
    direct_block<T, typename decltype(lanes)::type, decltype(ob)::value>(R, o0, x0);
  });
}

// ---------------------------------------------------------------------------------------------
// Backward, input stride 1, no column matrix.
// ---------------------------------------------------------------------------------------------

// Operands of the weight gradient of one group over the rows of a tile:
// dW[o][c][t] += Σ_(rows, pixels) G[o](pixel) · K(tap t, pixel) · X̄[c](tap t of pixel).
// For a vector of pixels, K·X̄ is formed once per (channel, tap) and multiplied into OB per-lane
// accumulators (one per output channel), which live in `acc` between row chunks; their lanes are
// added up into dW once per tile. The output gradient of the OB channels is first packed
// vector-interleaved (the OB vectors of one pixel vector adjacent), so that the inner loop reads
// one contiguous stream instead of OB streams a channel plane apart (which alias in L1).
template <typename T>
struct DirectDw {
  const T* K;            // kernel values: tap t, tile row yy at K + t * ldK + yy * Wo
  int64_t ldK;
  const T* X;            // padded input rows of the group's first channel
  int64_t ldXc, ldXr;
  const int64_t* xrow;   // [rows][kh]: padded row read by kernel row a from tile row yy, or -1
  const int64_t* xcol;   // kw entries: column offset of kernel column e in the padded row
  int64_t kh, kw, Cg, Wo;
  const T* G;            // output gradient of the group's first channel at tile row 0
  int64_t ldG;           // its channel stride (rows of Wo inside a channel)
  T* dw;                 // [Og][Cg][kh*kw] gradient of the group (accumulated)
  int64_t Og;
  T* acc;                // dw_acc_numel elements: per-lane partial sums of dW (see direct_dw_tile)
  T* gpack;              // rows*Wo*kOutBlock elements of scratch
};

// Output channels [o0, o0 + OB), tile rows [yy0, yy1). Pixels past the last full vector of a
// row are summed in scalars straight into dW. gp: the packed output gradient of the tile's
// rows, pixel vector v of row yy at gp + ((yy * nv + v) * OB + o) * lanes.
template <typename T, typename V, int OB>
inline void direct_dw_chunk(const DirectDw<T>& R, const T* gp, int64_t o0, int64_t yy0,
                            int64_t yy1) {
  constexpr int64_t VL = sizeof(V) / sizeof(T);
  const int64_t kk = R.kh * R.kw, nv = R.Wo / VL, xv = nv * VL;
  // Kernel row a outermost: its K rows are reused by every channel, each channel's input rows by
  // every kernel column.
  for (int64_t a = 0; a < R.kh; ++a) {
    for (int64_t c = 0; c < R.Cg; ++c) {
      for (int64_t e = 0; e < R.kw; ++e) {
        const int64_t t = a * R.kw + e;
        T* accp = R.acc + (c * kk + t) * OB * VL;
        V acc[OB];
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) acc[o] = load_as<V>(accp + o * VL);
        T tail[OB] = {};
        for (int64_t yy = yy0; yy < yy1; ++yy) {
          const int64_t r = R.xrow[yy * R.kh + a];
          if (r < 0) continue;
          const T* Kr = R.K + t * R.ldK + yy * R.Wo;
          const T* Xr = R.X + c * R.ldXc + r * R.ldXr + R.xcol[e];
          const T* Gv = gp + yy * nv * OB * VL;
          for (int64_t x0 = 0; x0 < xv; x0 += VL, Gv += OB * VL) {
            const V kx = load_as<V>(Kr + x0) * load_as<V>(Xr + x0);
#pragma GCC unroll 16
            for (int o = 0; o < OB; ++o) acc[o] += load_as<V>(Gv + o * VL) * kx;
          }
          const T* Gr = R.G + o0 * R.ldG + yy * R.Wo;
          for (int64_t x = xv; x < R.Wo; ++x) {
            const T kx = Kr[x] * Xr[x];
            for (int o = 0; o < OB; ++o) tail[o] += Gr[o * R.ldG + x] * kx;
          }
        }
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) store_as(accp + o * VL, acc[o]);
        for (int o = 0; o < OB; ++o) R.dw[((o0 + o) * R.Cg + c) * kk + t] += tail[o];
      }
    }
  }
}

// Number of elements of the per-lane accumulators of a group's weight gradient.
template <typename T>
constexpr int64_t dw_acc_numel(int64_t Og, int64_t Cg, int64_t kk) {
  return Og * Cg * kk * int64_t(sizeof(Vec<T>) / sizeof(T));
}

// Weight gradient of one group over `rows` tile rows, into the per-lane accumulators: per block
// of OB output channels (accumulators at acc + o0 * Cg * k*k lanes), packs their output gradient,
// then runs it in row chunks that stay in L1 while every (channel, tap) reads them.
template <typename T>
void direct_dw_tile(const DirectDw<T>& R, int64_t rows) {
  using V = Vec<T>;
  constexpr int64_t VL = sizeof(V) / sizeof(T);
  const int64_t kk = R.kh * R.kw, nv = R.Wo / VL;
  for_each_out_block(R.Og, [&](auto ob, int64_t o0) {
    constexpr int OB = decltype(ob)::value;
    for (int64_t yy = 0; yy < rows; ++yy)
      for (int64_t v = 0; v < nv; ++v)
        for (int o = 0; o < OB; ++o)
          std::memcpy(R.gpack + ((yy * nv + v) * OB + o) * VL,
                      R.G + (o0 + o) * R.ldG + yy * R.Wo + v * VL, VL * sizeof(T));
    const int64_t chunk = std::max<int64_t>(
        1, (int64_t{24} << 10) / std::max<int64_t>(1, OB * nv * VL * int64_t(sizeof(T))));
    DirectDw<T> B = R;
    B.acc = R.acc + o0 * R.Cg * kk * VL;
    for (int64_t yy = 0; yy < rows; yy += chunk)
      direct_dw_chunk<T, V, OB>(B, R.gpack, o0, yy, std::min(rows, yy + chunk));
  });
}

// Adds the lanes of the per-lane accumulators into dW (lanes in order) and zeroes them.
template <typename T>
void direct_dw_flush(const DirectDw<T>& R) {
  constexpr int64_t VL = sizeof(Vec<T>) / sizeof(T);
  const int64_t kk = R.kh * R.kw;
  for_each_out_block(R.Og, [&](auto ob, int64_t o0) {
    constexpr int OB = decltype(ob)::value;
    T* acc = R.acc + o0 * R.Cg * kk * VL;
    for (int64_t ct = 0; ct < R.Cg * kk; ++ct)
      for (int o = 0; o < OB; ++o) {
        T* accp = acc + (ct * OB + o) * VL;
        T sum = 0;
        for (int64_t l = 0; l < VL; ++l) sum += accp[l];
        std::memset(accp, 0, VL * sizeof(T));
        R.dw[(o0 + o) * R.Cg * kk + ct] += sum;
      }
  });
}

// Operands of the input gradient of one input row of one group:
// dX̄[c](q) += Σ_o Σ_(a,e) W[o][c][a,e] · K(a,e; y_a, q − b_e) · G[o](y_a, q − b_e),
// over the kernel rows a through which an output row y_a of the tile reads this input row, b_e
// being the column offset of kernel column e (input column q = output column + b_e). K and G are
// read from zero-padded copies (0 outside the output's columns), so the loop has no bounds checks;
// for a vector of input pixels K·G is formed once per (output channel, tap) and multiplied into
// CB input-channel accumulators.
template <typename T>
struct DirectDxRow {
  const T* K;            // padded kernel values: tap t, tile row yy at K + t * ldKt + yy * ldKr
  int64_t ldKt, ldKr;
  const T* G;            // padded output gradient of the group's first channel
  int64_t ldGo, ldGr;    // its channel and row strides
  const int64_t* grow;   // kh entries: tile row reaching this input row through kernel row a, or -1
  int64_t gcol0, gstep;  // padded column of input column 0 through kernel column e: gcol0 + e*gstep
  int64_t kh, kw, Og;
  const T* W;            // the group's weights as [Cg][Og*kh*kw], packed by pack_out_blocks
  int64_t Cg;
  T* dx;                 // the group's first channel of the input gradient at this row
  int64_t ld_dx;         // its channel stride
};

// Input channels [c0, c0 + CB) at input pixels [q0, q0 + lanes of V) (V = T: one pixel).
template <typename T, typename V, int CB>
inline void direct_dx_block(const DirectDxRow<T>& R, int64_t c0, int64_t q0) {
  V acc[CB];
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c) acc[c] = V{};
  const int64_t kh = R.kh, kw = R.kw, kk = kh * kw, ldKt = R.ldKt, gstep = R.gstep;
  const T* Wb = R.W + c0 * R.Og * kk;
  for (int64_t a = 0; a < kh; ++a) {
    const int64_t yy = R.grow[a];
    if (yy < 0) continue;
    const T* Ka = R.K + yy * R.ldKr + a * kw * ldKt + R.gcol0 + q0;
    const T* Go = R.G + yy * R.ldGr + R.gcol0 + q0;
    for (int64_t o = 0; o < R.Og; ++o, Go += R.ldGo) {
      const T* kp = Ka;
      const T* gp = Go;
      const T* wp = Wb + (o * kk + a * kw) * CB;
      for (int64_t e = 0; e < kw; ++e, kp += ldKt + gstep, gp += gstep, wp += CB) {
        const V kg = load_as<V>(kp) * load_as<V>(gp);
#pragma GCC unroll 16
        for (int c = 0; c < CB; ++c) acc[c] += kg * wp[c];
      }
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < CB; ++c) {
    T* d = R.dx + (c0 + c) * R.ld_dx + q0;
    store_as(d, load_as<V>(d) + acc[c]);
  }
}

// One input row of W pixels: full vectors, then the remaining pixels one by one.
template <typename T>
void direct_dx_row(const DirectDxRow<T>& R, int64_t W) {
  for_each_block_vector<T>(R.Cg, W, [&](auto cb, auto lanes, int64_t c0, int64_t q0) {
    direct_dx_block<T, typename decltype(lanes)::type, decltype(cb)::value>(R, c0, q0);
  });
}

}  // namespace
}  // namespace cpu
}  // namespace pac
