"""Loading of the compiled extension ``pac_core._C``.

The extension holds the ``torch.ops.pac`` operators. The build records what it was compiled against
in ``pac_core._build_config`` (generated, read before the extension is loaded), and an extension
that cannot serve the running torch is not loaded at all. Two kinds of build:

* stable ABI (torch >= 2.10 at build time): the CPU operators use LibTorch's stable ABI only and
  run on every torch from the build's target release (``TORCH_TARGET``, 2.10) on. CUDA kernels,
  when built, stay on torch's C++ API in a library of their own (``CUDA_LIBRARY``), loaded only
  into the torch release they were built against.
* per release (older torch): everything is compiled against one torch release and loads into that
  release only. When the extension is
missing, built for another torch or fails to load, pac-core keeps working on the ``reference``
backend and warns once, saying why and how to fix it. An install made with ``PAC_NATIVE=off`` is
pure Python by request: no warning.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from types import ModuleType
from typing import Any, Optional

_module: ModuleType | None = None
_error: str | None = None
_loaded = False
_devices: list[str] = []

#: The first torch release with the stable ABI that a stable-ABI build uses.
STABLE_ABI_MIN = (2, 10)

#: The reason a pure-Python build records when it was asked for (``PAC_NATIVE=off``).
PURE_BY_REQUEST = "PAC_NATIVE=off"
REBUILD = ("pip install --no-build-isolation --force-reinstall --no-deps ./packages/pac-core "
           "(the build requirements first; see docs/install.md)")


def _release(version: str) -> str:
    """A torch version without its local part: ``'2.13.0+cpu'`` -> ``'2.13.0'``."""
    return version.split("+", 1)[0].strip()


def _major_minor(version: str) -> tuple[int, int]:
    """``'2.13.0+cpu'`` -> ``(2, 13)``."""
    parts = re.findall(r"\d+", version)[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)


def incompatibility(built_version: str, built_cxx11_abi: Optional[int], torch_version: str,
                    torch_cxx11_abi: Optional[int], stable_target: str = "") -> str | None:
    """Why an extension built against one torch cannot be loaded into another, or None.

    A stable-ABI build (``stable_target``, the oldest release it targets) runs on every torch from
    that release on, and never before 2.10 (the first stable ABI it uses). A per-release build uses
    torch's C++ API, which has no stable ABI across releases: it must have been built against the
    same release (the local part, ``+cpu`` or ``+cu130``, may differ: the CPU operators live in
    ``libtorch_cpu`` either way) with the same C++ ABI flag.

    Args:
        built_version: ``torch.__version__`` at build time.
        built_cxx11_abi: ``torch._C._GLIBCXX_USE_CXX11_ABI`` at build time (None: unknown).
        torch_version: The running torch's ``torch.__version__``.
        torch_cxx11_abi: The running torch's ``_GLIBCXX_USE_CXX11_ABI`` (None: unknown).
        stable_target: A stable-ABI build's target release (``'2.10'``); empty for a per-release
            build.
    """
    if stable_target:
        oldest = max(_major_minor(stable_target), STABLE_ABI_MIN)
        if _major_minor(torch_version) < oldest:
            return (f"it was built on the stable ABI for torch >= {oldest[0]}.{oldest[1]} (with "
                    f"torch {built_version}) and this is torch {torch_version}")
        return None
    if _release(built_version) != _release(torch_version):
        return f"it was built for torch {built_version} and this is torch {torch_version}"
    if None not in (built_cxx11_abi, torch_cxx11_abi) and int(built_cxx11_abi) != int(
            torch_cxx11_abi):
        return (f"it was built with _GLIBCXX_USE_CXX11_ABI={int(built_cxx11_abi)} and torch "
                f"{torch_version} uses {int(torch_cxx11_abi)}")
    return None


def _warn(message: str) -> None:
    global _error
    _error = message
    warnings.warn(f"pac_core: {message}", RuntimeWarning, stacklevel=3)


def load() -> ModuleType | None:
    """Import ``pac_core._C`` once; return it, or None (after one warning) when it cannot serve."""
    global _module, _error, _loaded
    if _loaded:
        return _module
    _loaded = True
    import torch  # loads libtorch before the extension

    torch_abi = getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)
    try:
        config: Any = importlib.import_module("pac_core._build_config")
    except ImportError:  # a source checkout, or a build older than the generated file
        config = None
    if config is not None and not config.NATIVE:
        if config.REASON != PURE_BY_REQUEST:
            _warn(f"installed without its native extension ({config.REASON}), so only the "
                  f"'reference' backend is available. To build the extension, install a C++17 "
                  f"compiler, then: {REBUILD}.")
        _error = f"pac-core was installed without its native extension ({config.REASON})"
        return None
    stable_target = str(getattr(config, "TORCH_TARGET", "")) if getattr(
        config, "STABLE_ABI", False) else ""
    if config is not None:
        why = incompatibility(config.TORCH_VERSION, config.CXX11_ABI, torch.__version__,
                              torch_abi, stable_target)
        if why is not None:
            _warn(f"the native extension pac_core._C was not loaded: {why}. Only the 'reference' "
                  f"backend is available. Rebuild pac-core against the installed torch: {REBUILD}.")
            return None
    try:
        module = importlib.import_module("pac_core._C")
    except Exception as exc:  # ImportError, OSError (undefined symbols), RuntimeError
        _warn(f"the native extension pac_core._C could not be loaded ({type(exc).__name__}: "
              f"{exc}), so only the 'reference' backend is available. Rebuild pac-core against "
              f"the installed torch: {REBUILD}.")
        return None
    if config is None:  # no record to check first: check what the loaded extension says
        info = dict(module.build_info())
        why = incompatibility(str(module.torch_version), None, torch.__version__, torch_abi,
                              str(info.get("torch_target", "")) if info.get("stable_abi") else "")
        if why is not None:
            _warn(f"the native extension pac_core._C is not used: {why}. Only the 'reference' "
                  f"backend is available. Rebuild pac-core against the installed torch: "
                  f"{REBUILD}.")
            return None
    _devices[:] = list(module.compiled_devices())
    cuda_library = str(getattr(config, "CUDA_LIBRARY", "") or "")
    if cuda_library:
        _load_cuda_library(config, cuda_library, torch.__version__, torch_abi)
    _module = module
    return _module


def _load_cuda_library(config: Any, name: str, torch_version: str,
                       torch_abi: Optional[int]) -> None:
    """Register the CUDA kernels of a stable-ABI build (built per torch release) when they fit."""
    import torch

    why = incompatibility(config.TORCH_VERSION, config.CXX11_ABI, torch_version, torch_abi)
    if why is not None:
        warnings.warn(f"pac_core: the CUDA kernels ({name}) are not loaded: {why}; the CPU "
                      f"operators serve. Rebuild pac-core against the installed torch for them: "
                      f"{REBUILD}.", RuntimeWarning, stacklevel=3)
        return
    try:
        torch.ops.load_library(os.path.join(os.path.dirname(__file__), name))
    except Exception as exc:  # OSError (undefined symbols), RuntimeError
        warnings.warn(f"pac_core: the CUDA kernels ({name}) could not be loaded "
                      f"({type(exc).__name__}: {exc}); the CPU operators serve.", RuntimeWarning,
                      stacklevel=3)
        return
    _devices.append("cuda")


def devices() -> list[str]:
    """The devices the loaded extension has kernels for (empty without it)."""
    load()
    return list(_devices) if _module is not None else []


def error() -> str | None:
    """Why the extension failed to load, or None."""
    load()
    return _error


def build_info() -> dict[str, Any] | None:
    """The extension's build information, or None without it.

    Keys: ``version``, ``torch_version`` (the torch it was built with), ``stable_abi`` (whether
    the CPU operators use the stable ABI; then ``torch_target``, the oldest torch they run with),
    ``devices`` (those with loaded kernels), ``compiler``, and the CPU kernels' instruction sets:
    ``cpu_isa`` (the one they run with: ``'baseline'``, ``'avx2'`` or ``'avx512'``; the widest
    supported unless ``PAC_CPU_ISA`` names another),
    ``cpu_isas_compiled`` and ``cpu_isas_supported`` (those of the compiled ones this processor
    runs).
    """
    mod = load()
    if mod is None:
        return None
    info = dict(mod.build_info())
    info["devices"] = devices()
    return info
