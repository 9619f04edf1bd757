// Argument checking and unpacking shared by the device implementations of the pac:: operators
// (csrc/cpu, csrc/cuda). Every input is checked (PAC_CHECK) before any memory is touched;
// the returned Problem holds contiguous tensors and the sizes every driver needs.
//
// The same checks, in the same order and with the same messages, are written once more in
// Python for the fake (meta) kernels: src/pac_core/backends/op_checks.py. Change both together
// (tests/test_fuzz.py compares the two on random calls).
//
// Limits (docs/backends.md, "Invalid arguments"):
// * every geometric value (kernel size, stride, padding, dilation, upsample, guidance stride and
//   padding) lies in [-kMaxGeometry, kMaxGeometry] (strides, dilations, upsample factors and
//   kernel sizes in [1, kMaxGeometry]);
// * per axis, the largest sampled coordinate, (out-1)*stride + |padding| + (k-1)*dilation +
//   (in-1)*upsample, and on the guidance (in-1) + 2|padding| + (k-1)*dilation, fit in int64;
// * the column matrix of one image, max(C, C_K, 1) * kh*kw * H'*W' elements, fits in int64.
// Then every index the kernels compute (csrc/kernels/geometry.h, the tile buffers) is exact:
// nothing downstream can overflow. The products here use checked arithmetic.
#pragma once

#ifdef __CUDACC__
#include <c10/util/safe_numerics.h>
#endif

#include <array>
#include <initializer_list>
#include <utility>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/geometry.h"
#include "runtime/runtime.h"

namespace pac {

// Largest accepted absolute value of one geometric argument: 2^31 - 1.
constexpr int64_t kMaxGeometry = 2147483647;

// Sampling geometry of one op call (per axis: h then w). See kernels/geometry.h.
struct Geometry {
  int64_t kh = 1, kw = 1;    // kernel size
  int64_t sh = 1, sw = 1;    // input stride
  int64_t ph = 0, pw = 0;    // input padding (negative: crop)
  int64_t dh = 1, dw = 1;    // dilation (input and guidance)
  int64_t uh = 1, uw = 1;    // input upsample (zero-insertion) factor
  int64_t gsh = 1, gsw = 1;  // guidance stride
  int64_t gph = 0, gpw = 0;  // guidance padding
};

// A checked op call. Tensors are contiguous (made so by finish_problem, after every check, so
// that no check is preceded by a copy); absent optionals are undefined tensors.
struct Problem {
  rt::Tensor input, guidance, phi, kernel, weight, bias, alpha, lambda;
  bool guided = false;        // kernel from (guidance, phi) rather than `kernel`
  bool pool = false;          // depthwise pool path (optional per-tap weight) vs conv GEMM path
  bool channel_wise = false;  // C_K = C_f (guided pool only)
  int64_t kernel_type = 0;
  bool asym = false;
  int64_t B = 0, C = 0, H = 0, W = 0;  // input
  int64_t Cf = 0, Hg = 0, Wg = 0;      // guidance (guided ops)
  int64_t Ho = 0, Wo = 0;              // output size
  int64_t CK = 1;                      // kernel channels
  int64_t O = 0;                       // output channels
  int64_t groups = 1;
  Geometry geo;
};

// Error messages are built here from strings only (integers through std::to_string, shapes and
// devices by hand) and handed to the check as one std::string. Streaming a number into the
// std::ostringstream that TORCH_CHECK's own formatting uses crashed the process (SIGSEGV in
// std::ostream::_M_insert<long>) for builds on the GPU machine's toolchain (g++ 13.3 from
// /opt/gcc, torch 2.11), whose extension carried its own copy of parts of libstdc++ whose locale
// facets do not match the process's. Strings need no locale facets.
namespace detail {

inline void msg_append(std::string& s, const char* v) { s += v; }
inline void msg_append(std::string& s, const std::string& v) { s += v; }
inline void msg_append(std::string& s, bool v) { s += v ? "true" : "false"; }
template <typename I, typename = std::enable_if_t<std::is_integral_v<I>>>
inline void msg_append(std::string& s, I v) { s += std::to_string(v); }
inline void msg_append(std::string& s, rt::IntArr v) {
  s += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  s += ']';
}
inline void msg_append(std::string& s, const rt::Device& v) { s += rt::device_str(v); }
// dtypes as Python prints them (torch.float32), so that the messages read like the Python
// layer's and match the fake kernels' word for word.
inline std::string dtype_name(rt::ScalarType v) {
  switch (v) {
    case rt::ScalarType::Byte: return "torch.uint8";
    case rt::ScalarType::Char: return "torch.int8";
    case rt::ScalarType::Short: return "torch.int16";
    case rt::ScalarType::Int: return "torch.int32";
    case rt::ScalarType::Long: return "torch.int64";
    case rt::ScalarType::Half: return "torch.float16";
    case rt::ScalarType::Float: return "torch.float32";
    case rt::ScalarType::Double: return "torch.float64";
    case rt::ScalarType::ComplexHalf: return "torch.complex32";
    case rt::ScalarType::ComplexFloat: return "torch.complex64";
    case rt::ScalarType::ComplexDouble: return "torch.complex128";
    case rt::ScalarType::Bool: return "torch.bool";
    case rt::ScalarType::BFloat16: return "torch.bfloat16";
    default: return rt::scalar_type_str(v);
  }
}
inline void msg_append(std::string& s, rt::ScalarType v) { s += dtype_name(v); }

template <typename... Args>
std::string msg(const Args&... args) {
  std::string s;
  (msg_append(s, args), ...);
  return s;
}

}  // namespace detail

// A check with a message made by detail::msg (evaluated only when the check fails); a failure
// raises RuntimeError(message) in Python.
#define PAC_CHECK(cond, ...)                                \
  do {                                                      \
    if (!(cond)) ::pac::rt::fail(::pac::detail::msg(__VA_ARGS__)); \
  } while (0)

namespace detail {

// a + b and a * b, or false when the result does not fit in int64.
inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
  return !__builtin_add_overflow(a, b, out);
#else
  return !c10::add_overflows(a, b, out);
#endif
}
inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
  return !__builtin_mul_overflow(a, b, out);
#else
  return !c10::mul_overflows(a, b, out);
#endif
}

// Sum of products sum_i a[i] * b[i] (all >= 0), or -1 when it does not fit in int64.
inline int64_t checked_dot(std::initializer_list<std::pair<int64_t, int64_t>> terms) {
  int64_t total = 0;
  for (const auto& t : terms) {
    int64_t prod = 0;
    if (!checked_mul(t.first, t.second, &prod) || !checked_add(total, prod, &total)) return -1;
  }
  return total;
}

// Both values in [lo, hi].
inline void check_range(const char* op, const char* name, int64_t v0, int64_t v1, int64_t lo,
                        int64_t hi) {
  const int64_t v[2] = {v0, v1};
  PAC_CHECK(v0 >= lo && v0 <= hi && v1 >= lo && v1 <= hi, op, ": ", name, " must be in [", lo,
            ", ", hi, "], got ", rt::IntArr(v, 2));
}

// A geometry pair (h, w) with each element in [minimum, kMaxGeometry].
inline std::array<int64_t, 2> pair_arg(const char* op, rt::IntArr v, const char* name,
                                       int64_t minimum) {
  PAC_CHECK(v.size() == 2, op, ": ", name, " must have 2 elements (h, w), got ", v.size());
  check_range(op, name, v[0], v[1], minimum, kMaxGeometry);
  return {v[0], v[1]};
}

inline void check_tensor(const char* op, const rt::Tensor& t, const char* name, int64_t ndim,
                         const rt::Tensor& ref, rt::DeviceType device_type) {
  PAC_CHECK(t.defined(), op, ": ", name, " is undefined");
  PAC_CHECK(t.device().type() == device_type, op, ": ", name, " must be a ",
              rt::device_type_name(device_type), " tensor, got device ", t.device());
  PAC_CHECK(t.scalar_type() == rt::ScalarType::Float || t.scalar_type() == rt::ScalarType::Double, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
  if (ref.defined()) {
    PAC_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
                t.scalar_type(), " but input has ", ref.scalar_type());
    PAC_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(),
                " but input is on ", ref.device());
  }
  if (ndim >= 0) {
    PAC_CHECK(t.dim() == ndim, op, ": ", name, " must be ", ndim, "-D, got shape ", t.sizes());
  }
}

inline void check_inv_param(const char* op, const rt::Tensor& t, const char* name, int64_t ck,
                            const rt::Tensor& ref, rt::DeviceType dt) {
  check_tensor(op, t, name, -1, ref, dt);
  PAC_CHECK(t.dim() <= 1, op, ": ", name, " must be 0-D or 1-D, got shape ", t.sizes());
  if (ck == 1) {
    PAC_CHECK(t.numel() == 1, op, ": ", name,
              " must have 1 element (the kernel has one channel), got ", t.numel());
  } else {
    PAC_CHECK(t.numel() == 1 || t.numel() == ck, op, ": ", name, " must have 1 or ", ck,
              " elements (one per kernel channel), got ", t.numel());
  }
}

// Guidance extent along one axis: (in-1) + 2|padding| + (k-1)*dilation fits in int64, so that
// the window count and the guidance taps are exact.
inline void check_guidance_extent(const char* op, const char* axis, int64_t in, int64_t k,
                                  int64_t padding, int64_t dilation) {
  const int64_t pad = padding < 0 ? -padding : padding;
  const int64_t e = checked_dot({{std::max<int64_t>(in, 1) - 1, 1}, {pad, 2}, {k - 1, dilation}});
  PAC_CHECK(e >= 0, op, ": guidance geometry too large along ", axis,
            ": (in - 1) + 2*|guidance_padding| + (k - 1)*dilation overflows int64 (in=", in,
            ", guidance_padding=", padding, ", k=", k, ", dilation=", dilation, ")");
}

}  // namespace detail

// Checks the common (input, geometry) part; fills p.geo (except kernel size), p.B/C/H/W.
inline void check_input_geometry(const char* op, Problem& p, const rt::Tensor& input,
                                 rt::IntArr stride, rt::IntArr padding,
                                 rt::IntArr dilation, rt::IntArr upsample,
                                 rt::DeviceType dt) {
  detail::check_tensor(op, input, "input", 4, rt::Tensor(), dt);
  auto s = detail::pair_arg(op, stride, "stride", 1);
  auto pd = detail::pair_arg(op, padding, "padding", -kMaxGeometry);
  auto d = detail::pair_arg(op, dilation, "dilation", 1);
  auto u = detail::pair_arg(op, upsample, "upsample", 1);
  p.geo.sh = s[0]; p.geo.sw = s[1];
  p.geo.ph = pd[0]; p.geo.pw = pd[1];
  p.geo.dh = d[0]; p.geo.dw = d[1];
  p.geo.uh = u[0]; p.geo.uw = u[1];
  p.B = input.size(0); p.C = input.size(1); p.H = input.size(2); p.W = input.size(3);
  p.input = input;
}

// Guidance, phi and the kernel function parameters of the guided ops. Needs p.geo.kh/kw set.
inline void check_guidance(const char* op, Problem& p, const rt::Tensor& guidance,
                           const rt::Tensor& phi, const rt::OptTensor& alpha,
                           const rt::OptTensor& lambda,
                           rt::IntArr guidance_stride, rt::IntArr guidance_padding,
                           int64_t kernel_type, bool asym, bool channel_wise,
                           rt::DeviceType dt) {
  const rt::Tensor& ref = p.input;
  detail::check_tensor(op, guidance, "guidance", 4, ref, dt);
  detail::check_tensor(op, phi, "phi", 4, ref, dt);
  auto gs = detail::pair_arg(op, guidance_stride, "guidance_stride", 1);
  auto gp = detail::pair_arg(op, guidance_padding, "guidance_padding", -kMaxGeometry);
  p.geo.gsh = gs[0]; p.geo.gsw = gs[1];
  p.geo.gph = gp[0]; p.geo.gpw = gp[1];
  PAC_CHECK(kernel_type == kernels::kGaussian || kernel_type == kernels::kInv, op,
              ": kernel_type must be 0 (gaussian) or 1 (inv), got ", kernel_type);
  p.guided = true;
  p.kernel_type = kernel_type;
  p.asym = asym;
  p.channel_wise = channel_wise;
  p.Cf = guidance.size(1); p.Hg = guidance.size(2); p.Wg = guidance.size(3);
  PAC_CHECK(guidance.size(0) == p.B, op, ": guidance batch ", guidance.size(0),
              " != input batch ", p.B);
  detail::check_guidance_extent(op, "h", p.Hg, p.geo.kh, p.geo.gph, p.geo.dh);
  detail::check_guidance_extent(op, "w", p.Wg, p.geo.kw, p.geo.gpw, p.geo.dw);
  const int64_t ho = kernels::conv_out_size(p.Hg, p.geo.kh, p.geo.gsh, p.geo.gph, p.geo.dh);
  const int64_t wo = kernels::conv_out_size(p.Wg, p.geo.kw, p.geo.gsw, p.geo.gpw, p.geo.dw);
  PAC_CHECK(ho >= 1 && wo >= 1, op, ": no kernel window fits the guidance ", guidance.sizes(),
              " with kernel size (", p.geo.kh, ", ", p.geo.kw, ")");
  PAC_CHECK(phi.size(0) == p.B && phi.size(1) == p.Cf && phi.size(2) == ho && phi.size(3) == wo,
              op, ": phi must have shape [", p.B, ", ", p.Cf, ", ", ho, ", ", wo,
              "] (batch, guidance channels, kernel windows on the guidance), got ", phi.sizes());
  p.Ho = ho; p.Wo = wo;
  p.CK = channel_wise ? p.Cf : 1;
  if (kernel_type == kernels::kInv) {
    PAC_CHECK(alpha.has_value() && alpha->defined() && lambda.has_value() && lambda->defined(),
                op, ": the inv kernel needs inv_alpha and inv_lambda");
  }
  if (alpha.has_value() && alpha->defined()) {
    detail::check_inv_param(op, *alpha, "inv_alpha", p.CK, ref, dt);
    p.alpha = *alpha;
  }
  if (lambda.has_value() && lambda->defined()) {
    detail::check_inv_param(op, *lambda, "inv_lambda", p.CK, ref, dt);
    p.lambda = *lambda;
  }
  p.guidance = guidance;
  p.phi = phi;
}

// Precomputed kernel [B, C_K, kh, kw, H', W']; sets kernel size, CK and the output size.
inline void check_kernel(const char* op, Problem& p, const rt::Tensor& kernel,
                         rt::DeviceType dt) {
  detail::check_tensor(op, kernel, "kernel", 6, p.input, dt);
  PAC_CHECK(kernel.size(0) == p.B, op, ": kernel batch ", kernel.size(0), " != input batch ",
              p.B);
  PAC_CHECK(kernel.size(1) >= 1 && kernel.size(2) >= 1 && kernel.size(3) >= 1 &&
                  kernel.size(4) >= 1 && kernel.size(5) >= 1,
              op, ": kernel must have non-empty channel, tap and spatial dims, got ",
              kernel.sizes());
  detail::check_range(op, "kernel tap dims (kernel.shape[2:4])", kernel.size(2), kernel.size(3),
                      1, kMaxGeometry);
  p.CK = kernel.size(1);
  p.geo.kh = kernel.size(2); p.geo.kw = kernel.size(3);
  p.Ho = kernel.size(4); p.Wo = kernel.size(5);
  p.kernel = kernel;
}

// Conv weight [O, C/groups, kh, kw] and bias [O].
inline void check_conv_weight(const char* op, Problem& p, const rt::Tensor& weight,
                              const rt::OptTensor& bias, int64_t groups,
                              rt::DeviceType dt) {
  detail::check_tensor(op, weight, "weight", 4, p.input, dt);
  PAC_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
  PAC_CHECK(p.C % groups == 0 && weight.size(0) % groups == 0, op, ": input channels ", p.C,
              " and output channels ", weight.size(0), " must be divisible by groups=", groups);
  PAC_CHECK(weight.size(1) == p.C / groups, op, ": weight ", weight.sizes(),
              " does not fit input channels ", p.C, " with groups=", groups,
              " (expected [C_out, C_in/groups, kh, kw])");
  detail::check_range(op, "weight kernel size (weight.shape[2:4])", weight.size(2),
                      weight.size(3), 1, kMaxGeometry);
  p.O = weight.size(0);
  p.groups = groups;
  p.geo.kh = weight.size(2);
  p.geo.kw = weight.size(3);
  p.weight = weight;
  if (bias.has_value() && bias->defined()) {
    detail::check_tensor(op, *bias, "bias", 1, p.input, dt);
    PAC_CHECK(bias->size(0) == p.O, op, ": bias must have ", p.O, " elements, got ",
                bias->sizes());
    p.bias = *bias;
  }
}

// Optional per-tap weight [1, 1, kh, kw] of the pool path (shared filters).
inline void check_pool_weight(const char* op, Problem& p, const rt::OptTensor& weight,
                              rt::DeviceType dt) {
  if (weight.has_value() && weight->defined()) {
    detail::check_tensor(op, *weight, "weight", 4, p.input, dt);
    PAC_CHECK(weight->size(0) == 1 && weight->size(1) == 1 && weight->size(2) == p.geo.kh &&
                    weight->size(3) == p.geo.kw,
                op, ": weight must have shape [1, 1, ", p.geo.kh, ", ", p.geo.kw, "], got ",
                weight->sizes());
    p.weight = *weight;
  }
}

// Pool channel broadcasting as in torch: C and C_K equal or one of them 1; out channels C_K when
// C is 1, else C (so 0 input channels give 0 output channels).
inline void check_pool_channels(const char* op, Problem& p) {
  PAC_CHECK(p.C == p.CK || p.C == 1 || p.CK == 1, op, ": input channels ", p.C,
              " and kernel channels ", p.CK, " must be equal or one of them 1");
  p.pool = true;
  p.O = p.C == 1 ? p.CK : p.C;
}

// Size limits of a whole call (see the top of this file); run last, when every size is known.
inline void check_extents(const char* op, const Problem& p) {
  const Geometry& g = p.geo;
  const char* axes[2] = {"h", "w"};
  const int64_t out[2] = {p.Ho, p.Wo}, in[2] = {p.H, p.W}, k[2] = {g.kh, g.kw};
  const int64_t s[2] = {g.sh, g.sw}, pd[2] = {g.ph, g.pw}, d[2] = {g.dh, g.dw};
  const int64_t u[2] = {g.uh, g.uw};
  for (int i = 0; i < 2; ++i) {
    const int64_t pad = pd[i] < 0 ? -pd[i] : pd[i];
    const int64_t e = detail::checked_dot({{std::max<int64_t>(out[i], 1) - 1, s[i]}, {pad, 1},
                                           {k[i] - 1, d[i]},
                                           {std::max<int64_t>(in[i], 1) - 1, u[i]}});
    PAC_CHECK(e >= 0, op, ": geometry too large along ", axes[i],
              ": (out - 1)*stride + |padding| + (k - 1)*dilation + (in - 1)*upsample overflows "
              "int64 (out=", out[i], ", stride=", s[i], ", padding=", pd[i], ", k=", k[i],
              ", dilation=", d[i], ", in=", in[i], ", upsample=", u[i], ")");
  }
  int64_t cols = std::max<int64_t>({p.C, p.CK, 1});
  const bool ok = detail::checked_mul(cols, g.kh, &cols) && detail::checked_mul(cols, g.kw, &cols) &&
                  detail::checked_mul(cols, p.Ho, &cols) && detail::checked_mul(cols, p.Wo, &cols);
  PAC_CHECK(ok, op, ": problem too large: the column matrix of one image, max(C, C_K, 1)*kh*kw*"
            "H'*W' elements, overflows int64 (C=", p.C, ", C_K=", p.CK, ", kernel size [", g.kh,
            ", ", g.kw, "], output size [", p.Ho, ", ", p.Wo, "])");
}

// Last step of every *_problem function: the size limits, then contiguous copies of the inputs.
inline void finish_problem(const char* op, Problem& p) {
  check_extents(op, p);
  for (rt::Tensor* t : {&p.input, &p.guidance, &p.phi, &p.kernel, &p.weight, &p.bias, &p.alpha,
                        &p.lambda}) {
    if (t->defined()) *t = t->contiguous();
  }
}

// Length of a backward op's output_mask (which gradients to compute).
// N = 6 for the guided ops, 3 for the precomputed-kernel ops.
template <size_t N>
inline std::array<bool, N> output_mask_arg(const char* op, const rt::BoolList& mask) {
  static_assert(N == 6 || N == 3, "output_mask has 6 or 3 flags");
  const char* names = N == 6 ? "input, guidance, phi, weight, inv_alpha, inv_lambda"
                             : "input, kernel, weight";
  PAC_CHECK(mask.size() == N, op, ": output_mask must have ", static_cast<int64_t>(N),
            " elements (", names, "), got ", static_cast<int64_t>(mask.size()));
  std::array<bool, N> m{};
  for (size_t i = 0; i < N; ++i) m[i] = static_cast<bool>(mask[i]);
  return m;
}

inline void check_grad_out(const char* op, const Problem& p, const rt::Tensor& grad,
                           rt::DeviceType dt) {
  detail::check_tensor(op, grad, "grad_out", 4, p.input, dt);
  PAC_CHECK(grad.size(0) == p.B && grad.size(1) == p.O && grad.size(2) == p.Ho &&
                  grad.size(3) == p.Wo,
              op, ": grad_out must have shape [", p.B, ", ", p.O, ", ", p.Ho, ", ", p.Wo,
              "], got ", grad.sizes());
}

// Whole-call checks of the four operator families, shared by the CPU and CUDA entry points
// (DT: the device type every tensor must have).

template <rt::DeviceType DT>
inline Problem conv_guided_problem(const char* op, const rt::Tensor& input,
                                   const rt::Tensor& guidance, const rt::Tensor& phi,
                                   const rt::Tensor& weight, const rt::OptTensor& bias,
                                   const rt::OptTensor& alpha,
                                   const rt::OptTensor& lambda, rt::IntArr stride,
                                   rt::IntArr padding, rt::IntArr dilation,
                                   rt::IntArr upsample, rt::IntArr gstride,
                                   rt::IntArr gpadding, int64_t groups, int64_t kernel_type,
                                   bool asym) {
  Problem p;
  check_input_geometry(op, p, input, stride, padding, dilation, upsample, DT);
  check_conv_weight(op, p, weight, bias, groups, DT);
  check_guidance(op, p, guidance, phi, alpha, lambda, gstride, gpadding, kernel_type, asym,
                 /*channel_wise=*/false, DT);
  finish_problem(op, p);
  return p;
}

template <rt::DeviceType DT>
inline Problem pool_guided_problem(
    const char* op, const rt::Tensor& input, const rt::Tensor& guidance, const rt::Tensor& phi,
    const rt::OptTensor& weight, const rt::OptTensor& alpha,
    const rt::OptTensor& lambda, rt::IntArr kernel_size, rt::IntArr stride,
    rt::IntArr padding, rt::IntArr dilation, rt::IntArr upsample,
    rt::IntArr gstride, rt::IntArr gpadding, int64_t kernel_type, bool asym,
    bool channel_wise) {
  Problem p;
  check_input_geometry(op, p, input, stride, padding, dilation, upsample, DT);
  auto k = detail::pair_arg(op, kernel_size, "kernel_size", 1);
  p.geo.kh = k[0];
  p.geo.kw = k[1];
  check_guidance(op, p, guidance, phi, alpha, lambda, gstride, gpadding, kernel_type, asym,
                 channel_wise, DT);
  check_pool_weight(op, p, weight, DT);
  check_pool_channels(op, p);
  finish_problem(op, p);
  return p;
}

template <rt::DeviceType DT>
inline Problem conv_kernel_problem(const char* op, const rt::Tensor& input,
                                   const rt::Tensor& kernel, const rt::Tensor& weight,
                                   const rt::OptTensor& bias, rt::IntArr stride,
                                   rt::IntArr padding, rt::IntArr dilation,
                                   rt::IntArr upsample, int64_t groups) {
  Problem p;
  check_input_geometry(op, p, input, stride, padding, dilation, upsample, DT);
  check_kernel(op, p, kernel, DT);
  const int64_t kh = p.geo.kh, kw = p.geo.kw;
  check_conv_weight(op, p, weight, bias, groups, DT);
  PAC_CHECK(p.geo.kh == kh && p.geo.kw == kw, op, ": weight kernel size (", p.geo.kh, ", ",
              p.geo.kw, ") != kernel tap dims (", kh, ", ", kw, ")");
  PAC_CHECK(p.CK == 1, op, ": the kernel of a convolution must have one channel, got ", p.CK);
  finish_problem(op, p);
  return p;
}

template <rt::DeviceType DT>
inline Problem pool_kernel_problem(const char* op, const rt::Tensor& input,
                                   const rt::Tensor& kernel,
                                   const rt::OptTensor& weight, rt::IntArr stride,
                                   rt::IntArr padding, rt::IntArr dilation,
                                   rt::IntArr upsample) {
  Problem p;
  check_input_geometry(op, p, input, stride, padding, dilation, upsample, DT);
  check_kernel(op, p, kernel, DT);
  check_pool_weight(op, p, weight, DT);
  check_pool_channels(op, p);
  finish_problem(op, p);
  return p;
}

}  // namespace pac
