"""Loading of the compiled extension ``pac_core._C``.

The extension holds the ``torch.ops.pac`` operators. When it is missing (a source checkout that was
not built, a build against another torch) pac-core keeps working on the ``reference`` backend and
warns once, saying why.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

_module: ModuleType | None = None
_error: str | None = None
_loaded = False


def load() -> ModuleType | None:
    """Import ``pac_core._C`` once; return it, or None (after one warning) when it cannot load."""
    global _module, _error, _loaded
    if _loaded:
        return _module
    _loaded = True
    try:
        import torch  # noqa: F401  (loads libtorch before the extension)

        _module = importlib.import_module("pac_core._C")
    except Exception as exc:  # ImportError, OSError (undefined symbols), RuntimeError
        _error = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            "pac_core: the native extension pac_core._C could not be loaded, so only the "
            f"'reference' backend is available ({_error}). Rebuild pac-core against the installed "
            "torch (pip install --no-build-isolation ./packages/pac-core).",
            RuntimeWarning,
            stacklevel=2,
        )
        _module = None
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
