"""Backends that implement the PAC ops, and how one is selected.

Public: :func:`available`, :func:`current`, :func:`use`, :func:`set_default`, :func:`register`,
:func:`get`, :func:`resolve` and the :class:`Backend` base class. ``'reference'`` (pure torch) is
always available; ``'native'`` (``torch.ops.pac``) when the compiled extension loads;
``'triton'`` (fused Triton kernels) on CUDA when Triton is installed.
"""

from .base import Backend
from .registry import available, current, get, register, resolve, set_default, use

__all__ = ["Backend", "available", "current", "get", "register", "resolve", "set_default", "use"]


def _reference():
    from .reference import ReferenceBackend

    return ReferenceBackend()


def _native():
    from . import native

    return native.make_backend()


def _triton():
    from . import triton_backend

    return triton_backend.make_backend()


register("reference", _reference)
register("native", _native)
register("triton", _triton)
