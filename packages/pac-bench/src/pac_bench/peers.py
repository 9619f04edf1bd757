"""Peers: everything timed side by side on one case, in one process.

For a :class:`~pac_bench.cases.Case` the peers are

* ``torch`` — the torch op of the same shape (the floor: ``nn.Conv2d``, ``nn.ConvTranspose2d``,
  ``F.avg_pool2d`` or a depthwise Gaussian blur);
* ``reference`` — the PAC layer on pac-core's pure-torch backend;
* ``reference+compile`` — the same under ``torch.compile`` (compiled once per case; the first call,
  which compiles, is reported apart and not timed);
* ``native`` — the PAC layer on pac-core's compiled backend (when it is available);
* ``kornia`` — ``kornia.filters.joint_bilateral_blur`` (joint bilateral cases only; skipped, with
  the reason, when kornia is not importable).

:func:`time_peers` times each against the floor *interleaved* (floor, peer, floor, peer, ...), so a
change of machine load during the run moves both and their ratio stays meaningful.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .cases import Case

PEERS: tuple[str, ...] = ("torch", "reference", "reference+compile", "native", "kornia")
"""Every peer name, in report order (``torch`` is the floor)."""

FLOOR = "torch"
"""The peer every ratio is taken against."""

KORNIA_PEER = "kornia"
COMPILE_PEER = "reference+compile"


class PeerUnavailable(RuntimeError):
    """A peer cannot run here (missing package, backend, torch feature); ``str()`` says why."""


@dataclass
class Peer:
    """A ready-to-call peer: ``fn(x, guide)`` returns the output of one forward.

    Attributes:
        name: Peer name (one of :data:`PEERS`).
        fn: The forward, taking the input and the guidance (the floor ignores the guidance).
        modules: Modules whose parameter gradients are cleared before each backward.
        note: Remark for the report (e.g. the compile time of ``reference+compile``).
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    modules: list[torch.nn.Module] = field(default_factory=list)
    note: str = ""


def applicable_peers(case: Case) -> list[str]:
    """The peers that apply to ``case`` (kornia only to joint bilateral cases), restricted to
    ``case.peers`` when the case names its peers."""
    return [p for p in PEERS if (p != KORNIA_PEER or case.op == "bilateral")
            and (case.peers is None or p in case.peers)]


def kornia_joint_bilateral() -> Callable[..., torch.Tensor]:
    """``kornia.filters.joint_bilateral_blur``.

    Raises:
        PeerUnavailable: kornia is not importable (the message has the reason and the fix).
    """
    try:
        from kornia.filters import joint_bilateral_blur
    except Exception as exc:  # ImportError, or kornia failing against this torch
        raise PeerUnavailable(
            f"kornia not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "pip install 'pac-bench[peers]'") from None
    return joint_bilateral_blur


def _with_backend(layer: torch.nn.Module, backend: str
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from pac_core import backends

    def call(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        with backends.use(backend):
            return layer(x, g)
    return call


def make_peer(case: Case, name: str, device: str | torch.device = "cpu") -> Peer:
    """Build peer ``name`` for ``case`` on ``device``.

    Raises:
        PeerUnavailable: the peer does not apply to the case or cannot run here.
        ValueError: unknown peer name.
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; expected one of {PEERS}")
    if name == FLOOR:
        conv = case.conv_layer().to(device)
        return Peer(name, lambda x, g: conv(x), [conv], case.names[1])
    if name == KORNIA_PEER:
        if case.op != "bilateral":
            raise PeerUnavailable("kornia has no peer of this op (joint bilateral cases only)")
        blur = kornia_joint_bilateral()
        k, sc, ss = case.kernel, case.sigma_color, case.sigma_space

        def kornia_fn(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return blur(x, g, (k, k), sc, (ss, ss), border_type="reflect",
                        color_distance_type="l2")
        return Peer(name, kornia_fn, [], "joint_bilateral_blur(l2, reflect)")
    from pac_core import backends

    backend = "reference" if name == COMPILE_PEER else name
    if backend not in backends.available():
        raise PeerUnavailable(f"pac-core backend {backend!r} not available here "
                              f"(available: {backends.available()})")
    layer = case.pac_layer().to(device)
    if name != COMPILE_PEER:
        return Peer(name, _with_backend(layer, backend), [layer])
    if not hasattr(torch, "compile"):
        raise PeerUnavailable("torch.compile is not available in this torch")
    torch._dynamo.reset()  # a fresh cache per case: no recompile limit, no dynamic-shape graphs
    compiled = torch.compile(layer)
    return Peer(name, _with_backend(compiled, backend), [layer])


def _step(peer: Peer, x: torch.Tensor, g: torch.Tensor, mode: str) -> Callable[[], Any]:
    if mode == "forward":
        def fwd() -> Any:
            with torch.no_grad():
                return peer.fn(x, g)
        return fwd
    if mode == "forward_backward":
        xr = x.detach().requires_grad_(True)

        def fwd_bwd() -> Any:
            for m in peer.modules:
                m.zero_grad(set_to_none=True)
            xr.grad = None
            peer.fn(xr, g).sum().backward()
        return fwd_bwd
    raise ValueError(f"unknown mode {mode!r}; expected 'forward' or 'forward_backward'")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def interleaved_medians(fa: Callable[[], Any], fb: Callable[[], Any], runs: int = 5,
                        warmup: int = 1, device: str | torch.device = "cpu"
                        ) -> tuple[float, float]:
    """Median wall times ``(a, b)`` of ``fa()`` and ``fb()`` timed alternately.

    Args:
        fa: First callable (the floor).
        fb: Second callable (the peer).
        runs: Timed repetitions of each (at least 1).
        warmup: Untimed repetitions of each first.
        device: Synchronised after each call when it is a CUDA device.
    """
    device = torch.device(device)
    for _ in range(warmup):
        fa()
        fb()
    _sync(device)
    ta, tb = [], []
    for _ in range(max(1, runs)):
        ta.append(_timed(fa, device))
        tb.append(_timed(fb, device))
    return statistics.median(ta), statistics.median(tb)


def _reason(exc: BaseException) -> str:
    """One line: the exception type, its first message line and, when that line only introduces
    the cause (``... raised:``), the cause's line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:
        text += " " + lines[1]
    return f"{type(exc).__name__}: {text[:240]}"


def warm_allocator() -> None:
    """Allocate and free a 16 MiB CPU tensor, as any training step does.

    With glibc, a freed block larger than the current threshold raises the size above which
    ``malloc`` maps fresh pages; below it, blocks are reused from the heap. Until then every
    allocation of an output-sized tensor maps, and on first write faults in, new zeroed pages,
    which can make a 1 MiB convolution 50 % slower. Timing every case after this call makes the
    floor and the peers run in the allocator state of a real workload, whatever ran before.
    """
    torch.empty(4 << 20).fill_(0)


def time_peers(case: Case, peers: Sequence[str] | None = None,
               modes: Sequence[str] = ("forward", "forward_backward"), runs: int = 5,
               warmup: int = 1, device: str | torch.device = "cpu",
               log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Time every peer of ``case`` against the floor, interleaved, in this process.

    Args:
        case: The shape.
        peers: Peer names (default :func:`applicable_peers`); ``torch`` is always the floor and
            gets no record of its own (its time is every record's ``conv_s``).
        modes: ``'forward'`` (under ``no_grad``) and/or ``'forward_backward'``.
        runs: Timed repetitions.
        warmup: Untimed repetitions after the first call.
        device: Where the tensors live.
        log: Called with one line per record (progress), if given.

    The case's ``threads`` (when set) are the torch threads during its timings; the allocator
    is warmed first (:func:`warm_allocator`).

    Returns:
        One record per (peer, mode): ``{"case", "op", "family", "size", "backend", "mode", "pac_s",
        "conv_s", "ratio", "first_s", "note"}``; ``backend`` is the peer name, ``first_s`` the
        first call (compilation included), ``ratio = pac_s / conv_s``. A peer that cannot run
        has ``pac_s``/``ratio`` None and the reason in ``note``.
    """
    names = [p for p in (peers or applicable_peers(case)) if p != FLOOR]
    warm_allocator()
    if case.threads is None:
        return _time_peers(case, names, modes, runs, warmup, device, log)
    threads = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    try:
        return _time_peers(case, names, modes, runs, warmup, device, log)
    finally:
        torch.set_num_threads(threads)


def _time_peers(case: Case, names: Sequence[str], modes: Sequence[str], runs: int, warmup: int,
                device: str | torch.device, log: Callable[[str], None] | None
                ) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    x, g = case.inputs(device)
    floor = make_peer(case, FLOOR, device)
    records: list[dict[str, Any]] = []
    for name in names:
        base = {"case": case.name, "op": case.op, "family": case.family, "size": case.size,
                "backend": name, "threads": torch.get_num_threads()}
        try:
            peer = make_peer(case, name, device)
        except PeerUnavailable as exc:
            for mode in modes:
                records.append({**base, "mode": mode, "pac_s": None, "conv_s": None,
                                "ratio": None, "first_s": None, "note": f"skipped: {exc}"})
                if log:
                    log(f"{case.name:24s} {name:18s} {mode:17s} skipped: {exc}")
            continue
        for mode in modes:
            rec: dict[str, Any] = {**base, "mode": mode, "pac_s": None, "conv_s": None,
                                   "ratio": None, "first_s": None, "note": peer.note}
            try:
                fb = _step(peer, x, g, mode)
                rec["first_s"] = _timed(fb, torch.device(device))
                conv_s, pac_s = interleaved_medians(_step(floor, x, g, mode), fb, runs, warmup,
                                                    device)
                rec.update(pac_s=pac_s, conv_s=conv_s,
                           ratio=pac_s / conv_s if conv_s > 0 else None)
                if name == COMPILE_PEER:
                    rec["note"] = f"first call (compile) {rec['first_s']:.1f} s"
            except Exception as exc:  # a peer failing must not stop the others
                rec["note"] = f"failed: {_reason(exc)}"
                rec["error"] = str(exc)[-4000:]
            records.append(rec)
            if log:
                shown = "—" if rec["ratio"] is None else f"{rec['ratio']:7.2f}×"
                log(f"{case.name:24s} {name:18s} {mode:17s} ratio {shown} {rec['note']}")
    return records
