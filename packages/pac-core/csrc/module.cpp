// The pybind11 module pac_core._C: build information only. Importing it loads this shared
// library, which also holds the TORCH_LIBRARY registrations of the pac:: operators.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

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
#ifdef __VERSION__
    info["compiler"] = __VERSION__;
#endif
    return info;
  }, "Version, the torch it was built against and the compiled devices, as a dict.");
}
