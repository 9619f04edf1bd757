"""The Middlebury "motorcycle" stereo sample bundled with scikit-image.

``skimage.data.stereo_motorcycle()`` returns the left and right RGB views (500×741, uint8) and the
left view's ground-truth disparity (float32, in pixels), with ``inf`` wherever the disparity is
unknown (occlusions, missing data). It ships inside scikit-image, so no download is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MiddleburySample:
    """One RGB-D sample.

    Attributes:
        rgb: The left RGB view, ``uint8 [H, W, 3]``.
        disparity: Ground-truth disparity in pixels, ``float32 [H, W]``; invalid pixels hold 0.
        valid: ``bool [H, W]``, True where the disparity is known (finite and positive).
    """

    rgb: np.ndarray
    disparity: np.ndarray
    valid: np.ndarray


def load_middlebury() -> MiddleburySample:
    """Load the Middlebury motorcycle sample shipped with scikit-image.

    Returns:
        The RGB view, the disparity (invalid pixels set to 0, never ``inf`` or NaN) and the
        validity mask.
    """
    from skimage import data

    left, _right, disparity = data.stereo_motorcycle()
    disparity = np.asarray(disparity, dtype=np.float32)
    valid = np.isfinite(disparity) & (disparity > 0)
    disparity = np.where(valid, disparity, np.float32(0)).astype(np.float32)
    return MiddleburySample(rgb=np.ascontiguousarray(left, dtype=np.uint8),
                            disparity=disparity, valid=valid)


def block_average(
    values: np.ndarray, valid: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Downsample by ``factor`` with the mean over the valid pixels of each block.

    The array is cropped to a multiple of ``factor`` first. Blocks without any valid pixel get the
    value 0 and ``False`` in the returned mask.

    Args:
        values: ``[H, W]`` or ``[H, W, C]`` array.
        valid: ``bool [H, W]`` mask of the pixels to average.
        factor: Block size (a positive integer).

    Returns:
        ``(low, low_valid)``: the block means (float32) and the mask of blocks with data.
    """
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    h, w = valid.shape[0] // factor, valid.shape[1] // factor
    v = valid[: h * factor, : w * factor].reshape(h, factor, w, factor).astype(np.float64)
    x = np.asarray(values, dtype=np.float64)[: h * factor, : w * factor]
    x = x.reshape(h, factor, w, factor, *x.shape[2:])
    vv = v.reshape(v.shape + (1,) * (x.ndim - 4))
    total = (np.where(vv > 0, x, 0.0) * vv).sum(axis=(1, 3))
    count = v.sum(axis=(1, 3))
    count_b = count.reshape(count.shape + (1,) * (total.ndim - 2))
    low = np.where(count_b > 0, total / np.maximum(count_b, 1), 0.0)
    return low.astype(np.float32), count > 0
