// Shared building blocks of the per-element PAC math (CPU and CUDA).
//
// Everything in csrc/kernels/ is header-only, depends on nothing but the C math library, and is
// marked PAC_HD so that the CPU drivers (csrc/cpu) and the CUDA kernels (csrc/cuda) call exactly
// the same functions. Keep it that way: no ATen, no exceptions, no allocation here.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PAC_HD __host__ __device__
#else
#define PAC_HD
#endif

// `inline` host+device function.
#define PAC_INLINE PAC_HD inline

namespace pac {
namespace kernels {

// Kernel functions of docs/semantics.md §2.3, as passed in the `kernel_type` int of the ops.
enum KernelType : int64_t {
  kGaussian = 0,  // K = exp(-D/2)
  kInv = 1,       // K = alpha + (D + eps)^(lambda/2)
};

// Math wrappers that pick the single/double precision C function on host and device alike.
PAC_INLINE float pac_exp(float x) { return expf(x); }
PAC_INLINE double pac_exp(double x) { return exp(x); }
PAC_INLINE float pac_pow(float x, float y) { return powf(x, y); }
PAC_INLINE double pac_pow(double x, double y) { return pow(x, y); }
PAC_INLINE float pac_log(float x) { return logf(x); }
PAC_INLINE double pac_log(double x) { return log(x); }

}  // namespace kernels
}  // namespace pac
