"""Peak extra host memory of one inference forward, measured in a fresh subprocess.

``tracemalloc`` does not see torch's allocations, so the child process builds the inputs and the
layer, resets the kernel's peak-RSS counter where Linux allows it (``/proc/self/clear_refs``), notes
its resident memory, runs one forward under ``torch.no_grad()`` and reads
``resource.getrusage(RUSAGE_SELF).ru_maxrss``; the difference is the peak extra resident memory of
the forward. Linux reports ru_maxrss in KiB, macOS in bytes. CPU only; without the reset (other
systems) the import-time peak may hide a smaller forward peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

from .cases import Case

_CHILD = r"""
import gc, json, resource, sys
import torch
from pac_bench.cases import Case
case = Case(**json.loads(sys.argv[1])); which = sys.argv[2]; backend = sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
scale = 1 if sys.platform == "darwin" else 1024
x, g = case.inputs()
layer = case.pac_layer() if which == "pac" else case.conv_layer()
if which == "pac":
    from pac_core import backends
    ctx = backends.use(backend)
else:
    import contextlib
    ctx = contextlib.nullcontext()
gc.collect()
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    with open("/proc/self/statm") as fh:
        before = int(fh.read().split()[1]) * resource.getpagesize()
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
with ctx, torch.no_grad():
    y = layer(x, g) if which == "pac" else layer(x)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
out_bytes = y.numel() * y.element_size()
print(json.dumps({"peak_extra_bytes": max(0, after - before), "output_bytes": out_bytes}))
"""


def peak_forward_bytes(case: Case, which: str = "pac", backend: str = "reference",
                       threads: int = 1, timeout: float = 600.0) -> int:
    """Peak extra resident memory (bytes) of one forward of ``which`` (``'pac'`` or ``'conv'``).

    Args:
        case: The shape.
        which: ``'pac'`` for PacConv2d, ``'conv'`` for nn.Conv2d.
        backend: pac_core backend name (ignored for ``'conv'``).
        threads: torch intra-op threads in the child.
        timeout: Seconds before the child is killed.

    Raises:
        RuntimeError: the child failed (its stderr is included).
    """
    if which not in ("pac", "conv"):
        raise ValueError(f"which must be 'pac' or 'conv', got {which!r}")
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(asdict(case)), which, backend, str(threads)],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_extra_bytes"])
