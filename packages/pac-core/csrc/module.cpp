// The pybind11 module pac_core._C of a per-release build: build information only (a stable-ABI
// build has module_limited.cpp instead). Importing it loads this shared
// library, which also holds the TORCH_LIBRARY registrations of the pac:: operators.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "cpu/isa.h"

#ifndef PAC_VERSION
#define PAC_VERSION "unknown"
#endif
#ifndef PAC_TORCH_VERSION
#define PAC_TORCH_VERSION "unknown"
#endif

namespace {

std::vector<std::string> compiled_devices() {
  std::vector<std::string> devices{"cpu"};
#ifdef PAC_WITH_CUDA
  devices.emplace_back("cuda");
#endif
  return devices;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pac-core native extension: build information; the operators live in torch.ops.pac";
  m.attr("__version__") = PAC_VERSION;
  m.attr("torch_version") = PAC_TORCH_VERSION;
  m.def("compiled_devices", &compiled_devices, "Devices this build has kernels for.");
  m.def("build_info", []() {
    pybind11::dict info;
    info["version"] = PAC_VERSION;
    info["torch_version"] = PAC_TORCH_VERSION;
    info["devices"] = compiled_devices();
    info["stable_abi"] = false;
#ifdef __VERSION__
    info["compiler"] = __VERSION__;
#endif
    info["cpu_isa"] = pac::cpu::active_isa();
    info["cpu_isas_compiled"] = pac::cpu::compiled_isas();
    info["cpu_isas_supported"] = pac::cpu::supported_isas();
    return info;
  }, "Version, the torch it was built against, the compiled devices and the CPU instruction "
     "sets (cpu_isa: the one the CPU kernels run with; cpu_isas_compiled; cpu_isas_supported: "
     "those of the compiled sets this processor runs), as a dict.");
  m.def("_set_cpu_isa", &pac::cpu::set_active_isa, pybind11::arg("name"),
        "Switch the CPU kernels to instruction set `name` (for tests); returns the previous one.");
  m.def("_exp_float", [](const pybind11::bytes& x) {
    const std::string in = x;
    std::vector<float> a(in.size() / sizeof(float)), b(a.size());
    std::memcpy(a.data(), in.data(), a.size() * sizeof(float));
    pac::cpu::active_ops().exp_float(a.data(), b.data(), static_cast<int64_t>(a.size()));
    return pybind11::bytes(reinterpret_cast<const char*>(b.data()), b.size() * sizeof(float));
  }, pybind11::arg("x"), "exp of the CPU kernels (active instruction set) of float32 values "
     "given as bytes, as bytes, for tests.");
}
