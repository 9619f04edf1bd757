"""The backend interface: what an implementation of the PAC ops provides.

Arguments reaching a backend have been validated and normalised by :mod:`pac_core.functional`:
geometry arguments are ``(h, w)`` int pairs, kernel sizes are odd, shapes agree, non-zero padding
modes have already been applied (so ``padding`` here always means zero padding), and the
``inv_alpha``/``inv_lambda``/``smooth_kernel`` tensors are present exactly when the kernel type
needs them. The ``*_guided`` methods take the raw guidance instead of a precomputed kernel; the
default implementation computes the kernel with :meth:`Backend.packernel2d` and applies the op,
and fused backends override them to avoid materialising the per-pixel kernel.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

Pair = tuple[int, int]


class Backend:
    """Base class of PAC backends. Subclasses set ``name``/``priority`` and implement the ops."""

    name: str = "base"
    #: ``'auto'`` tries backends in decreasing priority.
    priority: int = 0

    def supports(self, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether this backend runs tensors of ``device`` and ``dtype``."""
        raise NotImplementedError

    # -- the four functional ops -------------------------------------------------------------
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
        """The per-pixel kernel ``[B, C_K, kh, kw, H', W']`` and the optional bool out-mask."""
        raise NotImplementedError

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
        """Pixel-adaptive convolution with a precomputed kernel (docs/semantics.md §3.1)."""
        raise NotImplementedError

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
        """Pixel-adaptive transposed convolution with a precomputed kernel (docs/semantics.md
        §3.2)."""
        raise NotImplementedError

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
        """Pixel-adaptive pooling (weighted window sum) with a precomputed kernel
        (docs/semantics.md §3.3)."""
        raise NotImplementedError

    # -- guided (raw guidance) entry points used by the modules ---------------------------------
    def pacconv2d_guided(
        self,
        input: Tensor,
        guidance: Tensor,
        mask: Optional[Tensor],
        weight: Tensor,
        bias: Optional[Tensor],
        *,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
        shared_filters: bool,
        groups: int,
        kernel_type: str,
        smooth_kernel_type: str,
        smooth_kernel: Optional[Tensor],
        inv_alpha: Optional[Tensor],
        inv_lambda: Optional[Tensor],
        normalize_kernel: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """PacConv2d forward from raw guidance: ``(output, out_mask)``."""
        kh, kw = weight.shape[-2:]
        kernel, out_mask = self.packernel2d(
            guidance, mask, kernel_size=(kh, kw), stride=stride, padding=padding,
            output_padding=(0, 0), dilation=dilation, kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type, smooth_kernel=smooth_kernel,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=False,
            normalize_kernel=normalize_kernel, transposed=False,
        )
        out = self.pacconv2d(input, kernel, weight, bias, stride=stride, padding=padding,
                             dilation=dilation, shared_filters=shared_filters, groups=groups)
        return out, out_mask

    def pacconv_transpose2d_guided(
        self,
        input: Tensor,
        guidance: Tensor,
        mask: Optional[Tensor],
        weight: Tensor,
        bias: Optional[Tensor],
        *,
        stride: Pair,
        padding: Pair,
        output_padding: Pair,
        dilation: Pair,
        shared_filters: bool,
        groups: int,
        kernel_type: str,
        smooth_kernel_type: str,
        smooth_kernel: Optional[Tensor],
        inv_alpha: Optional[Tensor],
        inv_lambda: Optional[Tensor],
        normalize_kernel: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """PacConvTranspose2d forward from raw guidance: ``(output, out_mask)``."""
        kh, kw = weight.shape[-2:]
        kernel, out_mask = self.packernel2d(
            guidance, mask, kernel_size=(kh, kw), stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type, smooth_kernel=smooth_kernel,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=False,
            normalize_kernel=normalize_kernel, transposed=True,
        )
        out = self.pacconv_transpose2d(
            input, kernel, weight, bias, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, shared_filters=shared_filters,
            groups=groups,
        )
        return out, out_mask

    def pacpool2d_guided(
        self,
        input: Tensor,
        guidance: Tensor,
        mask: Optional[Tensor],
        *,
        kernel_size: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
        kernel_type: str,
        smooth_kernel_type: str,
        smooth_kernel: Optional[Tensor],
        inv_alpha: Optional[Tensor],
        inv_lambda: Optional[Tensor],
        channel_wise: bool,
        normalize_kernel: bool,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """PacPool2d forward from raw guidance: ``(output, out_mask)``."""
        kernel, out_mask = self.packernel2d(
            guidance, mask, kernel_size=kernel_size, stride=stride, padding=padding,
            output_padding=(0, 0), dilation=dilation, kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type, smooth_kernel=smooth_kernel,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=channel_wise,
            normalize_kernel=normalize_kernel, transposed=False,
        )
        out = self.pacpool2d(input, kernel, kernel_size=kernel_size, stride=stride,
                             padding=padding, dilation=dilation)
        return out, out_mask

    def __repr__(self) -> str:
        return f"<pac backend {self.name!r}>"
