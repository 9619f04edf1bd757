"""The Middlebury evaluation protocol of the demo and of ``pac-models eval``.

The full-resolution disparity of the bundled Middlebury motorcycle sample
(:func:`pac_models.data.load_middlebury`), cropped top-left to a multiple of 16, has its invalid
pixels filled with the nearest valid value; the centre pixel of each ``f``×``f`` block is the
low-resolution input (the ``'center'`` protocol of ``docs/semantics.md`` §A.5), and the RMSE is
taken over the valid ground-truth pixels, in disparity px.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..data.middlebury import load_middlebury

__all__ = ["MULTIPLE", "center_lowres", "fill_invalid", "interpolate", "masked_rmse",
           "working_data"]

MULTIPLE = 16
"""The image is cropped to a multiple of this (the largest factor)."""


def fill_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid entries with the value of the nearest valid one.

    Raises:
        ValueError: no entry is valid.
    """
    if valid.all():
        return values
    if not valid.any():
        raise ValueError("no valid pixel to fill from")
    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return values[tuple(idx)]


def interpolate(low: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``'bilinear'`` or ``'bicubic'`` resize with half-pixel centres, no antialiasing."""
    t = torch.from_numpy(np.ascontiguousarray(low, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode=mode, align_corners=False)[0, 0].numpy()


def center_lowres(filled: np.ndarray, factor: int) -> np.ndarray:
    """The centre pixel of each ``factor``×``factor`` block (rows/cols ``⌊(f−1)/2⌋ + f·i``)."""
    off = (factor - 1) // 2
    return np.ascontiguousarray(filled[off::factor, off::factor])


def masked_rmse(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    """Root-mean-square error over the valid pixels."""
    diff = (pred - truth)[valid]
    return float(np.sqrt(np.mean(diff.astype(np.float64) ** 2)))


def working_data(crop: Optional[tuple[int, int, int, int]] = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb, disparity, valid)`` of the Middlebury sample, optionally cut to ``crop``
    (``(top, left, height, width)``), then cropped top-left to a multiple of :data:`MULTIPLE`.

    Raises:
        ValueError: the (cropped) image is smaller than :data:`MULTIPLE` pixels.
    """
    sample = load_middlebury()
    rgb, truth, valid = sample.rgb, sample.disparity, sample.valid
    if crop is not None:
        top, left, height, width = crop
        sl = (slice(top, top + height), slice(left, left + width))
        rgb, truth, valid = rgb[sl], truth[sl], valid[sl]
    h, w = truth.shape[0] // MULTIPLE * MULTIPLE, truth.shape[1] // MULTIPLE * MULTIPLE
    if h == 0 or w == 0:
        raise ValueError(f"image {truth.shape} is smaller than {MULTIPLE} pixels")
    return rgb[:h, :w], truth[:h, :w], valid[:h, :w]
