"""The ``native`` backend: fused C++ operators ``torch.ops.pac.*`` from the compiled extension.

The guided paths (PacConv2d / PacConvTranspose2d / PacPool2d from raw guidance) compute the
per-pixel kernel on the fly, tile by tile, and never materialise the column tensor or the
``[B, 1, k, k, H', W']`` kernel; the precomputed-kernel ops take the kernel as an input. Every op
has a fake (meta) implementation and an autograd formula registered here, so the backend works
under ``torch.compile(fullgraph=True)`` and passes ``torch.library.opcheck``.

How the formulas of docs/semantics.md §2–§3 map onto the ops:

* ``φ`` (the centre feature, docs/semantics.md §2.2) is computed here with torch ops (a view of the
guidance,
  a strided slice of the zero-padded guidance, or a depthwise convolution with the smoothing
  kernel) and passed to the op; autograd carries its gradient back to the guidance.
* A mask ``M`` multiplies the input (``X·M``): with zero padding the product vanishes on padding
  taps, so the validity pattern only matters in the normaliser.
* ``normalize_kernel``: ``Y = β + (Σ W·K·M·X) / (N + [N=0])`` with ``N = Σ_taps K·V·M``, computed by
  the guided pool op applied to ``M`` (or to ones); for a pool with one kernel channel and no
  weight, in the same op call as the output (``M`` or ones as one more input channel).
* mask without normalisation: ``ρ = Σ M_col / Σ V`` depends on the mask only (plain torch).
* transposed: the zero-inserted grid is never built; the op reads the low-resolution input with
  ``upsample = stride``, ``stride = 1``, ``padding = (k−1)d − p`` and the weight in conv layout.

dtypes: the operators run float32 and float64; float16/bfloat16 inputs are computed in float32 (the
tensors are cast in Python, autograd flows through the casts) and the results cast back, as the
reference backend does.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _ext
from ..compat.torch_version import register_autograd, register_fake
from ..helpers import transposed_grid
from . import op_checks as C
from .base import Backend, Pair

__all__ = ["NativeBackend", "make_backend"]

_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_GAUSSIAN, _INV = 0, 1
_registered = False


# -- fake (meta) implementations and autograd ---------------------------------------------------
# The fake kernels run the operators' own argument checks (op_checks.py, the Python twin of
# csrc/pac_args.h): a meta / fake call rejects exactly what the real call rejects, with the same
# message, and returns the same shapes.
def _empty(ref: Tensor) -> Tensor:
    return ref.new_empty((0,))


def _grad_like(needed: bool, t: Optional[Tensor], ref: Tensor) -> Tensor:
    if needed and t is not None:
        return t.new_empty(t.shape)
    return _empty(ref)


def _or_none(needed: bool, t: Tensor) -> Optional[Tensor]:
    return t if needed else None


def _double_backward_error(op: str) -> str:
    return (f"pac::{op}: double backward is not supported by the native backend; use the "
            "reference backend (pac_core.backends.use('reference')) for second derivatives")


def _once_differentiable(op: str, grads: tuple, inputs: tuple) -> tuple:
    """Gradients that raise a clear error when differentiated again (``create_graph=True``).

    The backward operators have no derivative of their own; without this, a second
    differentiation would see the gradients as constants and return zeros silently. As in
    ``torch.autograd.function.once_differentiable``, the gradients go through a node whose
    backward raises; here the node also takes the forward inputs that require grad, so that
    differentiating with respect to any of them reaches it (and raises).
    """
    if not torch.is_grad_enabled():
        return grads
    live = [i for i, g in enumerate(grads) if isinstance(g, Tensor)]
    sources = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not live or not sources:
        return grads
    args = [grads[i] for i in live] + sources
    err = torch._C._functions.DelayedError(_double_backward_error(op).encode(), len(args))
    wrapped = err(*args)
    if isinstance(wrapped, Tensor):
        wrapped = (wrapped,)
    out = list(grads)
    for i, w in zip(live, wrapped):
        out[i] = w
    return tuple(out)


def _register_ops() -> None:
    """Register the fake kernels and autograd formulas of every ``torch.ops.pac`` op (once)."""
    global _registered
    if _registered:
        return
    _registered = True
    ops = torch.ops.pac

    # conv2d_guided ---------------------------------------------------------------------------
    @register_fake("pac::conv2d_guided")
    def _conv2d_guided_fake(input, guidance, phi, weight, bias, inv_alpha, inv_lambda, stride,
                            padding, dilation, upsample, guidance_stride, guidance_padding, groups,
                            kernel_type, asym):
        p = C.conv_guided_problem("pac::conv2d_guided", input, guidance, phi, weight, bias,
                                  inv_alpha, inv_lambda, stride, padding, dilation, upsample,
                                  guidance_stride, guidance_padding, groups, kernel_type)
        return input.new_empty((p.B, p.O, p.Ho, p.Wo))

    @register_fake("pac::conv2d_guided_backward")
    def _conv2d_guided_backward_fake(grad, input, guidance, phi, weight, inv_alpha, inv_lambda,
                                     stride, padding, dilation, upsample, guidance_stride,
                                     guidance_padding, groups, kernel_type, asym, output_mask):
        op = "pac::conv2d_guided_backward"
        p = C.conv_guided_problem(op, input, guidance, phi, weight, None, inv_alpha, inv_lambda,
                                  stride, padding, dilation, upsample, guidance_stride,
                                  guidance_padding, groups, kernel_type)
        C.check_grad_out(op, p, grad)
        m = C.output_mask_arg(op, output_mask, 6)
        return (_grad_like(m[0], input, input), _grad_like(m[1], guidance, input),
                _grad_like(m[2], phi, input), _grad_like(m[3], weight, input),
                _grad_like(m[4], inv_alpha, input), _grad_like(m[5], inv_lambda, input))

    def _conv2d_guided_setup(ctx, inputs, output):
        input, guidance, phi, weight, _bias, alpha, lam = inputs[:7]
        ctx.save_for_backward(input, guidance, phi, weight, alpha, lam)
        ctx.params = inputs[7:]

    def _conv2d_guided_bwd(ctx, grad):
        input, guidance, phi, weight, alpha, lam = ctx.saved_tensors
        n = ctx.needs_input_grad
        mask = [n[0], n[1], n[2], n[3], n[5] and alpha is not None, n[6] and lam is not None]
        dx, dg, dphi, dw, da, dl = ops.conv2d_guided_backward(
            grad, input, guidance, phi, weight, alpha, lam, *ctx.params, mask)
        db = grad.sum((0, 2, 3)) if n[4] else None
        grads = (_or_none(mask[0], dx), _or_none(mask[1], dg), _or_none(mask[2], dphi),
                 _or_none(mask[3], dw))
        grads = _once_differentiable("conv2d_guided", grads,
                                     (grad, input, guidance, phi, weight, alpha, lam))
        tail = _once_differentiable("conv2d_guided", (_or_none(mask[4], da),
                                                      _or_none(mask[5], dl)),
                                    (grad, input, guidance, phi, weight, alpha, lam))
        return (*grads, db, *tail, *([None] * len(ctx.params)))

    # pool2d_guided ---------------------------------------------------------------------------
    @register_fake("pac::pool2d_guided")
    def _pool2d_guided_fake(input, guidance, phi, weight, inv_alpha, inv_lambda, kernel_size,
                            stride, padding, dilation, upsample, guidance_stride,
                            guidance_padding, kernel_type, asym, channel_wise):
        p = C.pool_guided_problem("pac::pool2d_guided", input, guidance, phi, weight, inv_alpha,
                                  inv_lambda, kernel_size, stride, padding, dilation, upsample,
                                  guidance_stride, guidance_padding, kernel_type, channel_wise)
        return input.new_empty((p.B, p.O, p.Ho, p.Wo))

    @register_fake("pac::pool2d_guided_backward")
    def _pool2d_guided_backward_fake(grad, input, guidance, phi, weight, inv_alpha, inv_lambda,
                                     kernel_size, stride, padding, dilation, upsample,
                                     guidance_stride, guidance_padding, kernel_type, asym,
                                     channel_wise, output_mask):
        op = "pac::pool2d_guided_backward"
        p = C.pool_guided_problem(op, input, guidance, phi, weight, inv_alpha, inv_lambda,
                                  kernel_size, stride, padding, dilation, upsample,
                                  guidance_stride, guidance_padding, kernel_type, channel_wise)
        C.check_grad_out(op, p, grad)
        m = C.output_mask_arg(op, output_mask, 6)
        return (_grad_like(m[0], input, input), _grad_like(m[1], guidance, input),
                _grad_like(m[2], phi, input), _grad_like(m[3], weight, input),
                _grad_like(m[4], inv_alpha, input), _grad_like(m[5], inv_lambda, input))

    def _pool2d_guided_setup(ctx, inputs, output):
        input, guidance, phi, weight, alpha, lam = inputs[:6]
        ctx.save_for_backward(input, guidance, phi, weight, alpha, lam)
        ctx.params = inputs[6:]

    def _pool2d_guided_bwd(ctx, grad):
        input, guidance, phi, weight, alpha, lam = ctx.saved_tensors
        n = ctx.needs_input_grad
        mask = [n[0], n[1], n[2], n[3] and weight is not None, n[4] and alpha is not None,
                n[5] and lam is not None]
        dx, dg, dphi, dw, da, dl = ops.pool2d_guided_backward(
            grad, input, guidance, phi, weight, alpha, lam, *ctx.params, mask)
        grads = (_or_none(mask[0], dx), _or_none(mask[1], dg), _or_none(mask[2], dphi),
                 _or_none(mask[3], dw), _or_none(mask[4], da), _or_none(mask[5], dl))
        grads = _once_differentiable("pool2d_guided", grads,
                                     (grad, input, guidance, phi, weight, alpha, lam))
        return (*grads, *([None] * len(ctx.params)))

    # conv2d_kernel ---------------------------------------------------------------------------
    @register_fake("pac::conv2d_kernel")
    def _conv2d_kernel_fake(input, kernel, weight, bias, stride, padding, dilation, upsample,
                            groups):
        p = C.conv_kernel_problem("pac::conv2d_kernel", input, kernel, weight, bias, stride,
                                  padding, dilation, upsample, groups)
        return input.new_empty((p.B, p.O, p.Ho, p.Wo))

    @register_fake("pac::conv2d_kernel_backward")
    def _conv2d_kernel_backward_fake(grad, input, kernel, weight, stride, padding, dilation,
                                     upsample, groups, output_mask):
        op = "pac::conv2d_kernel_backward"
        p = C.conv_kernel_problem(op, input, kernel, weight, None, stride, padding, dilation,
                                  upsample, groups)
        C.check_grad_out(op, p, grad)
        m = C.output_mask_arg(op, output_mask, 3)
        return (_grad_like(m[0], input, input), _grad_like(m[1], kernel, input),
                _grad_like(m[2], weight, input))

    def _conv2d_kernel_setup(ctx, inputs, output):
        input, kernel, weight = inputs[:3]
        ctx.save_for_backward(input, kernel, weight)
        ctx.params = inputs[4:]

    def _conv2d_kernel_bwd(ctx, grad):
        input, kernel, weight = ctx.saved_tensors
        n = ctx.needs_input_grad
        mask = [n[0], n[1], n[2]]
        dx, dk, dw = ops.conv2d_kernel_backward(grad, input, kernel, weight, *ctx.params, mask)
        db = grad.sum((0, 2, 3)) if n[3] else None
        grads = _once_differentiable(
            "conv2d_kernel",
            (_or_none(mask[0], dx), _or_none(mask[1], dk), _or_none(mask[2], dw)),
            (grad, input, kernel, weight))
        return (*grads, db, *([None] * len(ctx.params)))

    # pool2d_kernel ---------------------------------------------------------------------------
    @register_fake("pac::pool2d_kernel")
    def _pool2d_kernel_fake(input, kernel, weight, stride, padding, dilation, upsample):
        p = C.pool_kernel_problem("pac::pool2d_kernel", input, kernel, weight, stride, padding,
                                  dilation, upsample)
        return input.new_empty((p.B, p.O, p.Ho, p.Wo))

    @register_fake("pac::pool2d_kernel_backward")
    def _pool2d_kernel_backward_fake(grad, input, kernel, weight, stride, padding, dilation,
                                     upsample, output_mask):
        op = "pac::pool2d_kernel_backward"
        p = C.pool_kernel_problem(op, input, kernel, weight, stride, padding, dilation, upsample)
        C.check_grad_out(op, p, grad)
        m = C.output_mask_arg(op, output_mask, 3)
        return (_grad_like(m[0], input, input), _grad_like(m[1], kernel, input),
                _grad_like(m[2], weight, input))

    def _pool2d_kernel_setup(ctx, inputs, output):
        input, kernel, weight = inputs[:3]
        ctx.save_for_backward(input, kernel, weight)
        ctx.params = inputs[3:]

    def _pool2d_kernel_bwd(ctx, grad):
        input, kernel, weight = ctx.saved_tensors
        n = ctx.needs_input_grad
        mask = [n[0], n[1], n[2] and weight is not None]
        dx, dk, dw = ops.pool2d_kernel_backward(grad, input, kernel, weight, *ctx.params, mask)
        grads = _once_differentiable(
            "pool2d_kernel",
            (_or_none(mask[0], dx), _or_none(mask[1], dk), _or_none(mask[2], dw)),
            (grad, input, kernel, weight))
        return (*grads, *([None] * len(ctx.params)))

    reg = register_autograd  # torch.library.register_autograd, or its pre-2.4 shim
    reg("pac::conv2d_guided", _conv2d_guided_bwd, setup_context=_conv2d_guided_setup)
    reg("pac::pool2d_guided", _pool2d_guided_bwd, setup_context=_pool2d_guided_setup)
    reg("pac::conv2d_kernel", _conv2d_kernel_bwd, setup_context=_conv2d_kernel_setup)
    reg("pac::pool2d_kernel", _pool2d_kernel_bwd, setup_context=_pool2d_kernel_setup)


# -- helpers --------------------------------------------------------------------------------------
def _parse_kernel_type(kernel_type: str) -> tuple[int, bool]:
    """``(kernel_type int, asym)`` of a validated kernel-type string."""
    if kernel_type == "gaussian":
        return _GAUSSIAN, False
    if kernel_type.startswith("inv_"):
        return _INV, "_asym" in kernel_type
    raise ValueError(f"native backend: unsupported kernel_type {kernel_type!r}")


def _inv_params(
    kind: int, inv_alpha: Optional[Tensor], inv_lambda: Optional[Tensor], dtype: torch.dtype
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    if kind != _INV:
        return None, None
    if inv_alpha is None or inv_lambda is None:
        raise ValueError("native backend: the inv kernel needs inv_alpha and inv_lambda")
    return inv_alpha.to(dtype), inv_lambda.to(dtype)


def _centre_feature(
    guidance: Tensor,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    smooth_kernel: Optional[Tensor],
) -> Tensor:
    """``φ`` of docs/semantics.md §2.2 on the kernel windows ``(kernel_size, stride, padding,
    dilation)``."""
    hg, wg = guidance.shape[-2:]
    k, s, p, d = kernel_size, stride, padding, dilation
    out = tuple(((hg, wg)[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    off = tuple((k[i] - 1) // 2 * d[i] for i in range(2))  # centre tap offset c·d
    if smooth_kernel is None:
        if s == (1, 1) and p == off:
            return guidance  # the centre tap of window y is pixel y itself
        fp = F.pad(guidance, (p[1], p[1], p[0], p[0]))
        return fp[:, :, off[0]::s[0], off[1]::s[1]][:, :, : out[0], : out[1]]
    if guidance.shape[1] == 0:  # no guidance channels: nothing to smooth (conv2d needs groups > 0)
        return guidance.new_zeros((guidance.shape[0], 0, out[0], out[1]))
    sk = smooth_kernel.to(guidance.dtype)
    m = (sk.shape[-2], sk.shape[-1])
    q = tuple(p[i] + (m[i] - 1) // 2 for i in range(2))
    fp = F.pad(guidance, (q[1], q[1], q[0], q[0]))[:, :, off[0]:, off[1]:]
    c_f = guidance.shape[1]
    phi = F.conv2d(fp, sk.reshape(1, 1, m[0], m[1]).expand(c_f, 1, m[0], m[1]), stride=s,
                   groups=c_f)
    # .to: under autocast F.conv2d returns float16/bfloat16; the ops take the guidance dtype.
    return phi[:, :, : out[0], : out[1]].to(guidance.dtype)


def _nonzero(t: Tensor) -> Tensor:
    """``t + [t = 0]``: normalisers that give 0 instead of NaN for empty windows."""
    return t + (t == 0).to(t.dtype)


def _rho(
    mask: Tensor,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    output_padding: Pair,
    dilation: Pair,
    transposed: bool,
) -> Tensor:
    """``ρ = Σ_taps M_col / Σ_taps V`` (docs/semantics.md §2.4, mask, no normalisation): ``[B, C_M,
    H', W']``."""
    c_m = mask.shape[1]
    ones_k = mask.new_ones((c_m, 1, *kernel_size))
    ones_in = mask.new_ones((1, 1, *mask.shape[-2:]))

    def window_sum(t: Tensor, channels: int) -> Tensor:
        if transposed:
            grid = transposed_grid(t, kernel_size, stride, padding, output_padding, dilation)
            return F.conv2d(grid, ones_k[:channels], dilation=dilation, groups=channels)
        return F.conv2d(t, ones_k[:channels], stride=stride, padding=padding, dilation=dilation,
                        groups=channels)

    # .to: under autocast F.conv2d returns float16/bfloat16; keep the mask dtype.
    return (window_sum(mask, c_m) / _nonzero(window_sum(ones_in, 1))).to(mask.dtype)


def _transposed_weight(weight: Tensor, groups: int) -> Tensor:
    """``[C_in, C_out/g, kh, kw]`` (transposed layout) → ``[C_out, C_in/g, kh, kw]``, no flip."""
    c_in, c_out_g, kh, kw = weight.shape
    w = weight.reshape(groups, c_in // groups, c_out_g, kh, kw).transpose(1, 2)
    return w.reshape(groups * c_out_g, c_in // groups, kh, kw)


def _transposed_geometry(kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair):
    """Op geometry ``(stride, padding, upsample)`` reading the zero-inserted grid of
    docs/semantics.md §1.1."""
    pad = tuple((kernel_size[i] - 1) * dilation[i] - padding[i] for i in range(2))
    return [1, 1], list(pad), list(stride)


def _in_float32(method):
    """Run ``method`` in float32 when the input is float16/bfloat16; cast the output back."""

    @functools.wraps(method)
    def wrapper(self, input, *args, **kwargs):
        dtype = input.dtype
        if dtype not in _LOW_PRECISION:
            return method(self, input, *args, **kwargs)

        def up(v):
            return v.float() if isinstance(v, Tensor) and v.is_floating_point() else v

        res = method(self, up(input), *(up(a) for a in args),
                     **{k: up(v) for k, v in kwargs.items()})
        if isinstance(res, tuple):
            return (res[0].to(dtype), *res[1:])
        return res.to(dtype)

    return wrapper


# -- the backend ---------------------------------------------------------------------------------
class NativeBackend(Backend):
    """Fused C++ PAC ops (``torch.ops.pac``): CPU, and CUDA when the extension was built with it.

    ``packernel2d`` (which returns the materialised kernel by definition) is delegated to the
    reference backend; everything else runs on the native operators.
    """

    name = "native"
    priority = 10

    def __init__(self, devices: list[str]) -> None:
        from .reference import ReferenceBackend

        self._devices = frozenset(devices)
        self._reference = ReferenceBackend()

    def supports(self, device: torch.device, dtype: torch.dtype) -> bool:
        """CPU (and CUDA when compiled in); float32/float64 (float16/bfloat16 run in float32)."""
        return torch.device(device).type in self._devices and dtype in _SUPPORTED_DTYPES

    # -- kernel ---------------------------------------------------------------------------------
    def packernel2d(self, guidance: Tensor, mask: Optional[Tensor], **kwargs: Any):
        """The materialised kernel: delegated to the reference backend."""
        return self._reference.packernel2d(guidance, mask, **kwargs)

    # -- precomputed-kernel ops -------------------------------------------------------------------
    @_in_float32
    def pacconv2d(self, input, kernel, weight, bias, *, stride, padding, dilation,
                  shared_filters, groups):
        """docs/semantics.md §3.1 on ``pac::conv2d_kernel`` (``pac::pool2d_kernel`` for shared
        filters)."""
        if kernel.shape[1] != 1:  # optional C_in-channel kernels: reference semantics
            return self._reference.pacconv2d(input, kernel, weight, bias, stride=stride,
                                             padding=padding, dilation=dilation,
                                             shared_filters=shared_filters, groups=groups)
        s, p, d = list(stride), list(padding), list(dilation)
        if shared_filters:
            out = torch.ops.pac.pool2d_kernel(input, kernel, weight, s, p, d, [1, 1])
            return out if bias is None else out + bias.reshape(1, -1, 1, 1)
        return torch.ops.pac.conv2d_kernel(input, kernel, weight, bias, s, p, d, [1, 1], groups)

    @_in_float32
    def pacconv_transpose2d(self, input, kernel, weight, bias, *, stride, padding, output_padding,
                            dilation, shared_filters, groups):
        """docs/semantics.md §3.2: the op reads the zero-inserted grid through ``upsample =
        stride``."""
        if kernel.shape[1] != 1:
            return self._reference.pacconv_transpose2d(
                input, kernel, weight, bias, stride=stride, padding=padding,
                output_padding=output_padding, dilation=dilation, shared_filters=shared_filters,
                groups=groups)
        k = (weight.shape[-2], weight.shape[-1])
        s, p, u = _transposed_geometry(k, stride, padding, dilation)
        d = list(dilation)
        if shared_filters:
            out = torch.ops.pac.pool2d_kernel(input, kernel, weight, s, p, d, u)
            return out if bias is None else out + bias.reshape(1, -1, 1, 1)
        w = _transposed_weight(weight, groups)
        return torch.ops.pac.conv2d_kernel(input, kernel, w, bias, s, p, d, u, groups)

    @_in_float32
    def pacpool2d(self, input, kernel, *, kernel_size, stride, padding, dilation):
        """docs/semantics.md §3.3 on ``pac::pool2d_kernel``."""
        return torch.ops.pac.pool2d_kernel(input, kernel, None, list(stride), list(padding),
                                           list(dilation), [1, 1])

    # -- fused guided ops -------------------------------------------------------------------------
    def _fused(
        self,
        input: Tensor,
        guidance: Tensor,
        mask: Optional[Tensor],
        weight: Optional[Tensor],
        bias: Optional[Tensor],
        *,
        pool: bool,
        kernel_size: Pair,
        stride: Pair,
        padding: Pair,
        output_padding: Pair,
        dilation: Pair,
        groups: int,
        kernel_type: str,
        smooth_kernel: Optional[Tensor],
        inv_alpha: Optional[Tensor],
        inv_lambda: Optional[Tensor],
        channel_wise: bool,
        normalize_kernel: bool,
        transposed: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        dtype = input.dtype
        kind, asym = _parse_kernel_type(kernel_type)
        alpha, lam = _inv_params(kind, inv_alpha, inv_lambda, dtype)
        k, d = kernel_size, dilation
        if transposed:
            g_stride: Pair = (1, 1)
            g_pad: Pair = ((k[0] - 1) * d[0] // 2, (k[1] - 1) * d[1] // 2)
            s, p, u = _transposed_geometry(k, stride, padding, dilation)
            if weight is not None and not pool:
                weight = _transposed_weight(weight, groups)
        else:
            g_stride, g_pad = stride, padding
            s, p, u = list(stride), list(padding), [1, 1]
        phi = _centre_feature(guidance, k, g_stride, g_pad, d, smooth_kernel)
        m = None if mask is None else mask.to(dtype)
        x = input if m is None else input * m
        divide = normalize_kernel or m is not None
        geo = (s, p, list(d), u, list(g_stride), list(g_pad))
        norm: Optional[Tensor] = None
        if pool and normalize_kernel and weight is None and not channel_wise:
            # One pass: the normaliser is one more channel of the same pool (its source, the mask
            # or ones, appended to the input), so the kernel is computed once for both.
            src = m if m is not None else input.new_ones((input.shape[0], 1, *input.shape[2:]))
            both = torch.ops.pac.pool2d_guided(torch.cat([x, src], 1), guidance, phi, None, alpha,
                                               lam, list(k), *geo, kind, asym, channel_wise)
            out, norm = both[:, : x.shape[1]], both[:, x.shape[1]:]
            add_bias = bias
        elif pool:
            out = torch.ops.pac.pool2d_guided(x, guidance, phi, weight, alpha, lam, list(k), *geo,
                                              kind, asym, channel_wise)
            add_bias = bias
        else:
            op_bias = None if divide else bias
            out = torch.ops.pac.conv2d_guided(x, guidance, phi, weight, op_bias, alpha, lam,
                                              *geo, groups, kind, asym)
            add_bias = bias if divide else None

        out_mask: Optional[Tensor] = None
        if normalize_kernel:
            if norm is None:
                src = m if m is not None else input.new_ones((input.shape[0], 1, *input.shape[2:]))
                norm = torch.ops.pac.pool2d_guided(src, guidance, phi, None, alpha, lam, list(k),
                                                   *geo, kind, asym, channel_wise)
            out = out / _nonzero(norm)
            if m is not None:
                out_mask = (norm != 0)[:, :, None, None]
        elif m is not None:
            rho = _rho(m, k, stride, padding, output_padding, dilation, transposed)
            out = out / _nonzero(rho)
            out_mask = (rho != 0)[:, :, None, None]
        if add_bias is not None:
            out = out + add_bias.reshape(1, -1, 1, 1)
        return out, out_mask

    @_in_float32
    def pacconv2d_guided(self, input, guidance, mask, weight, bias, *, stride, padding, dilation,
                         shared_filters, groups, kernel_type, smooth_kernel_type, smooth_kernel,
                         inv_alpha, inv_lambda, normalize_kernel):
        """PacConv2d from raw guidance, fused: ``(output, out_mask)``."""
        return self._fused(
            input, guidance, mask, weight, bias, pool=bool(shared_filters),
            kernel_size=(weight.shape[-2], weight.shape[-1]), stride=stride, padding=padding,
            output_padding=(0, 0), dilation=dilation, groups=groups, kernel_type=kernel_type,
            smooth_kernel=smooth_kernel if smooth_kernel_type != "none" else None,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=False,
            normalize_kernel=normalize_kernel, transposed=False)

    @_in_float32
    def pacconv_transpose2d_guided(self, input, guidance, mask, weight, bias, *, stride, padding,
                                   output_padding, dilation, shared_filters, groups, kernel_type,
                                   smooth_kernel_type, smooth_kernel, inv_alpha, inv_lambda,
                                   normalize_kernel):
        """PacConvTranspose2d from raw guidance (output resolution), fused."""
        return self._fused(
            input, guidance, mask, weight, bias, pool=bool(shared_filters),
            kernel_size=(weight.shape[-2], weight.shape[-1]), stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            kernel_type=kernel_type,
            smooth_kernel=smooth_kernel if smooth_kernel_type != "none" else None,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=False,
            normalize_kernel=normalize_kernel, transposed=True)

    @_in_float32
    def pacpool2d_guided(self, input, guidance, mask, *, kernel_size, stride, padding, dilation,
                         kernel_type, smooth_kernel_type, smooth_kernel, inv_alpha, inv_lambda,
                         channel_wise, normalize_kernel):
        """PacPool2d from raw guidance, fused."""
        return self._fused(
            input, guidance, mask, None, None, pool=True, kernel_size=kernel_size, stride=stride,
            padding=padding, output_padding=(0, 0), dilation=dilation, groups=1,
            kernel_type=kernel_type,
            smooth_kernel=smooth_kernel if smooth_kernel_type != "none" else None,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=channel_wise,
            normalize_kernel=normalize_kernel, transposed=False)


def make_backend() -> Optional[NativeBackend]:
    """The native backend, or None when the compiled extension cannot be loaded."""
    mod = _ext.load()
    if mod is None:
        return None
    _register_ops()
    return NativeBackend(_ext.devices())
