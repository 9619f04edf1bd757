"""Guidance features for PAC layers and the PAC-CRF: pixel coordinates and colour.

:func:`create_position_feats` and :func:`create_YXRGB` follow pacnet's ``paccrf`` helpers of the
same names. Scales given as tensors stay in the autograd graph, so they can be learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor

__all__ = ["create_YXRGB", "create_position_feats"]

Scale = Union[float, Sequence[float], Tensor]


def _as_scale(scale: Scale, device: Optional[torch.device]) -> Tensor:
    if isinstance(scale, Tensor):
        return scale if device is None else scale.to(device)
    return torch.tensor(scale, dtype=torch.float32, device=device)


def _channel_view(inv: Tensor, channels: int, name: str) -> Tensor:
    """Reshape a scalar / per-channel reciprocal scale to broadcast over ``[..., C, H, W]``."""
    if inv.numel() == 1:
        return inv.reshape(())
    if inv.numel() != channels:
        raise ValueError(
            f"{name} must be one value or {channels} values (one per channel), got {inv.numel()}"
        )
    return inv.reshape(channels, 1, 1)


def create_position_feats(
    shape: Sequence[int],
    scales: Optional[Scale] = None,
    bs: int = 1,
    device: Optional[Union[torch.device, str]] = None,
) -> Tensor:
    """Pixel-coordinate feature planes ``(y, x)``.

    ``P_0[i, j] = i`` (row) and ``P_1[i, j] = j`` (column), in float32, optionally multiplied by
    ``1/scale`` (the reciprocal is taken first, then multiplied, as in pacnet).

    Args:
        shape: ``(H, W)``.
        scales: None, a number (scales both planes), or a length-2 sequence/tensor ``(s_y, s_x)``.
            Non-tensors become float32 tensors; a tensor stays in the graph (learnable scales) and
            its dtype takes part in type promotion.
        bs: Number of stacked copies (batch size).
        device: Device of the result (default: the scale tensor's device, else the CPU).

    Returns:
        ``[bs, 2, H, W]`` tensor.

    Raises:
        ValueError: ``shape`` is not a pair, or ``scales`` has neither 1 nor 2 values.
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {tuple(shape)!r}")
    h, w = int(shape[0]), int(shape[1])
    if device is None and isinstance(scales, Tensor):
        device = scales.device
    ys = torch.arange(h, dtype=torch.float32, device=device).view(h, 1).expand(h, w)
    xs = torch.arange(w, dtype=torch.float32, device=device).view(1, w).expand(h, w)
    feats = torch.stack([ys, xs], dim=0)
    if scales is not None:
        inv = 1.0 / _as_scale(scales, None if device is None else torch.device(device))
        feats = feats * _channel_view(inv, 2, "scales")
    return feats.unsqueeze(0).repeat(bs, 1, 1, 1)


def create_YXRGB(
    img: Tensor,
    yx_scale: Optional[Scale] = None,
    rgb_scale: Optional[Scale] = None,
    scales: Optional[Scale] = None,
) -> Tensor:
    """Position-and-colour guidance features ``(y, x, image channels...)`` for PAC layers / CRF.

    Args:
        img: Image ``[..., C, H, W]``; leading dimensions are folded into the batch ``N``
            (a ``[H, W]`` image is taken as ``[1, 1, H, W]``).
        yx_scale: Position scale(s), see :func:`create_position_feats` (None = unscaled).
        rgb_scale: Image scale: a number or one value per image channel (None = unscaled); the
            image is multiplied by ``1/rgb_scale``.
        scales: Alternative to the two above: ``scales[0:2]`` is ``yx_scale`` and ``scales[2:]``
            is ``rgb_scale``.

    Returns:
        ``[N, 2 + C, H, W]``: ``cat([y/s_y, x/s_x, img/rgb_scale], dim=1)``.

    Raises:
        ValueError: ``scales`` given together with ``yx_scale`` or ``rgb_scale`` (pacnet:
            ``AssertionError``), or scales of the wrong length.

    Example:
        >>> feats = create_YXRGB(img, yx_scale=8.0, rgb_scale=0.1)
    """
    if scales is not None:
        if yx_scale is not None or rgb_scale is not None:
            raise ValueError("give either scales or yx_scale/rgb_scale, not both")
        yx_scale = scales[0:2]
        rgb_scale = scales[2:]
    if img.dim() < 2:
        raise ValueError(f"img must be [..., C, H, W], got shape {tuple(img.shape)}")
    if img.dim() == 2:
        img = img.reshape(1, 1, *img.shape)
    img = img.reshape(-1, *img.shape[-3:])
    n, c, h, w = img.shape
    if rgb_scale is not None:
        inv = 1.0 / _as_scale(rgb_scale, img.device)
        img = img * _channel_view(inv, c, "rgb_scale")
    pos = create_position_feats((h, w), yx_scale, n, img.device)
    return torch.cat([pos, img], dim=1)
