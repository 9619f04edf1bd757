// Scaled im2col / col2im elements (docs/semantics.md §3): the column entry of tap t, channel c, pixel j is
// col[c, t, j] = K[t, j] · X̄[c, tap_source(...)], and its adjoint scatters K[t, j] · dcol[c, t, j]
// back into the input gradient.
#pragma once

#include "kernels/common.h"

namespace pac {
namespace kernels {

// Value of the zero-extended plane `plane` (row-major, `width` columns) at (row, col), where a
// negative row or col (as returned by tap_source) means "outside": 0.
template <typename T>
PAC_INLINE T read_zero_ext(const T* plane, int64_t width, int64_t row, int64_t col) {
  return (row >= 0 && col >= 0) ? plane[row * width + col] : T(0);
}

// One element of the kernel-scaled column matrix.
template <typename T>
PAC_INLINE T scaled_im2col(T k, const T* plane, int64_t width, int64_t row, int64_t col) {
  return (row >= 0 && col >= 0) ? k * plane[row * width + col] : T(0);
}

// Adds v to dst. On the device this is an atomic add (several taps/pixels hit one sample); the
// CPU drivers partition the work so that no two threads touch one sample, so a plain add.
template <typename T>
PAC_INLINE void accumulate(T* dst, T v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(dst, v);
#else
  *dst += v;
#endif
}

// col2im of one column entry: adds K·dcol to the input gradient at (row, col) when inside.
template <typename T>
PAC_INLINE void col2im_accumulate(T* plane_grad, int64_t width, int64_t row, int64_t col, T k,
                                  T dcol) {
  if (row >= 0 && col >= 0) accumulate(plane_grad + row * width + col, k * dcol);
}

}  // namespace kernels
}  // namespace pac
