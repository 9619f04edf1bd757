// pac::rt on LibTorch's stable ABI (see runtime/runtime.h). Built with TORCH_TARGET_VERSION 2.10:
// only the C shims of torch/csrc/stable, torch/headeronly and the AOTInductor C shims
// (aoti_torch_*) are used, so the library loads into every torch release from 2.10 on.
//
// * Views (narrow, select, slice, t, permute, unsqueeze, expand) are made here from sizes and
//   strides (aoti_torch__reinterpret_tensor): metadata only, no dispatcher call.
// * view, contiguous, copy_, zero_ and empty go through the stable dispatcher (torch::stable ops).
// * GEMMs: the AOTInductor CPU shims of aten::mm.out and aten::addmm.out.
// * NoAutogradGuard turns grad mode off: the out= GEMMs and in-place ops then never meet
//   autograd's "out= does not support automatic differentiation" check.
#pragma once

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/inductor/aoti_torch/generated/c_shim_cpu.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/DeviceType.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/HeaderOnlyArrayRef.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pac {
namespace rt {

using ScalarType = torch::headeronly::ScalarType;
using DeviceType = torch::headeronly::DeviceType;
using Device = torch::stable::Device;
using IntArr = torch::headeronly::IntHeaderOnlyArrayRef;
using BoolList = std::vector<bool>;
constexpr auto nullopt = std::nullopt;

// What at::TensorOptions is to at::empty: the dtype and device of a new tensor.
struct Options {
  ScalarType dtype;
  Device device;
};

// Throws the exception Python sees as RuntimeError(message).
[[noreturn]] inline void fail(const std::string& message) { throw std::runtime_error(message); }

// A Python warning (torch's TORCH_WARN).
inline void warn(const std::string& message) {
  aoti_torch_warn("pac_core", __FILE__, static_cast<uint32_t>(__LINE__), message.c_str());
}

inline void check_call(AOTITorchError err, const char* what) {
  if (err != AOTI_TORCH_SUCCESS) fail(std::string("pac: ") + what + " failed");
}

// torch::stable::Tensor with the at::Tensor methods the kernels use.
class Tensor : public torch::stable::Tensor {
 public:
  Tensor() = default;
  /* implicit */ Tensor(const torch::stable::Tensor& t) : torch::stable::Tensor(t) {}
  /* implicit */ Tensor(torch::stable::Tensor&& t) : torch::stable::Tensor(std::move(t)) {}

  // The data pointer as T* (the dtype is the checked one of the op's arguments).
  template <typename T>
  T* data_ptr() const {
    return static_cast<T*>(torch::stable::Tensor::data_ptr());
  }

  Options options() const { return {scalar_type(), device()}; }

  // A tensor on the same storage with these sizes and strides, its storage offset `offset`
  // elements past this one's.
  Tensor strided(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides,
                 int64_t offset) const {
    AtenTensorHandle h = nullptr;
    check_call(aoti_torch__reinterpret_tensor(get(), static_cast<int64_t>(sizes.size()),
                                              sizes.data(), strides.data(), offset, &h),
               "a tensor view");
    return Tensor(torch::stable::Tensor(h));
  }

  Tensor narrow(int64_t dim, int64_t start, int64_t length) const {
    dim = wrap(dim);
    std::vector<int64_t> sz = vec(sizes()), sd = vec(strides());
    if (start < 0) start += sz[dim];
    if (start < 0 || length < 0 || start + length > sz[dim])
      fail("pac: internal error: narrow out of range");
    sz[dim] = length;
    return strided(sz, sd, start * sd[dim]);
  }

  Tensor select(int64_t dim, int64_t index) const {
    dim = wrap(dim);
    std::vector<int64_t> sz = vec(sizes()), sd = vec(strides());
    if (index < 0) index += sz[dim];
    if (index < 0 || index >= sz[dim]) fail("pac: internal error: select out of range");
    const int64_t offset = index * sd[dim];
    sz.erase(sz.begin() + dim);
    sd.erase(sd.begin() + dim);
    return strided(sz, sd, offset);
  }

  // Elements start, start + step, ... below end (clamped to the size, as at::Tensor::slice).
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const {
    dim = wrap(dim);
    std::vector<int64_t> sz = vec(sizes()), sd = vec(strides());
    const int64_t n = sz[dim];
    if (step < 1) fail("pac: internal error: slice step must be positive");
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = std::min(std::max<int64_t>(start, 0), n);
    end = std::min(std::max(end, start), n);
    sz[dim] = (end - start + step - 1) / step;
    const int64_t offset = start * sd[dim];
    sd[dim] *= step;
    return strided(sz, sd, offset);
  }

  Tensor t() const {
    if (dim() != 2) fail("pac: internal error: t() of a tensor that is not 2-D");
    return permute({1, 0});
  }

  Tensor permute(IntArr dims) const {
    const std::vector<int64_t> sz0 = vec(sizes()), sd0 = vec(strides());
    if (dims.size() != sz0.size()) fail("pac: internal error: permute rank mismatch");
    std::vector<int64_t> sz(sz0.size()), sd(sz0.size());
    for (size_t i = 0; i < dims.size(); ++i) {
      const int64_t d = wrap(dims[i]);
      sz[i] = sz0[d];
      sd[i] = sd0[d];
    }
    return strided(sz, sd, 0);
  }

  Tensor unsqueeze(int64_t d) const {
    std::vector<int64_t> sz = vec(sizes()), sd = vec(strides());
    const int64_t n = static_cast<int64_t>(sz.size());
    if (d < 0) d += n + 1;
    if (d < 0 || d > n) fail("pac: internal error: unsqueeze out of range");
    const int64_t stride = d < n ? sz[d] * sd[d] : 1;
    sz.insert(sz.begin() + d, 1);
    sd.insert(sd.begin() + d, stride);
    return strided(sz, sd, 0);
  }

  // Broadcast to `size` (size-1 dims and new leading dims get stride 0; -1 keeps a size).
  Tensor expand(IntArr size) const {
    const std::vector<int64_t> sz0 = vec(sizes()), sd0 = vec(strides());
    const int64_t n = static_cast<int64_t>(size.size()), lead = n - static_cast<int64_t>(sz0.size());
    if (lead < 0) fail("pac: internal error: expand to fewer dims");
    std::vector<int64_t> sz(n), sd(n);
    for (int64_t i = 0; i < n; ++i) {
      if (i < lead) {
        sz[i] = size[i];
        sd[i] = 0;
        continue;
      }
      const int64_t have = sz0[i - lead];
      const int64_t want = size[i] == -1 ? have : size[i];
      if (have != want && have != 1) fail("pac: internal error: expand of a non-singleton dim");
      sz[i] = want;
      sd[i] = have == want ? sd0[i - lead] : 0;
    }
    return strided(sz, sd, 0);
  }

  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }

  Tensor view(IntArr size) const { return torch::stable::view(*this, size); }

  Tensor contiguous() const {
    return is_contiguous() ? *this : Tensor(torch::stable::contiguous(*this));
  }

  const Tensor& copy_(const Tensor& src) const {
    torch::stable::Tensor self = *this;
    torch::stable::copy_(self, src);
    return *this;
  }

  const Tensor& zero_() const {
    torch::stable::Tensor self = *this;
    torch::stable::zero_(self);
    return *this;
  }

  // this += other (other broadcast to this tensor's sizes). CPU, float32 / float64.
  const Tensor& add_(const Tensor& other) const {
    const Tensor src = other.expand(sizes());
    if (scalar_type() == ScalarType::Float) {
      add_strided<float>(src);
    } else if (scalar_type() == ScalarType::Double) {
      add_strided<double>(src);
    } else {
      fail("pac: internal error: add_ of a tensor that is not float32 or float64");
    }
    return *this;
  }

  // this += a @ b (CPU).
  const Tensor& addmm_(const Tensor& a, const Tensor& b) const {
    check_call(aoti_torch_cpu_addmm_out(get(), get(), a.get(), b.get(), 1.0, 1.0), "addmm_");
    return *this;
  }

 private:
  static std::vector<int64_t> vec(IntArr a) { return std::vector<int64_t>(a.begin(), a.end()); }

  int64_t wrap(int64_t d) const {
    const int64_t n = dim();
    if (d < 0) d += n;
    if (d < 0 || d >= n) fail("pac: internal error: dimension out of range");
    return d;
  }

  // this[i] += src[i] over every index (src: same sizes, any strides).
  template <typename T>
  void add_strided(const Tensor& src) const {
    const int64_t n = dim();
    const std::vector<int64_t> sz = vec(sizes()), sd = vec(strides()), ss = vec(src.strides());
    for (int64_t s : sz)
      if (s == 0) return;
    T* d = data_ptr<T>();
    const T* s = src.data_ptr<T>();
    std::vector<int64_t> idx(n, 0);
    int64_t od = 0, os = 0;
    while (true) {
      d[od] += s[os];
      int64_t i = n - 1;
      for (; i >= 0; --i) {
        if (++idx[i] < sz[i]) {
          od += sd[i];
          os += ss[i];
          break;
        }
        od -= (sz[i] - 1) * sd[i];
        os -= (sz[i] - 1) * ss[i];
        idx[i] = 0;
      }
      if (i < 0) break;
    }
  }
};

using OptTensor = std::optional<Tensor>;

inline OptTensor to_opt(const std::optional<torch::stable::Tensor>& t) {
  return t.has_value() ? OptTensor(Tensor(*t)) : OptTensor();
}

inline Tensor empty(IntArr size, const Options& options) {
  return torch::stable::empty(size, options.dtype, std::nullopt, options.device);
}

inline Tensor zeros(IntArr size, const Options& options) {
  Tensor t = empty(size, options);
  t.zero_();
  return t;
}

// out = a @ b; out = self + a @ b (CPU tensors).
inline void mm_out(const Tensor& out, const Tensor& a, const Tensor& b) {
  check_call(aoti_torch_cpu_mm_out(out.get(), a.get(), b.get()), "mm_out");
}
inline void addmm_out(const Tensor& out, const Tensor& self, const Tensor& a, const Tensor& b) {
  check_call(aoti_torch_cpu_addmm_out(out.get(), self.get(), a.get(), b.get(), 1.0, 1.0),
             "addmm_out");
}

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  torch::stable::parallel_for(begin, end, grain, f);
}
inline int64_t get_num_threads() { return static_cast<int64_t>(torch::stable::get_num_threads()); }

// Grad mode off for the guard's lifetime (this thread).
class NoAutogradGuard {
 public:
  NoAutogradGuard() : previous_(aoti_torch_grad_mode_is_enabled()) {
    aoti_torch_grad_mode_set_enabled(false);
  }
  ~NoAutogradGuard() { aoti_torch_grad_mode_set_enabled(previous_); }
  NoAutogradGuard(const NoAutogradGuard&) = delete;
  NoAutogradGuard& operator=(const NoAutogradGuard&) = delete;

 private:
  bool previous_;
};

// Device and dtype names as torch prints them.
inline std::string device_type_name(DeviceType t) {
  switch (t) {
    case DeviceType::CPU: return "CPU";
    case DeviceType::CUDA: return "CUDA";
    case DeviceType::Meta: return "Meta";
    case DeviceType::XPU: return "XPU";
    case DeviceType::MPS: return "MPS";
    case DeviceType::HIP: return "HIP";
    default: return "device type " + std::to_string(static_cast<int>(t));
  }
}

inline std::string device_str(const Device& d) {
  std::string name = device_type_name(d.type());
  for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (d.has_index()) name += ":" + std::to_string(static_cast<int>(d.index()));
  return name;
}

inline std::string scalar_type_str(ScalarType t) {
  return "dtype " + std::to_string(static_cast<int>(t));
}

}  // namespace rt
}  // namespace pac
