"""One-call joint depth upsampling: :func:`upsample`."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import weights
from ..registry import create_model
from .consistency import SPREADS, project_block_means
from .models import fill_missing
from .protocol import denormalize, normalize_lowres

__all__ = ["AREA_CONSISTENCY", "CONSISTENCIES", "DEFAULT_ENSEMBLE", "DEFAULT_FALLBACK",
           "DEFAULT_MODEL", "ENSEMBLES", "SAMPLINGS", "SUPPORTED_FACTORS", "select_model",
           "upsample"]

SAMPLINGS = ("center", "area")
"""How the low-resolution grid of :func:`upsample` sits on the RGB grid: ``'center'``
(``depth_lr[i, j]`` is the depth at pixel ``(f·i + ⌊(f−1)/2⌋, f·j + ⌊(f−1)/2⌋)``, a decimated
map) or ``'area'`` (the mean over the block ``f·i … f·i + f − 1``, centred at ``f·i + (f−1)/2``:
a depth sensor's pixel, or ``F.interpolate(mode='area')``)."""

SUPPORTED_FACTORS = (4, 8, 16)
"""Factors :func:`upsample` accepts (those of the paper's models)."""

CONSISTENCIES = ("none", *SPREADS)
"""Values of :func:`upsample`'s ``consistency``: ``'none'`` or a spread of
:func:`~pac_models.depth.consistency.project_block_means`."""

AREA_CONSISTENCY = {4: "bilinear", 8: "bilinear", 16: "bilinear"}
"""The consistency step :func:`upsample` applies by default with ``sampling='area'``, per factor
(chosen on the held-out synthetic scenes; docs/models.md has the figures)."""

_CONSISTENCY_ITERATIONS = 30

_FLOAT32_MAX = float(torch.finfo(torch.float32).max)

DEFAULT_MODEL = "pac_jbu_refine"
"""Model of the weights :func:`upsample` uses by default: its default weights at each factor."""

DEFAULT_FALLBACK = "pac_refine"
"""Model used by :func:`upsample` when no shipped weights exist for the factor (non-learned)."""

ENSEMBLES = {
    "none": ((False, False, False),),
    "h": ((False, False, False), (False, False, True)),
    "hv": tuple((False, fy, fx) for fy in (False, True) for fx in (False, True)),
    "d4": tuple((tr, fy, fx) for tr in (False, True) for fy in (False, True)
                for fx in (False, True)),
}
"""Test-time self-ensembles of :func:`upsample`: the ``(transpose, mirror rows, mirror
columns)`` views the model runs on; their results, mapped back, are averaged. ``"h"``: the image
and its left-right mirror; ``"hv"``: also the up-down mirrors (4 passes); ``"d4"``: also the
transposes (all 8 symmetries of the square)."""

DEFAULT_ENSEMBLE = "d4"
"""The ensemble :func:`upsample` uses with the default weights (``model=None``): with them each
step none → h → hv → d4 lowered the held-out synthetic RMSE of all four scene sets at every
factor (d4: 0.93–0.97× one pass at ×8 and ×16, 0.98–0.99× at ×4)."""


def select_model(factor: int, sampling: str = "center") -> tuple[nn.Module, str]:
    """The model :func:`upsample` uses by default for ``factor`` and ``sampling``.

    Returns:
        ``(model, description)``: :data:`DEFAULT_MODEL` with its default weights for that
        factor and sampling (``create_model(DEFAULT_MODEL, factor=factor, pretrained=True,
        sampling=sampling)``: weights trained for area samples where they exist, else the
        ``'center'`` weights), or :data:`DEFAULT_FALLBACK` when there are none.

    Raises:
        ValueError: ``sampling`` is not one of :data:`SAMPLINGS`.
    """
    record = weights.default_weights(DEFAULT_MODEL, factor, sampling)
    if record is not None:
        return (create_model(DEFAULT_MODEL, factor=factor, pretrained=True, sampling=sampling),
                record.name)
    return create_model(DEFAULT_FALLBACK, factor=factor).eval(), f"{DEFAULT_FALLBACK} (no weights)"


def _as_tensor(x: Any, what: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    try:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    except TypeError as exc:
        raise ValueError(f"{what}: cannot convert {type(x).__name__} to an array ({exc})") from None


def upsample(depth_lr: Union[Tensor, np.ndarray], rgb: Union[Tensor, np.ndarray], factor: int,
             model: Optional[Union[nn.Module, str]] = None, *,
             ensemble: Optional[str] = None, progress: bool = False,
             sampling: str = "center", valid: Optional[Union[Tensor, np.ndarray]] = None,
             consistency: Optional[str] = None) -> Tensor:
    """Upsample a low-resolution depth map to the resolution of its RGB image.

    The depth is normalised inside (its min/max mapped to [0, 1] in float64, as in training),
    the model runs on the normalised map with the RGB in [0, 1] as guidance, and the result is
    mapped back, so it comes out in the unit of ``depth_lr`` (metres, millimetres, disparity
    px...). A constant map (all zero included) comes back as exactly that constant, without
    running the model.

    With ``model=None`` the weights shipped with pac-models for ``factor`` and ``sampling`` are
    used (:func:`select_model`): ``pac_jbu_refine`` (:class:`~pac_models.depth.PacJBURefine`, a
    learned joint bilateral upsampler with a residual refinement) trained by this project on
    synthetic scenes only (their records in :mod:`pac_models.weights` hold the recipe and
    metrics; where weights trained for block means exist, ``sampling='area'`` uses them), averaged
    over the
    symmetries of :data:`DEFAULT_ENSEMBLE` (``ensemble``). Without shipped weights (a stripped
    install) it falls back to the non-learned :class:`~pac_models.depth.PacRefine`.

    Args:
        depth_lr: ``[h, w]`` tensor or array, any unit, the valid values finite and within
            float32's range (``|x| ≤ 3.4e38``); NaN marks a missing sample (see ``valid``).
        rgb: ``[H, W, 3]`` uint8 image (tensor or array) with ``H = h·factor``, ``W = w·factor``.
        factor: 4, 8 or 16.
        model: None (default, see above), a registered model name (built for ``factor`` without
            weights unless it is parameter-free, so pass a module to use your own weights), or an
            ``nn.Module`` called as ``model(depth_low[1, 1, h, w], rgb[1, 3, H, W])``.
        ensemble: Test-time self-ensemble, one of :data:`ENSEMBLES`: ``"none"`` (one pass),
            ``"h"`` (also the left-right mirror image, 2 passes), ``"hv"`` (also the up-down
            mirrors, 4) or ``"d4"`` (also the transposes, 8); the results, mapped back, are
            averaged. None (default) means :data:`DEFAULT_ENSEMBLE` with ``model=None`` (chosen
            on held-out synthetic scenes; docs/models.md has the figures) and ``"none"``
            otherwise. Mirroring assumes the centre-pixel low-resolution convention of the
            shipped weights (``depth_lr[i, j]`` is the depth at row ``⌊(f−1)/2⌋ + f·i``, column
            ``⌊(f−1)/2⌋ + f·j``): for even factors a mirrored image is shifted by one pixel so
            that the samples sit where the model expects them.
        progress: Show a tqdm bar over the ensemble's passes.
        sampling: How ``depth_lr`` was sampled, one of :data:`SAMPLINGS`: ``'center'`` (the
            default: one depth per block at the pixel above, a decimated or strided map) or
            ``'area'`` (the block mean: a ToF or structured-light sensor, or a map reduced with
            ``F.interpolate(mode='area')`` / ``cv2.INTER_AREA``). With ``model=None``,
            ``'area'`` uses the weights trained for block means where the factor has them
            (:func:`select_model`). For ``'area'`` and an even factor the block centre lies
            half a pixel from the ``'center'`` position; the views are then not shifted, and
            the ensemble also runs each view mirrored in both axes, so both half-pixel phases
            are seen equally often (``"none"`` takes 2 passes, ``"h"`` 4).
        valid: Optional boolean ``[h, w]`` mask of the usable samples of ``depth_lr`` (False:
            missing, e.g. no return from the sensor); NaN entries of ``depth_lr`` are missing
            too. Missing samples are filled by a colour-guided normalised averaging of their
            valid neighbours at the low resolution (:func:`~pac_models.depth.models.fill_missing`;
            inside the model for models that take missing samples,
            :class:`~pac_models.depth.PacJBURefine`, else before it). The output is clipped to
            the range of the valid samples.
        consistency: With ``sampling='area'``, how the result is made to agree with the input:
            each valid sample is the mean of the true depth over its block, so the output's
            block means are moved onto the valid samples
            (:func:`~pac_models.depth.consistency.project_block_means`, within the range of the
            valid samples; blocks of missing samples are left as the model made them).
            ``'bilinear'``: the residuals spread by bilinear upsampling, 30 rounds (iterative
            back-projection); ``'box'``: each block shifted by one constant and clipped (the
            exact smallest change); ``'none'``: off. None (default) means
            :data:`AREA_CONSISTENCY` for the factor with ``'area'`` and ``'none'`` with
            ``'center'`` (point samples are not block means).

    Returns:
        ``float32 [H, W]`` tensor on the CPU, in the unit of ``depth_lr``.

    Raises:
        ValueError: unsupported factor, wrong shapes or dtype, sizes that do not match the
            factor, infinite depth values or valid values beyond float32's range, no valid
            sample, a ``valid`` mask of another shape or dtype, an unknown ensemble,
            sampling or consistency, or a consistency other than ``'none'`` with
            ``sampling='center'``.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or (
        int(factor) not in SUPPORTED_FACTORS
    ):
        raise ValueError(f"factor must be one of {SUPPORTED_FACTORS}, got {factor!r}")
    factor = int(factor)
    if ensemble is not None and ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be None or one of {sorted(ENSEMBLES)}, got {ensemble!r}")
    d = _as_tensor(depth_lr, "depth_lr")
    if d.dim() != 2:
        raise ValueError(f"depth_lr must be 2-D [h, w], got shape {tuple(d.shape)}")
    if d.numel() == 0:
        raise ValueError("depth_lr is empty")
    if not (d.dtype.is_floating_point or d.dtype in (torch.int16, torch.int32, torch.int64,
                                                      torch.uint8)):
        raise ValueError(f"depth_lr must hold real numbers, got dtype {d.dtype}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if consistency is not None and consistency not in CONSISTENCIES:
        raise ValueError(f"consistency must be None or one of {CONSISTENCIES}, got "
                         f"{consistency!r}")
    if consistency not in (None, "none") and sampling != "area":
        raise ValueError(f"consistency={consistency!r} needs sampling='area' (block means), got "
                         f"sampling={sampling!r}")
    if consistency is None:
        consistency = AREA_CONSISTENCY.get(factor, "none") if sampling == "area" else "none"
    d = d.to(torch.float64)
    mask = ~torch.isnan(d)
    if valid is not None:
        v = _as_tensor(valid, "valid")
        if v.dtype != torch.bool or tuple(v.shape) != tuple(d.shape):
            raise ValueError(f"valid must be a bool mask of depth_lr's shape {tuple(d.shape)}, "
                             f"got dtype {v.dtype}, shape {tuple(v.shape)}")
        mask &= v.to(mask.device)
    if not bool(mask.any()):
        raise ValueError("depth_lr has no valid sample (all NaN or masked out by valid)")
    if not torch.isfinite(d[mask]).all():
        n = int((~torch.isfinite(d[mask])).sum())
        raise ValueError(
            f"depth_lr has {n} infinite value(s); mark them missing (NaN or valid=False)"
        )
    missing = not bool(mask.all())
    d = torch.where(mask, d, torch.full_like(d, float("nan")))
    big = float(d[mask].abs().max())
    if big > _FLOAT32_MAX:
        raise ValueError(
            f"depth_lr holds values up to {big:.3g} in magnitude, beyond what the float32 result "
            f"can hold ({_FLOAT32_MAX:.3g}); scale the map to a smaller unit first"
        )
    img = _as_tensor(rgb, "rgb")
    if img.dim() != 3 or img.shape[-1] != 3:
        raise ValueError(f"rgb must be [H, W, 3], got shape {tuple(img.shape)}")
    if img.dtype != torch.uint8:
        raise ValueError(f"rgb must be uint8 (0–255), got dtype {img.dtype}")
    h, w = d.shape
    H, W = img.shape[:2]
    if (H, W) != (h * factor, w * factor):
        raise ValueError(
            f"rgb is {H}×{W} but depth_lr is {h}×{w}: with factor {factor} the rgb must be "
            f"{h * factor}×{w * factor}"
        )

    if model is None:
        net, _ = select_model(factor, sampling)
    elif isinstance(model, str):
        net = create_model(model, factor=factor)
    elif isinstance(model, nn.Module):
        net = model
    else:
        raise ValueError(f"model must be None, a model name or an nn.Module, got {model!r}")

    lo, hi = float(d[mask].min()), float(d[mask].max())
    if lo == hi:  # a constant map (all zero included) comes back exactly constant
        return torch.full((H, W), lo, dtype=torch.float32)
    try:
        param = next(net.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    low, rng = normalize_lowres(d[None, None])
    low_known = low
    if missing and not getattr(net, "accepts_missing", False):
        rgb_low = F.avg_pool2d(img.permute(2, 0, 1)[None].to(torch.float64) / 255.0, factor)
        low = fill_missing(low, mask[None, None], rgb_low)
    guide = img.permute(2, 0, 1)[None].to(torch.float32).div(255.0)
    if ensemble is None:
        ensemble = DEFAULT_ENSEMBLE if model is None else "none"
    low, guide = low.to(device, dtype), guide.to(device, dtype)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            views = _views(ensemble, sampling, factor)
            shift = sampling == "center"
            bar = tqdm(views, desc="upsample", unit="pass", disable=not progress)
            out = sum(_run_view(net, low, guide, factor, *v, shift=shift) for v in bar)
            out = out / len(views)
    finally:
        net.train(was_training)
    out = out.to("cpu", torch.float64)
    if consistency != "none":  # low is NaN where a sample is missing
        out = project_block_means(out, low_known, factor, spread=consistency,
                                  iterations=_CONSISTENCY_ITERATIONS)
    out = denormalize(out, rng)[0, 0]
    return out.clamp(lo, hi).clamp(-_FLOAT32_MAX, _FLOAT32_MAX).to(torch.float32)


def _views(ensemble: str, sampling: str, factor: int) -> tuple[tuple[bool, bool, bool], ...]:
    """The ensemble's views; for ``'area'`` at an even factor each view also with both axes
    mirrored (so every axis is run in both half-pixel phases equally often)."""
    views = ENSEMBLES[ensemble]
    if sampling != "area" or factor % 2:
        return views
    out = list(views)
    for tr, fy, fx in views:
        if (tr, not fy, not fx) not in out:
            out.append((tr, not fy, not fx))
    return tuple(out)


def _shift(x: Tensor, k: int, dim: int) -> Tensor:
    """``x`` with its content moved ``k`` steps towards higher indices along ``dim``, the edge
    repeated."""
    n = x.shape[dim]
    idx = (torch.arange(n, device=x.device) - k).clamp_(0, n - 1)
    return x.index_select(dim, idx)


def _run_view(net: nn.Module, low: Tensor, guide: Tensor, factor: int, transpose: bool,
              flip_rows: bool, flip_cols: bool, shift: bool = True) -> Tensor:
    """The model's output for one symmetry of the input, mapped back to the original frame.

    Mirroring moves a block's centre sample from offset ``⌊(f−1)/2⌋`` to ``f − 1 − ⌊(f−1)/2⌋``,
    one pixel past the convention for even ``f``; the mirrored guidance is shifted one pixel
    back (and the output forth) so that the model sees its usual alignment. Transposing keeps it.
    Without ``shift`` (block-mean samples, centred between the two) nothing is shifted.
    """
    k = 1 if factor % 2 == 0 and shift else 0
    lo, g = low, guide
    if transpose:
        lo, g = lo.transpose(-1, -2), g.transpose(-1, -2)
    for flip, dim in ((flip_rows, -2), (flip_cols, -1)):
        if flip:
            lo, g = lo.flip(dim), _shift(g.flip(dim), -k, dim)
    out = net(lo.contiguous(), g.contiguous())
    for flip, dim in ((flip_cols, -1), (flip_rows, -2)):
        if flip:
            out = _shift(out, k, dim).flip(dim)
    return out.transpose(-1, -2) if transpose else out
