// Runtime instruction-set dispatch of the CPU operators.
//
// csrc/cpu/pac_cpu.cpp is compiled once per instruction set (CMakeLists.txt): a portable
// baseline (the compiler's default x86-64 target, SSE2) and, where the compiler supports them,
// AVX2+FMA and AVX-512 (F, VL, BW, DQ). Each compilation puts its code in its own namespace
// pac::<isa> and exposes the operator implementations through a CpuOps table. dispatch.cpp
// registers the pac:: CPU kernels once and forwards every call to the table chosen at load time
// from CPUID (__builtin_cpu_supports): the widest compiled set the processor and the OS support,
// or the set named by the environment variable PAC_CPU_ISA (baseline, avx2, avx512).
#pragma once

#include "runtime/runtime.h"

#include <array>
#include <string>
#include <tuple>
#include <vector>

namespace pac {
namespace cpu {

using Tensor = rt::Tensor;
using OptTensor = rt::OptTensor;
using IntArr = rt::IntArr;
using BoolList = rt::BoolList;
using Grad6 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;
using Grad3 = std::tuple<Tensor, Tensor, Tensor>;

// The CPU implementations of the pac:: operators (schemas: csrc/ops.cpp).
struct CpuOps {
  const char* name;
  Tensor (*conv2d_guided)(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                          const OptTensor&, const OptTensor&, const OptTensor&, IntArr, IntArr,
                          IntArr, IntArr, IntArr, IntArr, int64_t, int64_t, bool);
  Grad6 (*conv2d_guided_backward)(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const Tensor&, const OptTensor&, const OptTensor&, IntArr,
                                  IntArr, IntArr, IntArr, IntArr, IntArr, int64_t, int64_t, bool,
                                  const BoolList&);
  Tensor (*pool2d_guided)(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                          const OptTensor&, const OptTensor&, IntArr, IntArr, IntArr, IntArr,
                          IntArr, IntArr, IntArr, int64_t, bool, bool);
  Grad6 (*pool2d_guided_backward)(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  const OptTensor&, const OptTensor&, const OptTensor&, IntArr,
                                  IntArr, IntArr, IntArr, IntArr, IntArr, IntArr, int64_t, bool,
                                  bool, const BoolList&);
  Tensor (*conv2d_kernel)(const Tensor&, const Tensor&, const Tensor&, const OptTensor&, IntArr,
                          IntArr, IntArr, IntArr, int64_t);
  Grad3 (*conv2d_kernel_backward)(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                  IntArr, IntArr, IntArr, IntArr, int64_t, const BoolList&);
  Tensor (*pool2d_kernel)(const Tensor&, const Tensor&, const OptTensor&, IntArr, IntArr, IntArr,
                          IntArr);
  Grad3 (*pool2d_kernel_backward)(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                  IntArr, IntArr, IntArr, IntArr, const BoolList&);
  // Vectorised exp(x) of n floats (the one the gaussian kernel uses), for tests.
  void (*exp_float)(const float* x, float* y, int64_t n);
};

// The instruction sets compiled into this build, narrowest first.
std::vector<std::string> compiled_isas();
// Those of compiled_isas() that this processor and OS can run.
std::vector<std::string> supported_isas();
// The instruction set the operators run with now.
std::string active_isa();
// Makes `name` the active set (for tests; not thread-safe against running operators). Throws
// when it is not compiled in or not supported here. Returns the previous one.
std::string set_active_isa(const std::string& name);
// The active table.
const CpuOps& active_ops();

}  // namespace cpu
}  // namespace pac
