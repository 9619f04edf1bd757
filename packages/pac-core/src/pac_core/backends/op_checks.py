"""Argument checks of the ``torch.ops.pac`` operators, for their fake (meta) kernels.

The C++ operators check their arguments in ``csrc/pac_args.h`` before touching memory; this module
is the same checks, in the same order and with the same messages, written in Python, so that a
fake (meta) call rejects exactly what the real call rejects and computes the same output shape.
Change the two together; ``tests/test_fuzz.py`` compares them on random calls.

The limits (see ``docs/backends.md``, "Invalid arguments"): every geometric value in
``[-MAX_GEOMETRY, MAX_GEOMETRY]`` (strides, dilations, upsample factors and kernel sizes from 1);
per axis the largest sampled coordinate fits in int64; the column matrix of one image
(``max(C, C_K, 1)·kh·kw·H'·W'`` elements) fits in int64.

Failures raise ``RuntimeError`` (as the C++ ``TORCH_CHECK`` does) through ``torch._check``, which
also works with the symbolic sizes of ``torch.compile(dynamic=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from .._validation import INT64_MAX, MAX_GEOMETRY

__all__ = [
    "Problem",
    "check_grad_out",
    "conv_guided_problem",
    "conv_kernel_problem",
    "output_mask_arg",
    "pool_guided_problem",
    "pool_kernel_problem",
]

_GAUSSIAN, _INV = 0, 1
_DEVICE_TYPE_NAMES = {"cpu": "CPU", "cuda": "CUDA", "meta": "META"}


@dataclass
class Problem:
    """The sizes of a checked call (the fields of ``pac::Problem`` that decide the output)."""

    B: Any = 0
    C: Any = 0
    H: Any = 0
    W: Any = 0
    Cf: Any = 0
    Ho: Any = 0
    Wo: Any = 0
    CK: Any = 1
    O: Any = 0
    kh: Any = 1
    kw: Any = 1
    geo: Optional[dict[str, tuple[Any, Any]]] = None
    input: Optional[Tensor] = None


def _check(cond: Any, message: Callable[[], str]) -> None:
    torch._check(cond, message)


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _ints(v: Sequence[Any]) -> str:
    return "[" + ", ".join(str(x) for x in v) + "]"


def _check_tensor(op: str, t: Optional[Tensor], name: str, ndim: int, ref: Optional[Tensor],
                  device_type: str) -> None:
    _check(t is not None, lambda: f"{op}: {name} is undefined")
    assert t is not None
    dev_name = _DEVICE_TYPE_NAMES.get(device_type, device_type.upper())
    _check(t.device.type == device_type,
           lambda: f"{op}: {name} must be a {dev_name} tensor, got device {t.device}")
    _check(t.dtype in (torch.float32, torch.float64),
           lambda: f"{op}: {name} must be float32 or float64, got {t.dtype}")
    if ref is not None:
        _check(t.dtype == ref.dtype,
               lambda: f"{op}: {name} has dtype {t.dtype} but input has {ref.dtype}")
        _check(t.device == ref.device,
               lambda: f"{op}: {name} is on {t.device} but input is on {ref.device}")
    if ndim >= 0:
        _check(t.dim() == ndim, lambda: f"{op}: {name} must be {ndim}-D, got shape {_shape(t)}")


def _check_range(op: str, name: str, v0: Any, v1: Any, lo: int, hi: int) -> None:
    _check(lo <= v0 <= hi and lo <= v1 <= hi,
           lambda: f"{op}: {name} must be in [{lo}, {hi}], got {_ints((v0, v1))}")


def _pair_arg(op: str, v: Sequence[Any], name: str, minimum: int) -> tuple[Any, Any]:
    _check(len(v) == 2, lambda: f"{op}: {name} must have 2 elements (h, w), got {len(v)}")
    _check_range(op, name, v[0], v[1], minimum, MAX_GEOMETRY)
    return v[0], v[1]


def _fits(*terms: tuple[Any, Any]) -> bool:
    return sum(a * b for a, b in terms) <= INT64_MAX


def _check_inv_param(op: str, t: Tensor, name: str, ck: Any, ref: Tensor, dt: str) -> None:
    _check_tensor(op, t, name, -1, ref, dt)
    _check(t.dim() <= 1, lambda: f"{op}: {name} must be 0-D or 1-D, got shape {_shape(t)}")
    n = t.numel()
    if ck == 1:
        _check(n == 1, lambda: f"{op}: {name} must have 1 element (the kernel has one channel), "
                               f"got {n}")
    else:
        _check(n == 1 or n == ck, lambda: f"{op}: {name} must have 1 or {ck} elements (one per "
                                          f"kernel channel), got {n}")


def _check_guidance_extent(op: str, axis: str, n: Any, k: Any, padding: Any,
                           dilation: Any) -> None:
    _check(_fits((max(n, 1) - 1, 1), (abs(padding), 2), (k - 1, dilation)),
           lambda: f"{op}: guidance geometry too large along {axis}: (in - 1) + "
                   f"2*|guidance_padding| + (k - 1)*dilation overflows int64 (in={n}, "
                   f"guidance_padding={padding}, k={k}, dilation={dilation})")


def _conv_out_size(n: Any, k: Any, s: Any, p: Any, d: Any) -> Any:
    span = n + 2 * p - d * (k - 1) - 1
    return 0 if span < 0 else span // s + 1


def _check_input_geometry(op: str, p: Problem, input: Tensor, stride, padding, dilation,
                          upsample, dt: str) -> None:
    _check_tensor(op, input, "input", 4, None, dt)
    s = _pair_arg(op, stride, "stride", 1)
    pd = _pair_arg(op, padding, "padding", -MAX_GEOMETRY)
    d = _pair_arg(op, dilation, "dilation", 1)
    u = _pair_arg(op, upsample, "upsample", 1)
    p.geo = {"s": s, "p": pd, "d": d, "u": u}
    p.B, p.C, p.H, p.W = input.shape
    p.input = input


def _check_guidance(op: str, p: Problem, guidance: Tensor, phi: Tensor, alpha, lam,
                    guidance_stride, guidance_padding, kernel_type: int, channel_wise: bool,
                    dt: str) -> None:
    ref = p.input
    _check_tensor(op, guidance, "guidance", 4, ref, dt)
    _check_tensor(op, phi, "phi", 4, ref, dt)
    gs = _pair_arg(op, guidance_stride, "guidance_stride", 1)
    gp = _pair_arg(op, guidance_padding, "guidance_padding", -MAX_GEOMETRY)
    _check(kernel_type in (_GAUSSIAN, _INV),
           lambda: f"{op}: kernel_type must be 0 (gaussian) or 1 (inv), got {kernel_type}")
    p.Cf, hg, wg = guidance.shape[1:]
    _check(guidance.shape[0] == p.B,
           lambda: f"{op}: guidance batch {guidance.shape[0]} != input batch {p.B}")
    d = p.geo["d"]  # type: ignore[index]
    _check_guidance_extent(op, "h", hg, p.kh, gp[0], d[0])
    _check_guidance_extent(op, "w", wg, p.kw, gp[1], d[1])
    ho = _conv_out_size(hg, p.kh, gs[0], gp[0], d[0])
    wo = _conv_out_size(wg, p.kw, gs[1], gp[1], d[1])
    _check(ho >= 1 and wo >= 1,
           lambda: f"{op}: no kernel window fits the guidance {_shape(guidance)} with kernel "
                   f"size ({p.kh}, {p.kw})")
    _check(tuple(phi.shape) == (p.B, p.Cf, ho, wo),
           lambda: f"{op}: phi must have shape [{p.B}, {p.Cf}, {ho}, {wo}] (batch, guidance "
                   f"channels, kernel windows on the guidance), got {_shape(phi)}")
    p.Ho, p.Wo = ho, wo
    p.CK = p.Cf if channel_wise else 1
    if kernel_type == _INV:
        _check(alpha is not None and lam is not None,
               lambda: f"{op}: the inv kernel needs inv_alpha and inv_lambda")
    if alpha is not None:
        _check_inv_param(op, alpha, "inv_alpha", p.CK, ref, dt)  # type: ignore[arg-type]
    if lam is not None:
        _check_inv_param(op, lam, "inv_lambda", p.CK, ref, dt)  # type: ignore[arg-type]


def _check_kernel(op: str, p: Problem, kernel: Tensor, dt: str) -> None:
    _check_tensor(op, kernel, "kernel", 6, p.input, dt)
    _check(kernel.shape[0] == p.B,
           lambda: f"{op}: kernel batch {kernel.shape[0]} != input batch {p.B}")
    _check(all(s >= 1 for s in kernel.shape[1:]),
           lambda: f"{op}: kernel must have non-empty channel, tap and spatial dims, got "
                   f"{_shape(kernel)}")
    _check_range(op, "kernel tap dims (kernel.shape[2:4])", kernel.shape[2], kernel.shape[3], 1,
                 MAX_GEOMETRY)
    p.CK, p.kh, p.kw, p.Ho, p.Wo = kernel.shape[1:]


def _check_conv_weight(op: str, p: Problem, weight: Tensor, bias: Optional[Tensor], groups: int,
                       dt: str) -> None:
    _check_tensor(op, weight, "weight", 4, p.input, dt)
    _check(groups >= 1, lambda: f"{op}: groups must be >= 1, got {groups}")
    _check(p.C % groups == 0 and weight.shape[0] % groups == 0,
           lambda: f"{op}: input channels {p.C} and output channels {weight.shape[0]} must be "
                   f"divisible by groups={groups}")
    _check(weight.shape[1] == p.C // groups,
           lambda: f"{op}: weight {_shape(weight)} does not fit input channels {p.C} with "
                   f"groups={groups} (expected [C_out, C_in/groups, kh, kw])")
    _check_range(op, "weight kernel size (weight.shape[2:4])", weight.shape[2], weight.shape[3],
                 1, MAX_GEOMETRY)
    p.O = weight.shape[0]
    p.kh, p.kw = weight.shape[2], weight.shape[3]
    if bias is not None:
        _check_tensor(op, bias, "bias", 1, p.input, dt)
        _check(bias.shape[0] == p.O,
               lambda: f"{op}: bias must have {p.O} elements, got {_shape(bias)}")


def _check_pool_weight(op: str, p: Problem, weight: Optional[Tensor], dt: str) -> None:
    if weight is not None:
        _check_tensor(op, weight, "weight", 4, p.input, dt)
        _check(tuple(weight.shape) == (1, 1, p.kh, p.kw),
               lambda: f"{op}: weight must have shape [1, 1, {p.kh}, {p.kw}], got "
                       f"{_shape(weight)}")


def _check_pool_channels(op: str, p: Problem) -> None:
    _check(p.C == p.CK or p.C == 1 or p.CK == 1,
           lambda: f"{op}: input channels {p.C} and kernel channels {p.CK} must be equal or one "
                   "of them 1")
    p.O = p.CK if p.C == 1 else p.C


def _check_axis_extent(op: str, axis: str, out: Any, s: Any, pad: Any, k: Any, d: Any,
                       inp: Any, u: Any) -> None:
    _check(_fits((max(out, 1) - 1, s), (abs(pad), 1), (k - 1, d), (max(inp, 1) - 1, u)),
           lambda: f"{op}: geometry too large along {axis}: (out - 1)*stride + |padding| + "
                   f"(k - 1)*dilation + (in - 1)*upsample overflows int64 (out={out}, "
                   f"stride={s}, padding={pad}, k={k}, dilation={d}, in={inp}, upsample={u})")


def _check_extents(op: str, p: Problem) -> None:
    g = p.geo
    assert g is not None
    for i, axis in enumerate(("h", "w")):
        _check_axis_extent(op, axis, (p.Ho, p.Wo)[i], g["s"][i], g["p"][i], (p.kh, p.kw)[i],
                           g["d"][i], (p.H, p.W)[i], g["u"][i])
    cols = max(p.C, p.CK, 1) * p.kh * p.kw * p.Ho * p.Wo
    _check(cols <= INT64_MAX,
           lambda: f"{op}: problem too large: the column matrix of one image, max(C, C_K, 1)*kh*"
                   f"kw*H'*W' elements, overflows int64 (C={p.C}, C_K={p.CK}, kernel size "
                   f"[{p.kh}, {p.kw}], output size [{p.Ho}, {p.Wo}])")


# -- the four operator families (pac_args.h: *_problem) ------------------------------------------
def conv_guided_problem(op: str, input, guidance, phi, weight, bias, alpha, lam, stride, padding,
                        dilation, upsample, gstride, gpadding, groups, kernel_type) -> Problem:
    """Checks of ``pac::conv2d_guided`` (and its backward, with ``bias=None``)."""
    p = Problem()
    dt = input.device.type if isinstance(input, Tensor) else "cpu"
    _check_input_geometry(op, p, input, stride, padding, dilation, upsample, dt)
    _check_conv_weight(op, p, weight, bias, groups, dt)
    _check_guidance(op, p, guidance, phi, alpha, lam, gstride, gpadding, kernel_type, False, dt)
    _check_extents(op, p)
    return p


def pool_guided_problem(op: str, input, guidance, phi, weight, alpha, lam, kernel_size, stride,
                        padding, dilation, upsample, gstride, gpadding, kernel_type,
                        channel_wise) -> Problem:
    """Checks of ``pac::pool2d_guided`` (and its backward)."""
    p = Problem()
    dt = input.device.type if isinstance(input, Tensor) else "cpu"
    _check_input_geometry(op, p, input, stride, padding, dilation, upsample, dt)
    p.kh, p.kw = _pair_arg(op, kernel_size, "kernel_size", 1)
    _check_guidance(op, p, guidance, phi, alpha, lam, gstride, gpadding, kernel_type,
                    channel_wise, dt)
    _check_pool_weight(op, p, weight, dt)
    _check_pool_channels(op, p)
    _check_extents(op, p)
    return p


def conv_kernel_problem(op: str, input, kernel, weight, bias, stride, padding, dilation, upsample,
                        groups) -> Problem:
    """Checks of ``pac::conv2d_kernel`` (and its backward, with ``bias=None``)."""
    p = Problem()
    dt = input.device.type if isinstance(input, Tensor) else "cpu"
    _check_input_geometry(op, p, input, stride, padding, dilation, upsample, dt)
    _check_kernel(op, p, kernel, dt)
    kh, kw = p.kh, p.kw
    _check_conv_weight(op, p, weight, bias, groups, dt)
    _check(p.kh == kh and p.kw == kw,
           lambda: f"{op}: weight kernel size ({p.kh}, {p.kw}) != kernel tap dims ({kh}, {kw})")
    _check(p.CK == 1, lambda: f"{op}: the kernel of a convolution must have one channel, got "
                              f"{p.CK}")
    _check_extents(op, p)
    return p


def pool_kernel_problem(op: str, input, kernel, weight, stride, padding, dilation,
                        upsample) -> Problem:
    """Checks of ``pac::pool2d_kernel`` (and its backward)."""
    p = Problem()
    dt = input.device.type if isinstance(input, Tensor) else "cpu"
    _check_input_geometry(op, p, input, stride, padding, dilation, upsample, dt)
    _check_kernel(op, p, kernel, dt)
    _check_pool_weight(op, p, weight, dt)
    _check_pool_channels(op, p)
    _check_extents(op, p)
    return p


def check_grad_out(op: str, p: Problem, grad: Tensor) -> None:
    """``grad_out`` of a backward op: the forward output's shape, dtype and device."""
    assert p.input is not None
    _check_tensor(op, grad, "grad_out", 4, p.input, p.input.device.type)
    _check(tuple(grad.shape) == (p.B, p.O, p.Ho, p.Wo),
           lambda: f"{op}: grad_out must have shape [{p.B}, {p.O}, {p.Ho}, {p.Wo}], got "
                   f"{_shape(grad)}")


def output_mask_arg(op: str, mask: Sequence[bool], n: int) -> list[bool]:
    """A backward op's ``output_mask``: ``n`` flags (6 for the guided ops, 3 for the others)."""
    names = ("input, guidance, phi, weight, inv_alpha, inv_lambda" if n == 6
             else "input, kernel, weight")
    _check(len(mask) == n,
           lambda: f"{op}: output_mask must have {n} elements ({names}), got {len(mask)}")
    return list(mask)
