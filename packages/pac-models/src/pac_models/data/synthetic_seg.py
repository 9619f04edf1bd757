"""Labelled synthetic scenes for segmentation, and coarse logits made from a labelling.

The labels come from the depth of :func:`pac_models.data.synthetic.dead_leaves_scene`:
foreground (label 1) is every pixel nearer than a per-scene percentile of the scene's depth,
background (label 0) the rest. Label boundaries are therefore occlusion boundaries (which are
colour edges) where the threshold falls between two shapes, and a threshold line without any
colour edge where it cuts through a slanted surface, the same mix a foreground/background
labelling of a real disparity map has.

:func:`coarse_logits` turns any labelling into the soft logits of a coarse prediction: the one-hot
labelling is block-averaged ×``factor`` (over the valid pixels only), upsampled again bilinearly
and turned into log-probabilities. The segmentation demo (:mod:`pac_models.segmentation.demo`)
and the CRF training (:mod:`pac_models.segmentation.crf_training`) both make their inputs with
this one function.

:func:`dead_leaves_scene`'s output is unchanged for every seed: the labels are computed from its
depth afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .synthetic import SceneConfig, dead_leaves_scene

__all__ = [
    "IGNORE_INDEX",
    "LOGIT_EPS",
    "SegScene",
    "coarse_logits",
    "dead_leaves_segmentation",
    "depth_labels",
    "synthetic_seg_batch",
]

IGNORE_INDEX = 255
"""Label of pixels that are not scored (and do not count in the coarse logits)."""

LOGIT_EPS = 0.05
"""Label smoothing of the coarse logits: ``log((1 − ε)·p + ε/L)``."""


@dataclass(frozen=True)
class SegScene:
    """One labelled synthetic scene.

    Attributes:
        rgb: ``uint8 [H, W, 3]``.
        depth: ``float32 [H, W]`` in metres.
        labels: ``uint8 [H, W]``: 1 = foreground (nearer than the threshold), 0 = background.
        percentile: The depth percentile used as the threshold.
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    percentile: float


def depth_labels(depth: np.ndarray, percentile: float, valid: Optional[np.ndarray] = None, *,
                 nearer_is_smaller: bool = True) -> np.ndarray:
    """Foreground/background labelling of a depth (or disparity) map at a percentile.

    Args:
        depth: ``[H, W]`` depth (smaller = nearer) or disparity (larger = nearer).
        percentile: Percentile in (0, 100) of the valid values. With ``nearer_is_smaller`` the
            foreground is ``depth < q(percentile)`` (so ``percentile`` % of the pixels are
            foreground); otherwise (disparity) it is ``disparity > q(100 − percentile)``.
        valid: Optional ``bool [H, W]``; invalid pixels get :data:`IGNORE_INDEX`.
        nearer_is_smaller: True for depth, False for disparity.

    Returns:
        ``uint8 [H, W]``: 1 foreground, 0 background, 255 ignored.

    Raises:
        ValueError: bad percentile or no valid pixel.
    """
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    depth = np.asarray(depth)
    valid = np.ones(depth.shape, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != depth.shape:
        raise ValueError(f"valid {valid.shape} does not match depth {depth.shape}")
    if not valid.any():
        raise ValueError("no valid pixel to label")
    vals = depth[valid]
    if nearer_is_smaller:
        fg = depth < np.percentile(vals, percentile)
    else:
        fg = depth > np.percentile(vals, 100.0 - percentile)
    labels = fg.astype(np.uint8)
    labels[~valid] = IGNORE_INDEX
    return labels


def dead_leaves_segmentation(
    height: int, width: int, rng: Union[np.random.Generator, int, None] = None,
    config: Optional[SceneConfig] = None, percentile: Union[float, tuple[float, float]] = 50.0,
) -> SegScene:
    """Render a :func:`dead_leaves_scene` and label it foreground/background by depth.

    Args:
        height: Output height.
        width: Output width.
        rng: Random generator or seed (the scene is exactly ``dead_leaves_scene``'s for it).
        config: Scene parameters.
        percentile: Depth percentile of the threshold, or a ``(low, high)`` range to draw it
            from uniformly (drawn after the scene, from the same generator).

    Returns:
        The scene with its labels (no ignored pixels).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    rgb, depth = dead_leaves_scene(height, width, rng, config)
    if isinstance(percentile, (tuple, list)):
        pct = float(rng.uniform(percentile[0], percentile[1]))
    else:
        pct = float(percentile)
    return SegScene(rgb, depth, depth_labels(depth, pct), pct)


def coarse_logits(labels: np.ndarray, num_classes: int, factor: int, *,
                  ignore_index: int = IGNORE_INDEX, eps: float = LOGIT_EPS) -> np.ndarray:
    """Soft logits of a coarse prediction: the labelling downsampled ×factor and upsampled back.

    Steps: one-hot ``[L, H, W]`` of the labels; block means over each ``factor × factor``
    block counting only non-ignored pixels (a block with none takes the value of the nearest
    block that has some); bilinear upsampling back to ``H × W`` (half-pixel centres,
    ``align_corners=False``), which keeps the per-pixel sum at 1; finally
    ``log((1 − eps)·p + eps/L)``.

    Args:
        labels: ``[H, W]`` integer labels in ``[0, num_classes)`` or ``ignore_index``; H and W
            must be multiples of ``factor``.
        num_classes: ``L``.
        factor: Downsampling factor (≥ 1).
        ignore_index: Label of pixels left out of the block means.
        eps: Label smoothing (0 < eps < 1), which bounds the logits.

    Returns:
        ``float32 [L, H, W]`` log-probabilities.

    Raises:
        ValueError: bad sizes, labels out of range, or no labelled pixel.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape}")
    if factor < 1:
        raise ValueError(f"factor must be ≥ 1, got {factor}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    h, w = labels.shape
    if h % factor or w % factor:
        raise ValueError(f"labels {h}×{w} are not a multiple of the factor {factor}")
    valid = labels != ignore_index
    if not valid.any():
        raise ValueError("no labelled pixel")
    if labels[valid].min() < 0 or labels[valid].max() >= num_classes:
        raise ValueError(f"labels outside [0, {num_classes}) other than {ignore_index}")
    onehot = np.zeros((num_classes, h, w), np.float64)
    idx = np.where(valid, labels, 0).astype(np.int64)
    np.put_along_axis(onehot, idx[None], 1.0, axis=0)
    onehot *= valid[None]
    hb, wb = h // factor, w // factor
    sums = onehot.reshape(num_classes, hb, factor, wb, factor).sum(axis=(2, 4))
    count = valid.reshape(hb, factor, wb, factor).sum(axis=(1, 3))
    low = sums / np.maximum(count, 1)[None]
    has = count > 0
    if not has.all():
        from scipy import ndimage

        near = ndimage.distance_transform_edt(~has, return_distances=False, return_indices=True)
        low = low[:, near[0], near[1]]
    t = torch.from_numpy(low.astype(np.float32))[None]
    p = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0]
    return torch.log((1.0 - eps) * p + eps / num_classes).numpy()


def synthetic_seg_batch(n: int, size: tuple[int, int], factors: tuple[int, ...], seed: int,
                        percentile: Union[float, tuple[float, float]] = (30.0, 70.0),
                        config: Optional[SceneConfig] = None,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` labelled scenes with their coarse logits, as tensors.

    Scene ``i`` is ``dead_leaves_segmentation(*size, default_rng([seed, i]), percentile=...)``
    and its coarse logits use ``factors[i % len(factors)]``.

    Returns:
        ``(logits float32 [n, 2, H, W], rgb uint8 [n, H, W, 3], labels int64 [n, H, W])``.
    """
    logits, rgbs, labels = [], [], []
    for i in range(n):
        scene = dead_leaves_segmentation(*size, np.random.default_rng([seed, i]), config,
                                         percentile)
        f = factors[i % len(factors)]
        logits.append(torch.from_numpy(coarse_logits(scene.labels, 2, f)))
        rgbs.append(torch.from_numpy(scene.rgb))
        labels.append(torch.from_numpy(scene.labels.astype(np.int64)))
    return torch.stack(logits), torch.stack(rgbs), torch.stack(labels)
