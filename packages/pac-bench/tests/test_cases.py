import dataclasses

import pytest
import torch

from pac_bench.cases import CASES, QUICK_CASES, TINY_CASES, Case, get_case


def test_issue_cases():
    c = get_case("conv_b2_c32_128_k5")
    assert (c.batch, c.channels, c.out_channels, c.guide_channels, c.size, c.kernel, c.padding) == (
        2, 32, 32, 16, 128, 5, 2)
    m = get_case("mem_b1_c64_512_k5")
    assert (m.batch, m.channels, m.guide_channels, m.size, m.kernel) == (1, 64, 16, 512, 5)
    assert set(QUICK_CASES) <= set(CASES) and set(TINY_CASES) <= set(CASES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.batch = 3
    with pytest.raises(KeyError, match="known"):
        get_case("nope")


def test_tiny_case_runs_and_times():
    from pac_bench.timing import time_case

    case = Case("t", 1, 2, 3, 2, 8, 3, dilation=2)
    x, g = case.inputs()
    assert x.shape == (1, 2, 8, 8) and g.shape == (1, 2, 8, 8)
    assert case.pac_layer()(x, g).shape == case.conv_layer()(x).shape == (1, 3, 8, 8)
    for mode in ("forward", "forward_backward"):
        t = time_case(case, "reference", mode, runs=1, warmup=0)
        assert t.pac_s > 0 and t.conv_s > 0 and t.ratio == pytest.approx(t.pac_s / t.conv_s)
    assert torch.is_tensor(x)
