"""Joint (guided) upsampling networks of the PAC paper's depth and flow experiments.

Every model is called as ``model(target_low, guide)``: ``target_low [B, C, h, w]`` is the
normalised low-resolution target, ``guide [B, 3, H, W]`` the RGB guidance in [0, 1] with
``H = f·h``, ``W = f·w``; the output is ``[B, C, H, W]`` in the normalised domain.

The learned models process a C-channel target as C independent 1-channel targets ("channel
folding", shared weights), so their layers are always built for one target channel; the
``channels`` constructor argument is kept for signature compatibility with pacnet (whose training
script always passes 1). State_dict keys and shapes are pacnet's, so its checkpoints load strictly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pac_core import PacConvTranspose2d, PacPool2d

__all__ = [
    "DJIF",
    "Bilinear",
    "DJIFWide",
    "JointBilateral",
    "PacJBURefine",
    "PacJointUpsample",
    "PacJointUpsampleLite",
    "PacRefine",
    "fill_missing",
    "fold",
    "repeat_for_fold",
    "unfold",
]

_Filters = Union[int, Sequence[int]]


def fold(target: Tensor) -> Tensor:
    """``[B, C, h, w] → [B·C, 1, h, w]`` (row ``b·C + c`` holds sample b, channel c)."""
    b, c, h, w = target.shape
    return target.reshape(b * c, 1, h, w)


def unfold(x: Tensor, channels: int) -> Tensor:
    """Inverse of :func:`fold`: ``[B·C, 1, H, W] → [B, C, H, W]``."""
    bc, _, h, w = x.shape
    return x.reshape(bc // channels, channels, h, w)


def repeat_for_fold(guide: Tensor, channels: int) -> Tensor:
    """Repeat each sample's guidance ``channels`` times so row ``b·C + c`` carries sample b's."""
    if channels == 1:
        return guide
    return guide.repeat_interleave(channels, dim=0)


def _check_inputs(name: str, target: Tensor, guide: Tensor, factor: int) -> None:
    if target.dim() != 4 or guide.dim() != 4:
        raise ValueError(
            f"{name}: expected 4-D target [B, C, h, w] and guide [B, 3, H, W], got "
            f"{tuple(target.shape)} and {tuple(guide.shape)}"
        )
    if target.shape[0] != guide.shape[0]:
        raise ValueError(
            f"{name}: batch sizes differ: target {target.shape[0]}, guide {guide.shape[0]}"
        )
    h, w = target.shape[-2:]
    if tuple(guide.shape[-2:]) != (h * factor, w * factor):
        raise ValueError(
            f"{name}: guide size {tuple(guide.shape[-2:])} is not factor ({factor}) × the target "
            f"size {(h, w)}; resize the guidance first (see pac_models.depth.apply_model)"
        )


def _expand(filters: _Filters, length: int, what: str) -> tuple[int, ...]:
    if isinstance(filters, int):
        return (filters,) * length
    filters = tuple(int(f) for f in filters)
    if len(filters) != length:
        raise ValueError(f"{what} must have {length} entries, got {len(filters)}: {filters}")
    return filters


def _conv_branch(chans: Sequence[int], ksize: int, bn: bool) -> nn.Sequential:
    """``conv{l}`` (+ ``bn{l}``) + ``relu{l}`` except after the last conv (docs/semantics.md
    §A.2)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    n = len(chans) - 1
    for l in range(1, n + 1):
        layers[f"conv{l}"] = nn.Conv2d(chans[l - 1], chans[l], ksize, padding=ksize // 2)
        if bn:
            layers[f"bn{l}"] = nn.BatchNorm2d(chans[l])
        if l < n:
            layers[f"relu{l}"] = nn.ReLU()
    return nn.Sequential(layers)


def _check_factor(name: str, factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2 or factor & (
        factor - 1
    ):
        raise ValueError(f"{name}: factor must be a power of two ≥ 2, got {factor!r}")
    return factor


class PacJointUpsample(nn.Module):
    """PAC joint upsampling network (docs/semantics.md §A.2).

    A target branch (convs at low resolution), a guidance branch (convs on the RGB at full
    resolution producing ``k_ch`` channels per upsampling stage), ``log2(factor)`` stages of ×2
    :class:`pac_core.PacConvTranspose2d` guided by the stage's guidance slice, and a final conv
    branch.

    Args:
        factor: Upsampling factor, a power of two (4, 8, 16 in the paper).
        channels: Target channels (kept for compatibility; layers are built for 1 channel and a
            C-channel target is folded).
        guide_channels: Guidance channels (3 for RGB).
        n_t_layers, n_g_layers, n_f_layers: Conv layers in the target, guidance, final branches.
        n_t_filters: Int or tuple of length ``n_t_layers``.
        n_g_filters: Int or tuple of length ``n_g_layers − 1``.
        n_f_filters: Int or tuple of length ``n_f_layers + log2(factor) − 1``.
        k_ch: Guidance channels per upsampling stage.
        f_sz_1: Odd kernel size of the plain convs.
        f_sz_2: Odd kernel size of the PAC transposed convs.
        t_bn, g_bn, u_bn, f_bn: BatchNorm after every conv of that part.

    Raises:
        ValueError: invalid factor, layer counts, filter tuples or kernel sizes (pacnet:
            ``AssertionError``).
    """

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        guide_channels: int = 3,
        n_t_layers: int = 3,
        n_g_layers: int = 3,
        n_f_layers: int = 2,
        n_t_filters: _Filters = 32,
        n_g_filters: _Filters = 32,
        n_f_filters: _Filters = 32,
        k_ch: int = 16,
        f_sz_1: int = 5,
        f_sz_2: int = 5,
        t_bn: bool = False,
        g_bn: bool = False,
        u_bn: bool = False,
        f_bn: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.factor = _check_factor(name, factor)
        if n_g_layers < 1 or n_f_layers < 1 or n_t_layers < 1:
            raise ValueError(f"{name}: n_t_layers, n_g_layers and n_f_layers must be ≥ 1")
        if f_sz_1 % 2 == 0 or f_sz_2 % 2 == 0:
            raise ValueError(f"{name}: f_sz_1 and f_sz_2 must be odd, got {f_sz_1}, {f_sz_2}")
        if channels < 1:
            raise ValueError(f"{name}: channels must be ≥ 1, got {channels}")
        self.channels = channels
        self.guide_channels = guide_channels
        self.k_ch = k_ch
        self.num_stages = factor.bit_length() - 1
        u = self.num_stages
        t_chans = (1, *_expand(n_t_filters, n_t_layers, "n_t_filters"))
        g_chans = (guide_channels, *_expand(n_g_filters, n_g_layers - 1, "n_g_filters"), k_ch * u)
        f_chans = (t_chans[-1], *_expand(n_f_filters, n_f_layers + u - 1, "n_f_filters"), 1)

        self.branch_t = _conv_branch(t_chans, f_sz_1, t_bn)
        self.branch_g = _conv_branch(g_chans, f_sz_1, g_bn)
        self.up_convts = nn.ModuleList(
            PacConvTranspose2d(f_chans[i], f_chans[i + 1], f_sz_2, stride=2,
                               padding=(f_sz_2 - 1) // 2, output_padding=f_sz_2 % 2)
            for i in range(u)
        )
        self.up_bns = nn.ModuleList(nn.BatchNorm2d(f_chans[i + 1]) for i in range(u)) if u_bn \
            else nn.ModuleList()
        self.branch_f = _conv_branch(f_chans[u:], f_sz_1, f_bn)

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        """Upsample ``target_low [B, C, h, w]`` guided by ``guide [B, 3, f·h, f·w]``."""
        _check_inputs(type(self).__name__, target_low, guide, self.factor)
        c = target_low.shape[1]
        h, w = target_low.shape[-2:]
        x = self.branch_t(fold(target_low))
        g = self.branch_g(guide)
        for i, up in enumerate(self.up_convts):
            scale = 2 ** (i + 1)
            gi = g[:, i * self.k_ch:(i + 1) * self.k_ch]
            if scale != self.factor:
                gi = F.interpolate(gi, size=(h * scale, w * scale), mode="bilinear",
                                   align_corners=False)
            x = up(x, repeat_for_fold(gi, c))
            if len(self.up_bns):
                x = self.up_bns[i](x)
            x = F.relu(x)
        x = self.branch_f(x)
        return unfold(x, c)


LITE_CONFIGS: dict[int, dict[str, object]] = {
    4: {"n_t_filters": (12, 16, 22), "n_g_filters": (12, 22), "n_f_filters": (12, 16, 22),
        "k_ch": 12},
    8: {"n_t_filters": (12, 16, 16), "n_g_filters": (12, 16), "n_f_filters": (12, 16, 16, 20),
        "k_ch": 12},
    16: {"n_t_filters": (8, 16, 16), "n_g_filters": (8, 16), "n_f_filters": (8, 16, 16, 16, 16),
         "k_ch": 10},
}
"""Hand-picked widths of :class:`PacJointUpsampleLite` per factor (docs/semantics.md §A.3)."""


class PacJointUpsampleLite(PacJointUpsample):
    """:class:`PacJointUpsample` with hand-picked narrow widths (~56 k parameters,
    docs/semantics.md §A.3).

    Args:
        factor: 4, 8 or 16.
        channels: Target channels (folded, see :class:`PacJointUpsample`).
        guide_channels: Guidance channels.

    Raises:
        ValueError: any other factor.
    """

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3) -> None:
        if factor not in LITE_CONFIGS:
            raise ValueError(
                f"PacJointUpsampleLite: factor must be one of {sorted(LITE_CONFIGS)}, got "
                f"{factor!r}"
            )
        super().__init__(factor, channels, guide_channels, **LITE_CONFIGS[factor])  # type: ignore[arg-type]


class DJIF(nn.Module):
    """Deep joint image filter baseline (Li et al., ECCV 2016), as in docs/semantics.md §A.4.

    The target is first bilinearly upsampled to the guidance size; a target branch and a guidance
    branch (9×9, 1×1, 5×5 convs, each ending in one channel) are concatenated and fused by a
    third branch. No residual connection.

    Args:
        factor: Upsampling factor (only used to resize the target).
        channels: Target channels (folded; layers are built for 1 channel).
        guide_channels: Guidance channels.
        fs: Three odd kernel sizes.
        ns_tg: Widths of the target and guidance branches (the last is their output channels).
        ns_f: Widths of the fusion branch's hidden layers.

    Raises:
        ValueError: even kernel sizes or wrong tuple lengths.
    """

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        guide_channels: int = 3,
        fs: Sequence[int] = (9, 1, 5),
        ns_tg: Sequence[int] = (96, 48, 1),
        ns_f: Sequence[int] = (64, 32),
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if len(fs) != 3 or any(k % 2 == 0 for k in fs):
            raise ValueError(f"{name}: fs must be three odd kernel sizes, got {tuple(fs)}")
        if len(ns_tg) != 3 or len(ns_f) != 2:
            raise ValueError(f"{name}: ns_tg needs 3 widths and ns_f 2, got {ns_tg}, {ns_f}")
        if factor < 1:
            raise ValueError(f"{name}: factor must be ≥ 1, got {factor}")
        self.factor = int(factor)
        self.channels = channels
        pads = [k // 2 for k in fs]
        total = sum(pads)
        pads_tg = [total // 3, total // 3, total - 2 * (total // 3)]

        def branch(c_in: int, widths: Sequence[int], paddings: Sequence[int]) -> nn.Sequential:
            c = (c_in, *widths)
            return nn.Sequential(
                nn.Conv2d(c[0], c[1], fs[0], padding=paddings[0]), nn.ReLU(),
                nn.Conv2d(c[1], c[2], fs[1], padding=paddings[1]), nn.ReLU(),
                nn.Conv2d(c[2], c[3], fs[2], padding=paddings[2]),
            )

        self.branch_t = branch(1, ns_tg, pads_tg)
        self.branch_g = branch(guide_channels, ns_tg, pads_tg)
        self.branch_joint = branch(2 * ns_tg[-1], (*ns_f, 1), pads)

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        """Upsample ``target_low [B, C, h, w]`` guided by ``guide [B, 3, f·h, f·w]``."""
        _check_inputs(type(self).__name__, target_low, guide, self.factor)
        c = target_low.shape[1]
        t = fold(target_low)
        if t.shape[-1] < guide.shape[-1]:
            t = F.interpolate(t, size=tuple(guide.shape[-2:]), mode="bilinear",
                              align_corners=False)
        t = self.branch_t(t)
        g = repeat_for_fold(self.branch_g(guide), c)
        return unfold(self.branch_joint(torch.cat([t, g], dim=1)), c)


class DJIFWide(DJIF):
    """:class:`DJIF` with wider layers: ``ns_tg=(256, 128, 1)``, ``ns_f=(256, 128)``."""

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3) -> None:
        super().__init__(factor, channels, guide_channels, ns_tg=(256, 128, 1), ns_f=(256, 128))


class JointBilateral(nn.Module):
    """Classic joint bilateral upsampling (Kopf et al. 2007) as one PAC transposed convolution.

    ``convt = PacConvTranspose2d(1, 1, kernel_size, stride=factor, normalize_kernel=True,
    bias=False)`` whose weight is initialised to ones (learnable); its Gaussian kernel sees the
    guidance features ``(RGB·scale_color, y·scale_space, x·scale_space)`` with integer pixel
    coordinates at full resolution. The result is the average of the low-resolution samples in
    the window, weighted by spatial and colour proximity (normalised over the taps that hit
    samples).

    Args:
        factor: Upsampling factor (any integer ≥ 2).
        channels: Target channels (folded; the layer is built for 1 channel).
        kernel_size: Odd window size at full resolution (e.g. ``2·factor + 1``).
        scale_space: Inverse spatial σ in full-resolution pixels (``1/σ_s``).
        scale_color: Inverse colour σ for RGB in [0, 1] (``1/σ_c``).

    Raises:
        ValueError: even kernel size or a kernel smaller than the factor.
    """

    def __init__(self, factor: int, channels: int, kernel_size: int, scale_space: float,
                 scale_color: float) -> None:
        super().__init__()
        name = type(self).__name__
        if factor < 1:
            raise ValueError(f"{name}: factor must be ≥ 1, got {factor}")
        if kernel_size % 2 == 0 or kernel_size < factor:
            raise ValueError(
                f"{name}: kernel_size must be odd and ≥ factor ({factor}), got {kernel_size}"
            )
        self.factor = int(factor)
        self.channels = channels
        self.kernel_size = kernel_size
        self.scale_space = float(scale_space)
        self.scale_color = float(scale_color)
        padding = 1 + (kernel_size - factor - 1) // 2
        output_padding = (kernel_size - factor) % 2
        self.convt = PacConvTranspose2d(1, 1, kernel_size, stride=factor, padding=padding,
                                        output_padding=output_padding, normalize_kernel=True,
                                        bias=False)
        with torch.no_grad():
            self.convt.weight.zero_()
            self.convt.weight[0, 0] = 1.0

    def features(self, guide: Tensor) -> Tensor:
        """Guidance features ``[B, 3 + 2, H, W]``: scaled colour, then scaled y and x."""
        b, _, h, w = guide.shape
        yy, xx = torch.meshgrid(torch.arange(h, dtype=guide.dtype, device=guide.device),
                                torch.arange(w, dtype=guide.dtype, device=guide.device),
                                indexing="ij")
        pos = torch.stack([yy, xx])[None].expand(b, 2, h, w) * self.scale_space
        return torch.cat([guide * self.scale_color, pos], dim=1)

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        """Upsample ``target_low [B, C, h, w]`` guided by ``guide [B, 3, f·h, f·w]``."""
        _check_inputs(type(self).__name__, target_low, guide, self.factor)
        c = target_low.shape[1]
        feats = repeat_for_fold(self.features(guide), c)
        return unfold(self.convt(fold(target_low), feats), c)

    def extra_repr(self) -> str:
        """Factor, kernel size and feature scales."""
        return (f"factor={self.factor}, kernel_size={self.kernel_size}, "
                f"scale_space={self.scale_space}, scale_color={self.scale_color}")


class Bilinear(nn.Module):
    """Bilinear upsampling by ``factor`` (half-pixel centres, no antialiasing); ignores the guide.

    Args:
        factor: Upsampling factor.
        channels: Ignored (compatibility).
        guide_channels: Ignored (compatibility).
    """

    def __init__(self, factor: int, channels: int | None = None,
                 guide_channels: int | None = None) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"Bilinear: factor must be ≥ 1, got {factor}")
        self.factor = int(factor)

    def forward(self, target_low: Tensor, guide: Tensor | None = None) -> Tensor:
        """Resize ``target_low [B, C, h, w]`` to ``[B, C, f·h, f·w]``."""
        h, w = target_low.shape[-2:]
        return F.interpolate(target_low, size=(h * self.factor, w * self.factor),
                             mode="bilinear", align_corners=False)


class PacRefine(nn.Module):
    """Non-learned PAC upsampling: bilinear, then a few passes of a joint trilateral filter.

    The bilinear result is refined ``iterations`` times by
    :class:`pac_core.PacPool2d` (``normalize_kernel=True``, kernel ``kernel_size``, dilation
    ``max(1, factor // 4)``) whose Gaussian kernel sees the features
    ``(y/σ_s, x/σ_s, RGB/σ_c, D/σ_d)``: pixel position (σ_s = factor/2 full-resolution pixels),
    colour in [0, 1] and the current estimate ``D`` in the normalised target domain (recomputed
    at every pass). Each pixel becomes the average of its neighbours close in position, colour
    and value. It has no parameters; the same filter as the Middlebury demo, expressed in the
    normalised domain so it does not depend on the target's unit.

    Args:
        factor: Upsampling factor (any integer ≥ 1).
        channels: Ignored (every channel is filtered with the same kernel construction).
        guide_channels: Ignored (compatibility).
        sigma_color: Range σ on RGB in [0, 1].
        sigma_value: Range σ on the normalised target (its low-resolution range is [0, 1];
            0.1 corresponds to the demo's 4 disparity px on the Middlebury sample's ~50 px
            range).
        kernel_size: Odd tap count per axis.
        iterations: Number of filter passes.
    """

    def __init__(self, factor: int, channels: int | None = None,
                 guide_channels: int | None = None, sigma_color: float = 0.05,
                 sigma_value: float = 0.1, kernel_size: int = 5, iterations: int = 3) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"PacRefine: factor must be ≥ 1, got {factor}")
        if sigma_color <= 0 or sigma_value <= 0 or iterations < 0:
            raise ValueError("PacRefine: sigmas must be > 0 and iterations ≥ 0")
        self.factor = int(factor)
        self.sigma_color = float(sigma_color)
        self.sigma_value = float(sigma_value)
        self.iterations = int(iterations)
        dilation = max(1, self.factor // 4)
        self.pool = PacPool2d(kernel_size, padding=dilation * (kernel_size - 1) // 2,
                              dilation=dilation, normalize_kernel=True)

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        """Upsample ``target_low [B, C, h, w]`` guided by ``guide [B, 3, f·h, f·w]``."""
        _check_inputs(type(self).__name__, target_low, guide, self.factor)
        c = target_low.shape[1]
        h, w = target_low.shape[-2:]
        x = fold(F.interpolate(target_low, size=(h * self.factor, w * self.factor),
                               mode="bilinear", align_corners=False))
        hh, ww = x.shape[-2:]
        sigma_space = self.factor / 2.0
        yy, xx = torch.meshgrid(torch.arange(hh, dtype=x.dtype, device=x.device),
                                torch.arange(ww, dtype=x.dtype, device=x.device), indexing="ij")
        pos = torch.stack([yy, xx])[None].expand(guide.shape[0], 2, hh, ww) / sigma_space
        static = repeat_for_fold(torch.cat([pos, guide / self.sigma_color], dim=1), c)
        for _ in range(self.iterations):
            x = self.pool(x, torch.cat([static, x / self.sigma_value], dim=1))
        return unfold(x, c)

    def extra_repr(self) -> str:
        """Factor, sigmas and pass count."""
        return (f"factor={self.factor}, sigma_color={self.sigma_color}, "
                f"sigma_value={self.sigma_value}, iterations={self.iterations}")


NORM_EPS = 1e-4
"""Floor added to the Gaussian kernel values of :class:`PacJBURefine`'s stages (they are ≤ 1)."""

FEATURE_INIT_STD = 1e-3
"""Std of the initial weights of the last layer of :class:`PacJBURefine`'s learned features."""


FILL_SIGMA = 0.1
"""Colour σ (RGB in [0, 1]) of :func:`fill_missing`'s guided averaging."""


def fill_missing(x: Tensor, valid: Tensor, guide: Optional[Tensor] = None,
                 sigma: float = FILL_SIGMA) -> Tensor:
    """Fill the invalid entries of ``x [N, 1, h, w]`` from their valid neighbours.

    Repeated normalised 3×3 averaging: each round, every invalid entry next to a valid or
    already filled one takes the weighted mean of those, the weights
    ``exp(−|g_p − g_q|² / 2σ²)`` of the colour difference to each neighbour when ``guide``
    (``[N, C, h, w]``, e.g. the RGB averaged over each low-resolution block) is given, else
    equal; rounds repeat until nothing is missing. Every fill is a convex combination, so the
    result stays within the range of the valid values. An image without any valid entry is set
    to 0.

    Args:
        x: Values (anything at invalid entries, NaN included).
        valid: Boolean mask of the same shape.
        guide: Optional guidance at the same resolution.
        sigma: Colour σ of the guidance weights.

    Returns:
        ``x`` with every invalid entry replaced.
    """
    n, _, h, w = x.shape
    known = valid.to(x.dtype)
    out = torch.where(valid, x, torch.zeros_like(x))
    sim = None
    if guide is not None:
        g = F.unfold(guide.to(x.dtype), 3, padding=1).view(n, guide.shape[1], 9, h * w)
        centre = guide.to(x.dtype).reshape(n, guide.shape[1], 1, h * w)
        sim = torch.exp(-((g - centre) ** 2).sum(1, keepdim=True) / (2 * sigma**2))
    for _ in range(h + w):
        if bool(known.all()):
            break
        kn = F.unfold(known, 3, padding=1).view(n, 1, 9, h * w)
        vals = F.unfold(out * known, 3, padding=1).view(n, 1, 9, h * w)
        wts = kn if sim is None else kn * (sim + 1e-6)
        num = (wts * vals).sum(2).view(n, 1, h, w)
        den = wts.sum(2).view(n, 1, h, w)
        new = (known == 0) & (den > 0)
        out = torch.where(new, num / den.clamp_min(1e-30), out)
        known = torch.where(new, torch.ones_like(known), known)
    return out


class PacJBURefine(nn.Module):
    """Learned multi-scale joint bilateral upsampling with a residual refinement (this project's).

    A few joint bilateral upsampling stages, then a small residual network. Built so that the
    untrained network is a classical (cascaded) joint bilateral upsampler, which training then
    improves:

    1. Each stage upsamples the current estimate ×s (s = 2 or 4, see ``stage``) with a
       :class:`pac_core.PacConvTranspose2d` (kernel 2s+1, stride s, weight initialised to ones)
       whose Gaussian kernel sees the guidance features ``(RGB·s_c, y·s_s, x·s_s, φ(RGB))`` at the
       stage's output resolution (the RGB area-averaged to it): colour and pixel position with
       learned scales per stage (initialised to ``s_c = 10``, i.e. σ = 0.1 on RGB in [0, 1], and
       ``s_s = 2/s``, σ = s/2 output pixels; both kept within [0.1, 100]) and ``feat_channels``
       learned features φ = tanh(a two-layer conv net on the RGB), plus, with ``context_channels >
       0``, as many context features tanh(a dilated conv stack, dilations 1, 2, 4, 8: about 31
       pixels of the stage's resolution) that can tell which side of an edge a pixel belongs to from
       more than its own colour. The last layer of both starts at small random values (σ =
       :data:`FEATURE_INIT_STD`), so the untrained kernels are the plain Gaussian ones to about
       1e-5, yet get gradients (at exactly zero they would not: equal features have zero pairwise
       differences). The result is normalised by the kernel's sum over the taps that hit samples;
       the kernel values get :data:`NORM_EPS` added, so a window whose Gaussian weights all
       underflow falls back to a plain average instead of 0/0. The stages run on the guidance
       shifted by ``⌊(f−1)/2⌋`` pixels and their result is shifted back, so a low-resolution sample
       sits where the ``'center'`` protocol (docs/semantics.md §A.5) took it. Missing samples (NaN
       entries of
       the input) are first filled by a colour-guided normalised averaging of their valid
       neighbours at the low resolution (:func:`fill_missing`, guided by the RGB averaged over
       each block; a convex fill, so the stages, whose learned kernel taps may be negative, see
       values within the valid range and their usual normaliser).
    2. A residual correction ``r = ψ(x, RGB)`` by three 3×3 conv layers at full resolution (the
       last starts at zero): the output is ``x + r``.

    The pixel-adaptive kernels do the edge-aware interpolation; the refinement fixes what
    normalised averages cannot (thin structures, biased averages at depth edges). It trains in
    CPU minutes because it starts from a sensible solution, unlike :class:`PacJointUpsample`,
    which starts from noise. Not a pacnet architecture (no pacnet checkpoint exists for it).

    Args:
        factor: Upsampling factor, a power of two ≥ 2.
        channels: Target channels (folded; layers are built for 1 channel).
        guide_channels: Guidance channels (3 for RGB).
        feat_channels: Learned guidance feature channels φ (shared by the stages).
        width: Hidden channels of φ and ψ.
        stage: Largest upsampling step per stage, 2 or 4: ``factor`` is split into steps of
            ``stage`` (and one ×2 where it does not divide), the finest first; a ×s step uses
            a ``(2s+1)²`` kernel. 4 means fewer, wider stages (×4 is a single joint bilateral
            step, like :class:`JointBilateral`).
        context_channels: Context feature channels (0: none). They start near zero, so weights
            without them load non-strictly into a model with them and give nearly the same
            output.
        wide_refine: Hidden channels of a second residual correction after ψ (0: none): five
            3×3 conv layers at full resolution with dilations 1, 2, 4, 8, 1 (a 33-pixel field
            of view, wider than the ±f/2 band in which a depth edge can sit between two samples
            at ×16, where ψ sees 7 pixels). Its last layer starts at zero, so weights without it
            load non-strictly and give the same output.
        reach: How many low-resolution samples (of the stage's input) each side a stage's kernel
            reaches: one int for every stage or one per stage, coarsest first (1: the
            ``(2s+1)²`` kernel; r: ``(2rs+1)²``). Trained scales ask for it at ×16, where the
            learned spatial σ of both stages grew past the 1-sample window. Weights with a
            smaller kernel load into a model with a larger one: their kernel is zero-padded,
            which gives the same output.

    Raises:
        ValueError: a factor that is not a power of two ≥ 2, non-positive widths or reach.
    """

    accepts_missing = True
    """NaN entries of the input mark missing samples (see the first stage above)."""

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3,
                 feat_channels: int = 4, width: int = 16, stage: int = 2,
                 context_channels: int = 0, wide_refine: int = 0,
                 reach: Union[int, Sequence[int]] = 1) -> None:
        super().__init__()
        name = type(self).__name__
        self.factor = _check_factor(name, factor)
        if (feat_channels < 0 or context_channels < 0 or wide_refine < 0 or width < 1
                or guide_channels < 1):
            raise ValueError(f"{name}: feat_channels, context_channels and wide_refine must be "
                             f"≥ 0, width and guide_channels ≥ 1")
        self.channels = channels
        self.guide_channels = guide_channels
        self.feat_channels = feat_channels
        if stage not in (2, 4):
            raise ValueError(f"{name}: stage must be 2 or 4, got {stage!r}")
        self.stage = stage
        steps, rest = [], factor
        while rest > 1:
            step = stage if rest % stage == 0 else 2
            steps.append(step)
            rest //= step
        self.steps = tuple(reversed(steps))  # coarsest first
        self.num_stages = u = len(self.steps)
        self.reach = _expand(reach, u, "reach")
        if min(self.reach) < 1:
            raise ValueError(f"{name}: reach must be ≥ 1 per stage, got {reach!r}")
        self.log_scale_color = nn.Parameter(torch.full((u,), math.log(10.0)))
        # σ_s = s/2 output pixels for a ×s step (one pixel for ×2)
        self.log_scale_space = nn.Parameter(
            torch.tensor([math.log(2.0 / s) for s in self.steps]))
        self.features = nn.Sequential(
            nn.Conv2d(guide_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, feat_channels, 3, padding=1),
        ) if feat_channels else None
        self.context_channels = context_channels
        self.context = nn.Sequential(
            nn.Conv2d(guide_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(width, context_channels, 3, padding=8, dilation=8),
        ) if context_channels else None
        self.up_convts = nn.ModuleList(
            PacConvTranspose2d(1, 1, 2 * r * s + 1, stride=s, padding=r * s,
                               output_padding=s - 1, bias=False)
            for s, r in zip(self.steps, self.reach)
        )
        self.refine = nn.Sequential(
            nn.Conv2d(1 + guide_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 1, 3, padding=1),
        )
        self.wide_refine = nn.Sequential(
            nn.Conv2d(1 + guide_channels, wide_refine, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(wide_refine, wide_refine, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(wide_refine, wide_refine, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
            nn.Conv2d(wide_refine, wide_refine, 3, padding=8, dilation=8), nn.ReLU(inplace=True),
            nn.Conv2d(wide_refine, 1, 3, padding=1),
        ) if wide_refine else None
        with torch.no_grad():
            for up in self.up_convts:
                up.weight.fill_(1.0)
            for head in (self.refine, self.wide_refine):
                if head is not None:
                    head[-1].weight.zero_()
                    head[-1].bias.zero_()
            # not zero: the Gaussian kernel's gradient with respect to a feature that is equal at
            # every pixel vanishes (zero pairwise differences), so zero-started features would
            # never train
            for m in (self.features, self.context):
                if m is not None:
                    m[-1].weight.normal_(0.0, FEATURE_INIT_STD)
                    m[-1].bias.zero_()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # a stage kernel saved with a smaller reach: zero-pad it to this model's size (the same
        # output, since the extra taps then add nothing to numerator and normaliser)
        for i, up in enumerate(self.up_convts):
            key = f"{prefix}up_convts.{i}.weight"
            w = state_dict.get(key)
            k = up.weight.shape[-1]
            if isinstance(w, Tensor) and w.dim() == 4 and w.shape[:2] == up.weight.shape[:2] \
                    and w.shape[-1] == w.shape[-2] < k and (k - w.shape[-1]) % 2 == 0:
                p = (k - w.shape[-1]) // 2
                state_dict[key] = F.pad(w, (p, p, p, p))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def guidance_features(self, guide: Tensor, stage: int) -> Tensor:
        """Kernel features ``[B, 3 + 2 + feat_channels + context_channels, h_i, w_i]`` of
        ``stage`` (0 = coarsest)."""
        r = self.factor // math.prod(self.steps[:stage + 1])
        g = F.avg_pool2d(guide, r) if r > 1 else guide
        b, _, h, w = g.shape
        yy, xx = torch.meshgrid(torch.arange(h, dtype=g.dtype, device=g.device),
                                torch.arange(w, dtype=g.dtype, device=g.device), indexing="ij")
        lo, hi = math.log(0.1), math.log(100.0)
        s_s = self.log_scale_space[stage].clamp(lo, hi).exp()
        s_c = self.log_scale_color[stage].clamp(lo, hi).exp()
        pos = torch.stack([yy, xx])[None].expand(b, 2, h, w) * s_s
        parts = [g * s_c, pos]
        if self.features is not None:
            parts.append(torch.tanh(self.features(g)))
        if self.context is not None:
            parts.append(torch.tanh(self.context(g)))
        return torch.cat(parts, dim=1)

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        """Upsample ``target_low [B, C, h, w]`` guided by ``guide [B, 3, f·h, f·w]``."""
        _check_inputs(type(self).__name__, target_low, guide, self.factor)
        c = target_low.shape[1]
        # The stages put low-resolution sample i at full-resolution pixel f·i, but under the
        # 'center' protocol it was taken at f·i + ⌊(f−1)/2⌋: run them on the guidance shifted
        # by that offset and shift the result back (edge rows/columns replicated).
        off = (self.factor - 1) // 2
        shifted = F.pad(guide[..., off:, off:], (0, off, 0, off), mode="replicate") if off \
            else guide
        x = fold(target_low)
        valid = ~torch.isnan(x)
        if not bool(valid.all()):
            x = fill_missing(x, valid, repeat_for_fold(F.avg_pool2d(guide, self.factor), c))
        for i, up in enumerate(self.up_convts):
            n = x.shape[0]
            feats = repeat_for_fold(self.guidance_features(shifted, i), c)
            # numerator and normaliser in one call: the samples and ones, stacked on the batch;
            # plus NORM_EPS times the same sums with a flat kernel, so windows whose Gaussian
            # weights all underflow fall back to a plain weighted average (no 0/0, no huge
            # gradients)
            stacked = torch.cat([x, torch.ones_like(x)])
            both = up(stacked, torch.cat([feats, feats])) + NORM_EPS * F.conv_transpose2d(
                stacked, up.weight, stride=up.stride, padding=up.padding,
                output_padding=up.output_padding)
            x = both[:n] / both[n:]
        if off:
            h, w = x.shape[-2:]
            x = F.pad(x[..., :h - off, :w - off], (off, 0, off, 0), mode="replicate")
        g = repeat_for_fold(guide, c)
        x = x + self.refine(torch.cat([x, g], dim=1))
        if self.wide_refine is not None:
            x = x + self.wide_refine(torch.cat([x, g], dim=1))
        return unfold(x, c)

    def extra_repr(self) -> str:
        """Factor and feature channels."""
        return (f"factor={self.factor}, steps={self.steps}, feat_channels={self.feat_channels}, "
                f"context_channels={self.context_channels}"
                + (f", wide_refine={self.wide_refine[0].out_channels}" if self.wide_refine
                   is not None else "")
                + (f", reach={self.reach}" if max(self.reach) > 1 else ""))
