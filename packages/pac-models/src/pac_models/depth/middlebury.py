"""The Middlebury evaluation protocol of the demo and of ``pac-models eval``.

The full-resolution disparity of the bundled Middlebury motorcycle sample
(:func:`pac_models.data.load_middlebury`), cropped top-left to a multiple of 16, has its invalid
pixels filled with the nearest valid value; the centre pixel of each ``f``×``f`` block is the
low-resolution input (the ``'center'`` protocol of ``docs/semantics.md`` §A.5; or, with
``sampling='area'``, the mean of each block, as a depth sensor measures), and the RMSE is taken
over the valid ground-truth pixels, in disparity px. :func:`sensor_report` also runs shifted
crops (the blocks fall on other content) and maps with missing samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..data.middlebury import load_middlebury

__all__ = ["MULTIPLE", "SHIFTS", "SensorRow", "area_lowres", "center_lowres", "fill_invalid",
           "interpolate", "lowres", "masked_rmse", "missing_mask", "sensor_report", "working_data"]

SHIFTS = ((0, 0), (5, 3), (3, 11))
"""Crop offsets ``(top, left)`` of :func:`sensor_report`: the image's own crop and three
shifted ones (the crop then cut to a multiple of :data:`MULTIPLE`)."""

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


def area_lowres(filled: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor``×``factor`` block (a sensor pixel; ``F.interpolate`` 'area')."""
    h, w = filled.shape
    blocks = filled.astype(np.float64).reshape(h // factor, factor, w // factor, factor)
    return np.ascontiguousarray(blocks.mean(axis=(1, 3)))


def lowres(filled: np.ndarray, factor: int, sampling: str = "center") -> np.ndarray:
    """The low-resolution input for ``sampling`` ``'center'`` or ``'area'``.

    Raises:
        ValueError: unknown sampling.
    """
    if sampling == "center":
        return center_lowres(filled, factor)
    if sampling == "area":
        return area_lowres(filled, factor)
    raise ValueError(f"sampling must be 'center' or 'area', got {sampling!r}")


def missing_mask(shape: tuple[int, int], fraction: float, seed: int = 0) -> np.ndarray:
    """A boolean ``valid`` mask with ``round(fraction · h · w)`` samples missing (seeded)."""
    n = round(fraction * shape[0] * shape[1])
    valid = np.ones(shape, bool)
    valid.flat[np.random.default_rng(seed).permutation(valid.size)[:n]] = False
    return valid


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


@dataclass
class SensorRow:
    """One line of :func:`sensor_report` (RMSE in disparity px)."""

    factor: int
    sampling: str
    shift: tuple[int, int]
    missing: float
    rmse: float
    bilinear: float

    @property
    def ratio(self) -> float:
        """RMSE relative to bilinear's."""
        return self.rmse / self.bilinear


def sensor_report(factors: Sequence[int] = (4, 8, 16), samplings: Sequence[str] = ("center",
                  "area"), shifts: Sequence[tuple[int, int]] = SHIFTS,
                  missing: Sequence[float] = (0.0, 0.05), *,
                  model: Optional[Any] = None, ensemble: Optional[str] = None,
                  crop: Optional[tuple[int, int, int, int]] = None,
                  progress: bool = False) -> list[SensorRow]:
    """Middlebury RMSE of :func:`~pac_models.depth.upsample` and of bilinear, per factor,
    sampling, crop offset and fraction of missing samples.

    The missing samples (a seeded random ``fraction`` of the low-resolution map) are passed as
    ``valid``; the missing-sample cases run on the image's own crop only. Bilinear always gets
    the complete map (it cannot skip samples), so with holes the ratio compares against a
    baseline that had more data.

    Args:
        factors: Factors.
        samplings: ``'center'`` and/or ``'area'``.
        shifts: Crop offsets ``(top, left)``.
        missing: Fractions of missing samples (0: none).
        model: Passed to :func:`~pac_models.depth.upsample` (None: the shipped weights for each
            factor and sampling, each built once).
        ensemble: Passed to :func:`~pac_models.depth.upsample`.
        crop: ``(top, left, height, width)`` window the shifts apply within (default: the
            whole image), for quick runs.
        progress: A tqdm bar over the runs.

    Returns:
        The rows.
    """
    from tqdm.auto import tqdm

    from .api import DEFAULT_ENSEMBLE, select_model, upsample

    if crop is None:
        crop = (0, 0, *load_middlebury().disparity.shape)
    runs = [(f, s, sh, m) for f in factors for s in samplings for m in missing
            for sh in (shifts if m == 0 else shifts[:1])]
    nets: dict[tuple[int, str], Any] = {}
    rows = []
    for f, s, (top, left), m in tqdm(runs, desc="middlebury", disable=not progress):
        rgb, truth, valid = working_data((crop[0] + top, crop[1] + left, crop[2] - top,
                                          crop[3] - left))
        low = lowres(fill_invalid(truth, valid), f, s)
        net = model
        if net is None:
            if (f, s) not in nets:
                nets[f, s] = select_model(f, s)[0]
            net = nets[f, s]
        keep = missing_mask(low.shape, m, seed=f) if m > 0 else None
        with torch.no_grad():
            out = upsample(low, rgb, f, model=net, sampling=s, valid=keep,
                           ensemble=ensemble or (DEFAULT_ENSEMBLE if model is None else None))
        bil = interpolate(low, truth.shape, "bilinear")
        rows.append(SensorRow(f, s, (top, left), m, masked_rmse(out.numpy(), truth, valid),
                              masked_rmse(bil, truth, valid)))
    return rows
