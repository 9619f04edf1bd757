"""GPU benchmark of the PAC layers against cuDNN: ``python -m pac_bench.gpu --out DIR``.

For each case (a named shape) and each op it times, on the current CUDA device:

* ``PacConv2d`` / ``PacConvTranspose2d`` / ``PacPool2d`` on the ``triton`` backend (fused Triton
  kernels, forward and backward; peer ``triton-nativebwd``: the same forward with the
  ``native`` backend's backward operators), the ``native`` backend (the fused ``torch.ops.pac``
  kernels) and the ``reference`` backend (pure torch, materialises columns);
* the cuDNN op of the same shape: ``F.conv2d`` / ``F.conv_transpose2d`` / ``F.avg_pool2d``.

Forward (under ``torch.no_grad``) and forward+backward (gradients of the input, the guidance and
the weights) are timed with CUDA events after a warm-up, reporting the median. Peak memory is
``torch.cuda.max_memory_allocated()`` during one call after ``reset_peak_memory_stats()``, minus
what was allocated before the call (inputs and parameters). A markdown table and a JSON file
labelled with the device name, torch version and date are written into ``DIR``.

``--dtype bfloat16`` runs inputs, modules and the cuDNN peer in bfloat16. ``--device cpu
--interpret`` rehearses the code path without a GPU (tiny case, Triton's interpreter, wall-clock
timing, no peak memory); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

__all__ = ["CASES", "PRECISIONS", "Case", "main", "run_benchmarks", "set_precision"]

MiB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Case:
    """One benchmark shape (kernel size ``k``, padding ``k // 2``, stride 1 unless transposed).

    Attributes:
        name: Label used in the report.
        batch: Batch size.
        channels: Input and output channels of the convolutions (pooling keeps them).
        guide_channels: Channels of the guidance tensor.
        size: Output height and width (the transposed case upsamples ``size // 2`` by 2).
        kernel_size: Odd kernel size.
    """

    name: str
    batch: int
    channels: int
    guide_channels: int
    size: int
    kernel_size: int = 5

    @property
    def padding(self) -> int:
        """Same-size padding."""
        return self.kernel_size // 2


CASES: tuple[Case, ...] = (
    Case("b2-c32-g16-128", batch=2, channels=32, guide_channels=16, size=128),
    Case("b1-c64-g16-512", batch=1, channels=64, guide_channels=16, size=512),
    Case("b8-c32-g16-256", batch=8, channels=32, guide_channels=16, size=256),
)
#: Selectable by name only (``--cases tiny``): the CPU rehearsal of the code path.
TINY = Case("tiny", batch=1, channels=4, guide_channels=2, size=8, kernel_size=3)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Result:
    """Measurements of one (case, op, peer)."""

    case: str
    op: str
    peer: str
    shape: str
    fwd_ms: Optional[float] = None
    fwdbwd_ms: Optional[float] = None
    fwd_peak_mib: Optional[float] = None
    fwdbwd_peak_mib: Optional[float] = None
    error: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


def _time_ms(fn: Callable[[], Any], warmup: int, iters: int, cuda: bool = True) -> float:
    """Median wall time of ``fn`` in milliseconds, measured with CUDA events (else a clock)."""
    for _ in range(warmup):
        fn()
    if not cuda:
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _peak_mib(fn: Callable[[], Any], cuda: bool = True) -> Optional[float]:
    """Peak memory allocated by one call of ``fn`` beyond what was allocated before it, in MiB."""
    if not cuda:
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / MiB


def _measure(
    result: Result,
    forward: Callable[[], torch.Tensor],
    grads: list[torch.Tensor],
    warmup: int,
    iters: int,
    cuda: bool = True,
) -> None:
    """Fill ``result`` with forward and forward+backward timings and peaks of ``forward``."""

    def fwd() -> None:
        with torch.no_grad():
            forward()

    def fwdbwd() -> None:
        out = forward()
        torch.autograd.backward(out, torch.ones_like(out))
        for t in grads:
            t.grad = None

    try:
        result.fwd_ms = _time_ms(fwd, warmup, iters, cuda)
        result.fwd_peak_mib = _peak_mib(fwd, cuda)
        result.fwdbwd_ms = _time_ms(fwdbwd, warmup, iters, cuda)
        result.fwdbwd_peak_mib = _peak_mib(fwdbwd, cuda)
    except Exception as exc:  # OOM, an unsupported configuration, a kernel error
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    finally:
        for t in grads:
            t.grad = None
        if cuda:
            torch.cuda.empty_cache()


#: A peer running the ``triton`` backend's forward with the ``native`` backend's backward
#: operators instead of the fused Triton backward kernels (the forward is the same as ``triton``).
TRITON_NATIVE_BWD = "triton-nativebwd"


def _backend_ctx(name: Optional[str]):
    import pac_core

    if name is None:
        return contextlib.nullcontext()
    if name == TRITON_NATIVE_BWD:
        return _triton_backward("native")
    return pac_core.backends.use(name)


@contextlib.contextmanager
def _triton_backward(impl: str):
    """The ``triton`` backend with its backward implementation set to ``impl``."""
    import pac_core
    from pac_core.backends import triton_ops

    before = triton_ops.BACKWARD
    triton_ops.BACKWARD = impl
    try:
        with pac_core.backends.use("triton"):
            yield
    finally:
        triton_ops.BACKWARD = before


def _bench_case(case: Case, peers: list[str], warmup: int, iters: int,
                device: str = "cuda", dtype: torch.dtype = torch.float32) -> list[Result]:
    """All ops and peers of one case."""
    from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d

    dev = torch.device(device)
    k, p, b, c, g, n = (case.kernel_size, case.padding, case.batch, case.channels,
                        case.guide_channels, case.size)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dev, dtype).requires_grad_()

    results: list[Result] = []
    x = rand(b, c, n, n)
    guide = rand(b, g, n, n)
    x_low = rand(b, c, n // 2, n // 2)

    conv = PacConv2d(c, c, k, padding=p).to(dev, dtype)
    convt = PacConvTranspose2d(c, c, k, stride=2, padding=p, output_padding=1).to(dev, dtype)
    pool = PacPool2d(k, padding=p).to(dev, dtype)
    weight_t_flipped = convt.weight.detach().flip(-1, -2).requires_grad_()

    ops: list[tuple[str, str, dict[str, Callable[[], torch.Tensor]], list[torch.Tensor]]] = [
        (
            "conv2d", f"{b}x{c}x{n}x{n} g{g} k{k}",
            {
                "cudnn": lambda: F.conv2d(x, conv.weight, conv.bias, padding=p),
                "pac": lambda: conv(x, guide),
            },
            [x, guide, conv.weight, conv.bias],
        ),
        (
            "conv_transpose2d", f"{b}x{c}x{n // 2}x{n // 2}->{n}x{n} g{g} k{k} s2",
            {
                "cudnn": lambda: F.conv_transpose2d(x_low, weight_t_flipped, convt.bias, stride=2,
                                                    padding=p, output_padding=1),
                "pac": lambda: convt(x_low, guide),
            },
            [x_low, guide, convt.weight, convt.bias, weight_t_flipped],
        ),
        (
            "pool2d", f"{b}x{c}x{n}x{n} g{g} k{k}",
            {
                "cudnn": lambda: F.avg_pool2d(x, k, stride=1, padding=p),
                "pac": lambda: pool(x, guide),
            },
            [x, guide],
        ),
    ]
    for op, shape, fns, grads in ops:
        for peer in peers:
            res = Result(case.name, op, peer, shape)
            if peer == "cudnn":
                _measure(res, fns["cudnn"], grads, warmup, iters, dev.type == "cuda")
            else:
                with _backend_ctx(peer):
                    _measure(res, fns["pac"], grads, warmup, iters, dev.type == "cuda")
            results.append(res)
            print(_row(res), flush=True)
    return results


def _fmt(v: Optional[float], digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _row(r: Result, base: Optional[Result] = None) -> str:
    def ratio(a: Optional[float], ref: Optional[float]) -> str:
        return "—" if a is None or ref in (None, 0.0) else f"{a / ref:.2f}x"

    cells = [r.case, r.op, r.peer, r.shape, _fmt(r.fwd_ms), _fmt(r.fwdbwd_ms),
             _fmt(r.fwd_peak_mib, 1), _fmt(r.fwdbwd_peak_mib, 1)]
    if base is not None:
        cells += [ratio(r.fwd_ms, base.fwd_ms), ratio(r.fwdbwd_ms, base.fwdbwd_ms)]
    if r.error:
        cells.append(r.error)
    return "| " + " | ".join(cells) + " |"


def _markdown(meta: dict[str, Any], results: list[Result]) -> str:
    lines = [
        "# pac GPU benchmark",
        "",
        f"- device: {meta['device']}",
        f"- torch: {meta['torch']} (CUDA {meta['cuda']}, cuDNN {meta['cudnn']})",
        f"- pac-core: {meta['pac_core']}",
        f"- dtype: {meta.get('dtype', 'float32')}",
        f"- date: {meta['date']}",
        f"- precision: {meta.get('precision', 'default')} (cuDNN TF32 "
        f"{'on' if meta.get('cudnn_allow_tf32') else 'off'}, matmul TF32 "
        f"{'on' if meta.get('matmul_allow_tf32') else 'off'}; the native conv's matrix products "
        "follow the matmul flag, cuDNN convolutions and the triton kernels the cuDNN flag)",
        f"- native tile scratch cap: {meta.get('tile_elems') or 'automatic'}",
        f"- timing: median of {meta['iters']} iterations after {meta['warmup']} warm-up, CUDA "
        "events; peak = max_memory_allocated during one call minus what was allocated before",
        "",
        "| case | op | peer | shape | fwd ms | fwd+bwd ms | fwd peak MiB | fwd+bwd peak MiB "
        "| fwd vs cuDNN | fwd+bwd vs cuDNN | note |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = {(r.case, r.op): r for r in results if r.peer == "cudnn"}
    for r in results:
        row = _row(r, base.get((r.case, r.op)))
        if not r.error:
            row += "  |"
        lines.append(row)
    return "\n".join(lines) + "\n"


PRECISIONS = ("default", "strict", "tf32")


def set_precision(precision: str) -> None:
    """Set torch's TF32 switches for a run.

    Args:
        precision: ``'default'`` leaves torch's defaults (cuDNN convolutions may use TF32, matrix
            products may not), ``'strict'`` turns TF32 off for both, ``'tf32'`` on for both. The
            native convolution's matrix products follow ``torch.backends.cuda.matmul.allow_tf32``,
            cuDNN's convolutions ``torch.backends.cudnn.allow_tf32``: only ``strict`` and
            ``tf32`` compare the two at the same precision.

    Raises:
        ValueError: An unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "default":
        on = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = on
        torch.backends.cuda.matmul.allow_tf32 = on


def _triton_backward_name(available: list[str]) -> Optional[str]:
    """The backward the ``triton`` peer runs (``'triton'``: the fused kernels), if it runs."""
    if "triton" not in available:
        return None
    from pac_core.backends import triton_ops

    return triton_ops.BACKWARD


def run_benchmarks(
    cases: tuple[Case, ...] = CASES,
    peers: tuple[str, ...] = ("cudnn", "triton", "native", "reference"),
    warmup: int = 3,
    iters: int = 10,
    time_budget_s: float = float("inf"),
    precision: str = "default",
    dtype: torch.dtype = torch.float32,
    device: str = "cuda",
) -> tuple[dict[str, Any], list[Result]]:
    """Run every case; return the labels (device, versions, date) and the results.

    Args:
        cases: The shapes to run.
        peers: Any of ``'cudnn'``, ``'triton'``, ``'native'``, ``'reference'`` and
            ``'triton-nativebwd'`` (see :data:`TRITON_NATIVE_BWD`).
        warmup: Untimed calls before timing.
        iters: Timed calls (the median is reported).
        time_budget_s: Cases not started within this many seconds are skipped.
        precision: TF32 policy, see :func:`set_precision`.
        dtype: dtype of the inputs, the modules and the cuDNN peer.
        device: ``'cuda'``; ``'cpu'`` only rehearses the code path (see the module docstring).

    Raises:
        RuntimeError: ``device`` is ``'cuda'`` and CUDA is not available.
    """
    set_precision(precision)
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("pac_bench.gpu needs a CUDA device")
    import os

    import pac_core
    from pac_core import _ext

    torch.backends.cudnn.benchmark = True
    available = [n for n in pac_core.backends.available()
                 if pac_core.backends.get(n).supports(torch.device(device), dtype)]
    def runs(peer: str) -> bool:
        if peer == TRITON_NATIVE_BWD:
            return "triton" in available and "native" in available
        return peer == "cudnn" or peer in available

    use_peers = [p for p in peers if runs(p)]
    meta: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor()})",
        "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "pac_core": getattr(pac_core, "__version__", "unknown"),
        "pac_build_info": _ext.build_info(),
        "pac_backends": available,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warmup": warmup,
        "iters": iters,
        "skipped_peers": [p for p in peers if p not in use_peers],
        "precision": precision,
        "dtype": str(dtype).replace("torch.", ""),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "tile_elems": os.environ.get("PAC_CUDA_TILE_ELEMS"),
        "triton_backward": _triton_backward_name(available),
    }
    results: list[Result] = []
    start = time.monotonic()
    for case in cases:
        if time.monotonic() - start > time_budget_s:
            results.append(Result(case.name, "*", "*", "", error="skipped: time budget spent"))
            continue
        results.extend(_bench_case(case, use_peers, warmup, iters, device, dtype))
    return meta, results


def _register_interpreted_triton() -> None:
    """Register the ``triton`` backend for CPU tensors, its kernels run by Triton's interpreter."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("pac_bench.gpu --interpret: start the process with TRITON_INTERPRET=1 "
                         "in the environment (Triton reads it when it is first imported)")
    from pac_core import backends
    from pac_core.backends.triton_backend import TritonBackend

    inst = TritonBackend(devices=("cpu", "cuda"))
    backends.register("triton", lambda: inst, replace=True)


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: ``python -m pac_bench.gpu --out DIR [--iters N] [--time-budget S]``."""
    parser = argparse.ArgumentParser(prog="python -m pac_bench.gpu",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-bench.md/.json")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--cases", nargs="*", default=None,
                        help=f"case names (default all: {[c.name for c in CASES]})")
    parser.add_argument("--peers", nargs="*", default=["cudnn", "triton", "native", "reference"])
    parser.add_argument("--time-budget", type=float, default=float("inf"),
                        help="seconds after which remaining cases are skipped")
    parser.add_argument("--precision", choices=PRECISIONS, default="default",
                        help="TF32 policy: torch's defaults, strict float32, or TF32 for both")
    parser.add_argument("--tag", default="",
                        help="suffix of the output files: gpu-bench-TAG.md/.json")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--device", default="cuda",
                        help="'cuda'; 'cpu' rehearses the code path (use with --cases tiny)")
    parser.add_argument("--interpret", action="store_true",
                        help="register the triton backend for CPU tensors (CPU rehearsal; needs "
                             "TRITON_INTERPRET=1 in the environment)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("pac_bench.gpu: no CUDA device; nothing to do", file=sys.stderr)
        return 2
    if args.interpret:
        _register_interpreted_triton()
    cases = CASES if not args.cases else tuple(c for c in (*CASES, TINY) if c.name in args.cases)
    meta, results = run_benchmarks(cases, tuple(args.peers), args.warmup, args.iters,
                                   args.time_budget, args.precision, DTYPES[args.dtype],
                                   args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    md = _markdown(meta, results)
    stem = f"gpu-bench-{args.tag}" if args.tag else "gpu-bench"
    (args.out / f"{stem}.md").write_text(md, encoding="utf-8")
    payload = {**meta, "results": [asdict(r) for r in results]}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str),
                                             encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
