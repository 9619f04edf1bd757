"""Every torch-version-dependent branch of pac-core lives here.

Nothing else in the code base compares torch versions; it asks this module for the capability.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch

MIN_TORCH = (2, 1)


def _parse(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    return int(parts[0]), int(parts[1])


TORCH_VERSION: tuple[int, int] = _parse(torch.__version__)

if TORCH_VERSION < MIN_TORCH:
    raise ImportError(
        f"pac-core needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]}, found {torch.__version__}; "
        "upgrade torch (pip install -U torch)"
    )

#: torch.library.register_fake (2.4+); older releases call it impl_abstract.
HAS_REGISTER_FAKE: bool = hasattr(torch.library, "register_fake")
#: torch.library.register_autograd (2.4+).
HAS_REGISTER_AUTOGRAD: bool = hasattr(torch.library, "register_autograd")
#: torch.library.opcheck (2.4+).
HAS_OPCHECK: bool = hasattr(torch.library, "opcheck")
#: torch.compile is usable (2.0+, not on Windows builds without a compiler we do not check).
HAS_COMPILE: bool = hasattr(torch, "compile")


def register_fake(qualname: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a fake (meta) implementation of the custom op ``qualname``."""
    if HAS_REGISTER_FAKE:
        return torch.library.register_fake(qualname)
    return torch.library.impl_abstract(qualname)  # type: ignore[attr-defined]


def load_weights_only(path: Any, map_location: Any = None) -> Any:
    """``torch.load`` restricted to tensors and plain containers (never arbitrary pickle)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def assume_constant_result(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as returning a trace-time constant for torch.compile (no graph break)."""
    compiler = getattr(torch, "compiler", None)
    marker = getattr(compiler, "assume_constant_result", None)
    if marker is None:  # torch < 2.2
        marker = importlib.import_module("torch._dynamo").assume_constant_result
    return marker(fn)
