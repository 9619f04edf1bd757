"""Peers side by side: the joint bilateral case against kornia (numerically), peer timing
records, skipped peers, per-peer memory records."""

import dataclasses
import sys

import pytest
import torch

from pac_bench import memory, peers
from pac_bench.cases import CASES, FULL_CASES, MATRIX_CASES, QUICK_CASES, Case, get_case


def _kornia_jbf(case, x, g):
    kornia = pytest.importorskip("kornia")
    return kornia.filters.joint_bilateral_blur(
        x, g, case.kernel, case.sigma_color, (case.sigma_space, case.sigma_space),
        border_type="reflect", color_distance_type="l2")


def test_case_sets():
    assert set(QUICK_CASES) | set(MATRIX_CASES) <= set(FULL_CASES) <= set(CASES)
    jbf = get_case("jbf_b1_c3_128_k5")
    assert (jbf.op, jbf.channels, jbf.guide_channels, jbf.kernel) == ("bilateral", 3, 3, 5)
    assert jbf.family == get_case("jbf_b1_c3_256_k5").family != get_case("conv_b1_c16_64_k5").family
    with pytest.raises(ValueError):
        Case("bad", 1, 3, 4, 3, 16, 5, op="bilateral")
    assert peers.applicable_peers(jbf) == list(peers.PEERS)
    assert "kornia" not in peers.applicable_peers(get_case("conv_b1_c16_64_k5"))


def test_case_threads_and_named_peers():
    case = Case("t1", 1, 2, 2, 2, 8, 3, threads=1, peers=("torch", "reference"))
    assert peers.applicable_peers(case) == ["torch", "reference"]
    assert "1 thread" in case.family
    before = torch.get_num_threads()
    recs = peers.time_peers(case, modes=("forward",), runs=1, warmup=0)
    assert [(r["backend"], r["threads"]) for r in recs] == [("reference", 1)]
    assert recs[0]["ratio"] is not None
    assert torch.get_num_threads() == before
    for name in QUICK_CASES:  # every default case pins its threads
        assert get_case(name).threads in (1, 2), name


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("sigma_color,kernel", [(0.1, 5), (0.5, 5), (2.0, 3)])
def test_joint_bilateral_matches_kornia(backend, sigma_color, kernel):
    """The PAC joint bilateral case computes kornia's filter: same sigmas, window, reflect border
    (forward and the input gradient)."""
    from pac_core import backends

    if backend not in backends.available():
        pytest.skip(f"{backend} backend not available")
    case = dataclasses.replace(get_case("jbf_b1_c3_16_k5"), batch=2, kernel=kernel,
                               sigma_color=sigma_color, sigma_space=1.2)
    x, g = case.inputs(dtype=torch.float64)
    xk, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    expected = _kornia_jbf(case, xk, g)
    with backends.use(backend):
        got = case.pac_layer()(xp, g)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)
    w = torch.randn_like(expected)
    (expected * w).sum().backward()
    (got * w).sum().backward()
    torch.testing.assert_close(xp.grad, xk.grad, rtol=1e-6, atol=1e-8)


def test_floor_is_the_bilateral_filter_without_range_term():
    case = dataclasses.replace(get_case("jbf_b1_c3_16_k5"), sigma_color=1e6)
    x, g = case.inputs()
    torch.testing.assert_close(case.pac_layer()(x, g), case.conv_layer()(x), rtol=1e-5,
                               atol=1e-6)


def test_time_peers_records_and_skips(monkeypatch):
    case = get_case("jbf_b1_c3_16_k5")
    recs = peers.time_peers(case, ["torch", "reference", "native", "kornia"], runs=1, warmup=0)
    by = {(r["backend"], r["mode"]): r for r in recs}
    assert "torch" not in {r["backend"] for r in recs}  # the floor is every record's conv_s
    for r in recs:
        assert r["case"] == case.name and r["size"] == 16 and r["family"] == case.family
        if r["note"].startswith("skipped"):
            continue
        assert r["pac_s"] > 0 and r["conv_s"] > 0
        assert r["ratio"] == pytest.approx(r["pac_s"] / r["conv_s"])
    assert by[("reference", "forward_backward")]["ratio"] is not None

    def no_kornia():
        raise peers.PeerUnavailable("kornia not importable (test)")

    monkeypatch.setattr(peers, "kornia_joint_bilateral", no_kornia)
    recs = peers.time_peers(case, ["kornia"], modes=["forward"], runs=1, warmup=0)
    assert recs[0]["ratio"] is None and recs[0]["note"] == "skipped: kornia not importable (test)"
    with pytest.raises(peers.PeerUnavailable):
        peers.make_peer(get_case("conv_b1_c8_32_k3"), "kornia")
    with pytest.raises(ValueError):
        peers.make_peer(case, "nope")


def test_failing_peer_is_recorded_not_raised(monkeypatch):
    case = get_case("conv_b1_c8_32_k3")
    real = peers.make_peer

    def broken(case, name, device="cpu"):
        p = real(case, name, device)
        if name == "reference":
            def boom(x, g):
                raise RuntimeError("boom")
            p.fn = boom
        return p

    monkeypatch.setattr(peers, "make_peer", broken)
    recs = peers.time_peers(case, ["reference", "native"], modes=["forward"], runs=1, warmup=0)
    assert recs[0]["note"] == "failed: RuntimeError: boom" and recs[0]["ratio"] is None
    assert recs[1]["ratio"] is not None


def test_interleaved_medians_order():
    calls = []
    a, b = peers.interleaved_medians(lambda: calls.append("a"), lambda: calls.append("b"),
                                     runs=3, warmup=1)
    assert calls == ["a", "b"] * 4 and a >= 0 and b >= 0


def test_peer_memory_records(monkeypatch):
    case = get_case("jbf_b1_c3_16_k5")
    seen = []

    def fake(case, peer, threads=1, timeout=600.0, warm="small"):
        seen.append((peer, warm))
        return 100 if peer == "torch" else 250

    monkeypatch.setattr(memory, "peer_peak_bytes", fake)
    recs = memory.peer_memory_records(case, ["torch", "reference", "reference+compile", "native"])
    assert [r["backend"] for r in recs] == ["torch", "reference", "reference+compile", "native"]
    assert recs[1]["ratio"] == 2.5 and recs[2]["peak_bytes"] is None
    assert "not measured" in recs[2]["note"] and ("reference+compile", "full") not in seen
    recs = memory.peer_memory_records(case, ["reference+compile"], compile_memory=True)
    assert recs[1]["ratio"] == 2.5 and ("reference+compile", "full") in seen


def test_peer_memory_child_runs():
    case = get_case("jbf_b1_c3_16_k5")
    for peer in ("torch", "native"):
        assert memory.peer_peak_bytes(case, peer) >= 0
    with pytest.raises(ValueError):
        memory.peer_peak_bytes(case, "torch", warm="hot")


@pytest.mark.slow
@pytest.mark.compile
def test_compiled_reference_peer():
    case = get_case("conv_b1_c8_32_k3")
    recs = peers.time_peers(case, ["reference+compile"], runs=1, warmup=0)
    assert all(r["ratio"] is not None and "compile" in r["note"] for r in recs), recs


def test_failure_reason_keeps_the_cause():
    exc = RuntimeError("backend='inductor' raised:\nCppCompileError: C++ compile error\n\nmore")
    assert peers._reason(exc) == ("RuntimeError: backend='inductor' raised: CppCompileError: C++ "
                                  "compile error")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_memory_child_is_not_inflated_by_a_large_parent():
    """A large parent process (here: 256 MiB touched) must not leak into the child's reading:
    ``ru_maxrss`` would keep the peak of the forked copy of the parent after ``exec``."""
    import numpy as np

    ballast = np.ones(256 * 2**20 // 8)  # 256 MiB, every page touched
    case = get_case("conv_b1_c8_32_k3")
    try:
        assert memory.peer_peak_bytes(case, "torch") < 32 * 2**20
        assert memory.peak_forward_bytes(case, "conv", warm=True) < 32 * 2**20
    finally:
        del ballast
