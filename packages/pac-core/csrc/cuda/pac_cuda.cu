// CUDA implementations of the pac:: operators (schemas and conventions: csrc/ops.cpp).
//
// Same structure as the CPU backend (csrc/cpu/pac_cpu.cpp), same per-element math
// (csrc/kernels/, called unchanged from the device code) and same argument checks (pac_args.h):
//
// * The output pixels are cut into tiles: whole images (several per tile when they are small) or
//   pixel ranges of one image, sized so that the tile's buffers stay under kTileElems elements.
//   Nothing image-sized besides the inputs, outputs and gradients is allocated.
// * Forward, per tile: a kernel computes the adapting-kernel values K[C_K, k*k, n] from the
//   guidance (or they are read from a precomputed kernel); the convolution then fills the
//   kernel-scaled column matrix col[C*k*k, n] = K·X̄(tap) and multiplies it with the weight
//   (at::mm per group, cuBLAS, straight into the output); pooling sums the weighted taps
//   directly.
// * Backward, per tile: K and the columns are recomputed; weight gradients by at::addmm_,
//   column gradients dcol = Wᵀ·dY by at::mm. The input and guidance gradients are *gathered*
//   (one thread per input / guidance sample sums over the taps and output pixels of the tile
//   that read it) instead of scattered with atomics, so the backward pass is deterministic
//   (tiles run one after another on the stream; within a tile every sample has one writer).
//   Reductions (weight of the pool path, alpha, lambda) go through per-tile buffers and
//   at::sum, also deterministic.
//
// Everything runs on the current CUDA stream of the input's device (c10::cuda::CUDAGuard).
// float32 and float64, like the CPU backend.
#include <torch/library.h>

#include "cuda/pac_cuda_impl.cuh"

TORCH_LIBRARY_IMPL(pac, CUDA, m) {
  using namespace pac::cuda_impl;
  m.impl("conv2d_guided", &conv2d_guided_cuda);
  m.impl("conv2d_guided_backward", &conv2d_guided_backward_cuda);
  m.impl("pool2d_guided", &pool2d_guided_cuda);
  m.impl("pool2d_guided_backward", &pool2d_guided_backward_cuda);
  m.impl("conv2d_kernel", &conv2d_kernel_cuda);
  m.impl("conv2d_kernel_backward", &conv2d_kernel_backward_cuda);
  m.impl("pool2d_kernel", &pool2d_kernel_cuda);
  m.impl("pool2d_kernel_backward", &pool2d_kernel_backward_cuda);
}
