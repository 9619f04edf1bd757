"""The ``reference`` backend: the PAC ops written directly from the formulas of docs/semantics.md
in plain torch.

It runs on every device and floating dtype and is the ground truth of the parity tests. It
materialises the column tensor ``[B, C, k_h, k_w, H', W']`` and the per-pixel kernel, so it is
memory-hungry; gradients of any order (double backward included) are plain autograd of the
formulas.

Invalid values (docs/backends.md, "Invalid values"): NaN and Inf propagate by IEEE rules through
every tap that reads a real sample; a tap that falls into zero padding or between the inserted
zeros of a transposed convolution contributes exactly 0, whatever the kernel value there (the
native backend never reads such taps). So the kernel is zeroed at those taps (``torch.where``, not
a product, which would turn an infinite kernel value into NaN) before it meets the data.

float16 / bfloat16 inputs are computed in float32 and the results cast back to the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..helpers import (
    conv_transpose_output_size,
    transposed_grid,
    transposed_input_size,
    unfold2d,
)
from .base import Backend, Pair

__all__ = ["ReferenceBackend"]

#: ε of the ``inv_`` kernel ``α + (D + ε)^(λ/2)`` (docs/semantics.md §2.3).
INV_EPS = 1e-4


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Low-precision floats are computed in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _zero_if_empty(t: Tensor) -> Tensor:
    """``[t = 0]`` in ``t``'s dtype: added to normalisers so empty windows give 0, not NaN."""
    return (t == 0).to(t.dtype)


def _real_taps(kernel: Tensor, valid: Tensor) -> Tensor:
    """``kernel`` with its taps outside the real samples (``valid == 0``) set to exactly 0."""
    return torch.where(valid > 0, kernel, kernel.new_zeros(()))


def _valid_taps(
    hw: tuple[int, int], kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
    like: Tensor,
) -> Tensor:
    """Validity pattern ``[1, 1, k_h, k_w, H', W']`` of an ordinary convolution (1: real sample)."""
    return unfold2d(like.new_ones((1, 1, *hw)), kernel_size, stride, padding, dilation)


def _strided_windows(
    x: Tensor, size: Pair, stride: Pair, offset: Pair, out_size: Pair
) -> Tensor:
    """Zero-extended windows ``out[…, u, v, y, x] = x̄[…, y·s_h + o_h + u, x·s_w + o_w + v]``.

    ``o`` is ``offset``.
    ``x`` is ``[N, C, H, W]``; ``size`` is the (undilated) window ``(m_h, m_w)``; the result is
    ``[N, C, m_h, m_w, out_h, out_w]``. Negative offsets mean zero padding; the padding amounts are
    computed so that exactly ``out_size`` windows are read.
    """
    h, w = x.shape[-2:]
    pads = []
    for axis in (1, 0):  # F.pad order: last axis first
        length = (h, w)[axis]
        before = -offset[axis]
        after = (out_size[axis] - 1) * stride[axis] + offset[axis] + size[axis] - length
        pads += [before, after]
    xp = F.pad(x, pads)
    return unfold2d(xp, size, stride, (0, 0), (1, 1))


def _transposed_pattern(
    x: Tensor, size_out: Pair, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> Tensor:
    """Windows of the zero-inserted grid ``Ẑ`` of ``x`` (docs/semantics.md §1.1) over an output of
    ``size_out``.

    ``size_out`` need not be reachable exactly with the given geometry: the output padding is
    chosen so that ``size_out`` windows are read (only the bottom/right edge moves).
    """
    hw = x.shape[-2:]
    k, s, p, d = kernel_size, stride, padding, dilation
    q = tuple(
        size_out[i] - conv_transpose_output_size(hw[i], k[i], s[i], p[i], 0, d[i]) for i in range(2)
    )
    grid = transposed_grid(x, kernel_size, stride, padding, q, dilation)  # type: ignore[arg-type]
    return unfold2d(grid, kernel_size, (1, 1), (0, 0), dilation)


class ReferenceBackend(Backend):
    """Pure-torch implementation of the PAC ops (any device, any floating dtype)."""

    name = "reference"
    priority = 0

    def supports(self, device: torch.device, dtype: torch.dtype) -> bool:
        """Every device; every floating dtype."""
        return dtype.is_floating_point

    # -- kernel ---------------------------------------------------------------------------------
    def packernel2d(
        self,
        guidance: Tensor,
        mask: Optional[Tensor],
        *,
        kernel_size: Pair,
        stride: Pair,
        padding: Pair,
        output_padding: Pair,
        dilation: Pair,
        kernel_type: str,
        smooth_kernel_type: str,
        smooth_kernel: Optional[Tensor],
        inv_alpha: Optional[Tensor],
        inv_lambda: Optional[Tensor],
        channel_wise: bool,
        normalize_kernel: bool,
        transposed: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """The per-pixel kernel (docs/semantics.md §2): ``[B, C_K, k_h, k_w, H', W']`` and the bool
        out-mask."""
        out_dtype = guidance.dtype
        cdtype = _compute_dtype(out_dtype)
        f = guidance.to(cdtype)
        k, d = kernel_size, dilation
        hf, wf = f.shape[-2:]

        # §2.1: transposed kernels are sampled with stride 1, padding ⌊(k−1)d/2⌋.
        if transposed:
            s_k: Pair = (1, 1)
            p_k: Pair = ((k[0] - 1) * d[0] // 2, (k[1] - 1) * d[1] // 2)
        else:
            s_k, p_k = stride, padding
        cols = unfold2d(f, k, s_k, p_k, d)  # [B, C_f, kh, kw, H', W']
        out_size: Pair = (cols.shape[-2], cols.shape[-1])
        centre = ((k[0] - 1) // 2, (k[1] - 1) // 2)

        # §2.2: the centre feature φ, optionally smoothed around the centre-tap position.
        if smooth_kernel_type == "none" or smooth_kernel is None:
            phi = cols[:, :, centre[0], centre[1]]
        else:
            sk = smooth_kernel.to(cdtype).reshape(smooth_kernel.shape[-2:])
            m = (sk.shape[0], sk.shape[1])
            offset = tuple(centre[i] * d[i] - p_k[i] - (m[i] - 1) // 2 for i in range(2))
            win = _strided_windows(f, m, s_k, offset, out_size)  # type: ignore[arg-type]
            phi = torch.einsum("bcuvhw,uv->bchw", win, sk)

        # §2.3: kernel value.
        kind = "gaussian" if kernel_type == "gaussian" else "inv"
        delta = cols - phi[:, :, None, None]
        if kind == "inv" and "_asym" in kernel_type:
            delta = torch.relu(delta)
        dist = delta * delta
        if not channel_wise:
            dist = dist.sum(dim=1, keepdim=True)
        if kind == "gaussian":
            kernel = torch.exp(-0.5 * dist)
        else:
            assert inv_alpha is not None and inv_lambda is not None
            alpha = inv_alpha.to(cdtype).reshape(1, -1, 1, 1, 1, 1)
            lam = inv_lambda.to(cdtype).reshape(1, -1, 1, 1, 1, 1)
            kernel = alpha + (dist + INV_EPS) ** (lam / 2)

        # §2.4: validity pattern, mask, normalisation.
        out_mask: Optional[Tensor] = None
        if mask is not None or normalize_kernel:
            if transposed:
                s, p, q = stride, padding, output_padding
                h_in = transposed_input_size(hf, k[0], s[0], p[0], q[0], d[0])
                w_in = transposed_input_size(wf, k[1], s[1], p[1], q[1], d[1])
                ones = f.new_ones(1, 1, h_in, w_in)
                valid = _transposed_pattern(ones, out_size, k, stride, padding, d)
                m_col = (
                    None
                    if mask is None
                    else _transposed_pattern(mask.to(cdtype), out_size, k, stride, padding, d)
                )
            else:
                valid = unfold2d(f.new_ones(1, 1, hf, wf), k, s_k, p_k, d)
                m_col = None if mask is None else unfold2d(mask.to(cdtype), k, s_k, p_k, d)

            kernel = _real_taps(kernel, valid)
            if m_col is None:  # normalize, no mask
                norm = kernel.sum(dim=(2, 3), keepdim=True)
                kernel = kernel / (norm + _zero_if_empty(norm))
            elif normalize_kernel:
                kernel = kernel * m_col
                norm = kernel.sum(dim=(2, 3), keepdim=True)
                kernel = kernel / (norm + _zero_if_empty(norm))
                out_mask = norm != 0
            else:
                kernel = kernel * m_col
                n_valid = valid.sum(dim=(2, 3), keepdim=True)
                rho = m_col.sum(dim=(2, 3), keepdim=True) / (n_valid + _zero_if_empty(n_valid))
                kernel = kernel / (rho + _zero_if_empty(rho))
                out_mask = rho != 0
        return kernel.to(out_dtype), out_mask

    # -- ops ------------------------------------------------------------------------------------
    def pacconv2d(
        self,
        input: Tensor,
        kernel: Tensor,
        weight: Tensor,
        bias: Optional[Tensor],
        *,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
        shared_filters: bool,
        groups: int,
    ) -> Tensor:
        """docs/semantics.md §3.1: ``Y = β + Σ_{c,a,e} W[o,c,a,e] · K[b,0,a,e] ·
        X̄[b,c,π(y,a),π(x,e)]``."""
        out_dtype = input.dtype
        cdtype = _compute_dtype(out_dtype)
        k = (weight.shape[-2], weight.shape[-1])
        x = input.to(cdtype)
        valid = _valid_taps(tuple(x.shape[-2:]), k, stride, padding, dilation, x)
        cols = unfold2d(x, k, stride, padding, dilation) * _real_taps(kernel.to(cdtype), valid)
        out = self._apply_weight(cols, weight.to(cdtype), shared_filters, groups, transposed=False)
        if bias is not None:
            out = out + bias.to(cdtype).reshape(1, -1, 1, 1)
        return out.to(out_dtype)

    def pacconv_transpose2d(
        self,
        input: Tensor,
        kernel: Tensor,
        weight: Tensor,
        bias: Optional[Tensor],
        *,
        stride: Pair,
        padding: Pair,
        output_padding: Pair,
        dilation: Pair,
        shared_filters: bool,
        groups: int,
    ) -> Tensor:
        """docs/semantics.md §3.2: the windows of ``Ẑ`` (§1.1), weighted by ``K`` and ``W`` (no
        weight flip)."""
        out_dtype = input.dtype
        cdtype = _compute_dtype(out_dtype)
        k = (weight.shape[-2], weight.shape[-1])
        x = input.to(cdtype)
        grid = transposed_grid(x, k, stride, padding, output_padding, dilation)
        ones = transposed_grid(x.new_ones((1, 1, *x.shape[-2:])), k, stride, padding,
                               output_padding, dilation)
        valid = unfold2d(ones, k, (1, 1), (0, 0), dilation)
        cols = unfold2d(grid, k, (1, 1), (0, 0), dilation) * _real_taps(kernel.to(cdtype), valid)
        out = self._apply_weight(cols, weight.to(cdtype), shared_filters, groups, transposed=True)
        if bias is not None:
            out = out + bias.to(cdtype).reshape(1, -1, 1, 1)
        return out.to(out_dtype)

    def pacpool2d(
        self,
        input: Tensor,
        kernel: Tensor,
        *,
        kernel_size: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> Tensor:
        """docs/semantics.md §3.3: ``Y[b,c] = Σ_{a,e} K[b,κ(c),a,e] · X̄[b,c,π(y,a),π(x,e)]`` (no
        normaliser)."""
        out_dtype = input.dtype
        cdtype = _compute_dtype(out_dtype)
        x = input.to(cdtype)
        cols = unfold2d(x, kernel_size, stride, padding, dilation)
        valid = _valid_taps(tuple(x.shape[-2:]), kernel_size, stride, padding, dilation, x)
        return (cols * _real_taps(kernel.to(cdtype), valid)).sum(dim=(2, 3)).to(out_dtype)

    @staticmethod
    def _apply_weight(
        cols: Tensor, weight: Tensor, shared_filters: bool, groups: int, *, transposed: bool
    ) -> Tensor:
        """Contract kernel-weighted columns ``[B, C_in, kh, kw, H, W]`` with the weight."""
        if shared_filters:
            return torch.einsum("bcaehw,ae->bchw", cols, weight[0, 0])
        b, c_in, kh, kw, h, w = cols.shape
        g = groups
        cols = cols.reshape(b, g, c_in // g, kh, kw, h, w)
        if transposed:  # weight [C_in, C_out/g, kh, kw]
            c_out = weight.shape[1] * g
            wg = weight.reshape(g, c_in // g, weight.shape[1], kh, kw)
            out = torch.einsum("bgcaehw,gcoae->bgohw", cols, wg)
        else:  # weight [C_out, C_in/g, kh, kw]
            c_out = weight.shape[0]
            wg = weight.reshape(g, c_out // g, c_in // g, kh, kw)
            out = torch.einsum("bgcaehw,gocae->bgohw", cols, wg)
        return out.reshape(b, c_out, h, w)  # explicit sizes: b or c_out may be 0
