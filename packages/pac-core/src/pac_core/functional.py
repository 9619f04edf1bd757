"""The functional PAC ops: validation, padding modes, then dispatch to the selected backend.

Names, argument names and defaults follow pacnet (docs/semantics.md §2–§3); ``native_impl`` is
accepted and
ignored (every backend gives the same results). Extras beyond pacnet come last, as keywords:
``padding_mode`` on the non-transposed ops and ``groups`` on the convolutions.

Padding modes: ``'zeros'`` (default, the pacnet behaviour) reads zeros outside the image.
``'reflect'``, ``'replicate'`` and ``'circular'`` pad the data (and the guidance and mask)
explicitly like ``nn.Conv2d`` does and then run with no padding, so the padded taps are real
samples: they count as *valid* for the validity pattern, the mask and ``normalize_kernel``.

The backend is chosen per call by :func:`pac_core.backends.resolve` (see :mod:`pac_core.backends`).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor

from . import _validation as V
from .backends import registry
from .helpers import conv_output_size, conv_transpose_output_size, transposed_input_size

IntOrPair = Union[int, tuple[int, int]]
Pair = tuple[int, int]

__all__ = ["pacconv2d", "pacconv_transpose2d", "packernel2d", "pacpool2d"]


# -- shared validation ----------------------------------------------------------------------------
def _as_param_tensor(
    value: Any, name: str, guidance: Tensor, channels: int, fn: str
) -> Tensor:
    """``inv_alpha`` / ``inv_lambda``: a number or a tensor of 1 or ``channels`` elements."""
    if isinstance(value, Tensor):
        if value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must be a real tensor, got {value.dtype}")
        V.check_same_device(fn, guidance=guidance, **{name: value})
        t = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        t = torch.tensor(float(value), dtype=guidance.dtype, device=guidance.device)
    else:
        raise TypeError(f"{fn}: {name} must be a number or a tensor, got {type(value).__name__}")
    if t.dim() > 1 or t.numel() not in (1, channels):
        raise ValueError(
            f"{fn}: {name} must be a 0-dim tensor or a vector of 1 or {channels} (kernel channels) "
            f"elements, got shape {tuple(t.shape)}"
        )
    return t.to(guidance.dtype)


def _output_hw(fn: str, what: str, size: Pair, out: Pair, **geometry: Any) -> None:
    if out[0] < 1 or out[1] < 1:
        geo = ", ".join(f"{k}={v}" for k, v in geometry.items())
        raise ValueError(
            f"{fn}: {what} of spatial size {size} gives an empty output {out} ({geo})"
        )


def _prepare_kernel_args(
    fn: str,
    guidance: Tensor,
    mask: Optional[Tensor],
    *,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    kernel_type: Any,
    smooth_kernel_type: Any,
    smooth_kernel: Any,
    inv_alpha: Any,
    inv_lambda: Any,
    channel_wise: bool,
    normalize_kernel: bool,
    transposed: bool,
    padding_mode: Any,
    guidance_name: str = "input",
) -> tuple[Tensor, Optional[Tensor], dict[str, Any]]:
    """Validate the kernel arguments; apply the padding mode; return backend-ready arguments."""
    V.check_tensor(guidance, guidance_name, ndim=4, fn=fn)
    V.check_floating(guidance, guidance_name, fn=fn)
    k = V.kernel_size_pair(kernel_size, fn=fn)
    s = V.pair(stride, "stride", minimum=1, fn=fn)
    p = V.pair(padding, "padding", minimum=0, fn=fn)
    q = V.pair(output_padding, "output_padding", minimum=0, fn=fn)
    d = V.pair(dilation, "dilation", minimum=1, fn=fn)
    kind, _ = V.kernel_function(kernel_type, fn=fn)
    smooth_kind, m = V.parse_smooth_kernel_type(smooth_kernel_type, fn=fn)
    mode = V.check_padding_mode(padding_mode, fn=fn)
    if transposed and mode != "zeros":
        raise ValueError(
            f"{fn}: transposed kernels support only padding_mode='zeros', got {mode!r}"
        )
    b, c_f, hf, wf = guidance.shape
    c_k = c_f if channel_wise else 1

    # kernel-function parameters
    if kind == "inv":
        if inv_alpha is None or inv_lambda is None:
            raise ValueError(
                f"{fn}: kernel_type={kernel_type!r} needs inv_alpha and inv_lambda "
                f"(got inv_alpha={'None' if inv_alpha is None else 'given'}, "
                f"inv_lambda={'None' if inv_lambda is None else 'given'})"
            )
        inv_alpha = _as_param_tensor(inv_alpha, "inv_alpha", guidance, c_k, fn)
        inv_lambda = _as_param_tensor(inv_lambda, "inv_lambda", guidance, c_k, fn)
    else:
        inv_alpha = inv_lambda = None

    # smoothing filter
    if smooth_kind == "none":
        smooth_kernel = None
    else:
        if smooth_kernel is None:
            raise ValueError(
                f"{fn}: smooth_kernel_type={smooth_kernel_type!r} needs a smooth_kernel tensor"
            )
        V.check_tensor(smooth_kernel, "smooth_kernel", fn=fn)
        V.check_floating(smooth_kernel, "smooth_kernel", fn=fn)
        V.check_same_device(fn, **{guidance_name: guidance}, smooth_kernel=smooth_kernel)
        shape = tuple(smooth_kernel.shape)
        if smooth_kernel.dim() == 2:
            smooth_kernel = smooth_kernel.reshape(1, 1, *shape)
        if (
            smooth_kernel.dim() != 4
            or smooth_kernel.shape[:2] != (1, 1)
            or smooth_kernel.shape[2] % 2 == 0
            or smooth_kernel.shape[3] % 2 == 0
        ):
            raise ValueError(
                f"{fn}: smooth_kernel must have shape [1, 1, m_h, m_w] with odd m_h, m_w, "
                f"got {shape}"
            )
        if smooth_kind in ("average", "full") and tuple(smooth_kernel.shape[2:]) != (m, m):
            raise ValueError(
                f"{fn}: smooth_kernel_type={smooth_kernel_type!r} needs a [1, 1, {m}, {m}] "
                f"smooth_kernel, got {shape}"
            )
        smooth_kernel = smooth_kernel.to(guidance.dtype)

    # geometry and mask
    if transposed:
        h_in = transposed_input_size(hf, k[0], s[0], p[0], q[0], d[0])
        w_in = transposed_input_size(wf, k[1], s[1], p[1], q[1], d[1])
        _output_hw(fn, f"transposed guidance ({guidance_name})", (hf, wf), (h_in, w_in),
                   kernel_size=k, stride=s, padding=p, output_padding=q, dilation=d)
        mask_shape: Optional[tuple[int, ...]] = (b, 1, h_in, w_in)
    else:
        ho = conv_output_size(hf, k[0], s[0], p[0], d[0])
        wo = conv_output_size(wf, k[1], s[1], p[1], d[1])
        _output_hw(fn, guidance_name, (hf, wf), (ho, wo), kernel_size=k, stride=s, padding=p,
                   dilation=d)
        mask_shape = None
    if mask is not None:
        V.check_tensor(mask, "mask", ndim=4, fn=fn)
        if mask.is_complex():
            raise TypeError(f"{fn}: mask must be real, got {mask.dtype}")
        V.check_same_device(fn, **{guidance_name: guidance}, mask=mask)
        if transposed:
            if tuple(mask.shape) != mask_shape:
                raise ValueError(
                    f"{fn}: a transposed kernel's mask must be [B, 1, H_in, W_in] = {mask_shape} "
                    f"(the low-resolution input implied by the guidance {tuple(guidance.shape)}), "
                    f"got {tuple(mask.shape)}"
                )
        elif (
            mask.shape[0] != b
            or mask.shape[1] not in (1, c_k)
            or tuple(mask.shape[2:]) != (hf, wf)
        ):
            raise ValueError(
                f"{fn}: mask must be [B, C_M, H, W] = [{b}, 1 or {c_k}, {hf}, {wf}] for guidance "
                f"{tuple(guidance.shape)} (channel_wise={channel_wise}), got {tuple(mask.shape)}"
            )
        mask = mask.to(guidance.dtype)

    if mode != "zeros":
        guidance = V.apply_padding_mode(guidance, p, mode, name=guidance_name, fn=fn)
        mask = V.apply_padding_mode(mask, p, mode, name="mask", fn=fn)
        p = (0, 0)

    kwargs = dict(
        kernel_size=k, stride=s, padding=p, output_padding=q if transposed else (0, 0),
        dilation=d, kernel_type=kernel_type, smooth_kernel_type=smooth_kernel_type,
        smooth_kernel=smooth_kernel, inv_alpha=inv_alpha, inv_lambda=inv_lambda,
        channel_wise=bool(channel_wise), normalize_kernel=bool(normalize_kernel),
        transposed=bool(transposed),
    )
    return guidance, mask, kwargs


def _check_groups(fn: str, groups: Any) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{fn}: groups must be >= 1, got {groups}")
    return groups


def _check_weight(
    fn: str,
    input: Tensor,
    weight: Any,
    bias: Any,
    *,
    shared_filters: bool,
    groups: int,
    transposed: bool,
) -> tuple[int, Pair]:
    """Check weight/bias against the input channels; return ``(C_out, (k_h, k_w))``."""
    V.check_tensor(weight, "weight", ndim=4, fn=fn)
    c_in = input.shape[1]
    wshape = tuple(weight.shape)
    k = V.kernel_size_pair(wshape[-2:], "weight kernel size (weight.shape[-2:])", fn=fn)
    if shared_filters:
        if groups != 1:
            raise ValueError(f"{fn}: shared_filters=True cannot be combined with groups={groups}")
        if wshape[:2] != (1, 1):
            raise ValueError(
                f"{fn}: shared_filters=True needs a weight of shape [1, 1, k_h, k_w], got {wshape}"
            )
        c_out = c_in
    else:
        if c_in % groups != 0:
            raise ValueError(
                f"{fn}: input channels ({c_in}, input shape {tuple(input.shape)}) are not "
                f"divisible by groups={groups}"
            )
        if transposed:
            layout = "[C_in, C_out/groups, k_h, k_w]"
            ok = wshape[0] == c_in
            c_out = wshape[1] * groups
        else:
            layout = "[C_out, C_in/groups, k_h, k_w]"
            ok = wshape[1] * groups == c_in and wshape[0] % groups == 0
            c_out = wshape[0]
        if not ok:
            raise ValueError(
                f"{fn}: weight of shape {wshape} does not match input channels {c_in} "
                f"(input shape {tuple(input.shape)}) with groups={groups}; expected {layout}"
            )
    if bias is not None:
        V.check_tensor(bias, "bias", ndim=1, fn=fn)
        if bias.shape[0] != c_out:
            raise ValueError(
                f"{fn}: bias must have {c_out} (output channels) elements, got shape "
                f"{tuple(bias.shape)}"
            )
    return c_out, k


def _check_data(fn: str, input: Any, **others: Optional[Tensor]) -> None:
    """``input`` 4-D floating; all tensors floating, one dtype, one device."""
    V.check_tensor(input, "input", ndim=4, fn=fn)
    for name, t in others.items():
        if t is not None:
            V.check_tensor(t, name, fn=fn)
    tensors = {"input": input, **others}
    for name, t in tensors.items():
        if t is not None:
            V.check_floating(t, name, fn=fn)
    V.check_same_device(fn, **tensors)
    V.check_same_dtype(fn, **tensors)


def _check_kernel_shape(fn: str, kernel: Any, expected: tuple[Any, ...], what: str) -> None:
    V.check_tensor(kernel, "kernel", ndim=6, fn=fn)
    shape = tuple(kernel.shape)
    ok = all(e is None or s == e or (isinstance(e, tuple) and s in e)
             for s, e in zip(shape, expected))
    if not ok:
        exp = ", ".join("?" if e is None else (" or ".join(map(str, e)) if isinstance(e, tuple)
                                               else str(e)) for e in expected)
        raise ValueError(f"{fn}: kernel must have shape [{exp}] ({what}), got {list(shape)}")


def _check_guidance(fn: str, guidance: Any, input: Tensor, size: Pair, what: str) -> None:
    V.check_tensor(guidance, "guidance", ndim=4, fn=fn)
    if guidance.shape[0] != input.shape[0] or tuple(guidance.shape[2:]) != size:
        raise ValueError(
            f"{fn}: guidance must have batch {input.shape[0]} and spatial size {size} ({what}); "
            f"got guidance {tuple(guidance.shape)} for input {tuple(input.shape)}"
        )


# -- public ops -----------------------------------------------------------------------------------
def packernel2d(
    input: Tensor,
    mask: Optional[Tensor] = None,
    kernel_size: IntOrPair = 0,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    kernel_type: str = "gaussian",
    smooth_kernel_type: str = "none",
    smooth_kernel: Optional[Tensor] = None,
    inv_alpha: Optional[Union[Tensor, float]] = None,
    inv_lambda: Optional[Union[Tensor, float]] = None,
    channel_wise: bool = False,
    normalize_kernel: bool = False,
    transposed: bool = False,
    native_impl: bool = False,
    padding_mode: str = "zeros",
) -> tuple[Tensor, Optional[Tensor]]:
    """Compute the pixel-adaptive kernel from guidance features (docs/semantics.md §2).

    Args:
        input: Guidance features ``F`` ``[B, C_f, H_f, W_f]``. For ``transposed=True`` they live
            at the *output* resolution of the transposed convolution.
        mask: Optional mask ``[B, C_M, H_f, W_f]`` with ``C_M ∈ {1, C_K}`` (transposed:
            ``[B, 1, H_in, W_in]``, the low-resolution input size); cast to the guidance dtype.
        kernel_size: Odd window size (int or pair); must be given.
        stride: Stride of the windows (transposed: of the transposed convolution).
        padding: Zero padding (transposed: of the transposed convolution).
        output_padding: Transposed only: extra output rows/columns.
        dilation: Dilation of the windows.
        kernel_type: ``'gaussian'`` (``exp(−½‖Δ‖²)``) or ``'inv_…'`` (``α + (‖Δ‖² + 1e-4)^(λ/2)``);
            ``'_asym'`` in an ``inv_`` type keeps only positive differences.
        smooth_kernel_type: ``'none'``, or ``'gaussian'``/``'average_<m>'``/``'full_<m>'`` to take
            the centre feature from ``smooth_kernel`` applied around the centre tap (any dilation).
        smooth_kernel: ``[1, 1, m_h, m_w]`` smoothing filter (odd sizes), needed when smoothing.
        inv_alpha: ``α`` of ``inv_`` kernels: a number, 0-dim tensor or ``C_K`` vector.
        inv_lambda: ``λ`` of ``inv_`` kernels, same forms as ``inv_alpha``.
        channel_wise: One kernel per guidance channel (``C_K = C_f``) instead of one (``C_K = 1``).
        normalize_kernel: Divide each window by the sum of its (valid, unmasked) taps.
        transposed: Compute the kernel of a transposed convolution (docs/semantics.md §2.1).
        native_impl: Accepted for pacnet compatibility; ignored.
        padding_mode: ``'zeros'`` (default), ``'reflect'``, ``'replicate'`` or ``'circular'``
            (non-transposed only; padded taps then count as valid).

    Returns:
        ``(K, out_mask)``: ``K`` is ``[B, C_K, k_h, k_w, H', W']``; ``out_mask`` is None without a
        mask, else a bool tensor ``[B, C, 1, 1, H', W']``, True where the window's normaliser is
        non-zero.

    Raises:
        ValueError: invalid geometry, even kernel size, unknown kernel/smoothing type, missing
            ``inv_alpha``/``inv_lambda``/``smooth_kernel``, mask of the wrong shape.
        TypeError: non-tensor or non-floating inputs, wrongly typed arguments.
    """
    del native_impl
    fn = "packernel2d"
    guidance, mask, kwargs = _prepare_kernel_args(
        fn, input, mask, kernel_size=kernel_size, stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, kernel_type=kernel_type,
        smooth_kernel_type=smooth_kernel_type, smooth_kernel=smooth_kernel, inv_alpha=inv_alpha,
        inv_lambda=inv_lambda, channel_wise=channel_wise, normalize_kernel=normalize_kernel,
        transposed=transposed, padding_mode=padding_mode,
    )
    return registry.resolve(guidance).packernel2d(guidance, mask, **kwargs)


def pacconv2d(
    input: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    shared_filters: bool = False,
    native_impl: bool = False,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Tensor:
    """Pixel-adaptive convolution with a precomputed kernel (docs/semantics.md §3.1).

    ``Y[b,o,y,x] = β[o] + Σ_{c,a,e} W[o,c,a,e] · K[b,0,a,e,y,x] · X̄[b,c,y·s−p+a·d,x·s−p+e·d]``;
    with ``K ≡ 1`` this is ``F.conv2d``.

    Args:
        input: ``X`` ``[B, C_in, H, W]``.
        kernel: ``K`` ``[B, 1, k_h, k_w, H', W']`` (:func:`packernel2d` with the same geometry).
        weight: ``[C_out, C_in/groups, k_h, k_w]``, or ``[1, 1, k_h, k_w]`` with ``shared_filters``.
        bias: Optional ``[C_out]``.
        stride: Stride.
        padding: Padding (zeros unless ``padding_mode`` says otherwise).
        dilation: Dilation.
        shared_filters: Apply the single ``[1, 1, k_h, k_w]`` filter to every channel (depthwise,
            ``C_out = C_in``).
        native_impl: Accepted for pacnet compatibility; ignored.
        groups: Grouped convolution as in ``nn.Conv2d`` (not with ``shared_filters``).
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'`` (as in
            ``nn.Conv2d``).

    Returns:
        ``[B, C_out, H', W']``.

    Raises:
        ValueError: shapes that do not fit together, invalid geometry or groups.
        TypeError: non-tensor, non-floating or mixed-dtype inputs.
    """
    del native_impl
    fn = "pacconv2d"
    _check_data(fn, input, kernel=kernel, weight=weight, bias=bias)
    s = V.pair(stride, "stride", minimum=1, fn=fn)
    p = V.pair(padding, "padding", minimum=0, fn=fn)
    d = V.pair(dilation, "dilation", minimum=1, fn=fn)
    g = _check_groups(fn, groups)
    mode = V.check_padding_mode(padding_mode, fn=fn)
    _, k = _check_weight(fn, input, weight, bias, shared_filters=shared_filters, groups=g,
                         transposed=False)
    b, _, h, w = input.shape
    out = (conv_output_size(h, k[0], s[0], p[0], d[0]), conv_output_size(w, k[1], s[1], p[1], d[1]))
    _output_hw(fn, "input", (h, w), out, kernel_size=k, stride=s, padding=p, dilation=d)
    _check_kernel_shape(fn, kernel, (b, 1, k[0], k[1], out[0], out[1]),
                        "batch, one channel, the weight's kernel size, the output size")
    if mode != "zeros":
        input = V.apply_padding_mode(input, p, mode, fn=fn)  # type: ignore[assignment]
        p = (0, 0)
    return registry.resolve(input).pacconv2d(
        input, kernel, weight, bias, stride=s, padding=p, dilation=d,
        shared_filters=bool(shared_filters), groups=g,
    )


def pacconv_transpose2d(
    input: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    shared_filters: bool = False,
    native_impl: bool = False,
    groups: int = 1,
) -> Tensor:
    """Pixel-adaptive transposed convolution with a precomputed kernel (docs/semantics.md §3.2).

    ``Y[b,o,y,x] = β[o] + Σ_{c,a,e} W[c,o,a,e] · K[b,0,a,e,y,x] · Ẑ[b,c,y+a·d,x+e·d]`` where
    ``Ẑ`` is the zero-inserted, padded input (docs/semantics.md §1.1). The weight is **not**
    flipped: with
    ``K ≡ 1`` this equals ``F.conv_transpose2d`` with ``weight.flip(-1, -2)``. Padding is zero
    padding only.

    Args:
        input: ``X`` ``[B, C_in, H, W]``.
        kernel: ``K`` ``[B, 1, k_h, k_w, H_o, W_o]`` (:func:`packernel2d`, ``transposed=True``).
        weight: ``[C_in, C_out/groups, k_h, k_w]``, or ``[1, 1, k_h, k_w]`` with ``shared_filters``.
        bias: Optional ``[C_out]``.
        stride: Stride.
        padding: Padding.
        output_padding: Extra rows/columns at the bottom/right of the output.
        dilation: Dilation.
        shared_filters: One ``[1, 1, k_h, k_w]`` filter for every channel (``C_out = C_in``).
        native_impl: Accepted for pacnet compatibility; ignored.
        groups: Grouped transposed convolution as in ``nn.ConvTranspose2d``.

    Returns:
        ``[B, C_out, H_o, W_o]`` with ``H_o = (H − 1)s − 2p + d(k−1) + q + 1``.

    Raises:
        ValueError: shapes that do not fit together, invalid geometry or groups.
        TypeError: non-tensor, non-floating or mixed-dtype inputs.
    """
    del native_impl
    fn = "pacconv_transpose2d"
    _check_data(fn, input, kernel=kernel, weight=weight, bias=bias)
    s = V.pair(stride, "stride", minimum=1, fn=fn)
    p = V.pair(padding, "padding", minimum=0, fn=fn)
    q = V.pair(output_padding, "output_padding", minimum=0, fn=fn)
    d = V.pair(dilation, "dilation", minimum=1, fn=fn)
    g = _check_groups(fn, groups)
    _, k = _check_weight(fn, input, weight, bias, shared_filters=shared_filters, groups=g,
                         transposed=True)
    b, _, h, w = input.shape
    out = (conv_transpose_output_size(h, k[0], s[0], p[0], q[0], d[0]),
           conv_transpose_output_size(w, k[1], s[1], p[1], q[1], d[1]))
    _output_hw(fn, "input", (h, w), out, kernel_size=k, stride=s, padding=p, output_padding=q,
               dilation=d)
    _check_kernel_shape(fn, kernel, (b, 1, k[0], k[1], out[0], out[1]),
                        "batch, one channel, the weight's kernel size, the output size")
    return registry.resolve(input).pacconv_transpose2d(
        input, kernel, weight, bias, stride=s, padding=p, output_padding=q, dilation=d,
        shared_filters=bool(shared_filters), groups=g,
    )


def pacpool2d(
    input: Tensor,
    kernel: Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    native_impl: bool = False,
    padding_mode: str = "zeros",
) -> Tensor:
    """Pixel-adaptive pooling: the kernel-weighted window *sum* (docs/semantics.md §3.3).

    ``Y[b,c,y,x] = Σ_{a,e} K[b,κ(c),a,e,y,x] · X̄[b,c,y·s−p+a·d,x·s−p+e·d]`` with ``κ(c) = 0`` for a
    one-channel kernel and ``c`` for a ``C``-channel one. No normalisation and no bias: with
    ``K ≡ 1`` the result is ``k_h·k_w × avg_pool2d(count_include_pad=True)``; averages come from a
    kernel computed with ``normalize_kernel=True``.

    Args:
        input: ``X`` ``[B, C, H, W]``.
        kernel: ``K`` ``[B, 1 or C, k_h, k_w, H', W']``.
        kernel_size: Odd window size (int or pair).
        stride: Stride (default 1, unlike ``nn.AvgPool2d``).
        padding: Padding.
        dilation: Dilation.
        native_impl: Accepted for pacnet compatibility; ignored.
        padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.

    Returns:
        ``[B, C, H', W']``.

    Raises:
        ValueError: shapes that do not fit together, invalid geometry.
        TypeError: non-tensor, non-floating or mixed-dtype inputs.
    """
    del native_impl
    fn = "pacpool2d"
    _check_data(fn, input, kernel=kernel)
    k = V.kernel_size_pair(kernel_size, fn=fn)
    s = V.pair(stride, "stride", minimum=1, fn=fn)
    p = V.pair(padding, "padding", minimum=0, fn=fn)
    d = V.pair(dilation, "dilation", minimum=1, fn=fn)
    mode = V.check_padding_mode(padding_mode, fn=fn)
    b, c, h, w = input.shape
    out = (conv_output_size(h, k[0], s[0], p[0], d[0]), conv_output_size(w, k[1], s[1], p[1], d[1]))
    _output_hw(fn, "input", (h, w), out, kernel_size=k, stride=s, padding=p, dilation=d)
    _check_kernel_shape(fn, kernel, (b, (1, c), k[0], k[1], out[0], out[1]),
                        "batch, 1 or C channels, kernel_size, the output size")
    if mode != "zeros":
        input = V.apply_padding_mode(input, p, mode, fn=fn)  # type: ignore[assignment]
        p = (0, 0)
    return registry.resolve(input).pacpool2d(
        input, kernel, kernel_size=k, stride=s, padding=p, dilation=d
    )


# -- guided entry points (used by the modules when no precomputed kernel is given) ----------------
def _pacconv2d_guided(
    input: Tensor,
    guidance: Tensor,
    mask: Optional[Tensor],
    weight: Tensor,
    bias: Optional[Tensor],
    *,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
    shared_filters: bool,
    groups: int,
    padding_mode: str,
    kernel_type: str,
    smooth_kernel_type: str,
    smooth_kernel: Optional[Tensor],
    inv_alpha: Optional[Tensor],
    inv_lambda: Optional[Tensor],
    normalize_kernel: bool,
) -> tuple[Tensor, Optional[Tensor]]:
    """PacConv2d from raw guidance: ``packernel2d`` + ``pacconv2d``, possibly fused by the backend.

    Returns:
        ``(output, out_mask)``; ``out_mask`` is None when ``mask`` is None.
    """
    fn = "PacConv2d"
    _check_data(fn, input, guidance=guidance, weight=weight, bias=bias)
    g = _check_groups(fn, groups)
    _, k = _check_weight(fn, input, weight, bias, shared_filters=shared_filters, groups=g,
                         transposed=False)
    _check_guidance(fn, guidance, input, tuple(input.shape[2:]), "same as the input")
    guidance, mask, kw = _prepare_kernel_args(
        fn, guidance, mask, kernel_size=k, stride=stride, padding=padding, output_padding=0,
        dilation=dilation, kernel_type=kernel_type, smooth_kernel_type=smooth_kernel_type,
        smooth_kernel=smooth_kernel, inv_alpha=inv_alpha, inv_lambda=inv_lambda,
        channel_wise=False, normalize_kernel=normalize_kernel, transposed=False,
        padding_mode=padding_mode, guidance_name="guidance",
    )
    if padding_mode != "zeros":
        p = V.pair(padding, "padding", minimum=0, fn=fn)
        input = V.apply_padding_mode(input, p, padding_mode, fn=fn)  # type: ignore[assignment]
    return registry.resolve(input).pacconv2d_guided(
        input, guidance, mask, weight, bias, stride=kw["stride"], padding=kw["padding"],
        dilation=kw["dilation"], shared_filters=bool(shared_filters), groups=g,
        kernel_type=kernel_type, smooth_kernel_type=smooth_kernel_type,
        smooth_kernel=kw["smooth_kernel"], inv_alpha=kw["inv_alpha"], inv_lambda=kw["inv_lambda"],
        normalize_kernel=bool(normalize_kernel),
    )


def _pacconv_transpose2d_guided(
    input: Tensor,
    guidance: Tensor,
    mask: Optional[Tensor],
    weight: Tensor,
    bias: Optional[Tensor],
    *,
    stride: IntOrPair,
    padding: IntOrPair,
    output_padding: IntOrPair,
    dilation: IntOrPair,
    shared_filters: bool,
    groups: int,
    kernel_type: str,
    smooth_kernel_type: str,
    smooth_kernel: Optional[Tensor],
    inv_alpha: Optional[Tensor],
    inv_lambda: Optional[Tensor],
    normalize_kernel: bool,
) -> tuple[Tensor, Optional[Tensor]]:
    """PacConvTranspose2d from raw guidance (at the output resolution).

    Returns:
        ``(output, out_mask)``; ``out_mask`` is None when ``mask`` is None. ``mask`` is at the input
        resolution, ``[B, 1, H, W]``.
    """
    fn = "PacConvTranspose2d"
    _check_data(fn, input, guidance=guidance, weight=weight, bias=bias)
    g = _check_groups(fn, groups)
    _, k = _check_weight(fn, input, weight, bias, shared_filters=shared_filters, groups=g,
                         transposed=True)
    s = V.pair(stride, "stride", minimum=1, fn=fn)
    p = V.pair(padding, "padding", minimum=0, fn=fn)
    q = V.pair(output_padding, "output_padding", minimum=0, fn=fn)
    d = V.pair(dilation, "dilation", minimum=1, fn=fn)
    h, w = input.shape[2:]
    out = (conv_transpose_output_size(h, k[0], s[0], p[0], q[0], d[0]),
           conv_transpose_output_size(w, k[1], s[1], p[1], q[1], d[1]))
    _output_hw(fn, "input", (h, w), out, kernel_size=k, stride=s, padding=p, output_padding=q,
               dilation=d)
    _check_guidance(fn, guidance, input, out, "the transposed convolution's output size")
    guidance, mask, kw = _prepare_kernel_args(
        fn, guidance, mask, kernel_size=k, stride=s, padding=p, output_padding=q,
        dilation=d, kernel_type=kernel_type, smooth_kernel_type=smooth_kernel_type,
        smooth_kernel=smooth_kernel, inv_alpha=inv_alpha, inv_lambda=inv_lambda,
        channel_wise=False, normalize_kernel=normalize_kernel, transposed=True,
        padding_mode="zeros", guidance_name="guidance",
    )
    return registry.resolve(input).pacconv_transpose2d_guided(
        input, guidance, mask, weight, bias, stride=s, padding=p, output_padding=q, dilation=d,
        shared_filters=bool(shared_filters), groups=g, kernel_type=kernel_type,
        smooth_kernel_type=smooth_kernel_type, smooth_kernel=kw["smooth_kernel"],
        inv_alpha=kw["inv_alpha"], inv_lambda=kw["inv_lambda"],
        normalize_kernel=bool(normalize_kernel),
    )


def _pacpool2d_guided(
    input: Tensor,
    guidance: Tensor,
    mask: Optional[Tensor],
    *,
    kernel_size: IntOrPair,
    stride: IntOrPair,
    padding: IntOrPair,
    dilation: IntOrPair,
    padding_mode: str,
    kernel_type: str,
    smooth_kernel_type: str,
    smooth_kernel: Optional[Tensor],
    inv_alpha: Optional[Tensor],
    inv_lambda: Optional[Tensor],
    channel_wise: bool,
    normalize_kernel: bool,
) -> tuple[Tensor, Optional[Tensor]]:
    """PacPool2d from raw guidance.

    Returns:
        ``(output, out_mask)``; ``out_mask`` is None when ``mask`` is None.

    Raises:
        ValueError: besides the usual checks, ``channel_wise`` with a guidance whose channel count
            differs from the input's.
    """
    fn = "PacPool2d"
    _check_data(fn, input, guidance=guidance)
    _check_guidance(fn, guidance, input, tuple(input.shape[2:]), "same as the input")
    if channel_wise and guidance.shape[1] != input.shape[1]:
        raise ValueError(
            f"{fn}: channel_wise=True needs guidance with as many channels as the input, got "
            f"guidance {tuple(guidance.shape)} for input {tuple(input.shape)}"
        )
    guidance, mask, kw = _prepare_kernel_args(
        fn, guidance, mask, kernel_size=kernel_size, stride=stride, padding=padding,
        output_padding=0, dilation=dilation, kernel_type=kernel_type,
        smooth_kernel_type=smooth_kernel_type, smooth_kernel=smooth_kernel, inv_alpha=inv_alpha,
        inv_lambda=inv_lambda, channel_wise=channel_wise, normalize_kernel=normalize_kernel,
        transposed=False, padding_mode=padding_mode, guidance_name="guidance",
    )
    if padding_mode != "zeros":
        p = V.pair(padding, "padding", minimum=0, fn=fn)
        input = V.apply_padding_mode(input, p, padding_mode, fn=fn)  # type: ignore[assignment]
    return registry.resolve(input).pacpool2d_guided(
        input, guidance, mask, kernel_size=kw["kernel_size"], stride=kw["stride"],
        padding=kw["padding"], dilation=kw["dilation"], kernel_type=kernel_type,
        smooth_kernel_type=smooth_kernel_type, smooth_kernel=kw["smooth_kernel"],
        inv_alpha=kw["inv_alpha"], inv_lambda=kw["inv_lambda"], channel_wise=bool(channel_wise),
        normalize_kernel=bool(normalize_kernel),
    )
