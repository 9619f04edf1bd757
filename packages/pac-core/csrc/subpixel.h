// Sub-pixel classes of a convolution of a zero-inserted input (input stride 1, upsample u > 1:
// the transposed layers), shared by the CPU and CUDA backends.
//
// Output coordinate y reads a real sample through kernel tap a only when (y - p + a·d) mod u = 0,
// which depends on y mod u alone. So along each axis the output coordinates with one residue
// r = y mod u form a class (y = r + u·i, i < extent) that reads through the same taps; the other
// taps read inserted zeros. A 2-D class is a pair of axis classes. The valid taps of a class
// solve a·d ≡ p - r (mod u): an arithmetic progression.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace pac {

struct SubpixelAxis {
  int64_t residue = 0;         // r
  int64_t extent = 0;          // output coordinates r, r + u, ... below the output size
  std::vector<int64_t> taps;   // kernel taps that read real samples (increasing)
};

// The classes of one axis (output size `out`, kernel size k, padding p, dilation d, upsample u).
inline std::vector<SubpixelAxis> subpixel_axis(int64_t out, int64_t k, int64_t p, int64_t d,
                                               int64_t u) {
  std::vector<SubpixelAxis> axis;
  for (int64_t r = 0; r < std::min(u, out); ++r) {
    SubpixelAxis c;
    c.residue = r;
    c.extent = (out - r + u - 1) / u;
    for (int64_t a = 0; a < k; ++a) {
      const int64_t v = (r - p + a * d) % u;
      if (v == 0) c.taps.push_back(a);
    }
    axis.push_back(std::move(c));
  }
  return axis;
}

// Whether a convolution call is run class by class: conv path, input stride 1, upsampled input.
inline bool subpixel_applies(bool pool, int64_t sh, int64_t sw, int64_t uh, int64_t uw) {
  return !pool && sh == 1 && sw == 1 && (uh > 1 || uw > 1);
}

}  // namespace pac
