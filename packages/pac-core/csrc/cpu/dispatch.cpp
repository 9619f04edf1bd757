// Registration of the pac:: CPU kernels and the choice of their instruction set (see isa.h).
#include <torch/library.h>

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
    TORCH_WARN("pac_core: PAC_CPU_ISA=", env, " is not a compiled instruction set that this "
               "processor supports (compiled: ", names, "); using ", best->name);
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
      TORCH_CHECK(e.supported(), "pac_core: instruction set '", name,
                  "' is compiled in but this processor does not support it");
      active() = &e.ops();
      return previous;
    }
  TORCH_CHECK(false, "pac_core: instruction set '", name, "' is not compiled in");
  return previous;
}

namespace {

// Forwarders with the operators' exact signatures: the dispatcher sees one kernel per op.
Tensor conv2d_guided(const Tensor& input, const Tensor& guidance, const Tensor& phi,
                     const Tensor& weight, const OptTensor& bias, const OptTensor& alpha,
                     const OptTensor& lambda, IntArr stride, IntArr padding, IntArr dilation,
                     IntArr upsample, IntArr gstride, IntArr gpadding, int64_t groups,
                     int64_t kernel_type, bool asym) {
  return active_ops().conv2d_guided(input, guidance, phi, weight, bias, alpha, lambda, stride,
                                    padding, dilation, upsample, gstride, gpadding, groups,
                                    kernel_type, asym);
}

Grad6 conv2d_guided_backward(const Tensor& grad, const Tensor& input, const Tensor& guidance,
                             const Tensor& phi, const Tensor& weight, const OptTensor& alpha,
                             const OptTensor& lambda, IntArr stride, IntArr padding,
                             IntArr dilation, IntArr upsample, IntArr gstride, IntArr gpadding,
                             int64_t groups, int64_t kernel_type, bool asym,
                             const c10::List<bool>& output_mask) {
  return active_ops().conv2d_guided_backward(grad, input, guidance, phi, weight, alpha, lambda,
                                             stride, padding, dilation, upsample, gstride,
                                             gpadding, groups, kernel_type, asym, output_mask);
}

Tensor pool2d_guided(const Tensor& input, const Tensor& guidance, const Tensor& phi,
                     const OptTensor& weight, const OptTensor& alpha, const OptTensor& lambda,
                     IntArr kernel_size, IntArr stride, IntArr padding, IntArr dilation,
                     IntArr upsample, IntArr gstride, IntArr gpadding, int64_t kernel_type,
                     bool asym, bool channel_wise) {
  return active_ops().pool2d_guided(input, guidance, phi, weight, alpha, lambda, kernel_size,
                                    stride, padding, dilation, upsample, gstride, gpadding,
                                    kernel_type, asym, channel_wise);
}

Grad6 pool2d_guided_backward(const Tensor& grad, const Tensor& input, const Tensor& guidance,
                             const Tensor& phi, const OptTensor& weight, const OptTensor& alpha,
                             const OptTensor& lambda, IntArr kernel_size, IntArr stride,
                             IntArr padding, IntArr dilation, IntArr upsample, IntArr gstride,
                             IntArr gpadding, int64_t kernel_type, bool asym, bool channel_wise,
                             const c10::List<bool>& output_mask) {
  return active_ops().pool2d_guided_backward(grad, input, guidance, phi, weight, alpha, lambda,
                                             kernel_size, stride, padding, dilation, upsample,
                                             gstride, gpadding, kernel_type, asym, channel_wise,
                                             output_mask);
}

Tensor conv2d_kernel(const Tensor& input, const Tensor& kernel, const Tensor& weight,
                     const OptTensor& bias, IntArr stride, IntArr padding, IntArr dilation,
                     IntArr upsample, int64_t groups) {
  return active_ops().conv2d_kernel(input, kernel, weight, bias, stride, padding, dilation,
                                    upsample, groups);
}

Grad3 conv2d_kernel_backward(const Tensor& grad, const Tensor& input, const Tensor& kernel,
                             const Tensor& weight, IntArr stride, IntArr padding, IntArr dilation,
                             IntArr upsample, int64_t groups, const c10::List<bool>& output_mask) {
  return active_ops().conv2d_kernel_backward(grad, input, kernel, weight, stride, padding,
                                             dilation, upsample, groups, output_mask);
}

Tensor pool2d_kernel(const Tensor& input, const Tensor& kernel, const OptTensor& weight,
                     IntArr stride, IntArr padding, IntArr dilation, IntArr upsample) {
  return active_ops().pool2d_kernel(input, kernel, weight, stride, padding, dilation, upsample);
}

Grad3 pool2d_kernel_backward(const Tensor& grad, const Tensor& input, const Tensor& kernel,
                             const OptTensor& weight, IntArr stride, IntArr padding,
                             IntArr dilation, IntArr upsample, const c10::List<bool>& output_mask) {
  return active_ops().pool2d_kernel_backward(grad, input, kernel, weight, stride, padding,
                                             dilation, upsample, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(pac, CPU, m) {
  m.impl("conv2d_guided", &conv2d_guided);
  m.impl("conv2d_guided_backward", &conv2d_guided_backward);
  m.impl("pool2d_guided", &pool2d_guided);
  m.impl("pool2d_guided_backward", &pool2d_guided_backward);
  m.impl("conv2d_kernel", &conv2d_kernel);
  m.impl("conv2d_kernel_backward", &conv2d_kernel_backward);
  m.impl("pool2d_kernel", &pool2d_kernel);
  m.impl("pool2d_kernel_backward", &pool2d_kernel_backward);
}

}  // namespace cpu
}  // namespace pac
