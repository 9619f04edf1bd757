"""pytest-benchmark suite: PacConv2d (each available backend) and nn.Conv2d on the named cases.

Run: ``pytest packages/pac-bench/benchmarks --benchmark-group-by=param:case``.
``PAC_BENCH_CASES`` (comma-separated names) overrides the default quick cases.
"""

from __future__ import annotations

import os

import pytest
import torch

from pac_bench.cases import QUICK_CASES, get_case

pac_core = pytest.importorskip("pac_core")

CASE_NAMES = [c for c in os.environ.get("PAC_BENCH_CASES", ",".join(QUICK_CASES)).split(",") if c]
BACKENDS = pac_core.backends.available()


@pytest.fixture(params=CASE_NAMES)
def case(request):
    return get_case(request.param)


@pytest.mark.parametrize("backend", ["nn.Conv2d", *BACKENDS])
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
def test_conv(benchmark, case, backend, mode):
    torch.manual_seed(0)
    x, g = case.inputs()
    if backend == "nn.Conv2d":
        layer, args, ctx = case.conv_layer(), (x,), None
    else:
        layer, args, ctx = case.pac_layer(), (x, g), pac_core.backends.use(backend)
    benchmark.group = f"{case.name}-{mode}"
    benchmark.extra_info.update(case=case.name, backend=backend, mode=mode)

    if mode == "forward":
        def step():
            with torch.no_grad():
                return layer(*args)
    else:
        xr = x.requires_grad_(True)
        args = (xr, *args[1:])

        def step():
            xr.grad = None
            layer.zero_grad(set_to_none=True)
            layer(*args).sum().backward()

    if ctx is None:
        benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    else:
        with ctx:
            benchmark.pedantic(step, rounds=3, warmup_rounds=1)
