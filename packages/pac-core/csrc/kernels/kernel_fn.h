// The adapting kernel of one tap (docs/semantics.md §2.3) and its derivatives.
//
//   Δ_c = F̄(tap)_c − φ_c,  Δ_c ← max(Δ_c, 0) when asym,  D = Σ_c Δ_c²  (per channel if channel-wise)
//   gaussian: K = exp(−D/2)                  dK/dD = −K/2
//   inv:      K = α + (D + ε)^(λ/2)          dK/dD = (λ/2)(D + ε)^(λ/2 − 1)
//                                            dK/dα = 1,  dK/dλ = ½ (D + ε)^(λ/2) ln(D + ε)
//   dD/dF̄(tap)_c = 2Δ_c,  dD/dφ_c = −2Δ_c   (Δ after the ReLU: its derivative is 0 where Δ ≤ 0)
#pragma once

#include "kernels/common.h"

namespace pac {
namespace kernels {

// ε of the inv kernel, exactly 1e-4 in the compute dtype (docs/semantics.md §2.3).
template <typename T>
PAC_INLINE T inv_eps() {
  return T(1e-4);
}

// Guidance difference of one channel at one tap (after the optional ReLU of '_asym'). A NaN
// difference stays NaN (as torch.relu keeps it): invalid values propagate (docs/backends.md).
template <typename T>
PAC_INLINE T guidance_delta(T f_tap, T phi, bool asym) {
  const T d = f_tap - phi;
  return (asym && d <= T(0)) ? T(0) : d;
}

// K(D) for one tap.
template <typename T>
PAC_INLINE T kernel_value(int64_t type, T D, T alpha, T lambda) {
  if (type == kGaussian) return pac_exp(-D / T(2));
  return alpha + pac_pow(D + inv_eps<T>(), lambda / T(2));
}

// dK/dD given D and K = kernel_value(type, D, alpha, lambda).
template <typename T>
PAC_INLINE T kernel_grad_D(int64_t type, T D, T K, T lambda) {
  if (type == kGaussian) return -K / T(2);
  return lambda / T(2) * pac_pow(D + inv_eps<T>(), lambda / T(2) - T(1));
}

// dK/dλ (inv kernels only; 0 for gaussian). dK/dα is 1 for inv kernels.
template <typename T>
PAC_INLINE T kernel_grad_lambda(int64_t type, T D, T K, T alpha) {
  if (type == kGaussian) return T(0);
  const T base = D + inv_eps<T>();
  return (K - alpha) * pac_log(base) / T(2);
}

// dK/dα (inv kernels only; 0 for gaussian).
template <typename T>
PAC_INLINE T kernel_grad_alpha(int64_t type) {
  return type == kGaussian ? T(0) : T(1);
}

}  // namespace kernels
}  // namespace pac
