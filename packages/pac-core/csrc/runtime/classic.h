// pac::rt on torch's C++ API (ATen): thin aliases and forwarders (see runtime/runtime.h).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <string>

namespace pac {
namespace rt {

using Tensor = at::Tensor;
using OptTensor = c10::optional<at::Tensor>;
using IntArr = at::IntArrayRef;
using BoolList = c10::List<bool>;
using Options = at::TensorOptions;
using ScalarType = c10::ScalarType;
using DeviceType = c10::DeviceType;
using Device = c10::Device;
constexpr auto nullopt = c10::nullopt;

// Plain tensor math on buffers: no autograd recording (on every thread that does it).
using NoAutogradGuard = at::AutoDispatchBelowADInplaceOrView;

[[noreturn]] inline void fail(const std::string& message) { TORCH_CHECK(false, message); }

inline void warn(const std::string& message) { TORCH_WARN(message); }

inline Tensor empty(IntArr size, const Options& options) { return at::empty(size, options); }
inline Tensor zeros(IntArr size, const Options& options) { return at::zeros(size, options); }

// out = a @ b; out = self + a @ b.
inline void mm_out(Tensor out, const Tensor& a, const Tensor& b) { at::mm_out(out, a, b); }
inline void addmm_out(Tensor out, const Tensor& self, const Tensor& a, const Tensor& b) {
  at::addmm_out(out, self, a, b);
}

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, grain, f);
}
inline int64_t get_num_threads() { return at::get_num_threads(); }

inline std::string device_str(const Device& d) { return d.str(); }
inline std::string device_type_name(DeviceType t) { return c10::DeviceTypeName(t); }
inline std::string scalar_type_str(ScalarType t) { return c10::toString(t); }

}  // namespace rt
}  // namespace pac
