// The tensor and runtime interface the pac:: operator implementations are written against.
//
// Two implementations, chosen at build time (CMakeLists.txt):
//
// * runtime/classic.h: torch's C++ API (ATen). Compiled against one torch release, it loads into
//   that release only. Used for torch < 2.10 and for the CUDA kernels.
// * runtime/stable.h (PAC_STABLE_ABI): LibTorch's stable ABI (torch/csrc/stable, torch/headeronly),
//   built with TORCH_TARGET_VERSION 2.10: one build serves every torch release from 2.10 on.
//
// Both provide, in namespace pac::rt: Tensor (with the methods of at::Tensor the kernels use:
// sizes, size, dim, numel, defined, scalar_type, device, options, data_ptr<T>, narrow, select,
// slice, view, t, permute, unsqueeze, expand, expand_as, contiguous, copy_, zero_, add_, addmm_),
// OptTensor, IntArr, BoolList, Options, empty, zeros, mm_out, addmm_out, parallel_for,
// get_num_threads, NoAutogradGuard (plain tensor math below autograd), fail (throws the
// RuntimeError Python sees), warn, and PAC_DISPATCH_FLOATING_TYPES (float32 and float64).
#pragma once

#if defined(PAC_STABLE_ABI)
#include "runtime/stable.h"
#else
#include "runtime/classic.h"
#endif

// Runs __VA_ARGS__ (a lambda) with scalar_t = float or double for the dtype `type`; any other
// dtype is an internal error (the argument checks reject it before).
#define PAC_DISPATCH_FLOATING_TYPES(type, name, ...)                                   \
  [&] {                                                                                \
    switch (type) {                                                                    \
      case ::pac::rt::ScalarType::Float: {                                             \
        using scalar_t = float;                                                        \
        return __VA_ARGS__();                                                          \
      }                                                                                \
      case ::pac::rt::ScalarType::Double: {                                            \
        using scalar_t = double;                                                       \
        return __VA_ARGS__();                                                          \
      }                                                                                \
      default:                                                                         \
        ::pac::rt::fail(std::string(name) + ": internal error: dtype is not float32 or " \
                        "float64");                                                    \
    }                                                                                  \
  }()
