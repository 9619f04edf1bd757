"""pytest-benchmark suite: PacConvTranspose2d / PacPool2d against nn.ConvTranspose2d /
F.avg_pool2d, and PacCRF mean-field steps, on each available backend.

Run: ``pytest packages/pac-bench/benchmarks/test_bench_native.py --benchmark-group-by=group``.
``PAC_BENCH_OP_CASES`` / ``PAC_BENCH_CRF_CASES`` (comma-separated names) override the defaults.
"""

from __future__ import annotations

import os

import pytest
import torch

from pac_bench.cases import get_case, get_crf_case

pac_core = pytest.importorskip("pac_core")

OP_CASES = [c for c in os.environ.get(
    "PAC_BENCH_OP_CASES", "convt_b2_c32_64to128_k5_s2,pool_b2_c32_128_k5").split(",") if c]
CRF_CASES = [c for c in os.environ.get("PAC_BENCH_CRF_CASES", "crf_b1_l21_128_k5").split(",")
             if c]
BACKENDS = pac_core.backends.available()


@pytest.mark.parametrize("case_name", OP_CASES)
@pytest.mark.parametrize("backend", ["torch", *BACKENDS])
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
def test_op(benchmark, case_name, backend, mode):
    case = get_case(case_name)
    torch.manual_seed(0)
    x, g = case.inputs()
    if backend == "torch":
        layer, args, ctx = case.conv_layer(), (x,), None
    else:
        layer, args, ctx = case.pac_layer(), (x, g), pac_core.backends.use(backend)
    benchmark.group = f"{case.name}-{mode}"
    benchmark.extra_info.update(case=case.name, op=case.op, backend=backend, mode=mode,
                                peer=case.names[1] if backend == "torch" else case.names[0])

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


@pytest.mark.parametrize("case_name", CRF_CASES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_steps", [1, 3])
def test_crf(benchmark, case_name, backend, num_steps):
    case = get_crf_case(case_name)
    unary, guide = case.inputs()
    crf = case.crf(num_steps)
    benchmark.group = f"{case.name}-steps{num_steps}"
    benchmark.extra_info.update(case=case.name, backend=backend, num_steps=num_steps)

    def step():
        with torch.no_grad():
            return crf(unary, guide)

    with pac_core.backends.use(backend):
        benchmark.pedantic(step, rounds=3, warmup_rounds=1)
