"""Data consistency for block-mean (``'area'``) low-resolution input.

When the low-resolution map holds block means (a depth sensor's pixel, or
``F.interpolate(mode='area')``), the mean of the true full-resolution depth over every
``f``×``f`` block is known exactly. :func:`project_block_means` moves a prediction onto that
constraint after the network has run, while keeping it inside a value range.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SPREADS", "block_means", "project_block_means"]

SPREADS = ("box", "bilinear")
"""How :func:`project_block_means` spreads a block's residual over its pixels."""

_BISECTION_STEPS = 60


def block_means(x: Tensor, factor: int) -> Tensor:
    """The mean of each ``factor``×``factor`` block of ``x [N, C, H, W]`` (``[N, C, H/f, W/f]``)."""
    return F.avg_pool2d(x, factor)


def _up(x: Tensor, factor: int) -> Tensor:
    """Every low-resolution entry repeated over its ``factor``×``factor`` block."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _box_projection(x: Tensor, target: Tensor, known: Tensor, factor: int, lo: Tensor,
                    hi: Tensor) -> Tensor:
    """Exact Euclidean projection of every known block onto ``{mean = target, lo ≤ x ≤ hi}``.

    The projection of a block onto that set is ``clip(x + c, lo, hi)`` for the one shift ``c``
    whose clipped block has the target mean; the clipped mean grows monotonically with ``c``, so
    ``c`` is found by bisection, all blocks at once.
    """
    n, ch, hh, ww = x.shape
    h, w = hh // factor, ww // factor
    blocks = x.reshape(n, ch, h, factor, w, factor)
    lo6, hi6 = lo.view(n, ch, 1, 1, 1, 1), hi.view(n, ch, 1, 1, 1, 1)
    bmin = blocks.amin(dim=(3, 5))
    bmax = blocks.amax(dim=(3, 5))
    # mean(clip(x + c)) is lo at c ≤ lo − max(x) and hi at c ≥ hi − min(x)
    a = lo.view(n, ch, 1, 1) - bmax
    b = hi.view(n, ch, 1, 1) - bmin
    t = target.clamp(lo.view(n, ch, 1, 1), hi.view(n, ch, 1, 1))
    for _ in range(_BISECTION_STEPS):
        mid = (a + b) / 2
        m = (blocks + mid[:, :, :, None, :, None]).clamp(lo6, hi6).mean(dim=(3, 5))
        below = m < t
        a = torch.where(below, mid, a)
        b = torch.where(below, b, mid)
    c = torch.where(known, (a + b) / 2, torch.zeros_like(a))
    out = (blocks + c[:, :, :, None, :, None]).clamp(lo6, hi6).reshape(n, ch, hh, ww)
    keep = ~_up(known, factor)
    return torch.where(keep, x, out)


def _bilinear_projection(x: Tensor, target: Tensor, known: Tensor, factor: int, lo: Tensor,
                         hi: Tensor, iterations: int) -> Tensor:
    """Back-projection: the residual of the known blocks spread by bilinear upsampling (onto
    the known blocks' pixels only), clipped to ``[lo, hi]``, ``iterations`` times."""
    lo4, hi4 = lo.view(*lo.shape, 1, 1), hi.view(*hi.shape, 1, 1)
    mask = _up(known, factor)
    zero = torch.zeros_like(target)
    for _ in range(iterations):
        r = torch.where(known, target - block_means(x, factor), zero)
        u = F.interpolate(r, scale_factor=factor, mode="bilinear", align_corners=False)
        x = torch.where(mask, (x + u).clamp(lo4, hi4), x)
    return x


def project_block_means(pred: Tensor, low: Tensor, factor: int, *,
                        valid: Optional[Tensor] = None, spread: str = "box",
                        strength: float = 1.0, iterations: int = 30,
                        bounds: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
    """Make a prediction agree with known block means, within a value range.

    With ``spread='box'`` every block whose mean is known is replaced by its Euclidean
    projection onto the set of blocks with that mean and all values in ``bounds``: the block
    shifted by one constant and clipped (the smallest change that makes the prediction
    consistent; when the true depth lies in that set, the error can only shrink). With
    ``spread='bilinear'`` the residual ``low − block mean`` is spread by bilinear upsampling and
    added, ``iterations`` times (classic iterative back-projection: smoother, approximate).
    Either way the result is ``pred + strength · (projected − pred)``, pixels of blocks without a
    known mean are left unchanged, and every output value lies within ``bounds``.

    Args:
        pred: Prediction ``[N, C, f·h, f·w]`` (floating point).
        low: Block means ``[N, C, h, w]``; NaN entries are unknown.
        factor: Block size ``f``.
        valid: Optional boolean ``[N, C, h, w]`` mask of the known entries (ANDed with
            ``low``'s non-NaN entries).
        spread: One of :data:`SPREADS`.
        strength: In ``[0, 1]``: 0 returns ``pred`` (clipped to ``bounds``), 1 the full
            projection.
        iterations: Rounds of ``'bilinear'`` (``'box'`` is exact in one).
        bounds: ``(lo, hi)`` tensors of shape ``[N, C]``; default: the range of the known
            entries of ``low`` per image and channel.

    Returns:
        The consistent prediction, same shape and dtype as ``pred``.

    Raises:
        ValueError: shapes that do not match ``factor``, an unknown ``spread``, ``strength``
            outside ``[0, 1]``, ``iterations < 1``, or ``lo > hi``.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be ≥ 1, got {iterations!r}")
    if pred.dim() != 4 or low.dim() != 4 or pred.shape[:2] != low.shape[:2] or (
        tuple(pred.shape[-2:]) != (low.shape[-2] * factor, low.shape[-1] * factor)
    ):
        raise ValueError(f"pred must be [N, C, f·h, f·w] for low [N, C, h, w] with f={factor}, "
                         f"got pred {tuple(pred.shape)} and low {tuple(low.shape)}")
    known = ~torch.isnan(low)
    if valid is not None:
        if valid.shape != low.shape or valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool mask of low's shape {tuple(low.shape)}, got "
                             f"dtype {valid.dtype}, shape {tuple(valid.shape)}")
        known = known & valid
    target = torch.where(known, low, torch.zeros_like(low)).to(pred.dtype)
    if bounds is None:
        inf = torch.full_like(target, float("inf"))
        lo = torch.where(known, target, inf).amin(dim=(-2, -1))
        hi = torch.where(known, target, -inf).amax(dim=(-2, -1))
        none = ~known.flatten(2).any(dim=-1)  # no known entry: no bound either
        lo, hi = lo.masked_fill(none, -float("inf")), hi.masked_fill(none, float("inf"))
    else:
        lo, hi = (b.to(pred.dtype).expand(pred.shape[:2]) for b in bounds)
    if bool((lo > hi).any()):
        raise ValueError("bounds: lo must not exceed hi")
    lo4, hi4 = lo.view(*lo.shape, 1, 1), hi.view(*hi.shape, 1, 1)
    x = pred.clamp(lo4, hi4)
    if strength == 0.0 or not bool(known.any()):
        return x
    if spread == "box":
        proj = _box_projection(x, target, known, factor, lo, hi)
    else:
        proj = _bilinear_projection(x, target, known, factor, lo, hi, iterations)
    if strength == 1.0:
        return proj
    return (x + strength * (proj - x)).clamp(lo4, hi4)  # clamp: rounding of the blend
