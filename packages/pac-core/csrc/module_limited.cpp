// The Python module pac_core._C of a stable-ABI build: build information only, on Python's limited
// C API (one binary for every Python >= 3.9; no pybind11, no torch Python API). Importing it loads
// this shared library, which also holds the STABLE_TORCH_LIBRARY registrations of the pac::
// operators. Same functions as the pybind11 module of a per-release build (module.cpp).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cpu/isa.h"

#ifndef PAC_VERSION
#define PAC_VERSION "unknown"
#endif
#ifndef PAC_TORCH_VERSION
#define PAC_TORCH_VERSION "unknown"
#endif
#ifndef PAC_TORCH_TARGET
#define PAC_TORCH_TARGET "unknown"
#endif

namespace {

PyObject* str_list(const std::vector<std::string>& items) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(items.size()));
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < items.size(); ++i) {
    PyObject* s = PyUnicode_FromString(items[i].c_str());
    if (s == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SetItem(list, static_cast<Py_ssize_t>(i), s);  // steals s
  }
  return list;
}

// dict[key] = value, stealing value; false (with the Python error set) on failure.
bool set_item(PyObject* dict, const char* key, PyObject* value) {
  if (value == nullptr) return false;
  const int rc = PyDict_SetItemString(dict, key, value);
  Py_DECREF(value);
  return rc == 0;
}

PyObject* runtime_error(const std::exception& e) {
  PyErr_SetString(PyExc_RuntimeError, e.what());
  return nullptr;
}

PyObject* compiled_devices(PyObject*, PyObject*) { return str_list({"cpu"}); }

PyObject* build_info(PyObject*, PyObject*) {
  try {
    PyObject* info = PyDict_New();
    if (info == nullptr) return nullptr;
    bool ok = set_item(info, "version", PyUnicode_FromString(PAC_VERSION)) &&
              set_item(info, "torch_version", PyUnicode_FromString(PAC_TORCH_VERSION)) &&
              set_item(info, "devices", str_list({"cpu"})) &&
              set_item(info, "stable_abi", PyBool_FromLong(1)) &&
              set_item(info, "torch_target", PyUnicode_FromString(PAC_TORCH_TARGET));
#ifdef __VERSION__
    ok = ok && set_item(info, "compiler", PyUnicode_FromString(__VERSION__));
#endif
    ok = ok &&
         set_item(info, "cpu_isa", PyUnicode_FromString(pac::cpu::active_isa().c_str())) &&
         set_item(info, "cpu_isas_compiled", str_list(pac::cpu::compiled_isas())) &&
         set_item(info, "cpu_isas_supported", str_list(pac::cpu::supported_isas()));
    if (!ok) {
      Py_DECREF(info);
      return nullptr;
    }
    return info;
  } catch (const std::exception& e) {
    return runtime_error(e);
  }
}

PyObject* set_cpu_isa(PyObject*, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  try {
    return PyUnicode_FromString(pac::cpu::set_active_isa(name).c_str());
  } catch (const std::exception& e) {
    return runtime_error(e);
  }
}

PyObject* exp_float(PyObject*, PyObject* args) {
  const char* data = nullptr;
  Py_ssize_t size = 0;
  if (!PyArg_ParseTuple(args, "y#", &data, &size)) return nullptr;
  if (size % static_cast<Py_ssize_t>(sizeof(float)) != 0) {
    PyErr_SetString(PyExc_ValueError, "_exp_float: the bytes must hold whole float32 values");
    return nullptr;
  }
  std::vector<float> x(static_cast<size_t>(size) / sizeof(float)), y(x.size());
  std::memcpy(x.data(), data, static_cast<size_t>(size));
  pac::cpu::active_ops().exp_float(x.data(), y.data(), static_cast<int64_t>(x.size()));
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(y.data()), size);
}

PyMethodDef methods[] = {
    {"compiled_devices", compiled_devices, METH_NOARGS, "Devices this build has kernels for."},
    {"build_info", build_info, METH_NOARGS,
     "Version, the torch it was built against (and the oldest it runs with, torch_target), the "
     "compiled devices and the CPU instruction sets (cpu_isa: the one the CPU kernels run with; "
     "cpu_isas_compiled; cpu_isas_supported: those of the compiled sets this processor runs), "
     "as a dict."},
    {"_set_cpu_isa", set_cpu_isa, METH_VARARGS,
     "Switch the CPU kernels to instruction set `name` (for tests); returns the previous one."},
    {"_exp_float", exp_float, METH_VARARGS,
     "exp of the CPU kernels (active instruction set) of float32 values given as bytes, as "
     "bytes, for tests."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C",
    "pac-core native extension (stable ABI): build information; the operators live in "
    "torch.ops.pac",
    -1, methods, nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  if (PyModule_AddStringConstant(m, "__version__", PAC_VERSION) != 0 ||
      PyModule_AddStringConstant(m, "torch_version", PAC_TORCH_VERSION) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
