// Sampling geometry: where tap (a, e) of output pixel (y, x) reads its input / guidance value.
//
// One convention serves ordinary and transposed PAC (docs/semantics.md §1, §1.1, §2.1). Per axis:
//
//   pos = y * stride - padding + a * dilation                    (position on the sampled grid)
//   the tap reads a real sample iff pos >= 0, pos % upsample == 0 and pos / upsample < extent,
//   namely sample pos / upsample; otherwise it reads zero (zero padding / zero insertion).
//
// * ordinary conv / pool: stride s, padding p, dilation d, upsample 1 (extent = H of the input).
// * transposed conv (docs/semantics.md §1.1): the zero-inserted, asymmetrically padded grid Ẑ is read with
//   stride 1 and padding P = (k-1)d - p (may be negative: a crop) and upsample = s, extent = H of
//   the low-resolution input; the bottom/right padding P + q only matters for the output size,
//   which the ops take from their `phi`/`kernel` argument.
// * guidance (kernel sampling, docs/semantics.md §2.1): stride/padding of the guidance geometry, upsample 1.
//
// The validity pattern V of docs/semantics.md §2.4 is exactly "tap_source(...) >= 0" of the input geometry.
#pragma once

#include "kernels/common.h"

namespace pac {
namespace kernels {

// Index of the sample read by tap `a` of output coordinate `y` along one axis, or -1 when the
// tap falls into padding, between inserted zeros, or outside the `extent` real samples.
PAC_INLINE int64_t tap_source(int64_t y, int64_t a, int64_t stride, int64_t padding,
                              int64_t dilation, int64_t upsample, int64_t extent) {
  int64_t pos = y * stride - padding + a * dilation;
  if (pos < 0) return -1;
  if (upsample != 1) {
    if (pos % upsample != 0) return -1;
    pos /= upsample;
  }
  return pos < extent ? pos : -1;
}

// Number of windows of an ordinary (upsample 1) convolution: floor((n + 2p - d(k-1) - 1)/s) + 1,
// or 0 when not even one window fits.
PAC_INLINE int64_t conv_out_size(int64_t n, int64_t k, int64_t stride, int64_t padding,
                                 int64_t dilation) {
  const int64_t span = n + 2 * padding - dilation * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

}  // namespace kernels
}  // namespace pac
