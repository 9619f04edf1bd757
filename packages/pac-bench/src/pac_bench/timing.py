"""Wall-clock timing: median of N runs after warm-up."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .cases import Case

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
    """One measurement: PacConv2d on ``backend`` against nn.Conv2d, same shape and mode."""

    case: str
    backend: str
    mode: str
    pac_s: float
    conv_s: float

    @property
    def ratio(self) -> float:
        """``pac_s / conv_s`` (1.0 = as fast as nn.Conv2d)."""
        return self.pac_s / self.conv_s if self.conv_s > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"case": self.case, "backend": self.backend, "mode": self.mode,
                "pac_s": self.pac_s, "conv_s": self.conv_s, "ratio": self.ratio}


def time_case(case: Case, backend: str, mode: str = "forward", runs: int = 5, warmup: int = 1,
              device: str | torch.device = "cpu") -> Timing:
    """Time ``PacConv2d`` (under ``pac_core.backends.use(backend)``) and ``nn.Conv2d``."""
    from pac_core import backends

    torch.manual_seed(0)
    x, g = case.inputs(device)
    pac = case.pac_layer().to(device)
    conv = case.conv_layer().to(device)
    with backends.use(backend):
        pac_s = median_time(_callable(pac, x, g, mode), runs, warmup, device)
    conv_s = median_time(_callable(conv, x, None, mode), runs, warmup, device)
    return Timing(case.name, backend, mode, pac_s, conv_s)
