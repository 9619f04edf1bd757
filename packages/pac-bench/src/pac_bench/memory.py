"""Peak extra host memory of one inference forward, measured in a fresh subprocess.

``tracemalloc`` does not see torch's allocations, so the child process builds the inputs and the
layer, resets the kernel's peak-RSS counter where Linux allows it (``/proc/self/clear_refs``), notes
its resident memory, runs one forward under ``torch.no_grad()`` and reads the peak again
(``VmHWM`` in ``/proc/self/status``); the difference is the peak extra resident memory of the
forward. Not ``getrusage().ru_maxrss``: after ``exec`` it still holds the peak of the forked copy of
the parent, so a parent that has imported torch inflated every reading by tens of MiB (the first
peers run, 2026-11-26, read 60–80 MiB for ``nn.Conv2d`` at every size). CPU only; without the
reset (other systems) ``ru_maxrss`` is used and the import-time peak may hide a smaller peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from .cases import Case

GiB = 1024**3

_PEAK = r"""
import resource, sys
_SCALE = 1 if sys.platform == "darwin" else 1024


def _hwm():
    # the peak RSS of this process's memory since the reset (kB in /proc/self/status); not
    # ru_maxrss, which also keeps the peak of the pre-exec copy of a large parent process
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))


def mark():
    # reset the peak counter where Linux allows it; returns (resident bytes now, reset worked)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        with open("/proc/self/statm") as fh:
            now = int(fh.read().split()[1]) * resource.getpagesize()
        _hwm()
        return now, True
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _SCALE, False


def peak_since(before, reset):
    after = _hwm() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _SCALE
    return max(0, after - before)
"""

_CHILD = _PEAK + r"""
import gc, json, sys
import torch
from pac_bench.cases import Case
case = Case(**json.loads(sys.argv[1])); which = sys.argv[2]; backend = sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
x, g = case.inputs()
layer = case.pac_layer() if which == "pac" else case.conv_layer()
import contextlib
from pac_core import backends
ctx = backends.use(backend) if which == "pac" else contextlib.nullcontext()
if int(sys.argv[5]):
    # one small call first: library initialisation (oneDNN primitives, thread pools, the native
    # extension) is a one-time cost, not part of a forward's working memory
    import dataclasses
    small = dataclasses.replace(case, batch=1, size=max(4 * case.kernel, 2 * case.stride))
    xs, gs = small.inputs()
    with ctx, torch.no_grad():
        layer(xs, gs) if which == "pac" else layer(xs)
    del xs, gs
    ctx = backends.use(backend) if which == "pac" else contextlib.nullcontext()
gc.collect()
before, reset = mark()
with ctx, torch.no_grad():
    y = layer(x, g) if which == "pac" else layer(x)
out_bytes = y.numel() * y.element_size()
print(json.dumps({"peak_extra_bytes": peak_since(before, reset), "output_bytes": out_bytes}))
"""


def _run_child(script: str, args: list[str], timeout: float) -> int:
    """Run a measurement ``script`` in a fresh Python process; its ``peak_extra_bytes``."""
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_bytes"])


def peak_forward_bytes(case: Case, which: str = "pac", backend: str = "reference",
                       threads: int = 1, timeout: float = 600.0, warm: bool = False) -> int:
    """Peak extra resident memory (bytes) of one forward of ``which`` (``'pac'`` or ``'conv'``).

    Args:
        case: The shape.
        which: ``'pac'`` for PacConv2d, ``'conv'`` for nn.Conv2d.
        backend: pac_core backend name (ignored for ``'conv'``).
        threads: torch intra-op threads in the child.
        timeout: Seconds before the child is killed.
        warm: Run the layer once on a small input (batch 1, ``4·k`` pixels square) before the
            measurement, so that one-time library initialisation is not counted.

    Raises:
        RuntimeError: the child failed (its stderr is included).
    """
    if which not in ("pac", "conv"):
        raise ValueError(f"which must be 'pac' or 'conv', got {which!r}")
    return _run_child(_CHILD, [json.dumps(asdict(case)), which, backend, str(threads),
                               str(int(warm))], timeout)


def reference_estimate_bytes(case: Case) -> int:
    """Rough peak of a ``reference`` forward: it materialises ``C·k²`` columns per output pixel.

    ``2.5 ×`` the float32 column tensor (columns, kernel-weighted columns, slack); the H100 run
    measured about ``2 ×`` for ``mem_b1_c64_512_k5``.
    """
    cols = case.batch * case.channels * case.kernel**2 * case.size * case.size * 4
    return int(2.5 * cols)


def memory_records(case: Case, backends: list[str], threads: int = 1,
                   limit_bytes: int = 8 * GiB, warm: bool = True) -> list[dict[str, Any]]:
    """Peak extra memory of one inference forward of the torch op and of the PAC layer.

    Each measurement runs in a fresh subprocess (:func:`peak_forward_bytes`). The ``reference``
    backend is skipped, with a note, when :func:`reference_estimate_bytes` exceeds
    ``limit_bytes``. With ``warm`` (default) each child first runs the layer on a small input
    (see :func:`peak_forward_bytes`).

    Returns:
        Records ``{"case", "op", "backend", "peak_bytes", "ratio", "note"}``; the torch op's
        record has backend ``'torch'`` and ratio 1; ``ratio`` is ``peak / torch op's peak``
        (None where skipped or failed).
    """
    conv = peak_forward_bytes(case, "conv", threads=threads, warm=warm)
    records: list[dict[str, Any]] = [{"case": case.name, "op": case.op, "backend": "torch",
                                      "peak_bytes": conv, "ratio": 1.0, "note": case.names[1]}]
    for backend in backends:
        rec: dict[str, Any] = {"case": case.name, "op": case.op, "backend": backend,
                               "peak_bytes": None, "ratio": None, "note": ""}
        est = reference_estimate_bytes(case)
        if backend == "reference" and est > limit_bytes:
            rec["note"] = (f"skipped: estimated {est / GiB:.1f} GiB > limit "
                           f"{limit_bytes / GiB:.1f} GiB")
        else:
            try:
                rec["peak_bytes"] = peak_forward_bytes(case, "pac", backend, threads=threads,
                                                       warm=warm)
                rec["ratio"] = rec["peak_bytes"] / conv if conv else None
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rec["note"] = f"failed: {str(exc).strip().splitlines()[-1][:160]}"
        records.append(rec)
    return records


_PEER_CHILD = _PEAK + r"""
import dataclasses, gc, json, sys
import torch
from pac_bench.cases import Case
from pac_bench.peers import make_peer
case = Case(**json.loads(sys.argv[1])); name = sys.argv[2]; warm = sys.argv[4]
torch.set_num_threads(int(sys.argv[3]))
x, g = case.inputs()
peer = make_peer(case, name)
with torch.no_grad():
    if warm == "small":
        small = dataclasses.replace(case, batch=1, size=max(4 * case.kernel, 2 * case.stride))
        xs, gs = small.inputs()
        peer.fn(xs, gs)
        del xs, gs
    elif warm == "full":
        peer.fn(x, g)
gc.collect()
before, reset = mark()
with torch.no_grad():
    y = peer.fn(x, g)
print(json.dumps({"peak_extra_bytes": peak_since(before, reset)}))
"""


def peer_peak_bytes(case: Case, peer: str, threads: int = 1, timeout: float = 600.0,
                    warm: str = "small") -> int:
    """Peak extra resident memory (bytes) of one inference forward of ``peer`` (fresh process).

    Args:
        case: The shape.
        peer: A name of :data:`pac_bench.peers.PEERS`.
        threads: torch intra-op threads in the child.
        timeout: Seconds before the child is killed.
        warm: ``'small'`` (one call on a batch-1 ``4·k``-pixel input first, so one-time library
            initialisation is not counted), ``'full'`` (one call on the measured input first:
            what a compiled peer needs, or its compilation is counted) or ``'none'``.

    Raises:
        RuntimeError: the child failed (its stderr is included).
    """
    if warm not in ("small", "full", "none"):
        raise ValueError(f"warm must be 'small', 'full' or 'none', got {warm!r}")
    return _run_child(_PEER_CHILD, [json.dumps(asdict(case)), peer, str(threads), warm], timeout)


def peer_memory_records(case: Case, peers: list[str], threads: int = 1,
                        limit_bytes: int = 8 * GiB, compile_memory: bool = False,
                        ) -> list[dict[str, Any]]:
    """Peak extra memory of one inference forward of the floor and of each peer of ``case``.

    Each peer runs in its own fresh process (:func:`peer_peak_bytes`). Skipped, with the reason
    in ``note``: ``reference`` (and ``reference+compile``) above ``limit_bytes`` by
    :func:`reference_estimate_bytes`, ``reference+compile`` unless ``compile_memory`` (compiling
    again in every fresh process costs tens of seconds on a small CPU), peers that cannot run here.

    Returns:
        Records ``{"case", "op", "family", "size", "backend", "peak_bytes", "ratio", "note"}``,
        the floor first (backend ``'torch'``, ratio 1); ``ratio = peak / floor peak``.
    """
    from .peers import COMPILE_PEER, FLOOR, PeerUnavailable, make_peer

    base = {"case": case.name, "op": case.op, "family": case.family, "size": case.size}
    floor = peer_peak_bytes(case, FLOOR, threads)
    records: list[dict[str, Any]] = [{**base, "backend": FLOOR, "peak_bytes": floor,
                                      "ratio": 1.0, "note": case.names[1]}]
    for name in peers:
        if name == FLOOR:
            continue
        rec: dict[str, Any] = {**base, "backend": name, "peak_bytes": None, "ratio": None,
                               "note": ""}
        est = reference_estimate_bytes(case)
        if name == COMPILE_PEER and not compile_memory:
            rec["note"] = "not measured (compiles in each fresh process; --compile-memory)"
        elif name.startswith("reference") and est > limit_bytes:
            rec["note"] = (f"skipped: estimated {est / GiB:.1f} GiB > limit "
                           f"{limit_bytes / GiB:.1f} GiB")
        else:
            try:
                make_peer(case, name)  # cheap: says why a peer cannot run, without a child
                rec["peak_bytes"] = peer_peak_bytes(
                    case, name, threads, warm="full" if name == COMPILE_PEER else "small")
                rec["ratio"] = rec["peak_bytes"] / floor if floor else None
            except PeerUnavailable as exc:
                rec["note"] = f"skipped: {exc}"
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                rec["note"] = f"failed: {str(exc).strip().splitlines()[-1][:160]}"
        records.append(rec)
    return records
