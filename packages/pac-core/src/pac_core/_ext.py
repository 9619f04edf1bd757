"""Loading of the compiled extension ``pac_core._C``.

The extension holds the ``torch.ops.pac`` operators. It is compiled against one torch release; the
build records which in ``pac_core._build_config`` (generated, read before the extension is
loaded), and an extension built for another torch is not loaded at all. When the extension is
missing, built for another torch or fails to load, pac-core keeps working on the ``reference``
backend and warns once, saying why and how to fix it. An install made with ``PAC_NATIVE=off`` is
pure Python by request: no warning.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any, Optional

_module: ModuleType | None = None
_error: str | None = None
_loaded = False

#: The reason a pure-Python build records when it was asked for (``PAC_NATIVE=off``).
PURE_BY_REQUEST = "PAC_NATIVE=off"
REBUILD = ("pip install --no-build-isolation --force-reinstall --no-deps ./packages/pac-core "
           "(the build requirements first; see docs/install.md)")


def _release(version: str) -> str:
    """A torch version without its local part: ``'2.13.0+cpu'`` -> ``'2.13.0'``."""
    return version.split("+", 1)[0].strip()


def incompatibility(built_version: str, built_cxx11_abi: Optional[int], torch_version: str,
                    torch_cxx11_abi: Optional[int]) -> str | None:
    """Why an extension built against one torch cannot be loaded into another, or None.

    The extension uses torch's C++ API, which has no stable ABI across releases: it must have been
    built against the same release (the local part, ``+cpu`` or ``+cu130``, may differ: the CPU
    operators live in ``libtorch_cpu`` either way) with the same C++ ABI flag.

    Args:
        built_version: ``torch.__version__`` at build time.
        built_cxx11_abi: ``torch._C._GLIBCXX_USE_CXX11_ABI`` at build time (None: unknown).
        torch_version: The running torch's ``torch.__version__``.
        torch_cxx11_abi: The running torch's ``_GLIBCXX_USE_CXX11_ABI`` (None: unknown).
    """
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
    if config is not None:
        why = incompatibility(config.TORCH_VERSION, config.CXX11_ABI, torch.__version__,
                              torch_abi)
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
        why = incompatibility(str(module.torch_version), None, torch.__version__, torch_abi)
        if why is not None:
            _warn(f"the native extension pac_core._C is not used: {why}. Only the 'reference' "
                  f"backend is available. Rebuild pac-core against the installed torch: "
                  f"{REBUILD}.")
            return None
    _module = module
    return _module


def error() -> str | None:
    """Why the extension failed to load, or None."""
    load()
    return _error


def build_info() -> dict[str, Any] | None:
    """The extension's build information, or None without it.

    Keys: ``version``, ``torch_version``, ``devices``, ``compiler``, and the CPU kernels'
    instruction sets: ``cpu_isa`` (the one they run with: ``'baseline'``, ``'avx2'`` or
    ``'avx512'``; the widest supported unless ``PAC_CPU_ISA`` names another),
    ``cpu_isas_compiled`` and ``cpu_isas_supported`` (those of the compiled ones this processor
    runs).
    """
    mod = load()
    return None if mod is None else dict(mod.build_info())
