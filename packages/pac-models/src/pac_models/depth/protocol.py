"""The joint-upsampling protocol of docs/semantics.md §A.5/§A.6: normalisation, running a model,
metrics."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.joint import denormalize, normalize_lowres

__all__ = ["apply_model", "center_crop", "denormalize", "epe", "l2_loss", "normalize_lowres",
           "rmse"]

FLOW_INVALID = 1e7
"""Flow components above this magnitude mark unknown ground truth (Sintel)."""


def center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop the last two dims to ``size`` around the centre (offset ``(H − h)//2``)."""
    h, w = x.shape[-2:]
    th, tw = size
    if th > h or tw > w:
        raise ValueError(f"cannot crop {(h, w)} to the larger {size}")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def apply_model(model: nn.Module, low: Tensor, guide: Tensor, factor: int,
                target_size: Optional[tuple[int, int]] = None) -> Tensor:
    """Run a joint-upsampling model as pacnet's evaluation does (docs/semantics.md §A.5,
    "Running a model").

    If the guidance is not exactly ``factor×`` the low-resolution size, it is bilinearly resized
    to ``(f·h, f·w)`` and the output is resized back to the guidance size. The output is then
    centre-cropped to ``target_size`` (removing an evaluation border).

    Args:
        model: Called as ``model(low, guide)``.
        low: Normalised low-resolution target ``[B, C, h, w]``.
        guide: Guidance ``[B, 3, H, W]`` in [0, 1].
        factor: Upsampling factor.
        target_size: Size to centre-crop the output to (default: no crop).

    Returns:
        The normalised prediction ``[B, C, H, W]`` (or ``target_size``).
    """
    h, w = low.shape[-2:]
    size = (factor * h, factor * w)
    g_size = tuple(guide.shape[-2:])
    if g_size != size:
        g = F.interpolate(guide, size=size, mode="bilinear", align_corners=False)
        out = model(low, g)
        out = F.interpolate(out, size=g_size, mode="bilinear", align_corners=False)
    else:
        out = model(low, guide)
    if target_size is not None and tuple(out.shape[-2:]) != tuple(target_size):
        out = center_crop(out, target_size)
    return out


def l2_loss(out: Tensor, target: Tensor, raw_range: Tensor) -> Tensor:
    """Training loss ``'l2'``: MSE between the output and the target normalised by ``raw_range``."""
    lo, hi = raw_range[..., 0], raw_range[..., 1]
    t = (target - lo[..., None, None]) / (hi - lo)[..., None, None]
    return F.mse_loss(out, t)


def rmse(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-batch RMSE ``mean_b sqrt(Σ_c mean_{y,x} (pred − gt)²)`` in raw units
    (docs/semantics.md §A.6)."""
    d = (pred.double() - gt.double()) ** 2
    return d.mean(dim=(-2, -1)).sum(dim=1).sqrt().mean()


def epe(pred: Tensor, gt: Tensor) -> Tensor:
    """End-point error of ``[B, 2, H, W]`` flow; unknown ground truth counts as 0
    (docs/semantics.md §A.6)."""
    invalid = (gt[:, 0].abs() > FLOW_INVALID) | (gt[:, 1].abs() > FLOW_INVALID)
    invalid = invalid[:, None]
    p = torch.where(invalid, torch.zeros_like(pred), pred).double()
    g = torch.where(invalid, torch.zeros_like(gt), gt).double()
    return ((p - g) ** 2).sum(dim=1).sqrt().mean()
