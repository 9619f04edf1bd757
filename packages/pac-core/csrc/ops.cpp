// TORCH_LIBRARY(pac, m): every operator schema of pac-core, in one place (STABLE_TORCH_LIBRARY in
// a stable-ABI build, see runtime/runtime.h).
//
// Device implementations: csrc/cpu/*.cpp (TORCH_LIBRARY_IMPL(pac, CPU, m)) and csrc/cuda/ (CUDA).
// Autograd (register_autograd) and fake/meta kernels (register_fake) live in Python:
// src/pac_core/backends/native.py. The per-element math is in csrc/kernels/.
//
// Conventions shared by every op (see csrc/kernels/geometry.h for the full story):
//
// * Tensors are NCHW, float32 or float64, one dtype and one device per call. Inputs of any
//   strides are accepted (made contiguous internally).
// * Output size: from `phi` (guided ops) or the last two dims of `kernel` (precomputed-kernel ops).
// * Input sampling, per axis: pos = y*stride - padding + a*dilation; a tap reads sample
//   pos/upsample when pos >= 0, pos % upsample == 0 and pos/upsample < H, else zero.
//   Ordinary PAC: upsample = 1. Transposed PAC of stride s, padding p (docs/semantics.md §1.1): stride = 1,
//   padding = (k-1)d - p (negative allowed), upsample = s; the weight in conv layout
//   [C_out, C_in/groups, k, k] without a flip.
// * Guidance sampling (guided ops): r = y*guidance_stride - guidance_padding + a*dilation, zero
//   outside. Ordinary: guidance_stride = stride, guidance_padding = padding. Transposed (the
//   guidance at the output resolution): guidance_stride = 1, guidance_padding = (k-1)d/2.
// * `phi` [B, C_f, H', W'] is the centre feature φ of docs/semantics.md §2.2 (the centre-tap guidance value,
//   or its smoothed version), computed by the caller; its gradient is returned separately.
// * kernel_type: 0 = gaussian exp(-D/2), 1 = inv alpha + (D + 1e-4)^(lambda/2); `asym` applies
//   max(Δ, 0). inv_alpha / inv_lambda (inv only, else None): 0-dim or 1-D with 1 or C_K elements.
// * C_K (kernel channels): 1, or C_f for channel-wise pooling (`channel_wise`).
// * *_backward ops take `output_mask` (which gradients to compute: 6 flags for the guided ops, 3
//   for the kernel ops; a list of any other length is rejected with a message naming it) and
//   return an empty tensor (shape [0]) for every gradient not asked for or whose input is None.
// * Argument limits and checks: pac_args.h (C++) and src/pac_core/backends/op_checks.py (the
//   same checks for the fake kernels); docs/backends.md, "Invalid arguments".
//
// Semantics:
//   conv2d_guided:  out[b,o,y,x] = bias[o] + Σ_{c,t} W[o,c,t] K[b,t,y,x] X̄[b,g(o)·C/G + c, tap t]
//                   K computed on the fly from (guidance, phi); groups G as in nn.Conv2d.
//   pool2d_guided:  out[b,c,y,x] = Σ_t w[t] K[b,κ(c),t,y,x] X̄[b,χ(c),tap t], w = weight or 1,
//                   κ(c) = c if C_K > 1 else 0, χ(c) = c if C_in > 1 else 0,
//                   out channels max(C_in, C_K) (C_in and C_K are 1 or equal). With an input of
//                   ones (or the mask) this is the normaliser N = Σ_t K·V·M of docs/semantics.md §2.4.
//   conv2d_kernel / pool2d_kernel: the same with a precomputed kernel [B, C_K, kh, kw, H', W'].
#if defined(PAC_STABLE_ABI)
#include <torch/csrc/stable/library.h>
STABLE_TORCH_LIBRARY(pac, m) {
#else
#include <torch/library.h>
TORCH_LIBRARY(pac, m) {
#endif
  // -- fused ops: kernel computed from the guidance, tile by tile -------------------------------
  m.def(
      "conv2d_guided(Tensor input, Tensor guidance, Tensor phi, Tensor weight, Tensor? bias, "
      "Tensor? inv_alpha, Tensor? inv_lambda, int[2] stride, int[2] padding, int[2] dilation, "
      "int[2] upsample, int[2] guidance_stride, int[2] guidance_padding, int groups, "
      "int kernel_type, bool asym) -> Tensor");
  // Gradients w.r.t. (input, guidance, phi, weight, inv_alpha, inv_lambda); the bias gradient is
  // grad_out.sum((0, 2, 3)).
  m.def(
      "conv2d_guided_backward(Tensor grad_out, Tensor input, Tensor guidance, Tensor phi, "
      "Tensor weight, Tensor? inv_alpha, Tensor? inv_lambda, int[2] stride, int[2] padding, "
      "int[2] dilation, int[2] upsample, int[2] guidance_stride, int[2] guidance_padding, "
      "int groups, int kernel_type, bool asym, bool[] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "pool2d_guided(Tensor input, Tensor guidance, Tensor phi, Tensor? weight, "
      "Tensor? inv_alpha, Tensor? inv_lambda, int[2] kernel_size, int[2] stride, int[2] padding, "
      "int[2] dilation, int[2] upsample, int[2] guidance_stride, int[2] guidance_padding, "
      "int kernel_type, bool asym, bool channel_wise) -> Tensor");
  // Gradients w.r.t. (input, guidance, phi, weight, inv_alpha, inv_lambda).
  m.def(
      "pool2d_guided_backward(Tensor grad_out, Tensor input, Tensor guidance, Tensor phi, "
      "Tensor? weight, Tensor? inv_alpha, Tensor? inv_lambda, int[2] kernel_size, int[2] stride, "
      "int[2] padding, int[2] dilation, int[2] upsample, int[2] guidance_stride, "
      "int[2] guidance_padding, int kernel_type, bool asym, bool channel_wise, "
      "bool[] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // -- precomputed kernel [B, C_K, kh, kw, H', W'] ---------------------------------------------
  m.def(
      "conv2d_kernel(Tensor input, Tensor kernel, Tensor weight, Tensor? bias, int[2] stride, "
      "int[2] padding, int[2] dilation, int[2] upsample, int groups) -> Tensor");
  // Gradients w.r.t. (input, kernel, weight).
  m.def(
      "conv2d_kernel_backward(Tensor grad_out, Tensor input, Tensor kernel, Tensor weight, "
      "int[2] stride, int[2] padding, int[2] dilation, int[2] upsample, int groups, "
      "bool[] output_mask) -> (Tensor, Tensor, Tensor)");
  m.def(
      "pool2d_kernel(Tensor input, Tensor kernel, Tensor? weight, int[2] stride, int[2] padding, "
      "int[2] dilation, int[2] upsample) -> Tensor");
  // Gradients w.r.t. (input, kernel, weight).
  m.def(
      "pool2d_kernel_backward(Tensor grad_out, Tensor input, Tensor kernel, Tensor? weight, "
      "int[2] stride, int[2] padding, int[2] dilation, int[2] upsample, bool[] output_mask) "
      "-> (Tensor, Tensor, Tensor)");
}
