"""pytest-benchmark suite: ``packernel2d`` (the materialised adaptive kernel) on the conv cases.

Peers: ``F.unfold`` of the guidance with the same kernel size (the floor: a kernel can be no
cheaper to materialise than gathering its taps), ``packernel2d`` on the reference backend, and
the same under ``torch.compile``. Every backend materialises the kernel the same way (the native
backend delegates ``packernel2d`` to the reference: a fused op never builds it), so there is no
native row.

Run: ``pytest packages/pac-bench/benchmarks/test_bench_kernel.py --benchmark-group-by=group``.
``PAC_BENCH_KERNEL_CASES`` (comma-separated names) overrides the default cases.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from pac_bench.cases import get_case

pac_core = pytest.importorskip("pac_core")

KERNEL_CASES = [c for c in os.environ.get(
    "PAC_BENCH_KERNEL_CASES", "conv_b1_c16_64_k5,conv_b1_c16_128_k5").split(",") if c]


@pytest.mark.parametrize("case_name", KERNEL_CASES)
@pytest.mark.parametrize("peer", ["unfold", "reference", "reference+compile"])
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
def test_packernel2d(benchmark, tmp_path, monkeypatch, case_name, peer, mode):
    case = get_case(case_name)
    torch.manual_seed(0)
    _, g = case.inputs()
    pad = case.dilation * (case.kernel - 1) // 2
    if peer == "unfold":
        def fn(guide):
            return F.unfold(guide, case.kernel, dilation=case.dilation, padding=pad)
    else:
        def fn(guide):
            return pac_core.packernel2d(guide, kernel_size=case.kernel, dilation=case.dilation,
                                        padding=pad)[0]
        if peer == "reference+compile":
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
            torch._dynamo.reset()
            fn = torch.compile(fn)
    benchmark.group = f"packernel2d-{case.name}-{mode}"
    benchmark.extra_info.update(case=case.name, op="packernel2d", peer=peer, mode=mode)

    if mode == "forward":
        def step():
            with torch.no_grad():
                return fn(g)
    else:
        gr = g.clone().requires_grad_(True)

        def step():
            gr.grad = None
            fn(gr).sum().backward()

    with pac_core.backends.use("reference"):
        step()  # compile / warm up outside the timing
        benchmark.pedantic(step, rounds=3, warmup_rounds=1)
