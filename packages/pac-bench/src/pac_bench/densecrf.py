"""pydensecrf's fully connected CRF as a peer of the PacCRF step timings.

``pydensecrf`` (Krähenbühl & Koltun's permutohedral-lattice dense CRF) is optional: the PyPI
``pydensecrf`` 1.0rc3 sdist does not build with Cython 3; the ``pydensecrf2`` fork installs the
same ``pydensecrf`` module. When neither is importable, :func:`densecrf_available` is False and
nothing here runs.

The peer runs on a :class:`~pac_bench.cases.CrfCase`'s unaries and image (the same tensors the
PacCRF timing uses): unary energy ``−log_softmax(unary)``, a Gaussian kernel (``sxy=3``,
``compat=3``) and a bilateral kernel (``sxy=80``, ``srgb=13``, ``compat=10``; DeepLab's settings,
the same 80/13 position/colour scales as the case's ``create_YXRGB`` features). It is a
different model: both kernels are fully connected (every pixel pair), filtered approximately on
the lattice, whereas the case's PacCRF has two exact 5×5 local kernels, one of them a full
``[L, L, 5, 5]`` label-compatibility filter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .cases import CRF_CASES, CrfCase
from .timing import median_time

__all__ = ["CRF_512", "case_tensors", "densecrf_available", "densecrf_version", "main",
           "time_densecrf"]

BACKEND = "pydensecrf"
"""Backend name of the records."""

CRF_512 = CRF_CASES["crf_b1_l21_512_k5"]
"""The segmentation issue's case: one 512×512 image, 21 labels, two 5×5 kernels."""


def case_tensors(case: CrfCase, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unary [B, L, S, S], image [B, 3, S, S] on the 0–255 scale)``: the very tensors
    :meth:`CrfCase.inputs` draws (same generator, same order) before it builds the features."""
    gen = torch.Generator().manual_seed(seed)
    unary = torch.randn(case.batch, case.labels, case.size, case.size, generator=gen)
    img = torch.rand(case.batch, 3, case.size, case.size, generator=gen) * 255.0
    return unary, img


def densecrf_available() -> bool:
    """Whether ``import pydensecrf.densecrf`` works."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def densecrf_version() -> str:
    """Installed distribution and version (``pydensecrf2 1.1``), or ``'not installed'``."""
    from importlib import metadata

    for dist in ("pydensecrf2", "pydensecrf"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def time_densecrf(case: CrfCase, steps: tuple[int, int] = (1, 3), runs: int = 5,
                  warmup: int = 1) -> dict[str, Any]:
    """Time pydensecrf inference on the case's first batch entry; derive the step time.

    One timed call builds the CRF (unary, both kernels: the lattice construction) and runs
    ``n`` mean-field steps, as a PacCRF call computes its kernels and runs its steps; the step
    time is ``(t(steps[1]) − t(steps[0])) / (steps[1] − steps[0])``.

    Returns:
        A record in :func:`pac_bench.timing.time_crf`'s format with ``backend='pydensecrf'``.

    Raises:
        ImportError: pydensecrf is not installed.
        ValueError: steps not increasing.
    """
    import pydensecrf.densecrf as dcrf

    lo, hi = steps
    if hi <= lo:
        raise ValueError(f"steps must be increasing, got {steps}")
    unary, img = case_tensors(case)
    h = w = case.size
    energy = np.ascontiguousarray(
        (-torch.log_softmax(unary[0], dim=0)).reshape(case.labels, -1).numpy(), dtype=np.float32)
    rgb = np.ascontiguousarray(img[0].permute(1, 2, 0).round().clamp(0, 255).numpy()
                               .astype(np.uint8))
    times = []
    for n in (lo, hi):
        def call(n: int = n) -> Any:
            d = dcrf.DenseCRF2D(w, h, case.labels)
            d.setUnaryEnergy(energy)
            d.addPairwiseGaussian(sxy=3, compat=3)
            d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=rgb, compat=10)
            return d.inference(n)

        times.append(median_time(call, runs, warmup))
    return {"case": case.name, "backend": BACKEND, "mode": "mf_step", "steps": [lo, hi],
            "times_s": times, "step_s": (times[1] - times[0]) / (hi - lo),
            "note": densecrf_version()}


def main(argv: Any = None) -> int:
    """``python -m pac_bench.densecrf``: time :data:`CRF_512` per mean-field step with every
    ``pac_core`` backend and with pydensecrf (if installed); print a markdown table."""
    import argparse

    from .report import crf_table
    from .timing import time_crf

    ap = argparse.ArgumentParser(prog="python -m pac_bench.densecrf", description=main.__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs=2, default=[1, 3])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--backends", nargs="+", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import pac_core

    steps = (args.steps[0], args.steps[1])
    records = [time_crf(CRF_512, b, steps, runs=args.runs, warmup=args.warmup)
               for b in (args.backends or pac_core.backends.available())]
    if densecrf_available():
        records.append(time_densecrf(CRF_512, steps, runs=args.runs, warmup=args.warmup))
    else:
        print("pydensecrf is not installed (pip install pydensecrf2): no dense-CRF peer")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{densecrf_version()}")
    print(crf_table(records))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
