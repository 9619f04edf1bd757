// Registration of the pac:: CPU kernels and the choice of their instruction set (see isa.h).
#if defined(PAC_STABLE_ABI)
#include <torch/csrc/stable/library.h>
#else
#include <torch/library.h>
#endif

#include <cstdlib>
#include <string>
#include <vector>

#include "cpu/isa.h"

namespace pac {
namespace cpu {

// One table per compiled instruction set (defined in the pac_cpu.cpp compiled for it).
namespace baseline { const CpuOps& ops(); }
#ifdef PAC_HAVE_AVX2
namespace avx2 { const CpuOps& ops(); }
#endif
#ifdef PAC_HAVE_AVX512
namespace avx512 { const CpuOps& ops(); }
#endif

namespace {

struct IsaEntry {
  const char* name;
  const CpuOps& (*ops)();
  bool (*supported)();
};

bool always() { return true; }
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool has_avx512() {
  __builtin_cpu_init();
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}
#else
bool has_avx2() { return false; }
bool has_avx512() { return false; }
#endif

const std::vector<IsaEntry>& entries() {
  static const std::vector<IsaEntry> e = {
      {"baseline", &baseline::ops, &always},
#ifdef PAC_HAVE_AVX2
      {"avx2", &avx2::ops, &has_avx2},
#endif
#ifdef PAC_HAVE_AVX512
      {"avx512", &avx512::ops, &has_avx512},
#endif
  };
  return e;
}

// The widest supported set, or the one PAC_CPU_ISA names when it is compiled and supported
// (otherwise a warning and the widest).
const CpuOps* choose() {
  const CpuOps* best = nullptr;
  for (const IsaEntry& e : entries())
    if (e.supported()) best = &e.ops();
  const char* env = std::getenv("PAC_CPU_ISA");
  if (env != nullptr && *env != '\0') {
    for (const IsaEntry& e : entries())
      if (e.name == std::string(env)) {
        if (e.supported()) return &e.ops();
        break;
      }
    std::string names;
    for (const IsaEntry& e : entries()) names += std::string(names.empty() ? "" : ", ") + e.name;
    rt::warn(std::string("pac_core: PAC_CPU_ISA=") + env + " is not a compiled instruction set "
             "that this processor supports (compiled: " + names + "); using " + best->name);
  }
  return best;
}

const CpuOps*& active() {
  static const CpuOps* a = choose();
  return a;
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> v;
  for (const IsaEntry& e : entries()) v.emplace_back(e.name);
  return v;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> v;
  for (const IsaEntry& e : entries())
    if (e.supported()) v.emplace_back(e.name);
  return v;
}

std::string active_isa() { return active()->name; }

const CpuOps& active_ops() { return *active(); }

std::string set_active_isa(const std::string& name) {
  const std::string previous = active_isa();
  for (const IsaEntry& e : entries())
    if (name == e.name) {
      if (!e.supported())
        rt::fail("pac_core: instruction set '" + name +
                 "' is compiled in but this processor does not support it");
      active() = &e.ops();
      return previous;
    }
  rt::fail("pac_core: instruction set '" + name + "' is not compiled in");
}

namespace {

// The argument and result types of the registered kernels: those of the tensor API the
// registration uses (the stable ABI's boxed calling convention, TORCH_BOX, knows
// torch::stable::Tensor, not pac::rt::Tensor).
#if defined(PAC_STABLE_ABI)
using ArgTensor = torch::stable::Tensor;
using ArgOptTensor = std::optional<torch::stable::Tensor>;
OptTensor opt(const ArgOptTensor& t) { return rt::to_opt(t); }
#else
using ArgTensor = Tensor;
using ArgOptTensor = OptTensor;
const OptTensor& opt(const OptTensor& t) { return t; }
#endif
using ArgGrad6 = std::tuple<ArgTensor, ArgTensor, ArgTensor, ArgTensor, ArgTensor, ArgTensor>;
using ArgGrad3 = std::tuple<ArgTensor, ArgTensor, ArgTensor>;

// Forwarders with the operators' exact signatures: the dispatcher sees one kernel per op.
ArgTensor conv2d_guided(const ArgTensor& input, const ArgTensor& guidance, const ArgTensor& phi,
                        const ArgTensor& weight, const ArgOptTensor& bias,
                        const ArgOptTensor& alpha, const ArgOptTensor& lambda, IntArr stride,
                        IntArr padding, IntArr dilation, IntArr upsample, IntArr gstride,
                        IntArr gpadding, int64_t groups, int64_t kernel_type, bool asym) {
  return active_ops().conv2d_guided(input, guidance, phi, weight, opt(bias), opt(alpha),
                                    opt(lambda), stride, padding, dilation, upsample, gstride,
                                    gpadding, groups, kernel_type, asym);
}

ArgGrad6 conv2d_guided_backward(const ArgTensor& grad, const ArgTensor& input,
                                const ArgTensor& guidance, const ArgTensor& phi,
                                const ArgTensor& weight, const ArgOptTensor& alpha,
                                const ArgOptTensor& lambda, IntArr stride, IntArr padding,
                                IntArr dilation, IntArr upsample, IntArr gstride,
                                IntArr gpadding, int64_t groups, int64_t kernel_type, bool asym,
                                const BoolList& output_mask) {
  return active_ops().conv2d_guided_backward(grad, input, guidance, phi, weight, opt(alpha),
                                             opt(lambda), stride, padding, dilation, upsample,
                                             gstride, gpadding, groups, kernel_type, asym,
                                             output_mask);
}

ArgTensor pool2d_guided(const ArgTensor& input, const ArgTensor& guidance, const ArgTensor& phi,
                        const ArgOptTensor& weight, const ArgOptTensor& alpha,
                        const ArgOptTensor& lambda, IntArr kernel_size, IntArr stride,
                        IntArr padding, IntArr dilation, IntArr upsample, IntArr gstride,
                        IntArr gpadding, int64_t kernel_type, bool asym, bool channel_wise) {
  return active_ops().pool2d_guided(input, guidance, phi, opt(weight), opt(alpha), opt(lambda),
                                    kernel_size, stride, padding, dilation, upsample, gstride,
                                    gpadding, kernel_type, asym, channel_wise);
}

ArgGrad6 pool2d_guided_backward(const ArgTensor& grad, const ArgTensor& input,
                                const ArgTensor& guidance, const ArgTensor& phi,
                                const ArgOptTensor& weight, const ArgOptTensor& alpha,
                                const ArgOptTensor& lambda, IntArr kernel_size, IntArr stride,
                                IntArr padding, IntArr dilation, IntArr upsample, IntArr gstride,
                                IntArr gpadding, int64_t kernel_type, bool asym,
                                bool channel_wise, const BoolList& output_mask) {
  return active_ops().pool2d_guided_backward(grad, input, guidance, phi, opt(weight), opt(alpha),
                                             opt(lambda), kernel_size, stride, padding, dilation,
                                             upsample, gstride, gpadding, kernel_type, asym,
                                             channel_wise, output_mask);
}

ArgTensor conv2d_kernel(const ArgTensor& input, const ArgTensor& kernel, const ArgTensor& weight,
                        const ArgOptTensor& bias, IntArr stride, IntArr padding, IntArr dilation,
                        IntArr upsample, int64_t groups) {
  return active_ops().conv2d_kernel(input, kernel, weight, opt(bias), stride, padding, dilation,
                                    upsample, groups);
}

ArgGrad3 conv2d_kernel_backward(const ArgTensor& grad, const ArgTensor& input,
                                const ArgTensor& kernel, const ArgTensor& weight, IntArr stride,
                                IntArr padding, IntArr dilation, IntArr upsample, int64_t groups,
                                const BoolList& output_mask) {
  return active_ops().conv2d_kernel_backward(grad, input, kernel, weight, stride, padding,
                                             dilation, upsample, groups, output_mask);
}

ArgTensor pool2d_kernel(const ArgTensor& input, const ArgTensor& kernel,
                        const ArgOptTensor& weight, IntArr stride, IntArr padding,
                        IntArr dilation, IntArr upsample) {
  return active_ops().pool2d_kernel(input, kernel, opt(weight), stride, padding, dilation,
                                    upsample);
}

ArgGrad3 pool2d_kernel_backward(const ArgTensor& grad, const ArgTensor& input,
                                const ArgTensor& kernel, const ArgOptTensor& weight,
                                IntArr stride, IntArr padding, IntArr dilation, IntArr upsample,
                                const BoolList& output_mask) {
  return active_ops().pool2d_kernel_backward(grad, input, kernel, opt(weight), stride, padding,
                                             dilation, upsample, output_mask);
}

}  // namespace

#if defined(PAC_STABLE_ABI)
#define PAC_KERNEL(fn) TORCH_BOX(&fn)
STABLE_TORCH_LIBRARY_IMPL(pac, CPU, m) {
#else
#define PAC_KERNEL(fn) &fn
TORCH_LIBRARY_IMPL(pac, CPU, m) {
#endif
  m.impl("conv2d_guided", PAC_KERNEL(conv2d_guided));
  m.impl("conv2d_guided_backward", PAC_KERNEL(conv2d_guided_backward));
  m.impl("pool2d_guided", PAC_KERNEL(pool2d_guided));
  m.impl("pool2d_guided_backward", PAC_KERNEL(pool2d_guided_backward));
  m.impl("conv2d_kernel", PAC_KERNEL(conv2d_kernel));
  m.impl("conv2d_kernel_backward", PAC_KERNEL(conv2d_kernel_backward));
  m.impl("pool2d_kernel", PAC_KERNEL(pool2d_kernel));
  m.impl("pool2d_kernel_backward", PAC_KERNEL(pool2d_kernel_backward));
}
#undef PAC_KERNEL

}  // namespace cpu
}  // namespace pac
