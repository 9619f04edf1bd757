// Register-blocked direct PAC convolution (forward, input stride 1): no column matrix.
//
// For one output row and a block of VL consecutive pixels (one vector of the instruction set
// this file is compiled for), OB output channels are accumulated in registers over every
// (input channel, tap): the kernel-scaled input K(tap)·X̄(tap) is formed once per vector and
// multiplied into all OB accumulators with the weights of that (channel, tap), which lie
// contiguously (layout [C/groups, k*k, O/groups] per group). The input is read from a
// zero-padded copy of the rows a tile needs, so the inner loop has no bounds checks.
#pragma once

#include <cstdint>
#include <cstring>

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

// Operands of one output row of the direct convolution of one group.
template <typename T>
struct DirectRow {
  const T* K;            // kernel values of the row, tap t at K + t * ldK
  int64_t ldK;
  const T* X;            // padded input of the group's first channel
  int64_t ldXc, ldXr;    // channel and row strides of the padded input
  const int64_t* xrow;   // kh entries: padded row read by kernel row a, or -1 (zero)
  const int64_t* xcol;   // kw entries: column offset of kernel column e in the padded row
  int64_t kh, kw, Cg;
  const T* W;            // [Cg][kh*kw][Og] weights of the group
  int64_t Og;
  const T* bias;         // Og entries or nullptr
  T* out;                // the group's first output channel at this row
  int64_t ld_out;        // output channel stride
};

// Output channels [o0, o0 + OB) at pixels [x0, x0 + lanes of V) of row R.
template <typename T, typename V, int OB>
inline void direct_block(const DirectRow<T>& R, int64_t o0, int64_t x0) {
  V acc[OB];
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o) acc[o] = V{} + (R.bias ? R.bias[o0 + o] : T(0));
  const int64_t kk = R.kh * R.kw;
  for (int64_t c = 0; c < R.Cg; ++c) {
    const T* Xc = R.X + c * R.ldXc + x0;
    const T* Wc = R.W + c * kk * R.Og + o0;
    for (int64_t a = 0; a < R.kh; ++a) {
      const int64_t r = R.xrow[a];
      if (r < 0) continue;
      const T* Xr = Xc + r * R.ldXr;
      for (int64_t e = 0; e < R.kw; ++e) {
        const int64_t t = a * R.kw + e;
        const V kx = load_as<V>(R.K + t * R.ldK + x0) * load_as<V>(Xr + R.xcol[e]);
        const T* w = Wc + t * R.Og;
#pragma GCC unroll 16
        for (int o = 0; o < OB; ++o) acc[o] += kx * w[o];
      }
    }
  }
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o) store_as(R.out + (o0 + o) * R.ld_out + x0, acc[o]);
}

// One output row: full vectors of pixels, then the remaining pixels one by one.
template <typename T>
void direct_row(const DirectRow<T>& R, int64_t Wo) {
  using V = Vec<T>;
  constexpr int64_t VL = sizeof(V) / sizeof(T);
  const int64_t xv = Wo - Wo % VL;
  int64_t o0 = 0;
  for (; o0 + kOutBlock <= R.Og; o0 += kOutBlock)
    for (int64_t x0 = 0; x0 < xv; x0 += VL) direct_block<T, V, kOutBlock>(R, o0, x0);
  for (; o0 + 4 <= R.Og; o0 += 4)
    for (int64_t x0 = 0; x0 < xv; x0 += VL) direct_block<T, V, 4>(R, o0, x0);
  for (; o0 < R.Og; ++o0)
    for (int64_t x0 = 0; x0 < xv; x0 += VL) direct_block<T, V, 1>(R, o0, x0);
  for (int64_t x0 = xv; x0 < Wo; ++x0)
    for (int64_t o = 0; o < R.Og; ++o) direct_block<T, T, 1>(R, o, x0);
}

}  // namespace
}  // namespace cpu
}  // namespace pac
