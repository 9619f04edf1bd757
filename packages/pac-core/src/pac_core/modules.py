"""Pixel-adaptive convolution, transposed convolution and pooling as ``nn.Module``s.

:class:`PacConv2d`, :class:`PacConvTranspose2d` and :class:`PacPool2d` share one base,
:class:`_PacConvNd`. Constructor signatures, defaults, attributes, parameter/buffer registration
order (hence ``state_dict`` keys) and initialisation follow pacnet's ``pac`` module, so pacnet
checkpoints load with ``strict=True``. Extras beyond pacnet are keyword arguments appended after
pacnet's: ``groups`` and ``padding_mode`` on the convolutions, ``padding_mode`` on the pooling.

Differences from pacnet (each intentional):

* invalid arguments raise ``ValueError`` (pacnet: ``AssertionError`` in several places);
* every kernel type / smoothing combination works whatever ``native_impl`` says (the flag selects
  nothing; the backend registry of :mod:`pac_core.backends` picks the implementation);
* ``filler='pool'``/``'crf_pool'`` with ``bias=True`` zeroes the bias (pacnet leaves it
  uninitialised);
* ``repr(PacPool2d(...))`` works (pacnet raises ``AttributeError``);
* a masked forward returns ``out_mask`` as a ``bool`` tensor (pacnet: uint8, broken on modern
  torch).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from . import _validation as _V
from . import functional as _F
from .helpers import np_gaussian_2d

__all__ = ["PacConv2d", "PacConvTranspose2d", "PacPool2d"]

_IntOrPair = Union[int, tuple[int, int]]
_FILLERS = ("uniform", "linear", "crf", "crf_perturbed", "pool", "crf_pool")


def _smooth_suffix_check(smooth_kernel_type: str, fn: str) -> None:
    """Step 2 of the construction checks: the integer after the last ``'_'`` must be odd."""
    if "_" not in smooth_kernel_type:
        return
    suffix = smooth_kernel_type.rsplit("_", 1)[1]
    try:
        m = int(suffix)
    except ValueError:
        raise ValueError(
            f"{fn}: smooth_kernel_type {smooth_kernel_type!r}: the size after the last '_' must "
            f"be an odd integer, got {suffix!r}"
        ) from None
    if m % 2 == 0:
        raise ValueError(
            f"{fn}: smooth_kernel_type {smooth_kernel_type!r}: only odd smoothing sizes are "
            "supported"
        )


class _PacConvNd(nn.Module):
    """Common base of :class:`PacConv2d`, :class:`PacConvTranspose2d` and :class:`PacPool2d`.

    Holds the geometry (as ``(h, w)`` pairs), the kernel description and the learnable or fixed
    tensors, and implements :meth:`reset_parameters`, :meth:`compute_kernel` and
    :meth:`extra_repr`. Not meant to be instantiated directly.

    Attributes:
        in_channels: Input channels (``-1`` for pooling).
        out_channels: Output channels (pooling: the optional expected channel count, ``-1`` = any).
        kernel_size, stride, padding, dilation, output_padding: Geometry as int pairs
            (``output_padding`` is ``(0, 0)`` unless transposed).
        transposed: Whether this is a transposed convolution.
        pool_only: Whether this is a pooling layer (no weight, no bias).
        kernel_type, smooth_kernel_type, channel_wise, normalize_kernel, shared_filters, filler,
            native_impl: As given to the constructor.
        groups, padding_mode: Extras beyond pacnet.
        inv_alpha_init, inv_lambda_init: The ``α0``/``λ0`` parsed from an ``inv_*`` kernel type
            (only present for those types).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair,
        stride: _IntOrPair,
        padding: _IntOrPair,
        dilation: _IntOrPair,
        transposed: bool,
        output_padding: _IntOrPair,
        bias: bool,
        pool_only: bool,
        kernel_type: str,
        smooth_kernel_type: str,
        channel_wise: bool,
        normalize_kernel: bool,
        shared_filters: bool,
        filler: Optional[str],
        native_impl: bool,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        fn = type(self).__name__
        # 1. odd kernel sizes only
        kernel_size = _V.kernel_size_pair(kernel_size, fn=fn)
        stride = _V.pair(stride, "stride", minimum=1, fn=fn)
        padding = _V.pair(padding, "padding", minimum=0, fn=fn)
        dilation = _V.pair(dilation, "dilation", minimum=1, fn=fn)
        output_padding = _V.pair(output_padding, "output_padding", minimum=0, fn=fn)
        if not isinstance(kernel_type, str):
            raise TypeError(f"{fn}: kernel_type must be a str, got {kernel_type!r}")
        if not isinstance(smooth_kernel_type, str):
            raise TypeError(f"{fn}: smooth_kernel_type must be a str, got {smooth_kernel_type!r}")
        # 2. the smoothing size (after the last '_') must be an odd integer
        _smooth_suffix_check(smooth_kernel_type, fn)
        # 3. shared filters are depthwise
        if shared_filters and in_channels != out_channels:
            raise ValueError(
                f"{fn}: shared_filters=True needs in_channels == out_channels, got "
                f"{in_channels} and {out_channels}"
            )
        if not pool_only:
            for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
        # extras: groups and padding_mode
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"{fn}: groups must be a positive int, got {groups!r}")
        if groups != 1:
            if pool_only:
                raise ValueError(f"{fn} has no groups")
            if shared_filters:
                raise ValueError(f"{fn}: groups must be 1 with shared_filters=True (depthwise)")
            if in_channels % groups or out_channels % groups:
                raise ValueError(
                    f"{fn}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                    f"both be divisible by groups ({groups})"
                )
        _V.check_padding_mode(padding_mode, fn=fn)
        if transposed and padding_mode != "zeros":
            raise ValueError(
                f"{fn} only supports padding_mode='zeros' (like nn.ConvTranspose2d)"
            )
        # 4. padding > d(k-1)/2 is deliberately not rejected (pacnet disables that check too)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = bool(transposed)
        self.output_padding = output_padding
        self.pool_only = bool(pool_only)
        self.kernel_type = kernel_type
        self.smooth_kernel_type = smooth_kernel_type
        self.channel_wise = bool(channel_wise)
        self.normalize_kernel = bool(normalize_kernel)
        self.shared_filters = bool(shared_filters)
        self.filler = filler
        self.native_impl = bool(native_impl)
        self.groups = groups
        self.padding_mode = padding_mode

        dtype = torch.get_default_dtype()
        # 5. weight and bias
        if not self.pool_only:
            if filler in ("pool", "crf_pool"):
                if not self.shared_filters:
                    raise ValueError(f"{fn}: filler={filler!r} needs shared_filters=True")
                self.register_buffer("weight", torch.ones(1, 1, *kernel_size, dtype=dtype))
            elif self.shared_filters:
                self.weight = nn.Parameter(torch.empty(1, 1, *kernel_size, dtype=dtype))
            elif self.transposed:
                self.weight = nn.Parameter(
                    torch.empty(in_channels, out_channels // groups, *kernel_size, dtype=dtype)
                )
            else:
                self.weight = nn.Parameter(
                    torch.empty(out_channels, in_channels // groups, *kernel_size, dtype=dtype)
                )
            if bias:
                self.bias = nn.Parameter(torch.empty(out_channels, dtype=dtype))
            else:
                self.register_parameter("bias", None)

        # 6. kernel type (inv_alpha / inv_lambda)
        kind, alpha, lam, _asym, fixed = _V.parse_kernel_type(kernel_type, fn=fn)
        if kind == "inv":
            self.inv_alpha_init = alpha
            self.inv_lambda_init = lam
            if self.channel_wise and not fixed:
                if out_channels <= 0:
                    raise ValueError(
                        f"{fn}: channel-wise learnable kernel_type {kernel_type!r} needs "
                        "out_channels > 0"
                    )
                self.inv_alpha = nn.Parameter(torch.full((out_channels,), alpha, dtype=dtype))
                self.inv_lambda = nn.Parameter(torch.full((out_channels,), lam, dtype=dtype))
            elif fixed:
                self.register_buffer("inv_alpha", torch.tensor(alpha, dtype=dtype))
                self.register_buffer("inv_lambda", torch.tensor(lam, dtype=dtype))
            else:
                self.inv_alpha = nn.Parameter(torch.tensor(alpha, dtype=dtype))
                self.inv_lambda = nn.Parameter(torch.tensor(lam, dtype=dtype))

        # 7. smoothing kernel
        smooth_kind, m = _V.parse_smooth_kernel_type(smooth_kernel_type, fn=fn)
        if smooth_kind == "gaussian":
            g = torch.tensor([0.25, 0.5, 0.25], dtype=dtype)
            self.register_buffer("smooth_kernel", (g[:, None] * g[None, :]).view(1, 1, 3, 3))
        elif smooth_kind == "average":
            v = torch.full((m,), 1.0 / m, dtype=dtype)
            self.register_buffer("smooth_kernel", (v[:, None] * v[None, :]).view(1, 1, m, m))
        elif smooth_kind == "full":
            self.smooth_kernel = nn.Parameter(
                torch.full((1, 1, m, m), 1.0 / (m * m), dtype=dtype)
            )

        # 8. initial values
        self.reset_parameters()

    # ------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Re-initialise the weight, bias, ``inv_*`` parameters and learnable smoothing kernel.

        Fillers (``filler`` constructor argument):

        * ``'uniform'``: weight and bias ``U(-σ, σ)`` with ``σ = 1/sqrt(fan_in·k_h·k_w)``, where
          ``fan_in = in_channels / groups``; with ``shared_filters`` σ is multiplied by
          ``in_channels`` (pacnet's behaviour, kept for parity of the initial distribution).
        * ``'linear'``: bilinear-upsampling weights for a transposed convolution with
          ``in_channels == out_channels`` and ``kernel_size >= 2·stride − 1``; bias 0.
        * ``'crf'`` / ``'crf_perturbed'``: the Gaussian ``G = np_gaussian_2d(k)·k²`` with a zero
          centre (square kernels, ``in_channels == out_channels``): shared filters get ``G``,
          others ``W[o, c] = (1 − δ_oc)·G``; ``'crf_perturbed'`` adds ``U(−5e-4, 5e-4)`` noise;
          bias 0.
        * ``'pool'`` / ``'crf_pool'``: fixed weight buffer of ones (``'crf_pool'``: centre 0);
          the bias, if any, is zeroed (pacnet leaves it uninitialised).

        Raises:
            ValueError: unknown filler, or its requirements are not met.
        """
        with torch.no_grad():
            if not self.pool_only:
                self._fill_weight()
            if isinstance(getattr(self, "inv_alpha", None), nn.Parameter):
                self.inv_alpha.fill_(self.inv_alpha_init)
                self.inv_lambda.fill_(self.inv_lambda_init)
            sk = getattr(self, "smooth_kernel", None)
            if isinstance(sk, nn.Parameter):
                sk.fill_(1.0 / (sk.shape[-2] * sk.shape[-1]))

    def _fill_weight(self) -> None:
        fn = type(self).__name__
        filler = self.filler
        weight: Tensor = self.weight
        bias: Optional[Tensor] = self.bias
        kh, kw = self.kernel_size
        if filler in ("pool", "crf_pool"):
            weight.fill_(1.0)
            if filler == "crf_pool":
                weight[:, :, kh // 2, kw // 2] = 0.0
            if bias is not None:
                bias.zero_()
        elif filler == "uniform":
            fan_in = self.in_channels // self.groups
            sigma = 1.0 / math.sqrt(fan_in * kh * kw)
            if self.shared_filters:
                sigma *= self.in_channels
            weight.uniform_(-sigma, sigma)
            if bias is not None:
                bias.uniform_(-sigma, sigma)
        elif filler == "linear":
            s_h, s_w = self.stride
            if not self.transposed or self.in_channels != self.out_channels:
                raise ValueError(
                    f"{fn}: filler='linear' needs a transposed convolution with in_channels == "
                    "out_channels"
                )
            if kh < 2 * s_h - 1 or kw < 2 * s_w - 1:
                raise ValueError(
                    f"{fn}: filler='linear' needs kernel_size >= 2*stride-1, got kernel_size="
                    f"{self.kernel_size}, stride={self.stride}"
                )
            v_h = self._linear_profile(kh, s_h)
            v_w = self._linear_profile(kw, s_w)
            w2d = (v_h[:, None] * v_w[None, :]).to(weight.dtype)
            weight.zero_()
            if self.shared_filters:
                weight[0, 0] = w2d
            else:
                per_group = weight.shape[1]
                for c in range(self.in_channels):
                    weight[c, c % per_group] = w2d
            if bias is not None:
                bias.zero_()
        elif filler in ("crf", "crf_perturbed"):
            if kh != kw or self.in_channels != self.out_channels:
                raise ValueError(
                    f"{fn}: filler={filler!r} needs a square kernel and in_channels == out_channels"
                )
            # G = np_gaussian_2d(k)·k², multiplied by k twice in float32: this rounding (not one
            # multiplication by k²) reproduces docs/semantics.md §4.3's values and the §8 CRF
            # reference values.
            k32 = np.float32(kh)
            g = torch.from_numpy((np_gaussian_2d(kh).astype(np.float32) * k32) * k32).clone()
            g[kh // 2, kw // 2] = 0.0
            g = g.to(weight.dtype)
            if self.shared_filters:
                weight[0, 0] = g
            else:
                out_c, per_group = weight.shape[0], weight.shape[1]
                out_per_group = out_c // self.groups
                o = torch.arange(out_c).view(-1, 1)
                c = (o // out_per_group) * per_group + torch.arange(per_group).view(1, -1)
                off_diag = (o != c).to(weight.dtype)
                weight.copy_(off_diag[:, :, None, None] * g)
            if filler == "crf_perturbed":
                weight.add_((torch.rand_like(weight) - 0.5) * 1e-3)
            if bias is not None:
                bias.zero_()
        else:
            raise ValueError(f"{fn}: filler must be one of {_FILLERS}, got {filler!r}")

    def _linear_profile(self, k: int, s: int) -> Tensor:
        z = (k - (2 * s - 1)) // 2
        ramp = [float(i) for i in range(1, s + 1)] + [float(i) for i in range(s - 1, 0, -1)]
        v = torch.tensor([0.0] * z + [r / s for r in ramp] + [0.0] * z, dtype=torch.float64)
        if self.normalize_kernel:
            j = torch.arange(k)
            v = v * ((k - 1 - j) // s + j // s + 1).to(torch.float64)
        return v

    # ------------------------------------------------------------------------------------------
    def _kernel_tensors(self) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        return (
            getattr(self, "smooth_kernel", None),
            getattr(self, "inv_alpha", None),
            getattr(self, "inv_lambda", None),
        )

    def compute_kernel(
        self, input_for_kernel: Tensor, input_mask: Optional[Tensor] = None
    ) -> tuple[Tensor, Optional[Tensor]]:
        """The per-pixel adapting kernel of this layer for a guidance tensor.

        Calls :func:`pac_core.packernel2d` with the layer's geometry, kernel type, smoothing,
        ``inv_*`` parameters and normalisation (conv layers: never channel-wise).

        Args:
            input_for_kernel: Guidance ``[B, C_f, H_f, W_f]`` (for :class:`PacConvTranspose2d`
                at the output resolution).
            input_mask: Optional mask (see :func:`pac_core.packernel2d`).

        Returns:
            ``(kernel, out_mask)``: kernel ``[B, C_K, k_h, k_w, H', W']``; ``out_mask`` is a bool
            tensor when a mask was given, else None.
        """
        smooth_kernel, inv_alpha, inv_lambda = self._kernel_tensors()
        return _F.packernel2d(
            input_for_kernel,
            input_mask,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            kernel_type=self.kernel_type,
            smooth_kernel_type=self.smooth_kernel_type,
            smooth_kernel=smooth_kernel,
            inv_alpha=inv_alpha,
            inv_lambda=inv_lambda,
            channel_wise=self.channel_wise,
            normalize_kernel=self.normalize_kernel,
            transposed=self.transposed,
            native_impl=self.native_impl,
            padding_mode=self.padding_mode,
        )

    @staticmethod
    def _result(out: Tensor, out_mask: Optional[Tensor]) -> Union[Tensor, tuple[Tensor, Tensor]]:
        return out if out_mask is None else (out, out_mask)

    def extra_repr(self) -> str:
        """``"<in>, <out>, kernel_size=(kh, kw), kernel_type=<t>"`` plus the non-default fields."""
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"kernel_type={self.kernel_type}"
        )
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if not self.pool_only and self.bias is None:
            s += ", bias=False"
        if self.smooth_kernel_type != "none":
            s += f", smooth_kernel_type={self.smooth_kernel_type}"
        if self.channel_wise:
            s += ", channel_wise=True"
        if self.normalize_kernel:
            s += ", normalize_kernel=True"
        if self.shared_filters:
            s += ", shared_filters=True"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class PacConv2d(_PacConvNd):
    r"""Pixel-adaptive convolution (PAC), 2-D.

    ``Y[b,o,y,x] = β[o] + Σ_{c,a,e} W[o,c,a,e] · K[b,0,a,e,y,x] · X̄[b,c,π(y,a),π(x,e)]`` where
    ``K`` is a per-pixel kernel computed from a guidance tensor (Gaussian
    ``exp(−½‖f(tap) − f(centre)‖²)`` by default). With ``K ≡ 1`` it is ``nn.Conv2d``.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Odd int or pair.
        stride: Stride.
        padding: Zero padding (any amount; pacnet's documented limit ``d(k−1)/2`` is not enforced).
        dilation: Dilation.
        bias: Learnable bias ``[C_out]``.
        kernel_type: ``'gaussian'`` or ``'inv_<α>_<λ>[_asym][_fixed]'``
            (``K = α + (D + 1e-4)^(λ/2)``; ``_fixed`` makes α/λ buffers, ``_asym`` clamps
            negative feature differences to 0).
        smooth_kernel_type: Smoothing of the centre feature: ``'none'``, ``'gaussian'`` (fixed
            3×3), ``'average_<m>'`` (fixed m×m), ``'full_<m>'`` (learnable m×m).
        normalize_kernel: Normalise the kernel to sum 1 over the in-image taps of each window.
        shared_filters: One ``[1, 1, k_h, k_w]`` filter applied depthwise (needs
            ``in_channels == out_channels``).
        filler: Weight initialisation, see :meth:`reset_parameters`.
        native_impl: Accepted for pacnet compatibility; selects nothing (every combination works
            with every backend, see :mod:`pac_core.backends`).
        groups: Grouped convolution like ``nn.Conv2d`` (extra beyond pacnet; weight
            ``[C_out, C_in/groups, k_h, k_w]``).
        padding_mode: ``'zeros'`` (default; pacnet's only mode), ``'reflect'``,
            ``'replicate'`` or ``'circular'`` (extra beyond pacnet).

    Raises:
        ValueError: even kernel size, even/non-integer smoothing size, ``shared_filters`` with
            different channel counts, ``'pool'``/``'crf_pool'`` fillers without shared filters,
            unknown kernel or smoothing type, unmet filler requirements (pacnet raises
            ``AssertionError`` for some of these).

    Example:
        >>> conv = PacConv2d(3, 8, 3, padding=1)
        >>> y = conv(x, guide)              # guide: [B, C_f, H, W]
        >>> k, _ = conv.compute_kernel(guide)
        >>> y = conv(x, None, k)            # precomputed kernel [B, 1, 3, 3, H, W]
        >>> y, m = conv(x, guide, None, mask)  # with a mask: (output, bool out_mask)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair,
        stride: _IntOrPair = 1,
        padding: _IntOrPair = 0,
        dilation: _IntOrPair = 1,
        bias: bool = True,
        kernel_type: str = "gaussian",
        smooth_kernel_type: str = "none",
        normalize_kernel: bool = False,
        shared_filters: bool = False,
        filler: str = "uniform",
        native_impl: bool = False,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, bias,
            False, kernel_type, smooth_kernel_type, False, normalize_kernel, shared_filters,
            filler, native_impl, groups=groups, padding_mode=padding_mode,
        )

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Optional[Tensor],
        kernel: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Apply the layer.

        Args:
            input_2d: Input ``[B, C_in, H, W]``.
            input_for_kernel: Guidance ``[B, C_f, H, W]`` (ignored when ``kernel`` is given).
            kernel: Optional precomputed kernel ``[B, 1, k_h, k_w, H', W']``.
            mask: Optional mask ``[B, 1, H, W]`` for the kernel (ignored with ``kernel``).

        Returns:
            The output ``[B, C_out, H', W']``, or ``(output, out_mask)`` when a mask was given and
            the kernel was computed here.
        """
        smooth_kernel, inv_alpha, inv_lambda = self._kernel_tensors()
        if kernel is None:
            if input_for_kernel is None:
                raise ValueError("PacConv2d needs input_for_kernel (guidance) or a kernel")
            out, out_mask = _F._pacconv2d_guided(
                input_2d, input_for_kernel, mask, self.weight, self.bias,
                stride=self.stride, padding=self.padding, dilation=self.dilation,
                shared_filters=self.shared_filters, groups=self.groups,
                padding_mode=self.padding_mode, kernel_type=self.kernel_type,
                smooth_kernel_type=self.smooth_kernel_type, smooth_kernel=smooth_kernel,
                inv_alpha=inv_alpha, inv_lambda=inv_lambda,
                normalize_kernel=self.normalize_kernel,
            )
            return self._result(out, out_mask)
        return _F.pacconv2d(
            input_2d, kernel, self.weight, self.bias, self.stride, self.padding, self.dilation,
            self.shared_filters, self.native_impl, groups=self.groups,
            padding_mode=self.padding_mode,
        )


class PacConvTranspose2d(_PacConvNd):
    r"""Pixel-adaptive transposed convolution, 2-D.

    ``Y[b,o,y,x] = β[o] + Σ_{c,a,e} W[c,o,a,e] · K[b,0,a,e,y,x] · Ẑ[b,c,y+a·d,x+e·d]`` with
    ``Ẑ`` the zero-inserted, padded input. The guidance lives at the **output** resolution.
    Following pacnet, the weight is **not** spatially flipped: with ``K ≡ 1`` the layer equals
    ``nn.ConvTranspose2d`` whose weight is ``W.flip(-1, -2)``.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Odd int or pair.
        stride: Stride (upsampling factor).
        padding: Padding as in ``nn.ConvTranspose2d``.
        output_padding: Extra rows/columns at the bottom/right of the output.
        dilation: Dilation.
        bias: Learnable bias ``[C_out]``.
        kernel_type: See :class:`PacConv2d`.
        smooth_kernel_type: See :class:`PacConv2d`.
        normalize_kernel: See :class:`PacConv2d`.
        shared_filters: One ``[1, 1, k_h, k_w]`` filter applied depthwise (works here; pacnet's
            default path crashes).
        filler: Weight initialisation; ``'linear'`` gives bilinear upsampling.
        native_impl: Accepted for pacnet compatibility; selects nothing.
        groups: Grouped transposed convolution (extra; weight ``[C_in, C_out/groups, k_h, k_w]``).
        padding_mode: Only ``'zeros'`` (as ``nn.ConvTranspose2d``).

    Raises:
        ValueError: see :class:`PacConv2d`; also a ``padding_mode`` other than ``'zeros'``.

    Example:
        >>> up = PacConvTranspose2d(3, 3, 5, stride=2, padding=2, output_padding=1,
        ...                         filler='linear')
        >>> y = up(x_low, guide_high)       # guide at the output size
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOrPair,
        stride: _IntOrPair = 1,
        padding: _IntOrPair = 0,
        output_padding: _IntOrPair = 0,
        dilation: _IntOrPair = 1,
        bias: bool = True,
        kernel_type: str = "gaussian",
        smooth_kernel_type: str = "none",
        normalize_kernel: bool = False,
        shared_filters: bool = False,
        filler: str = "uniform",
        native_impl: bool = False,
        groups: int = 1,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, True,
            output_padding, bias, False, kernel_type, smooth_kernel_type, False,
            normalize_kernel, shared_filters, filler, native_impl, groups=groups,
            padding_mode=padding_mode,
        )

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Optional[Tensor],
        kernel: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Apply the layer.

        Args:
            input_2d: Low-resolution input ``[B, C_in, H, W]``.
            input_for_kernel: Guidance ``[B, C_f, H_o, W_o]`` at the output size (ignored when
                ``kernel`` is given).
            kernel: Optional precomputed kernel ``[B, 1, k_h, k_w, H_o, W_o]``.
            mask: Optional mask ``[B, 1, H, W]`` at the input resolution.

        Returns:
            The output ``[B, C_out, H_o, W_o]``, or ``(output, out_mask)`` when a mask was given
            and the kernel was computed here.
        """
        smooth_kernel, inv_alpha, inv_lambda = self._kernel_tensors()
        if kernel is None:
            if input_for_kernel is None:
                raise ValueError(
                    "PacConvTranspose2d needs input_for_kernel (guidance) or a kernel"
                )
            out, out_mask = _F._pacconv_transpose2d_guided(
                input_2d, input_for_kernel, mask, self.weight, self.bias,
                stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                dilation=self.dilation, shared_filters=self.shared_filters, groups=self.groups,
                kernel_type=self.kernel_type, smooth_kernel_type=self.smooth_kernel_type,
                smooth_kernel=smooth_kernel, inv_alpha=inv_alpha, inv_lambda=inv_lambda,
                normalize_kernel=self.normalize_kernel,
            )
            return self._result(out, out_mask)
        return _F.pacconv_transpose2d(
            input_2d, kernel, self.weight, self.bias, self.stride, self.padding,
            self.output_padding, self.dilation, self.shared_filters, self.native_impl,
            groups=self.groups,
        )


class PacPool2d(_PacConvNd):
    r"""Pixel-adaptive pooling: a kernel-weighted window **sum**, 2-D.

    ``Y[b,c,y,x] = Σ_{a,e} K[b,κ(c),a,e,y,x] · X̄[b,c,π(y,a),π(x,e)]`` with no normalisation and
    no bias: with ``K ≡ 1`` it is ``k_h·k_w × nn.AvgPool2d(count_include_pad=True)``; averaging
    comes only from ``normalize_kernel=True``. As in pacnet the default ``stride`` is **1**
    (``nn.AvgPool2d`` defaults to the kernel size). The layer has no ``weight``/``bias``
    attributes.

    Args:
        kernel_size: Odd int or pair.
        stride: Stride (default 1).
        padding: Zero padding.
        dilation: Dilation.
        kernel_type: See :class:`PacConv2d`.
        smooth_kernel_type: See :class:`PacConv2d`.
        channel_wise: One kernel per guidance channel (the guidance must then have as many
            channels as the input); otherwise one kernel shared by all channels.
        normalize_kernel: Normalise the kernel (weighted average instead of weighted sum).
        out_channels: Expected channel count (``-1`` = any); needed (> 0) for channel-wise
            learnable ``inv_*`` kernels, whose ``inv_alpha``/``inv_lambda`` are then per channel.
        native_impl: Accepted for pacnet compatibility; selects nothing.
        padding_mode: ``'zeros'`` (default), ``'reflect'``, ``'replicate'`` or ``'circular'``
            (extra beyond pacnet).

    Raises:
        ValueError: see :class:`PacConv2d`; channel-wise learnable ``inv_*`` kernels without
            ``out_channels > 0``; at call time, channel-count mismatches.

    Example:
        >>> pool = PacPool2d(3, stride=2, padding=1, normalize_kernel=True)
        >>> y = pool(x, guide)
    """

    def __init__(
        self,
        kernel_size: _IntOrPair,
        stride: _IntOrPair = 1,
        padding: _IntOrPair = 0,
        dilation: _IntOrPair = 1,
        kernel_type: str = "gaussian",
        smooth_kernel_type: str = "none",
        channel_wise: bool = False,
        normalize_kernel: bool = False,
        out_channels: int = -1,
        native_impl: bool = False,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__(
            -1, out_channels, kernel_size, stride, padding, dilation, False, 0, False, True,
            kernel_type, smooth_kernel_type, channel_wise, normalize_kernel, False, None,
            native_impl, padding_mode=padding_mode,
        )

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Optional[Tensor],
        kernel: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Apply the layer.

        Args:
            input_2d: Input ``[B, C, H, W]``.
            input_for_kernel: Guidance ``[B, C_f, H, W]`` (``C_f = C`` when channel-wise;
                ignored when ``kernel`` is given).
            kernel: Optional precomputed kernel ``[B, 1 or C, k_h, k_w, H', W']``.
            mask: Optional mask for the kernel (ignored with ``kernel``).

        Returns:
            The output ``[B, C, H', W']``, or ``(output, out_mask)`` when a mask was given and the
            kernel was computed here.

        Raises:
            ValueError: channel-wise kernel whose channel count is not ``C``, or ``out_channels``
                set and different from ``C``.
        """
        channels = input_2d.shape[1]
        if kernel is None and input_for_kernel is None:
            raise ValueError("PacPool2d needs input_for_kernel (guidance) or a kernel")
        if self.channel_wise:
            k_channels = (kernel if kernel is not None else input_for_kernel).shape[1]
            if k_channels != channels:
                raise ValueError(
                    f"channel-wise PacPool2d: the kernel/guidance has {k_channels} channels, the "
                    f"input {channels}"
                )
        if self.out_channels > 0 and self.out_channels != channels:
            raise ValueError(
                f"PacPool2d was built with out_channels={self.out_channels}, input has "
                f"{channels} channels"
            )
        smooth_kernel, inv_alpha, inv_lambda = self._kernel_tensors()
        if kernel is None:
            out, out_mask = _F._pacpool2d_guided(
                input_2d, input_for_kernel, mask, kernel_size=self.kernel_size,
                stride=self.stride, padding=self.padding, dilation=self.dilation,
                padding_mode=self.padding_mode, kernel_type=self.kernel_type,
                smooth_kernel_type=self.smooth_kernel_type, smooth_kernel=smooth_kernel,
                inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=self.channel_wise,
                normalize_kernel=self.normalize_kernel,
            )
            return self._result(out, out_mask)
        return _F.pacpool2d(
            input_2d, kernel, self.kernel_size, self.stride, self.padding, self.dilation,
            self.native_impl, padding_mode=self.padding_mode,
        )
