"""Fast tests of the native-suite additions: transposed / pool cases, CRF step timing, memory
records and the report sections."""

import json

import pytest

from pac_bench import memory
from pac_bench.cases import (
    CRF_CASES,
    NATIVE_SUITE,
    PEER_NAMES,
    TARGETS,
    TINY_CASES,
    Case,
    get_case,
    get_crf_case,
)
from pac_bench.report import crf_table, memory_table, render_markdown, target_lines
from pac_bench.timing import time_case, time_crf


def test_issue_shapes():
    t = get_case("convt_b2_c32_64to128_k5_s2")
    assert (t.op, t.batch, t.channels, t.input_size, t.size, t.kernel, t.stride, t.padding,
            t.output_padding) == ("conv_transpose2d", 2, 32, 64, 128, 5, 2, 2, 1)
    x, g = t.inputs()
    assert x.shape == (2, 32, 64, 64) and g.shape == (2, 16, 128, 128)
    p = get_case("pool_b2_c32_128_k5")
    assert (p.op, p.batch, p.channels, p.size, p.kernel, p.padding) == ("pool2d", 2, 32, 128, 5, 2)
    c = get_crf_case("crf_b1_l21_128_k5")
    assert (c.batch, c.labels, c.size, c.kernel) == (1, 21, 128, 5)
    for names in NATIVE_SUITE.values():
        for n in names:
            assert n in CRF_CASES or get_case(n)
    assert TARGETS[("conv2d", "forward")] == 2.0 and TARGETS[("conv2d", "forward_backward")] == 3.0
    with pytest.raises(ValueError):
        Case("bad", 1, 2, 3, 2, 8, 3, op="pool2d")
    with pytest.raises(ValueError):
        Case("bad", 1, 2, 2, 2, 8, 3, op="nope")
    with pytest.raises(KeyError, match="known"):
        get_crf_case("nope")


@pytest.mark.parametrize("name", TINY_CASES)
def test_tiny_ops_match_peer_shapes_and_time(name):
    case = get_case(name)
    x, g = case.inputs()
    pac, peer = case.pac_layer(), case.conv_layer()
    assert pac(x, g).shape == peer(x).shape
    assert case.names == PEER_NAMES[case.op]
    for mode in ("forward", "forward_backward"):
        t = time_case(case, "reference", mode, runs=1, warmup=0)
        assert t.op == case.op and t.as_dict()["op"] == case.op and t.ratio > 0


def test_crf_step_and_table():
    case = get_crf_case("crf_b1_l4_16_k3")
    unary, guide = case.inputs()
    assert guide.shape == (1, 5, 16, 16)
    assert case.crf(2)(unary, guide).shape == unary.shape
    rec = time_crf(case, "reference", (1, 2), runs=1, warmup=0)
    assert rec["steps"] == [1, 2] and len(rec["times_s"]) == 2
    assert rec["step_s"] == pytest.approx(rec["times_s"][1] - rec["times_s"][0])
    # The table check uses fixed times: measured ones can be non-monotone on a loaded machine.
    ref = dict(rec, times_s=[0.03, 0.05], step_s=0.02)
    other = dict(ref, backend="native", step_s=0.01)
    table = crf_table([ref, other]).splitlines()
    assert table[0].startswith("| case | backend |") and "0.50×" in table[3]
    with pytest.raises(ValueError):
        time_crf(case, "reference", (3, 1))


def test_memory_records_skip_and_ratio(monkeypatch):
    case = get_case("mem_b1_c64_512_k5")
    assert memory.reference_estimate_bytes(case) > 2 * memory.GiB
    calls = []

    def fake(case, which="pac", backend="reference", threads=1, timeout=600.0, warm=False):
        calls.append((which, backend))
        return 100 if which == "conv" else 150

    monkeypatch.setattr(memory, "peak_forward_bytes", fake)
    recs = memory.memory_records(case, ["native", "reference"], limit_bytes=memory.GiB)
    assert [r["backend"] for r in recs] == ["torch", "native", "reference"]
    assert recs[1]["ratio"] == 1.5 and recs[2]["peak_bytes"] is None
    assert "skipped" in recs[2]["note"] and ("pac", "reference") not in calls
    assert "| mem_b1_c64_512_k5 | native |" in memory_table(recs)


def test_render_sections():
    res = {"environment": {"date": "2026-01-01T00:00:00+00:00", "cpu_model": "X", "cpus": 2},
           "results": [
               {"case": "a", "op": "conv2d", "backend": "native", "mode": "forward",
                "pac_s": 0.03, "conv_s": 0.01, "ratio": 3.0},
               {"case": "b", "op": "pool2d", "backend": "native", "mode": "forward",
                "pac_s": 0.01, "conv_s": 0.01, "ratio": 1.0}],
           "memory": [{"case": "m", "op": "conv2d", "backend": "torch", "peak_bytes": 2**20,
                       "ratio": 1.0, "note": ""},
                      {"case": "m", "op": "conv2d", "backend": "native", "peak_bytes": 2**20,
                       "ratio": 1.0, "note": ""}],
           "notes": ["busy machine"]}
    md = render_markdown(res)
    assert "## PacConv2d vs nn.Conv2d" in md and "## PacPool2d vs F.avg_pool2d" in md
    assert "| b | native | forward | 10.00 ms | 10.00 ms | 1.00× |" in md
    assert "- CPU: X" in md and "busy machine" in md and "Peak extra memory" in md
    lines = target_lines(res, TARGETS)
    assert any("forward: 3.00× (target ≤ 2×) **missed**" in ln for ln in lines)
    assert any("memory: 1.00× (target ≤ 2×) met" in ln for ln in lines)
    json.dumps(res)


def test_warm_memory_child_runs():
    case = get_case("pool_b1_c8_32_k3")
    for which in ("conv", "pac"):
        assert memory.peak_forward_bytes(case, which, "native", warm=True) >= 0
