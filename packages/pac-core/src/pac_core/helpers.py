"""Helpers: im2col (:func:`nd2col`), the Gaussian window (:func:`np_gaussian_2d`) and geometry.

``nd2col`` and ``np_gaussian_2d`` are public pacnet names (docs/semantics.md §1.2, §5.1). The size
formulas
(:func:`conv_output_size`, :func:`conv_transpose_output_size`, :func:`transposed_input_size`)
are the docs/semantics.md §1 table, shared by the functional layer, the backends and the modules.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch.nn.functional as F
from torch import Tensor

IntOrPair = Union[int, tuple[int, int], list[int]]

__all__ = [
    "conv_output_size",
    "conv_transpose_output_size",
    "nd2col",
    "np_gaussian_2d",
    "transposed_input_size",
]


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution / pooling along one axis (as ``nn.Conv2d``).

    Args:
        size: Input length ``H``.
        kernel_size: ``k``.
        stride: ``s``.
        padding: ``p`` (zero padding on both sides).
        dilation: ``d``.

    Returns:
        ``⌊(H + 2p − d(k−1) − 1)/s⌋ + 1`` (may be ``≤ 0`` for impossible geometries).
    """
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def conv_transpose_output_size(
    size: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """Output length of a transposed convolution along one axis (as ``nn.ConvTranspose2d``).

    Args:
        size: Input length ``H``.
        kernel_size: ``k``.
        stride: ``s``.
        padding: ``p``.
        output_padding: ``q``.
        dilation: ``d``.

    Returns:
        ``(H − 1)s − 2p + d(k−1) + q + 1``.
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def transposed_input_size(
    size: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """Low-resolution input length implied by a transposed output (guidance) of length ``size``.

    Args:
        size: Output length ``H_o``.
        kernel_size: ``k``.
        stride: ``s``.
        padding: ``p``.
        output_padding: ``q``.
        dilation: ``d``.

    Returns:
        ``⌊(H_o − q − 1 − d(k−1) + 2p)/s⌋ + 1`` (docs/semantics.md §1).
    """
    return (size - output_padding - 1 - dilation * (kernel_size - 1) + 2 * padding) // stride + 1


def _as_pair(value: IntOrPair) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


def _zero_insert(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """docs/semantics.md §1.1 step 1: put ``s − 1`` zeros between neighbouring samples (any layout,
    autograd)."""
    sh, sw = stride
    if sh == 1 and sw == 1:
        return x
    n, c, h, w = x.shape
    z = x.reshape(n, c, h, 1, w, 1)
    z = F.pad(z, (0, sw - 1, 0, 0, 0, sh - 1))  # [n, c, h, sh, w, sw]
    z = z.reshape(n, c, h * sh, w * sw)
    return z[:, :, : (h - 1) * sh + 1, : (w - 1) * sw + 1]


def transposed_grid(
    x: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """The zero-inserted, asymmetrically padded grid ``Ẑ`` of docs/semantics.md §1.1 (negative pads
    crop).

    Args:
        x: ``[N, C, H, W]``.
        kernel_size: ``(k_h, k_w)``.
        stride: ``(s_h, s_w)``.
        padding: ``(p_h, p_w)``.
        output_padding: ``(q_h, q_w)``.
        dilation: ``(d_h, d_w)``.

    Returns:
        ``Ẑ`` of size ``(H_o + d_h(k_h−1)) × (W_o + d_w(k_w−1))``.
    """
    z = _zero_insert(x, stride)
    ph = (kernel_size[0] - 1) * dilation[0] - padding[0]
    pw = (kernel_size[1] - 1) * dilation[1] - padding[1]
    return F.pad(z, (pw, pw + output_padding[1], ph, ph + output_padding[0]))


def unfold2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """Zero-padded im2col of ``x`` ``[N, C, H, W]`` as ``[N, C, k_h, k_w, H', W']``.

    Args:
        x: Input tensor.
        kernel_size: ``(k_h, k_w)``.
        stride: ``(s_h, s_w)``.
        padding: ``(p_h, p_w)``, zero padding, non-negative.
        dilation: ``(d_h, d_w)``.

    Returns:
        ``out[n,c,a,e,y,x] = x̄[n, c, y·s_h − p_h + a·d_h, x·s_w − p_w + e·d_w]``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel_size
    ho = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    if c == 0 or h == 0 or w == 0:  # F.unfold rejects these; every tap reads zero (or nothing)
        return x.new_zeros((n, c, kh, kw, max(ho, 0), max(wo, 0))) + x.sum() * 0
    cols = F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)
    return cols.reshape(n, c, kh, kw, ho, wo)


def nd2col(
    input_nd: Tensor,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    transposed: bool = False,
    use_pyinn_if_possible: bool = False,
) -> Tensor:
    """Extract sliding windows (im2col), keeping the tap and spatial axes separate
    (docs/semantics.md §1.2).

    Only 2-D inputs (``[N, C, H, W]``) are supported. Padding is zero padding.

    Args:
        input_nd: ``[N, C, H, W]`` tensor.
        kernel_size: Window size ``k`` (int or pair).
        stride: Stride ``s``.
        padding: Zero padding ``p``.
        output_padding: Extra zeros after the bottom/right edge (transposed mode only).
        dilation: Dilation ``d``.
        transposed: Read the windows of the zero-inserted, padded grid of a transposed convolution
            (docs/semantics.md §1.1) instead; the output then has the transposed-convolution output
            size.
        use_pyinn_if_possible: Accepted for pacnet compatibility; ignored.

    Returns:
        ``[N, C, k_h, k_w, H', W']`` with
        ``out[n,c,a,e,y,x] = input̄[n, c, y·s − p + a·d, x·s − p + e·d]`` (non-transposed)
        or ``Ẑ[n, c, y + a·d, x + e·d]`` (transposed).

    Raises:
        ValueError: ``input_nd`` is not 4-D, or the geometry gives an empty output.
    """
    del use_pyinn_if_possible
    if not isinstance(input_nd, Tensor) or input_nd.dim() != 4:
        shape = tuple(input_nd.shape) if isinstance(input_nd, Tensor) else type(input_nd).__name__
        raise ValueError(f"nd2col: input_nd must be a 4-D [N, C, H, W] tensor, got {shape}")
    k, s, p, q, d = (_as_pair(v) for v in (kernel_size, stride, padding, output_padding, dilation))
    if min(k + s + d) < 1 or min(p + q) < 0:
        raise ValueError(
            f"nd2col: need kernel_size, stride, dilation >= 1 and padding, output_padding >= 0, "
            f"got kernel_size={k}, stride={s}, padding={p}, output_padding={q}, dilation={d}"
        )
    h, w = input_nd.shape[-2:]
    if transposed:
        ho = conv_transpose_output_size(h, k[0], s[0], p[0], q[0], d[0])
        wo = conv_transpose_output_size(w, k[1], s[1], p[1], q[1], d[1])
    else:
        ho = conv_output_size(h, k[0], s[0], p[0], d[0])
        wo = conv_output_size(w, k[1], s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise ValueError(
            f"nd2col: input of size {(h, w)} gives an empty output {(ho, wo)} for kernel_size={k}, "
            f"stride={s}, padding={p}, output_padding={q}, dilation={d}, transposed={transposed}"
        )
    if transposed:
        return unfold2d(transposed_grid(input_nd, k, s, p, q, d), k, (1, 1), (0, 0), d)
    return unfold2d(input_nd, k, s, p, d)


def np_gaussian_2d(width: int, sigma: float = -1) -> np.ndarray:
    """A normalised 2-D Gaussian window (docs/semantics.md §5.1).

    Args:
        width: Odd window size.
        sigma: Standard deviation; ``≤ 0`` means ``width / 4``.

    Returns:
        float32 array ``[width, width]``, ``g gᵀ / Σ(g gᵀ)`` with
        ``g = exp(−r²/(2σ²))``, ``r = −⌊width/2⌋ … ⌊width/2⌋``; sums to 1.

    Raises:
        ValueError: ``width`` is not a positive odd integer.
    """
    is_int = isinstance(width, (int, np.integer)) and not isinstance(width, bool)
    if not is_int or width < 1 or width % 2 == 0:
        raise ValueError(f"np_gaussian_2d: width must be a positive odd integer, got {width!r}")
    if sigma <= 0:
        sigma = width / 4
    r = np.arange(-(width // 2), width // 2 + 1, dtype=np.float32)
    g = np.exp(-(r**2) / (2 * sigma**2)).astype(np.float32)
    g2 = np.outer(g, g).astype(np.float32)
    return (g2 / g2.sum()).astype(np.float32)
