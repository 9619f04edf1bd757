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

import statistics
import time
from typing import Any

import numpy as np
import torch

from .cases import CRF_CASES, CrfCase, RefinerCrfCase
from .timing import median_time

__all__ = ["CRF_512", "NOT_INSTALLED", "case_tensors", "densecrf_available", "densecrf_version",
           "main", "time_densecrf", "time_refiner_step"]

NOT_INSTALLED = ("skipped: pydensecrf is not installed (pip install 'pac-bench[peers]' "
                 "installs the pydensecrf2 distribution)")
"""The note of a refiner-CRF record without the pydensecrf peer."""

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


def _densecrf_inputs(unary: torch.Tensor, img: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """pydensecrf's inputs for a batch-1 case: unary energy ``−log_softmax`` ``[L, H·W]`` and the
    image as ``uint8`` ``(H, W, 3)``."""
    labels = unary.shape[1]
    energy = np.ascontiguousarray(
        (-torch.log_softmax(unary[0], dim=0)).reshape(labels, -1).numpy(), dtype=np.float32)
    rgb = np.ascontiguousarray((img[0] * 255.0).round().clamp(0, 255).permute(1, 2, 0).numpy()
                               .astype(np.uint8))
    return energy, rgb


def time_refiner_step(case: RefinerCrfCase, runs: int = 5, warmup: int = 1,
                      backend: str | None = None, peer: bool = True,
                      setup_runs: int = 3) -> dict[str, Any]:
    """One mean-field step of the refiner CRF against one step of pydensecrf, interleaved.

    Ours: ``crf.steps[0](unary, None, kernels, unary)``, the step :class:`~pac_core.PacCRFLoose`
    runs (``softmax``, four messages, their sum) on kernels computed once beforehand. Theirs:
    ``DenseCRF2D.stepInference`` after ``startInference`` (one mean-field update: both pairwise
    kernels filtered on the permutohedral lattice, the Potts compatibilities, ``exp`` and
    normalisation) with the usual setup: ``addPairwiseGaussian(sxy=3, compat=3)`` and
    ``addPairwiseBilateral(sxy=80, srgb=13, compat=10)`` on the same image, unary energy
    ``−log_softmax(unary)``. The two alternate run by run in this process, with ``case.threads``
    torch threads (pydensecrf is single-threaded at any count). The once-per-image work is timed
    the same way: our kernels (:meth:`pac_core.PacCRF.compute_kernels`) against building
    pydensecrf's CRF (its lattices) and ``startInference``. Besides wall time, the process CPU
    time of each call is recorded (``*_cpu_s``; with 2 threads it adds up both threads' work),
    which a loaded machine disturbs less.

    Args:
        case: The refiner-CRF case.
        runs: Timed repetitions of each (medians are reported).
        warmup: Untimed repetitions first.
        backend: ``pac_core`` backend (default: what ``auto`` picks for CPU float32).
        peer: Time pydensecrf when it is installed (False: ours only).
        setup_runs: Timed repetitions of the once-per-image work (in the first timed rounds;
            it costs several steps, so fewer than ``runs`` keep the case short).

    Returns:
        ``{"case", "labels", "size", "threads", "backend", "runs", "step_s", "setup_s",
        "step_cpu_s", "step_times_s", "peer", "peer_step_s", "peer_setup_s", "peer_step_cpu_s",
        "peer_step_times_s", "ratio", "ratio_cpu", "note"}`` (medians in seconds; ``ratio`` =
        ours / pydensecrf); without the peer its fields are None and ``note`` says why.
    """
    from pac_core import backends

    name = backend or backends.resolve(torch.empty(0)).name
    has_peer = peer and densecrf_available()
    threads = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    try:
        unary, img = case.inputs()
        crf = case.crf()
        step = crf.steps[0]
        feats = case.edge_features(img)
        with backends.use(name), torch.no_grad():
            kernels = step.compute_kernels(feats)

            def ours() -> Any:
                return step(unary, None, kernels, unary)

            def ours_setup() -> Any:
                return step.compute_kernels(feats)

            if has_peer:
                import pydensecrf.densecrf as dcrf

                energy, rgb = _densecrf_inputs(unary, img)
                s = case.size

                def theirs_setup() -> Any:
                    d = dcrf.DenseCRF2D(s, s, case.labels)
                    d.setUnaryEnergy(energy)
                    d.addPairwiseGaussian(sxy=3, compat=3)
                    d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=rgb, compat=10)
                    return d, d.startInference()

                d, (q, tmp1, tmp2) = theirs_setup()

                def theirs() -> Any:
                    return d.stepInference(q, tmp1, tmp2)

            # (wall, CPU) times of: our step, their step, our setup, their setup
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("o", "p", "os", "ps")}
            steps = [("o", ours), ("p", theirs)] if has_peer else [("o", ours)]
            setups = [("os", ours_setup), ("ps", theirs_setup)] if has_peer \
                else [("os", ours_setup)]
            n_setup = max(1, setup_runs)
            for i in range(warmup + max(1, runs)):
                timed = i >= warmup
                for key, fn in steps + (setups if timed and i - warmup < n_setup else []):
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn()
                    if timed:
                        times[key].append((time.perf_counter() - t0, time.process_time() - c0))
    finally:
        torch.set_num_threads(threads)

    def med(key: str, cpu: bool = False) -> float:
        return statistics.median(t[1 if cpu else 0] for t in times[key])

    rec: dict[str, Any] = {
        "case": case.name, "labels": case.labels, "size": case.size, "threads": case.threads,
        "backend": name, "runs": len(times["o"]), "step_s": med("o"), "setup_s": med("os"),
        "step_cpu_s": med("o", True), "step_times_s": [t[0] for t in times["o"]],
        "peer": BACKEND, "peer_step_s": None, "peer_setup_s": None, "peer_step_cpu_s": None,
        "peer_step_times_s": [], "ratio": None, "ratio_cpu": None,
        "note": densecrf_version() if has_peer else (
            NOT_INSTALLED if peer else "skipped: not requested"),
    }
    if has_peer:
        rec.update(peer_step_s=med("p"), peer_setup_s=med("ps"),
                   peer_step_cpu_s=med("p", True),
                   peer_step_times_s=[t[0] for t in times["p"]],
                   ratio=med("o") / med("p"), ratio_cpu=med("o", True) / med("p", True))
    return rec


def main(argv: Any = None) -> int:
    """``python -m pac_bench.densecrf``: time :data:`CRF_512` per mean-field step with every
    ``pac_core`` backend and with pydensecrf (if installed), or with ``--refiner-cases`` the
    refiner-CRF step against pydensecrf's (:func:`time_refiner_step`); print a markdown table."""
    import argparse
    import json
    import os
    from pathlib import Path

    from .cases import REFINER_CRF_CASES, get_refiner_crf_case
    from .report import crf_table, environment, refiner_crf_table
    from .timing import time_crf

    ap = argparse.ArgumentParser(prog="python -m pac_bench.densecrf", description=main.__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs=2, default=[1, 3])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--backends", nargs="+", default=None)
    ap.add_argument("--refiner-cases", nargs="+", default=None,
                    help=f"refiner-CRF cases instead (known: {', '.join(REFINER_CRF_CASES)}); "
                         "each case sets its own threads")
    ap.add_argument("--json", default=None, help="also write the records to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import pac_core

    def loadavg() -> str:
        return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"

    load = loadavg()
    if args.refiner_cases:
        backend = args.backends[0] if args.backends else None
        records = [time_refiner_step(get_refiner_crf_case(n), args.runs, args.warmup, backend)
                   for n in args.refiner_cases]
        table = refiner_crf_table(records)
        key = "crf_peers"
    else:
        steps = (args.steps[0], args.steps[1])
        records = [time_crf(CRF_512, b, steps, runs=args.runs, warmup=args.warmup)
                   for b in (args.backends or pac_core.backends.available())]
        if densecrf_available():
            records.append(time_densecrf(CRF_512, steps, runs=args.runs, warmup=args.warmup))
        table = crf_table(records)
        key = "crf"
    if not densecrf_available():
        print("pydensecrf is not installed (pip install pydensecrf2): no dense-CRF peer")
    after = loadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{densecrf_version()}, load average before {load}, after {after}")
    print(table)
    if args.json:
        import sys

        from .cli import cpu_model

        env = {**environment("cpu"), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
               "pac_core": getattr(pac_core, "__version__", "unknown"),
               "pydensecrf": densecrf_version(), "load_before": load, "load_after": after,
               "command": "python -m pac_bench.densecrf "
                          + " ".join(sys.argv[1:] if argv is None else argv)}
        Path(args.json).write_text(json.dumps({"environment": env, key: records}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
