"""Evaluation of joint-upsampling models: datasets (docs/semantics.md §A.6) and the Middlebury
sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.joint import JointSample
from .middlebury import center_lowres, fill_invalid, interpolate, masked_rmse, working_data
from .protocol import apply_model, denormalize, epe, normalize_lowres, rmse

__all__ = ["EvalResult", "collate", "evaluate", "evaluate_middlebury", "predict", "to_device"]


@dataclass
class EvalResult:
    """Mean metric over a dataset.

    Attributes:
        metric: ``"rmse"`` or ``"epe"``.
        value: Mean of the per-image values (batch size 1), in the target's raw unit.
        count: Number of images.
        per_image: The per-image values.
    """

    metric: str
    value: float
    count: int
    per_image: list[float]

    @property
    def pooled(self) -> float:
        """Root of the mean squared per-image value: for ``"rmse"``, the RMSE of the whole set
        when every image has the same number of pixels. The held-out synthetic metrics of the
        depth weights records (``synthetic_*_rmse_m`` in :mod:`pac_models.weights`) are this,
        not :attr:`value` (which, by Jensen's inequality, is never larger)."""
        if not self.per_image:
            return float("nan")
        return float(np.sqrt(np.mean(np.square(self.per_image, dtype=np.float64))))


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    if p is None:
        p = next(iter(model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(sample: JointSample, device: torch.device) -> JointSample:
    """Move a (batched) sample's tensors to ``device``."""
    rr = sample.raw_range
    return JointSample(sample.low.to(device), sample.guide.to(device), sample.target.to(device),
                       None if rr is None else rr.to(device))


def collate(samples: Sequence[JointSample]) -> JointSample:
    """Stack equally sized samples into a batch (a ``DataLoader`` ``collate_fn``)."""
    rr = [s.raw_range for s in samples]
    return JointSample(
        torch.stack([s.low for s in samples]),
        torch.stack([s.guide for s in samples]),
        torch.stack([s.target for s in samples]),
        None if any(r is None for r in rr) else torch.stack(rr),  # type: ignore[misc]
    )


def predict(model: nn.Module, sample: JointSample, factor: int) -> Tensor:
    """Run ``model`` on a batched sample; returns the prediction in raw units, cropped to target.

    The sample is moved to the model's device.

    Raises:
        ValueError: the sample was assembled without normalisation.
    """
    if sample.raw_range is None:
        raise ValueError("evaluation needs normalised samples (normalize_target=True)")
    sample = to_device(sample, _model_device(model))
    out = apply_model(model, sample.low, sample.guide, factor, tuple(sample.target.shape[-2:]))
    return denormalize(out, sample.raw_range)


def evaluate(model: nn.Module, dataset: torch.utils.data.Dataset, factor: int,
             metric: str = "rmse", limit: Optional[int] = None,
             progress: bool = False) -> EvalResult:
    """Mean per-image RMSE or EPE of ``model`` on a dataset of :class:`JointSample`.

    Args:
        model: Joint-upsampling model.
        dataset: Items are unbatched :class:`JointSample` (e.g.
            :class:`~pac_models.data.NYUDepthV2`).
        factor: Upsampling factor.
        metric: ``"rmse"`` (depth, raw units: metres for NYU) or ``"epe"`` (flow, pixels).
        limit: Evaluate only the first ``limit`` items.
        progress: Show a tqdm bar.

    Raises:
        ValueError: unknown metric.
    """
    if metric not in ("rmse", "epe"):
        raise ValueError(f"metric must be 'rmse' or 'epe', got {metric!r}")
    fn = rmse if metric == "rmse" else epe
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    values: list[float] = []
    it = range(n)
    if progress:
        it = tqdm(it, desc=f"eval {metric}", unit="img")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in it:
                batch = to_device(collate([dataset[i]]), _model_device(model))
                pred = predict(model, batch, factor)
                values.append(float(fn(pred, batch.target)))
    finally:
        model.train(was_training)
    return EvalResult(metric, float(np.mean(values)) if values else float("nan"), n, values)


def evaluate_middlebury(model: nn.Module, factor: int,
                        crop: Optional[tuple[int, int, int, int]] = None) -> tuple[float, float]:
    """RMSE of ``model`` and of bilinear upsampling on the bundled Middlebury disparity.

    The protocol of :mod:`pac_models.depth.middlebury` (the demo's): the full-resolution
    disparity (cropped to a multiple of 16) has its invalid pixels filled with the nearest valid
    value, the centre pixel of each ``factor``×``factor`` block is the low-resolution input, and
    the RMSE is taken over the valid ground-truth pixels, in disparity px.

    Args:
        model: A joint-upsampling model (called through :func:`apply_model` on the normalised
            input, like in training).
        factor: Upsampling factor.
        crop: Optional ``(top, left, height, width)`` window, for quick runs.

    Returns:
        ``(rmse_model, rmse_bilinear)``.
    """
    rgb, truth, valid = working_data(crop)
    h, w = truth.shape
    low = center_lowres(fill_invalid(truth, valid), factor)
    dev = _model_device(model)
    low_t, rng = normalize_lowres(torch.from_numpy(low)[None, None])
    guide = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
    guide = guide / 255.0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = apply_model(model, low_t.to(dev), guide.to(dev), factor).cpu()
            out = denormalize(out, rng)[0, 0].numpy()
    finally:
        model.train(was_training)
    bil = interpolate(low, (h, w), "bilinear")
    return masked_rmse(out, truth, valid), masked_rmse(bil, truth, valid)
