"""Wall-clock timing: median of N runs after warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .cases import Case, CrfCase

MODES = ("forward", "forward_backward")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], runs: int = 5, warmup: int = 1,
                device: torch.device | str = "cpu") -> float:
    """Median wall time of ``fn()`` in seconds.

    Args:
        fn: The callable to time.
        runs: Timed repetitions (at least 1).
        warmup: Untimed repetitions first.
        device: Synchronised around each run when it is a CUDA device.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _callable(layer: torch.nn.Module, x: torch.Tensor, g: torch.Tensor | None,
              mode: str) -> Callable[[], Any]:
    args = (x,) if g is None else (x, g)
    if mode == "forward":
        def fwd() -> Any:
            with torch.no_grad():
                return layer(*args)
        return fwd
    if mode == "forward_backward":
        xr = x.detach().requires_grad_(True)
        args = (xr,) if g is None else (xr, g)

        def fwd_bwd() -> Any:
            layer.zero_grad(set_to_none=True)
            xr.grad = None
            layer(*args).sum().backward()
        return fwd_bwd
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


@dataclass(frozen=True)
class Timing:
    """One measurement: a PAC layer on ``backend`` against the torch op, same shape and mode.

    ``conv_s`` is the time of the torch op of the case (``nn.Conv2d``, ``nn.ConvTranspose2d`` or
    ``F.avg_pool2d`` according to ``op``).
    """

    case: str
    backend: str
    mode: str
    pac_s: float
    conv_s: float
    op: str = "conv2d"

    @property
    def ratio(self) -> float:
        """``pac_s / conv_s`` (1.0 = as fast as nn.Conv2d)."""
        return self.pac_s / self.conv_s if self.conv_s > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"case": self.case, "op": self.op, "backend": self.backend, "mode": self.mode,
                "pac_s": self.pac_s, "conv_s": self.conv_s, "ratio": self.ratio}


def time_case(case: Case, backend: str, mode: str = "forward", runs: int = 5, warmup: int = 1,
              device: str | torch.device = "cpu") -> Timing:
    """Time the PAC layer (under ``pac_core.backends.use(backend)``) and the torch op of ``case``.

    Both are timed in this process, one after the other, on the same inputs.
    """
    from pac_core import backends

    torch.manual_seed(0)
    x, g = case.inputs(device)
    pac = case.pac_layer().to(device)
    conv = case.conv_layer().to(device)
    with backends.use(backend):
        pac_s = median_time(_callable(pac, x, g, mode), runs, warmup, device)
    conv_s = median_time(_callable(conv, x, None, mode), runs, warmup, device)
    return Timing(case.name, backend, mode, pac_s, conv_s, case.op)


def time_crf(case: CrfCase, backend: str, steps: tuple[int, int] = (1, 3), runs: int = 5,
             warmup: int = 1) -> dict[str, Any]:
    """Time ``PacCRF`` inference (``torch.no_grad``) with two step counts; derive the step time.

    The per-step time is ``(t(steps[1]) - t(steps[0])) / (steps[1] - steps[0])``, which removes
    the once-per-call work (kernel computation from the guidance, final output); the kernels
    are computed by the same backend.

    Args:
        case: The CRF shape.
        backend: ``pac_core`` backend name.
        steps: Two different step counts, e.g. ``(1, 3)``.
        runs: Timed repetitions of each.
        warmup: Untimed repetitions first.

    Returns:
        ``{"case", "backend", "mode": "mf_step", "steps", "times_s", "step_s"}`` where
        ``times_s[i]`` is the median time of a ``steps[i]``-step call.
    """
    from pac_core import backends

    lo, hi = steps
    if hi <= lo:
        raise ValueError(f"steps must be increasing, got {steps}")
    unary, guide = case.inputs()
    times = []
    for n in (lo, hi):
        crf = case.crf(n)

        def call(crf: torch.nn.Module = crf) -> Any:
            with torch.no_grad():
                return crf(unary, guide)

        with backends.use(backend):
            times.append(median_time(call, runs, warmup))
    return {"case": case.name, "backend": backend, "mode": "mf_step", "steps": [lo, hi],
            "times_s": times, "step_s": (times[1] - times[0]) / (hi - lo)}
