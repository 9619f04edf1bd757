"""Joint-upsampling sample assembly (docs/semantics.md §A.5): low-resolution generation, crops,
normalisation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["LOWRES_MODES", "SAMPLINGS", "AssembleJointUpsamplingInputs", "JointSample",
           "SensorConfig", "aligned_area_lowres", "denormalize", "make_lowres", "normalize_lowres"]

LOWRES_MODES = ("center", "last", "bilinear", "bicubic", "nearest", "area")
SAMPLINGS = ("center", "area", "mixed", "block")
"""Low-resolution samplings of :class:`SensorConfig`: ``'center'`` (point samples at the
``'center'`` position), ``'area'`` (block means moved onto the ``'center'`` position, see
:func:`aligned_area_lowres`), ``'mixed'`` (each sample draws one of the two with probability ½)
or ``'block'`` (the plain block mean, ``make_lowres(..., 'area')``, centred half a pixel from the
``'center'`` position at even factors: exactly what
``pac_models.depth.upsample(sampling='area')`` hands to weights trained for area samples)."""
_ORDERS = {"nearest": 0, "bilinear": 1, "bicubic": 3}


def _resize(x: np.ndarray, size: tuple[int, int], order: int) -> np.ndarray:
    """skimage resize of ``[C, H, W]`` over the spatial axes (settings: docs/semantics.md §A.5)."""
    from skimage.transform import resize

    return resize(x, (x.shape[0], *size), order=order, mode="reflect", clip=False,
                  preserve_range=True, anti_aliasing=True).astype(np.float32)


def make_lowres(target: np.ndarray, factor: int, mode: str = "center") -> np.ndarray:
    """The low-resolution target of docs/semantics.md §A.5 step 3.

    A target whose size is not a multiple of ``factor`` is first resized (skimage, order 1,
    anti-aliased) to ``⌈H/f⌉f × ⌈W/f⌉f`` (for every mode).

    Args:
        target: ``[C, H, W]`` or ``[H, W]`` float array.
        factor: Downsampling factor.
        mode: ``'center'`` (point samples at rows/cols ``⌊(f−1)/2⌋ + f·i``, no prefilter;
            NYU default), ``'last'`` (offset ``f − 1``), ``'area'`` (the mean of each
            ``f``×``f`` block, centred at ``(f−1)/2 + f·i``: what a depth sensor's pixel or
            ``F.interpolate(mode='area')`` gives), or ``'bilinear'`` / ``'bicubic'`` /
            ``'nearest'`` (skimage resize with anti-aliasing; Sintel default ``'bilinear'``).

    Returns:
        ``[C, ⌈H/f⌉, ⌈W/f⌉]`` (or 2-D like the input) float32.

    Raises:
        ValueError: unknown mode or factor < 1.
    """
    if mode not in LOWRES_MODES:
        raise ValueError(f"lowres_mode must be one of {LOWRES_MODES}, got {mode!r}")
    if factor < 1:
        raise ValueError(f"factor must be ≥ 1, got {factor}")
    x = np.asarray(target, dtype=np.float32)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    h, w = x.shape[-2:]
    hl, wl = math.ceil(h / factor), math.ceil(w / factor)
    if (h, w) != (hl * factor, wl * factor):
        x = _resize(x, (hl * factor, wl * factor), order=1)
    if mode in ("center", "last"):
        off = (factor - 1) // 2 if mode == "center" else factor - 1
        low = np.ascontiguousarray(x[:, off::factor, off::factor][:, :hl, :wl])
    elif mode == "area":
        low = x.reshape(x.shape[0], hl, factor, wl, factor).mean(axis=(2, 4)).astype(np.float32)
    else:
        low = _resize(x, (hl, wl), order=_ORDERS[mode])
    return low[0] if squeeze else low



def aligned_area_lowres(target: np.ndarray, factor: int) -> np.ndarray:
    """Block means centred on the ``'center'`` sample position ``⌊(f−1)/2⌋ + f·i``.

    For an even ``f`` the true block mean (``make_lowres(..., 'area')``) is centred half a pixel
    further, at ``(f−1)/2 + f·i``; this is the mean over a box of width ``f`` centred on the
    ``'center'`` pixel instead (weights ½, 1, …, 1, ½ over ``f + 1`` pixels per axis, the first
    row/column repeated at the top/left border). Training on it teaches a model the values of
    area samples (mixtures across depth edges) at the position its ``'center'`` convention
    expects; :func:`pac_models.depth.upsample` with ``sampling='area'`` then averages the two
    half-pixel phases. For an odd ``f`` both definitions agree.

    Args:
        target: ``[C, H, W]`` float array, ``H`` and ``W`` multiples of ``factor``.
        factor: The factor.

    Returns:
        ``[C, H/f, W/f]`` float32.
    """
    x = np.asarray(target, dtype=np.float32)
    c, h, w = x.shape
    hl, wl = h // factor, w // factor
    if factor % 2:
        return x.reshape(c, hl, factor, wl, factor).mean(axis=(2, 4)).astype(np.float32)
    p = np.pad(x, ((0, 0), (1, 0), (1, 0)), mode="edge")
    out = np.zeros((c, hl, wl), np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            blk = p[:, dy:dy + h, dx:dx + w].reshape(c, hl, factor, wl, factor)
            out += blk.mean(axis=(2, 4))
    return (out / 4).astype(np.float32)


@dataclass(frozen=True)
class SensorConfig:
    """How :class:`AssembleJointUpsamplingInputs` makes a sensor-like low-resolution map.

    Draws happen after the crop and flips, so the default (all off, ``'center'``) reproduces
    the samples of earlier recipes exactly.

    Attributes:
        sampling: One of :data:`SAMPLINGS`.
        holes: Largest fraction of low-resolution samples that go missing at random (each
            sample draws a fraction uniformly in ``[0, holes]``); missing samples become NaN in
            ``JointSample.low``.
        blob_prob: Probability of also cutting 1–3 elliptic holes (radius 0.5–3 low-resolution
            pixels: dark or specular surfaces, shadows of a structured-light projector).
        noise: Largest relative noise: each sample draws ``σ`` uniformly in ``[0, noise]`` and
            every low-resolution value ``d`` gets ``d · σ · N(0, 1)`` added (noise that grows
            with depth, like a time-of-flight sensor's).
    """

    sampling: str = "center"
    holes: float = 0.0
    blob_prob: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        for name in ("holes", "blob_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not (self.noise >= 0.0 and np.isfinite(self.noise)):
            raise ValueError(f"noise must be a finite number ≥ 0, got {self.noise!r}")

    @property
    def active(self) -> bool:
        """Whether anything differs from the plain ``'center'`` sampling."""
        return (self.sampling != "center" or self.holes > 0 or self.blob_prob > 0
                or self.noise > 0)


def _sensor_lowres(t: np.ndarray, factor: int, cfg: SensorConfig,
                   rng: np.random.Generator) -> np.ndarray:
    """The low-resolution map of :class:`SensorConfig` (NaN where a sample is missing)."""
    mode = cfg.sampling
    if mode == "mixed":
        mode = "area" if rng.random() < 0.5 else "center"
    if mode == "block":
        low = make_lowres(t, factor, "area")
    elif mode == "area":
        h, w = t.shape[-2:]
        hl, wl = math.ceil(h / factor), math.ceil(w / factor)
        x = t if (h, w) == (hl * factor, wl * factor) else _resize(t, (hl * factor, wl * factor), 1)
        low = aligned_area_lowres(x, factor)
    else:
        low = make_lowres(t, factor, "center")
    low = low.astype(np.float32, copy=True)
    if cfg.noise > 0:
        sigma = rng.uniform(0.0, cfg.noise)
        low += (low * sigma * rng.standard_normal(low.shape)).astype(np.float32)
    hl, wl = low.shape[-2:]
    missing = np.zeros((hl, wl), bool)
    if cfg.holes > 0:
        missing |= rng.random((hl, wl)) < rng.uniform(0.0, cfg.holes)
    if cfg.blob_prob > 0 and rng.random() < cfg.blob_prob:
        yy, xx = np.mgrid[0:hl, 0:wl]
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, hl), rng.uniform(0, wl)
            ry, rx = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0)
            missing |= ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1.0
    if missing.mean() > 0.5:  # keep at least half of the samples
        keep = rng.permutation(np.flatnonzero(missing))[: int(missing.sum()) - hl * wl // 2]
        missing.flat[keep] = False
    low[:, missing] = np.nan
    return low


def normalize_lowres(low: Tensor) -> tuple[Tensor, Tensor]:
    """Normalise a low-resolution target to [0, 1] per sample and channel.

    ``lo``/``hi`` are the channel's min/max (``lo − 0.5``, ``hi + 0.5`` when constant). NaN
    entries (missing samples) are ignored by the min/max and stay NaN.

    Args:
        low: ``[B, C, h, w]`` or ``[C, h, w]``.

    Returns:
        ``(normalised, raw_range)`` with ``raw_range [B, C, 2]`` (or ``[C, 2]``) holding
        ``(lo, hi)``.
    """
    squeeze = low.dim() == 3
    x = low[None] if squeeze else low
    flat = x.flatten(2)
    nan = torch.isnan(flat)
    if nan.any():
        inf = torch.full_like(flat, float("inf"))
        lo = torch.where(nan, inf, flat).min(dim=2).values
        hi = torch.where(nan, -inf, flat).max(dim=2).values
    else:
        lo, hi = flat.min(dim=2).values, flat.max(dim=2).values
    same = lo == hi
    lo = torch.where(same, lo - 0.5, lo)
    hi = torch.where(same, hi + 0.5, hi)
    out = (x - lo[..., None, None]) / (hi - lo)[..., None, None]
    rng = torch.stack([lo, hi], dim=-1)
    return (out[0], rng[0]) if squeeze else (out, rng)


def denormalize(x: Tensor, raw_range: Tensor) -> Tensor:
    """``x·(hi − lo) + lo`` with ``raw_range [B, C, 2]`` (or ``[C, 2]`` for unbatched ``x``)."""
    lo, hi = raw_range[..., 0], raw_range[..., 1]
    return x * (hi - lo)[..., None, None] + lo[..., None, None]

@dataclass
class JointSample:
    """One assembled sample (tensors, unbatched).

    Attributes:
        low: Low-resolution target ``[C, h, w]`` (normalised to [0, 1] when normalisation is on;
            NaN where a sample is missing).
        guide: RGB guidance ``[3, H, W]`` float32 in [0, 1].
        target: Full-resolution target ``[C, H − 2b, W − 2b]`` in raw units (border b removed).
        raw_range: ``[C, 2]`` ``(lo, hi)`` of the normalisation (None when off).
    """

    low: Tensor
    guide: Tensor
    target: Tensor
    raw_range: Optional[Tensor]

    def as_tuple(self) -> tuple[Tensor, ...]:
        """pacnet's order: ``(low, guide, target, raw_range)`` (3-tuple without normalisation)."""
        if self.raw_range is None:
            return self.low, self.guide, self.target
        return self.low, self.guide, self.target, self.raw_range


class AssembleJointUpsamplingInputs:
    """Build ``(low, guide, target, raw_range)`` from a full-resolution pair
    (docs/semantics.md §A.5).

    Args:
        factor: Upsampling factor.
        crop: Random square crop size (training); must be divisible by ``factor``. None = no crop.
        flip: Random horizontal flip with probability 0.5 (training).
        d4: Also a random vertical flip and a random transposition, each with probability 0.5,
            so that a sample is shown in any of the 8 symmetries of the square (training; the
            crop, or the image, must be square). Drawn after the horizontal flip, so recipes
            without it keep their random streams.
        normalize_target: Normalise the low-resolution target per channel to [0, 1].
        output_crop: Pixels removed on every side of the full-resolution target (evaluation
            border; NYU uses 6).
        lowres_mode: See :func:`make_lowres`.
        zero_guidance: Replace the guidance by zeros (ablation).
        sensor: Sensor-like low resolution (:class:`SensorConfig`: area or mixed sampling,
            missing samples, noise); when it is active it replaces ``lowres_mode``, which must
            then be ``'center'``.

    Raises:
        ValueError: crop not divisible by factor, negative border, unknown mode.
    """

    def __init__(self, factor: int, crop: Optional[int] = None, flip: bool = True,
                 normalize_target: bool = True, output_crop: int = 0,
                 lowres_mode: str = "center", zero_guidance: bool = False,
                 d4: bool = False, sensor: Optional[SensorConfig] = None) -> None:
        if sensor is not None and sensor.active and lowres_mode != "center":
            raise ValueError(f"a SensorConfig replaces lowres_mode, which must stay 'center', got "
                             f"{lowres_mode!r}")
        if crop is not None and (crop <= 0 or crop % factor):
            raise ValueError(f"crop ({crop}) must be a positive multiple of factor ({factor})")
        if output_crop < 0:
            raise ValueError(f"output_crop must be ≥ 0, got {output_crop}")
        if lowres_mode not in LOWRES_MODES:
            raise ValueError(f"lowres_mode must be one of {LOWRES_MODES}, got {lowres_mode!r}")
        self.factor = factor
        self.crop = crop
        self.flip = flip
        self.d4 = d4
        self.normalize_target = normalize_target
        self.output_crop = output_crop
        self.lowres_mode = lowres_mode
        self.zero_guidance = zero_guidance
        self.sensor = sensor if sensor is not None and sensor.active else None

    def __call__(self, guidance: Union[np.ndarray, Tensor], target: Union[np.ndarray, Tensor],
                 rng: Optional[np.random.Generator] = None) -> JointSample:
        """Assemble one sample.

        Args:
            guidance: ``uint8 [3, H, W]``.
            target: ``float [C, H, W]`` or ``[H, W]``.
            rng: Random generator for crop and flip (default: a fresh unseeded one).

        Raises:
            ValueError: shapes disagree, the crop is larger than the image, or ``d4`` is set
                and the sample is not square.
        """
        g = np.asarray(guidance)
        t = np.asarray(target, dtype=np.float32)
        if t.ndim == 2:
            t = t[None]
        if g.ndim != 3 or g.shape[0] != 3 or t.ndim != 3 or g.shape[1:] != t.shape[1:]:
            raise ValueError(
                f"guidance must be [3, H, W] and target [C, H, W] of the same size, got "
                f"{g.shape} and {t.shape}"
            )
        rng = rng if rng is not None else np.random.default_rng()
        h, w = t.shape[1:]
        if self.crop is not None:
            if self.crop > h or self.crop > w:
                raise ValueError(f"crop {self.crop} is larger than the image {(h, w)}")
            top = int(rng.integers(0, h - self.crop + 1))
            left = int(rng.integers(0, w - self.crop + 1))
            g = g[:, top:top + self.crop, left:left + self.crop]
            t = t[:, top:top + self.crop, left:left + self.crop]
        if self.flip and rng.random() < 0.5:
            g, t = g[:, :, ::-1], t[:, :, ::-1]
        if self.d4:
            if t.shape[1] != t.shape[2]:
                raise ValueError(f"d4 augmentation needs square samples (set crop), got "
                                 f"{tuple(t.shape[1:])}")
            if rng.random() < 0.5:
                g, t = g[:, ::-1], t[:, ::-1]
            if rng.random() < 0.5:
                g, t = g.transpose(0, 2, 1), t.transpose(0, 2, 1)
        if self.sensor is not None:
            low = _sensor_lowres(t, self.factor, self.sensor, rng)
        else:
            low = make_lowres(t, self.factor, self.lowres_mode)
        b = self.output_crop
        if b > 0:
            t = t[:, b:-b, b:-b]
        low_t = torch.from_numpy(np.ascontiguousarray(low, dtype=np.float32))
        raw_range = None
        if self.normalize_target:
            low_t, raw_range = normalize_lowres(low_t)
        guide_t = torch.from_numpy(np.ascontiguousarray(g)).to(torch.float32).div_(255.0)
        if self.zero_guidance:
            guide_t.zero_()
        target_t = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))
        return JointSample(low_t, guide_t, target_t, raw_range)
