"""The CRF cases and the pydensecrf peer (skipped where pydensecrf is not installed)."""

import json

import pytest
import torch

import pac_core
from pac_bench.cases import (
    CRF_CASES,
    NATIVE_SUITE,
    QUICK_REFINER_CRF_CASES,
    REFINER_CRF_CASES,
    get_crf_case,
    get_refiner_crf_case,
)
from pac_bench.cli import main
from pac_bench.densecrf import (
    CRF_512,
    NOT_INSTALLED,
    case_tensors,
    densecrf_available,
    densecrf_version,
    time_densecrf,
    time_refiner_step,
)
from pac_bench.report import refiner_crf_table


def test_512_case_is_named_and_not_in_the_native_suite():
    assert CRF_512 is get_crf_case("crf_b1_l21_512_k5")
    assert (CRF_512.labels, CRF_512.size, CRF_512.batch) == (21, 512, 1)
    assert "crf_b1_l21_512_k5" in CRF_CASES and "crf_b1_l21_512_k5" not in NATIVE_SUITE["crf"]


def test_case_tensors_are_the_ones_the_pac_timing_uses():
    from pac_core.features import create_YXRGB

    case = get_crf_case("crf_b1_l4_16_k3")
    unary, guide = case.inputs()
    u2, img = case_tensors(case)
    assert torch.equal(unary, u2)
    assert torch.equal(guide, create_YXRGB(img, yx_scale=80.0, rgb_scale=13.0))
    assert 0.0 <= float(img.min()) and float(img.max()) <= 255.0


@pytest.mark.skipif(not densecrf_available(), reason="pydensecrf is not installed")
def test_time_densecrf_record():
    rec = time_densecrf(get_crf_case("crf_b1_l4_16_k3"), (1, 2), runs=1, warmup=0)
    assert rec["backend"] == "pydensecrf" and rec["steps"] == [1, 2]
    assert len(rec["times_s"]) == 2 and all(t > 0 for t in rec["times_s"])
    with pytest.raises(ValueError, match="increasing"):
        time_densecrf(get_crf_case("crf_b1_l4_16_k3"), (2, 1))


# -- the refiner CRF's step against pydensecrf's step --------------------------------------------
TINY = "crf_refiner_l4_32_t1"


def test_refiner_cases():
    assert set(QUICK_REFINER_CRF_CASES) <= set(REFINER_CRF_CASES)
    for name in QUICK_REFINER_CRF_CASES:
        case = get_refiner_crf_case(name)
        assert (case.labels, case.size, case.kernel, case.dilations) == (21, 512, 5, (1, 4, 12, 32))
    assert {get_refiner_crf_case(n).threads for n in QUICK_REFINER_CRF_CASES} == {1, 2}
    with pytest.raises(KeyError, match="known"):
        get_refiner_crf_case("crf_refiner_nope")


def test_refiner_case_is_the_shipped_refiner_crf():
    """Same kernels and edge features as pac_models' default refiner (built untrained)."""
    api = pytest.importorskip("pac_models.segmentation.api")
    case = get_refiner_crf_case(TINY)
    refiner = api.PacCrfRefiner(case.labels, api.DEFAULT_CRF)
    ours = case.crf()
    assert ours.steps[0].pairwise_repr == refiner.crf.steps[0].pairwise_repr
    assert type(ours) is type(refiner.crf)
    _, img = case.inputs()
    feats, expected = case.edge_features(img), refiner.edge_features(img)
    assert len(feats) == len(expected) == 4
    for a, b in zip(feats, expected):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)


def _check_refiner_record(rec, case, runs):
    assert (rec["case"], rec["labels"], rec["size"], rec["threads"]) == (
        case.name, case.labels, case.size, case.threads)
    assert rec["runs"] == runs and len(rec["step_times_s"]) == runs
    assert rec["step_s"] > 0 and rec["setup_s"] > 0
    assert rec["backend"] in pac_core.backends.available()


@pytest.mark.skipif(not densecrf_available(), reason="pydensecrf is not installed")
def test_time_refiner_step_against_densecrf():
    case = get_refiner_crf_case(TINY)
    before = torch.get_num_threads()
    rec = time_refiner_step(case, runs=2, warmup=0, backend="reference")
    assert torch.get_num_threads() == before
    _check_refiner_record(rec, case, 2)
    assert rec["backend"] == "reference" and rec["peer"] == "pydensecrf"
    assert len(rec["peer_step_times_s"]) == 2 and rec["peer_step_s"] > 0
    assert rec["ratio"] == pytest.approx(rec["step_s"] / rec["peer_step_s"])
    assert rec["note"] == densecrf_version() != "not installed"


def test_time_refiner_step_without_densecrf(monkeypatch, tmp_path, capsys):
    """Without pydensecrf the case still times our step and says the peer is not installed."""
    from pac_bench import densecrf

    monkeypatch.setattr(densecrf, "densecrf_available", lambda: False)
    case = get_refiner_crf_case(TINY)
    rec = time_refiner_step(case, runs=1, warmup=0)
    _check_refiner_record(rec, case, 1)
    assert rec["ratio"] is None and rec["peer_step_s"] is None
    assert rec["note"] == NOT_INSTALLED and "not installed" in rec["note"]
    table = refiner_crf_table([rec])
    assert "not installed" in table and TINY in table
    assert main(["run", "--out", str(tmp_path), "--stem", "r", "--cases", "conv_b1_c8_32_k3",
                 "--peers", "torch", "--modes", "forward", "--no-memory", "--no-plot",
                 "--runs", "1", "--warmup", "0", "--refiner-crf-cases", TINY]) == 0
    assert "not installed" in capsys.readouterr().err
    result = json.loads((tmp_path / "r.json").read_text())
    assert [r["case"] for r in result["crf_peers"]] == [TINY]
    md = (tmp_path / "r.md").read_text()
    assert "PacCRF mean-field step vs pydensecrf" in md and "not installed" in md


def test_densecrf_main_refiner_cases(tmp_path, capsys):
    from pac_bench import densecrf

    out = tmp_path / "r.json"
    assert densecrf.main(["--refiner-cases", TINY, "--runs", "1", "--warmup", "0",
                          "--json", str(out)]) == 0
    assert TINY in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [r["case"] for r in result["crf_peers"]] == [TINY]
    assert result["environment"]["pydensecrf"] == densecrf_version()
    assert "--refiner-cases" in result["environment"]["command"]
