"""Evaluation of joint-upsampling models: datasets (docs/semantics.md §A.6) and the Middlebury
sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.joint import AssembleJointUpsamplingInputs, JointSample, SensorConfig
from .middlebury import fill_invalid, interpolate, lowres, masked_rmse, working_data
from .protocol import apply_model, denormalize, epe, normalize_lowres, rmse

__all__ = ["HELDOUT_SCENES", "SENSOR_PROTOCOLS", "EvalResult", "collate", "evaluate",
           "evaluate_middlebury", "evaluate_sensor", "heldout_scenes", "predict", "to_device"]

HELDOUT_SCENES = {
    "plain": {},
    "fractal": {"fractal_prob": 0.7},
    "hard": {"fractal_prob": 0.7, "camouflage_prob": 0.3, "thin_prob": 0.15},
    "photo": {"fractal_prob": 0.5, "photo_prob": 0.5, "camouflage_prob": 0.2, "thin_prob": 0.1},
}
"""The four held-out synthetic scene sets the depth weights are chosen on (with
``supersample=3``; seed 2, 50 scenes of 256², see :func:`heldout_scenes`)."""

SENSOR_PROTOCOLS = {
    "center": SensorConfig(),
    "area": SensorConfig("area"),
    "sensor": SensorConfig("mixed", holes=0.1, blob_prob=0.5, noise=0.01),
}
"""Low-resolution protocols of :func:`evaluate_sensor`: point samples, block means, and a
sensor-like mix (either sampling, up to 10 % of the samples missing, elliptic holes in half of
the scenes, up to 1 % relative noise)."""


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


def heldout_scenes(name: str, factor: int, length: int = 50, size: int = 256,
                   seed: int = 2) -> Any:
    """A :class:`~pac_models.data.SyntheticScenes` set of :data:`HELDOUT_SCENES` (cached).

    Raises:
        KeyError: unknown set name.
    """
    from ..data.synthetic import SceneConfig, SyntheticScenes

    cfg = SceneConfig(supersample=3, **HELDOUT_SCENES[name])
    return SyntheticScenes(length, (size, size), factor=factor, seed=seed, config=cfg,
                           cache=True)


def evaluate_sensor(model: nn.Module, factor: int, scenes: Any,
                    protocols: Optional[dict[str, SensorConfig]] = None) -> dict[str, EvalResult]:
    """RMSE of ``model`` on ``scenes`` (a :class:`~pac_models.data.SyntheticScenes`) under each
    low-resolution protocol (default :data:`SENSOR_PROTOCOLS`; no flips, one pass).

    The scenes' transform is replaced for each protocol and restored afterwards; the sensor
    draws are seeded per scene, so every model sees the same inputs.
    """
    protocols = SENSOR_PROTOCOLS if protocols is None else protocols
    saved = scenes.transform
    out = {}
    try:
        for name, cfg in protocols.items():
            scenes.transform = AssembleJointUpsamplingInputs(factor, crop=None, flip=False,
                                                             sensor=cfg)
            out[name] = evaluate(model, scenes, factor)
    finally:
        scenes.transform = saved
    return out


def evaluate_middlebury(model: nn.Module, factor: int,
                        crop: Optional[tuple[int, int, int, int]] = None,
                        sampling: str = "center") -> tuple[float, float]:
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
        sampling: ``'center'`` (above) or ``'area'`` (the mean of each block as the input;
            one pass, no half-pixel phase averaging: see
            :func:`~pac_models.depth.middlebury.sensor_report` for the full protocol).

    Returns:
        ``(rmse_model, rmse_bilinear)``.
    """
    rgb, truth, valid = working_data(crop)
    h, w = truth.shape
    low = lowres(fill_invalid(truth, valid), factor, sampling)
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
