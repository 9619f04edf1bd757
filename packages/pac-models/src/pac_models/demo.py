"""Joint depth upsampling of the Middlebury disparity: ours against bilinear, bicubic and JBU.

Run as ``python -m pac_models.demo --out DIR`` (``pac-models demo`` and ``nox -s demo`` run it
and then the segmentation demo). Protocol, for each factor f in (4, 8, 16):

1. Ground truth: the Middlebury motorcycle disparity (scikit-image's 500×741 sample, cropped to a
   multiple of 16: 496×736), in disparity pixels; pixels without ground truth are *invalid*.
2. Low-resolution input: the invalid pixels are filled with the nearest valid disparity, then the
   centre pixel of each f×f block is taken (rows and columns ``⌊(f−1)/2⌋ + f·i``, no prefilter:
   the ``'center'`` protocol of docs/semantics.md §A.5 the models were trained with).
3. Methods: bilinear and bicubic interpolation (half-pixel centres, no guidance); classical joint
   bilateral upsampling (Kopf et al. 2007: the ``joint_bilateral`` model with its default
   parameters, no tuning); and ours, :func:`pac_models.depth.upsample` with ``model=None``: the
   default weights for that factor (trained only on the package's synthetic dead-leaves scenes,
   never on this image), or the non-learned ``pac_refine`` fallback where none are shipped.
4. RMSE over the valid ground-truth pixels, in disparity pixels.
5. Sensor cases (ours and bilinear only, :func:`pac_models.depth.middlebury.sensor_report`): the
   same with ``sampling='area'`` (the block mean as input, as a depth sensor measures; the
   default weights for area input where the factor has them, and the output's block means
   moved onto the input: ``upsample``'s default consistency step for area input), with the
   crop shifted by (5, 3) pixels (the blocks fall on other content), and with 5 % of the
   low-resolution samples missing (passed as ``valid``; bilinear gets the complete map).

Nothing is tuned on this image: it is a held-out real sample.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
import torch
from tqdm.auto import tqdm

from ._figures import panel_grid, save_figure, show_row
from .depth.api import DEFAULT_ENSEMBLE, select_model, upsample
from .depth.middlebury import (
    MULTIPLE,
    SensorRow,
    center_lowres,
    fill_invalid,
    interpolate,
    masked_rmse,
    sensor_report,
    working_data,
)
from .registry import create_model

__all__ = ["DEFAULT_FACTORS", "METHODS", "MULTIPLE", "DemoResult", "FactorResult",
           "center_lowres", "interpolate", "main", "run_demo", "save_panel", "upsample_factor"]

DEFAULT_FACTORS = (4, 8, 16)
METHODS = ("bilinear", "bicubic", "joint_bilateral", "ours")
"""Columns of the table, in order."""


@dataclass
class FactorResult:
    """Arrays and scores for one upsampling factor (all at the full resolution)."""

    factor: int
    low: np.ndarray
    preds: dict[str, np.ndarray]
    truth: np.ndarray
    valid: np.ndarray
    rmse: dict[str, float]
    ours: str = ""
    """Which model ran as "ours" (name and weights tag)."""

    @property
    def bilinear(self) -> np.ndarray:
        """The bilinear prediction."""
        return self.preds["bilinear"]

    @property
    def ratio(self) -> float:
        """Our RMSE relative to bilinear's."""
        return self.rmse["ours"] / self.rmse["bilinear"]


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    results: list[FactorResult] = field(default_factory=list)
    rgb: Optional[np.ndarray] = None
    figure: Optional[Path] = None
    shape: tuple[int, int] = (0, 0)
    sensors: list[SensorRow] = field(default_factory=list)
    """The sensor cases (step 5 of the protocol)."""

    def sensor_table(self) -> str:
        """The sensor cases as markdown: RMSE ratios of ours to bilinear."""
        lines = ["| factor | sampling | crop offset | missing | ours | bilinear "
                 "| ours / bilinear |", "|---:|---|---|---:|---:|---:|---:|"]
        for r in self.sensors:
            lines.append(f"| ×{r.factor} | {r.sampling} | {r.shift} | {r.missing:.0%} | "
                         f"{r.rmse:.3f} | {r.bilinear:.3f} | {r.ratio:.3f} |")
        return "\n".join(lines)

    def table(self) -> str:
        """The RMSE table as markdown (and ours relative to bilinear)."""
        head = "| factor | " + " | ".join(METHODS) + " | ours / bilinear |"
        lines = [head, "|---:|" + "---:|" * (len(METHODS) + 1)]
        for r in self.results:
            cells = " | ".join(f"{r.rmse[m]:.3f}" for m in METHODS)
            lines.append(f"| ×{r.factor} | {cells} | {r.ratio:.3f} |")
        return "\n".join(lines)


def upsample_factor(
    rgb: np.ndarray, truth: np.ndarray, valid: np.ndarray, factor: int
) -> FactorResult:
    """Run every method of :data:`METHODS` for one factor and score them.

    Args:
        rgb: ``uint8 [H, W, 3]`` guidance, ``H`` and ``W`` multiples of ``factor``.
        truth: ``[H, W]`` disparity.
        valid: ``bool [H, W]`` ground-truth mask.
        factor: 4, 8 or 16.
    """
    h, w = truth.shape
    if h % factor or w % factor:
        raise ValueError(f"image {truth.shape} is not a multiple of the factor {factor}")
    low = center_lowres(fill_invalid(truth, valid), factor)
    preds = {"bilinear": interpolate(low, (h, w), "bilinear"),
             "bicubic": interpolate(low, (h, w), "bicubic")}
    jbu = create_model("joint_bilateral", factor=factor).eval()
    preds["joint_bilateral"] = upsample(low, rgb, factor, model=jbu).numpy()
    net, name = select_model(factor)
    preds["ours"] = upsample(low, rgb, factor, model=net, ensemble=DEFAULT_ENSEMBLE).numpy()
    scores = {m: masked_rmse(p, truth, valid) for m, p in preds.items()}
    return FactorResult(factor, low, preds, truth, valid, scores, name)


def save_panel(result: DemoResult, path: Path) -> Path:
    """Write a PNG panel, one row per factor: RGB, input, bilinear, JBU, ours, truth, errors."""
    rows = result.results
    titles = ["RGB guide", "low-res input", "bilinear", "joint bilateral", "ours (PAC)",
              "ground truth", "|error| bilinear", "|error| ours"]
    fig, axes = panel_grid(len(rows), titles, (2.3, 1.8))
    depth_cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.6")
    err_cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
    for i, r in enumerate(rows):
        lo_v, hi_v = np.percentile(r.truth[r.valid], [1, 99]) if r.valid.any() else (0, 1)
        err = {m: np.where(r.valid, np.abs(r.preds[m] - r.truth), np.nan)
               for m in ("bilinear", "ours")}
        err_max = max(1e-6, float(np.nanpercentile(err["bilinear"], 99)))
        h, w = r.truth.shape
        depth_kw = {"cmap": depth_cmap, "vmin": lo_v, "vmax": hi_v}
        err_kw = {"cmap": err_cmap, "vmin": 0, "vmax": err_max}
        panels = [
            (result.rgb[:h, :w] if result.rgb is not None else np.zeros((h, w, 3), np.uint8), {}),
            (r.low, depth_kw), (r.preds["bilinear"], depth_kw),
            (r.preds["joint_bilateral"], depth_kw), (r.preds["ours"], depth_kw),
            (np.where(r.valid, r.truth, np.nan), depth_kw),
            (err["bilinear"], err_kw), (err["ours"], err_kw),
        ]
        show_row(axes[i], panels, titles if i == 0 else None)
        axes[i, 0].set_ylabel(f"×{r.factor}\nbil {r.rmse['bilinear']:.2f}\n"
                              f"ours {r.rmse['ours']:.2f}", fontsize=8)
    return save_figure(fig, path, "Joint depth upsampling of the Middlebury motorcycle disparity "
                                  "(RMSE in disparity px)")


def run_demo(out: str | Path, factors: Sequence[int] = DEFAULT_FACTORS,
             crop: tuple[int, int, int, int] | None = None, *,
             progress: bool = False, sensors: bool = True) -> DemoResult:
    """Run the demo and write ``joint_upsampling.png`` into ``out``.

    Args:
        out: Output directory (created if missing).
        factors: Upsampling factors to evaluate (4, 8 and/or 16).
        crop: Optional ``(top, left, height, width)`` window of the image (cut down to a multiple
            of 16), for quick runs.
        progress: Show a tqdm bar over the factors.
        sensors: Also run the sensor cases (step 5 of the protocol).

    Returns:
        The per-factor results and the path of the figure.
    """
    rgb, truth, valid = working_data(crop)
    result = DemoResult(rgb=rgb, shape=truth.shape[:2])
    with torch.inference_mode():
        for f in tqdm(factors, desc="depth demo", unit="factor", disable=not progress):
            result.results.append(upsample_factor(rgb, truth, valid, int(f)))
        if sensors:
            result.sensors = sensor_report(factors, ("center", "area"), ((0, 0), (5, 3)),
                                           (0.0, 0.05), crop=crop, progress=progress)
    result.figure = save_panel(result, Path(out) / "joint_upsampling.png")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m pac_models.demo --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m pac_models.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo-output", help="output directory for the PNG")
    parser.add_argument("--factors", type=int, nargs="+", default=list(DEFAULT_FACTORS),
                        choices=(4, 8, 16))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    result = run_demo(args.out, args.factors, progress=not args.quiet)
    h, w = result.shape
    print(f"Middlebury motorcycle disparity, {h}×{w}; low-resolution input = centre pixel of "
          "each f×f block of the hole-filled disparity; RMSE over valid pixels, in disparity px")
    for r in result.results:
        print(f"  ×{r.factor}: ours = {r.ours}")
    print(result.table())
    if result.sensors:
        print("Sensor cases (ours = upsample's default weights for sampling='center' or 'area', "
              "the latter trained on block means where the factor has them, with the output's "
              "block means moved onto the input; "
              "crop offset (top, left); missing = share of low-resolution samples passed as "
              "invalid, bilinear gets them all):")
        print(result.sensor_table())
    print(f"Figure: {result.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
