"""Time PacConvTranspose2d (native backend) against F.conv_transpose2d on the CPU.

Usage: ``python ab_convt_cpu.py [THREADS]`` with ``MODE=fwd|fwdbwd``; ``OLD=DIR`` imports
pac_core from ``DIR`` (a ``pip install --target DIR`` of another revision) instead of the
installed one, for before/after comparisons in alternating processes.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

if os.environ.get("OLD"):  # bypass an editable install's import hook
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, os.environ["OLD"])

import torch
import torch.nn.functional as F

import pac_core
from pac_core import PacConvTranspose2d


def time_case(b: int, c: int, n: int, mode: str) -> None:
    """Print the median times of the PAC layer and the torch op for one shape."""
    x = torch.randn(b, c, n, n)
    g = torch.randn(b, 16, 2 * n, 2 * n)
    m = PacConvTranspose2d(c, c, 5, stride=2, padding=2, output_padding=1)
    w = m.weight.detach()
    if mode == "fwd":

        def pac() -> None:
            with torch.no_grad():
                m(x, g)

        def ref() -> None:
            with torch.no_grad():
                F.conv_transpose2d(x, w, m.bias, stride=2, padding=2, output_padding=1)
    else:
        xr, gr, wr = (t.clone().requires_grad_() for t in (x, g, w))

        def pac() -> None:
            m(xr, gr).sum().backward()

        def ref() -> None:
            F.conv_transpose2d(xr, wr, m.bias, stride=2, padding=2,
                               output_padding=1).sum().backward()

    pac()
    ref()
    tp, tr = [], []
    for _ in range(15):
        t0 = time.perf_counter()
        pac()
        tp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref()
        tr.append(time.perf_counter() - t0)
    a, r = statistics.median(tp) * 1e3, statistics.median(tr) * 1e3
    print(f"{mode} {b}x{c}x{n}->{2 * n} k5 s2: PacConvTranspose2d {a:.2f} ms, "
          f"nn.ConvTranspose2d {r:.2f} ms, ratio {a / r:.2f}")


def main() -> None:
    print(pac_core.__file__)
    torch.manual_seed(0)
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    mode = os.environ.get("MODE", "fwd")
    for b, c, n in [(2, 32, 64), (1, 16, 128)]:
        time_case(b, c, n, mode)


if __name__ == "__main__":
    main()
