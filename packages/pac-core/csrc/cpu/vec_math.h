// Branch-free float math for the CPU kernels, written so that the compiler vectorises the loops
// that call it at the width of the instruction set the file is compiled for (4 floats with the
// SSE2 baseline, 8 with AVX2, 16 with AVX-512; see isa.h).
#pragma once

#include <cstdint>
#include <cstring>

namespace pac {
namespace cpu {
// Internal linkage: compiled once per instruction set (cpu/isa.h); the linker must not merge
// the copies.
namespace {

// exp(x) for float, Cody-Waite range reduction and a degree-6 polynomial (the Cephes expf
// coefficients). Measured maximum relative error against the double-precision exp: below
// 2.5e-7 (about 2 ulp) for x in [-87.3, 88.7] (tests/test_native_isa.py checks it on a dense
// grid); below -87.3 the result is subnormal and exact to within 2^-149 (the subnormal spacing).
// exp(x) = 0 for x < -103.9 (the true value rounds to 0), +inf for x > 88.72 (above FLT_MAX)
// and NaN for NaN, as the C library returns.
inline float exp_poly(float x) {
  constexpr float kLo = -103.972077f, kHi = 88.7228394f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  // Every comparison evaluated unconditionally and only used to select: no control flow, so
  // the loops vectorise.
  const bool below = x < kLo, above = x > kHi, nan = x != x;
  float xc = below ? kLo : x;
  xc = above ? kHi : xc;
  xc = nan ? 0.0f : xc;
  const float t = xc * kLog2e + kRound;
  const float n = t - kRound;
  int32_t ti;
  std::memcpy(&ti, &t, sizeof ti);
  const int32_t ni = ti - 0x4B400000;  // the integer n, from t's mantissa
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  // 2^n as 2^n1 * 2^n2 (n in [-150, 128]: each factor normal), so that results near FLT_MAX and
  // in the subnormal range come out right.
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  float y = (er * s1) * s2;
  y = below ? 0.0f : y;
  y = above ? __builtin_inff() : y;
  return nan ? x : y;
}

// y[i] = exp(x[i]); x and y may be the same array.
inline void exp_array(const float* x, float* y, int64_t n) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) y[i] = exp_poly(x[i]);
}

// y[i] = exp(scale * x[i]).
inline void exp_scaled_array(const float* x, float scale, float* y, int64_t n) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) y[i] = exp_poly(scale * x[i]);
}

}  // namespace
}  // namespace cpu
}  // namespace pac
