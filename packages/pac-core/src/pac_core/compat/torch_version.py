"""Every torch-version-dependent branch of pac-core lives here.

Nothing else in the code base compares torch versions; it asks this module for the capability.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

#: The supported range, as stated in pyproject.toml (requires-python, torch>=2.1).
MIN_PYTHON = (3, 9)
MIN_TORCH = (2, 1)

if sys.version_info < MIN_PYTHON:
    raise ImportError(
        f"pac-core needs Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]}, found "
        f"{sys.version.split()[0]}"
    )

import torch  # noqa: E402  (after the Python check)


def _parse(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    return int(parts[0]), int(parts[1])


TORCH_VERSION: tuple[int, int] = _parse(torch.__version__)

if TORCH_VERSION < MIN_TORCH:
    raise ImportError(
        f"pac-core needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]}, found {torch.__version__}; "
        "upgrade torch (pip install -U torch)"
    )

#: torch.library.register_fake (2.4+); 2.2 and 2.3 call it torch.library.impl_abstract, 2.1
#: torch._custom_ops.impl_abstract (see :func:`register_fake`).
HAS_REGISTER_FAKE: bool = hasattr(torch.library, "register_fake")
#: torch.library.register_autograd (2.4+); older releases get an autograd.Function kernel
#: (see :func:`register_autograd`).
HAS_REGISTER_AUTOGRAD: bool = hasattr(torch.library, "register_autograd")
#: torch.library.opcheck (2.4+).
HAS_OPCHECK: bool = hasattr(torch.library, "opcheck")
#: torch.compile is usable (2.0+, not on Windows builds without a compiler we do not check).
HAS_COMPILE: bool = hasattr(torch, "compile")


def register_fake(qualname: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a fake (meta) implementation of the custom op ``qualname``.

    Args:
        qualname: ``"namespace::name"`` of an operator defined in C++ (``TORCH_LIBRARY``).

    Returns:
        A decorator taking the fake function (same arguments as the op, returns empty tensors).
    """
    if HAS_REGISTER_FAKE:
        return torch.library.register_fake(qualname)
    if hasattr(torch.library, "impl_abstract"):  # torch 2.2, 2.3
        return torch.library.impl_abstract(qualname)
    # torch 2.1: the same registration, in the private custom-op module (finds C++ ops too).
    custom_ops = importlib.import_module("torch._custom_ops")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        custom_ops.impl_abstract(qualname, func=fn)
        return fn

    return decorator


#: ``torch.library.Library`` objects holding the pre-2.4 autograd kernels: a registration lives
#: as long as its Library object, so they are kept for the life of the process.
_AUTOGRAD_LIBS: dict[str, Any] = {}


def _resolve_op(qualname: str) -> Any:
    """The ``OpOverload`` (default overload) named ``"namespace::name"``."""
    namespace, name = qualname.split("::")
    name, _, overload = name.partition(".")
    packet = getattr(getattr(torch.ops, namespace), name)
    return getattr(packet, overload or "default")


def register_autograd(
    qualname: str,
    backward: Callable[..., Any],
    *,
    setup_context: Callable[[Any, tuple[Any, ...], Any], None],
) -> None:
    """Register the backward formula of the custom op ``qualname`` (forward defined in C++).

    torch >= 2.4: :func:`torch.library.register_autograd`. Older releases have no such function:
    an :class:`torch.autograd.Function` (forward: the op below the autograd key; ``setup_context``
    and ``backward`` as given) is registered as the op's ``Autograd`` kernel through
    :class:`torch.library.Library`, so that calling ``torch.ops.namespace.name`` is
    differentiable eagerly and under ``torch.compile`` (AOTAutograd traces the Function).

    Args:
        qualname: ``"namespace::name"`` of an operator defined in C++.
        backward: ``backward(ctx, *grads)`` returning one gradient (or None) per op input.
        setup_context: ``setup_context(ctx, inputs, output)`` saving what ``backward`` needs.
    """
    if HAS_REGISTER_AUTOGRAD:
        torch.library.register_autograd(qualname, backward, setup_context=setup_context)
        return
    op = _resolve_op(qualname)

    class _OpFunction(torch.autograd.Function):
        @staticmethod
        def forward(*args: Any) -> Any:  # type: ignore[override]
            # Below autograd: run the device (or fake) kernel, not this Function again.
            with torch._C._AutoDispatchBelowAutograd():
                return op(*args)

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
            setup_context(ctx, inputs, output)

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> Any:  # type: ignore[override]
            return backward(ctx, *grads)

    _OpFunction.__name__ = _OpFunction.__qualname__ = f"{qualname.replace('::', '_')}_autograd"

    def autograd_kernel(*args: Any) -> Any:
        return _OpFunction.apply(*args)

    namespace, name = qualname.split("::")
    lib = _AUTOGRAD_LIBS.get(namespace)
    if lib is None:
        lib = _AUTOGRAD_LIBS[namespace] = torch.library.Library(namespace, "IMPL")
    lib.impl(name, autograd_kernel, "Autograd")


def _pad_kernels_for_low_precision_cpu() -> frozenset[tuple[str, torch.dtype]]:
    """The ``(mode, dtype)`` pairs of float16/bfloat16 for which torch has a CPU padding kernel.

    torch 2.1 has no float16 ``reflection_pad2d`` on the CPU; asking torch once (tiny tensors, at
    import, outside any tracing) is more precise than a version number.
    """
    found = set()
    for dtype in (torch.float16, torch.bfloat16):
        for mode in ("reflect", "replicate", "circular"):
            try:
                torch.nn.functional.pad(torch.zeros(1, 1, 2, 2, dtype=dtype), (1, 1, 1, 1),
                                        mode=mode)
            except RuntimeError:
                continue
            found.add((mode, dtype))
    return frozenset(found)


_LOW_PRECISION_CPU_PAD = _pad_kernels_for_low_precision_cpu()


def pad(t: torch.Tensor, pad: tuple[int, ...], mode: str) -> torch.Tensor:
    """``F.pad(t, pad, mode=mode)``, also for float16/bfloat16 CPU tensors on torch releases that
    lack the kernel (computed in float32 and cast back: padding copies values, so exactly).

    Args:
        t: The tensor to pad.
        pad: Padding sizes, last dimension first (as for :func:`torch.nn.functional.pad`).
        mode: ``'reflect'``, ``'replicate'``, ``'circular'`` or ``'constant'`` (zeros).

    Returns:
        The padded tensor, of ``t``'s dtype.
    """
    if (mode != "constant" and t.dtype in (torch.float16, torch.bfloat16)
            and t.device.type == "cpu" and (mode, t.dtype) not in _LOW_PRECISION_CPU_PAD):
        return torch.nn.functional.pad(t.float(), pad, mode=mode).to(t.dtype)
    return torch.nn.functional.pad(t, pad, mode=mode)


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


#: torch.library.triton_op and wrap_triton (2.6+): Triton kernels that torch.compile traces into.
HAS_TRITON_OP: bool = hasattr(torch.library, "triton_op") and hasattr(torch.library, "wrap_triton")
#: torch.library.custom_op (2.4+): the opaque fallback of :func:`triton_op` on 2.4 and 2.5.
HAS_CUSTOM_OP: bool = hasattr(torch.library, "custom_op")


def triton_op(qualname: str, *, mutates_args: tuple[str, ...] = ()) -> Callable[..., Any]:
    """Decorator defining a custom op whose body launches Triton kernels.

    torch >= 2.6: :func:`torch.library.triton_op` (torch.compile sees the kernels); 2.4 and 2.5:
    :func:`torch.library.custom_op` (opaque to the compiler; the caller registers a fake).

    Raises:
        RuntimeError: torch < 2.4 (no Python custom ops).
    """
    if HAS_TRITON_OP:
        return torch.library.triton_op(qualname, mutates_args=mutates_args)
    if HAS_CUSTOM_OP:
        return torch.library.custom_op(qualname, mutates_args=mutates_args)
    raise RuntimeError(f"torch {torch.__version__} cannot define Python custom ops (needs 2.4+)")


def wrap_triton(kernel: Any) -> Any:
    """``torch.library.wrap_triton(kernel)`` where torch has it, else the kernel itself."""
    if HAS_TRITON_OP:
        return torch.library.wrap_triton(kernel)
    return kernel
