"""Argument checks shared by :mod:`pac_core.functional` and :mod:`pac_core.modules`.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong value or
shape) with a message that names the function, the argument and what was seen. The helpers also
normalise: geometry becomes ``(h, w)`` int pairs, kernel/smoothing type strings are parsed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor

from .compat import torch_version

Pair = tuple[int, int]
IntOrPair = Union[int, Sequence[int]]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

#: Largest accepted value of one geometric argument (kernel size, stride, padding, dilation,
#: output padding), in absolute value: ``2**31 - 1``. The native operators check the same bound
#: (``csrc/pac_args.h``); with it every index they compute fits in int64.
MAX_GEOMETRY = 2**31 - 1
#: The largest int64.
INT64_MAX = 2**63 - 1

__all__ = [
    "INT64_MAX",
    "MAX_GEOMETRY",
    "PADDING_MODES",
    "apply_padding_mode",
    "check_floating",
    "check_same_device",
    "check_same_dtype",
    "check_tensor",
    "kernel_function",
    "kernel_size_pair",
    "pair",
    "parse_kernel_type",
    "parse_smooth_kernel_type",
]


# -- geometry -------------------------------------------------------------------------------------
def pair(
    value: Any, name: str, *, minimum: int = 0, maximum: int = MAX_GEOMETRY, fn: str = "pac"
) -> Pair:
    """Normalise an int or a length-2 sequence of ints to an ``(h, w)`` pair.

    Args:
        value: The argument as given.
        name: Argument name, for the message.
        minimum: Smallest allowed value of each element.
        maximum: Largest allowed value of each element (default :data:`MAX_GEOMETRY`).
        fn: Calling function, for the message.

    Returns:
        ``(h, w)``.

    Raises:
        TypeError: ``value`` is not an int or a pair of ints.
        ValueError: an element is outside ``[minimum, maximum]``.
    """

    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    kind = type(value)
    if kind is int:  # fast paths for the common plain ints and pairs of them (no ABC checks)
        out = (value, value)
    elif (kind is tuple or kind is list) and len(value) == 2 and type(value[0]) is int \
            and type(value[1]) is int:
        out = (value[0], value[1])
    elif is_int(value):
        out = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list, torch.Size))
        and len(value) == 2
        and all(is_int(v) for v in value)
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum or max(out) > maximum:
        raise ValueError(
            f"{fn}: {name} must be in [{minimum}, {maximum}] in each dimension, got {value!r}"
        )
    return out


def kernel_size_pair(value: Any, name: str = "kernel_size", *, fn: str = "pac") -> Pair:
    """Normalise a kernel size to a pair of positive odd ints (even sizes are rejected,
    docs/semantics.md §9).

    Args:
        value: The argument as given.
        name: Argument name, for the message.
        fn: Calling function, for the message.

    Returns:
        ``(k_h, k_w)``.

    Raises:
        TypeError: not an int or a pair of ints.
        ValueError: a size is not positive or is even.
    """
    k = pair(value, name, minimum=1, fn=fn)
    if k[0] % 2 == 0 or k[1] % 2 == 0:
        raise ValueError(f"{fn}: {name} must be odd in each dimension, got {value!r}")
    return k


# -- kernel / smoothing types ---------------------------------------------------------------------
def kernel_function(kernel_type: Any, *, fn: str = "pac") -> tuple[str, bool]:
    """The kernel function of ``kernel_type`` as used by the functional ops (docs/semantics.md
    §2.3, §9).

    ``'gaussian'`` (exact match) or any string starting with ``'inv_'``; ``'_asym'`` anywhere in
    an ``inv_`` type selects the one-sided (ReLU) difference. The ``α``/``λ`` fields of an ``inv_``
    type are not needed here (the functional ops take ``inv_alpha``/``inv_lambda`` tensors), so
    they are not parsed; modules use :func:`parse_kernel_type`.

    Args:
        kernel_type: The type string.
        fn: Calling function, for the message.

    Returns:
        ``(kind, asym)`` with ``kind`` in ``('gaussian', 'inv')``.

    Raises:
        TypeError: not a string.
        ValueError: any other type (``'gaussian_asym'`` included).
    """
    if not isinstance(kernel_type, str):
        raise TypeError(f"{fn}: kernel_type must be a string, got {kernel_type!r}")
    if kernel_type == "gaussian":
        return "gaussian", False
    if kernel_type.startswith("inv_"):
        return "inv", "_asym" in kernel_type
    raise ValueError(
        f"{fn}: unknown kernel_type {kernel_type!r}; expected 'gaussian' or "
        "'inv_<alpha>_<lambda>[_asym][_fixed]'"
    )


def parse_kernel_type(
    kernel_type: Any, *, fn: str = "pac"
) -> tuple[str, Optional[float], Optional[float], bool, bool]:
    """Parse a module kernel type string (docs/semantics.md §4.1 step 6, §9).

    Args:
        kernel_type: ``'gaussian'`` or ``'inv_<α>_<λ>[_asym][_fixed]'`` (e.g. ``'inv_1_-1_fixed'``).
        fn: Calling function, for the message.

    Returns:
        ``(kind, alpha0, lambda0, asym, fixed)``; ``kind`` is ``'gaussian'`` (then the rest is
        ``None, None, False, False``) or ``'inv'``.

    Raises:
        TypeError: not a string.
        ValueError: unknown type, or ``α``/``λ`` are not numbers.
    """
    kind, asym = kernel_function(kernel_type, fn=fn)
    if kind == "gaussian":
        return "gaussian", None, None, False, False
    fields = kernel_type.split("_")
    try:
        alpha0, lambda0 = float(fields[1]), float(fields[2])
    except (IndexError, ValueError):
        raise ValueError(
            f"{fn}: kernel_type {kernel_type!r} must look like "
            "'inv_<alpha>_<lambda>[_asym][_fixed]' with numeric alpha and lambda"
        ) from None
    return "inv", alpha0, lambda0, asym, "_fixed" in kernel_type


def parse_smooth_kernel_type(smooth_kernel_type: Any, *, fn: str = "pac") -> tuple[str, int]:
    """Parse a smoothing type string (docs/semantics.md §4.1 steps 2 and 7).

    Args:
        smooth_kernel_type: ``'none'``, ``'gaussian'`` (3×3 binomial), ``'average_<m>'`` or
            ``'full_<m>'`` with odd ``m``.
        fn: Calling function, for the message.

    Returns:
        ``(kind, m)``: ``('none', 0)``, ``('gaussian', 3)``, ``('average', m)`` or ``('full', m)``.

    Raises:
        TypeError: not a string.
        ValueError: unknown type, non-integer or even ``m``.
    """
    if not isinstance(smooth_kernel_type, str):
        raise TypeError(f"{fn}: smooth_kernel_type must be a string, got {smooth_kernel_type!r}")
    if smooth_kernel_type == "none":
        return "none", 0
    if smooth_kernel_type == "gaussian":
        return "gaussian", 3
    kind, _, size = smooth_kernel_type.partition("_")
    if kind in ("average", "full"):
        try:
            m = int(size)
        except ValueError:
            m = 0
        if m < 1 or m % 2 == 0 or str(m) != size.strip():
            raise ValueError(
                f"{fn}: smooth_kernel_type {smooth_kernel_type!r} needs a positive odd integer "
                f"size after '{kind}_'"
            )
        return kind, m
    raise ValueError(
        f"{fn}: unknown smooth_kernel_type {smooth_kernel_type!r}; expected 'none', 'gaussian', "
        "'average_<m>' or 'full_<m>' (odd m)"
    )


# -- tensors --------------------------------------------------------------------------------------
def check_tensor(t: Any, name: str, *, ndim: Optional[int] = None, fn: str = "pac") -> Tensor:
    """Check that ``t`` is a tensor (of ``ndim`` dims when given).

    Raises:
        TypeError: not a tensor.
        ValueError: wrong number of dimensions.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{fn}: {name} must be {ndim}-D, got shape {tuple(t.shape)}")
    return t


def check_floating(t: Tensor, name: str, *, fn: str = "pac") -> None:
    """Raise TypeError unless ``t`` has a (real) floating dtype."""
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must have a floating dtype, got {t.dtype}")


def check_same_device(fn: str = "pac", **tensors: Optional[Tensor]) -> None:
    """Raise ValueError unless all given (non-None) tensors live on one device."""
    seen = {n: t.device for n, t in tensors.items() if t is not None}
    devices = list(seen.values())  # no set(): Dynamo (torch 2.1) cannot trace sets of devices
    if any(d != devices[0] for d in devices[1:]):
        desc = ", ".join(f"{n} on {d}" for n, d in seen.items())
        raise ValueError(f"{fn}: all tensors must be on the same device, got {desc}")


def check_same_dtype(fn: str = "pac", **tensors: Optional[Tensor]) -> None:
    """Raise TypeError unless all given (non-None) tensors share one dtype."""
    seen = {n: t.dtype for n, t in tensors.items() if t is not None}
    dtypes = list(seen.values())  # no set(): Dynamo (torch 2.1) cannot trace sets of dtypes
    if any(d != dtypes[0] for d in dtypes[1:]):
        desc = ", ".join(f"{n}={d}" for n, d in seen.items())
        raise TypeError(f"{fn}: tensors must share one floating dtype, got {desc}")


def check_padding_mode(padding_mode: Any, *, fn: str = "pac") -> str:
    """Raise unless ``padding_mode`` is one of :data:`PADDING_MODES`."""
    if not isinstance(padding_mode, str):
        raise TypeError(f"{fn}: padding_mode must be a string, got {padding_mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{fn}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    return padding_mode


def apply_padding_mode(
    t: Optional[Tensor], padding: Pair, padding_mode: str, *, name: str = "input", fn: str = "pac"
) -> Optional[Tensor]:
    """Pad ``t`` explicitly for a non-``'zeros'`` padding mode, as ``nn.Conv2d`` does.

    Args:
        t: ``[B, C, H, W]`` tensor or None (returned as is).
        padding: ``(p_h, p_w)``, applied on both sides of each axis.
        padding_mode: ``'reflect'``, ``'replicate'`` or ``'circular'`` (``'zeros'`` returns ``t``).
        name: Argument name, for the message.
        fn: Calling function, for the message.

    Returns:
        The padded tensor (``[B, C, H + 2p_h, W + 2p_w]``).

    Raises:
        ValueError: the padding is too large for the mode (reflect: ``p < size``; circular:
            ``p <= size``).
    """
    if t is None or padding_mode == "zeros" or padding == (0, 0):
        return t
    h, w = t.shape[-2:]
    ph, pw = padding
    if padding_mode == "reflect" and (ph >= h or pw >= w):
        raise ValueError(
            f"{fn}: padding_mode='reflect' needs padding < the size of {name}, got "
            f"padding={padding} for spatial size {(h, w)}"
        )
    if padding_mode == "circular" and (ph > h or pw > w):
        raise ValueError(
            f"{fn}: padding_mode='circular' needs padding <= the size of {name}, got "
            f"padding={padding} for spatial size {(h, w)}"
        )
    return torch_version.pad(t, (pw, pw, ph, ph), mode=padding_mode)
