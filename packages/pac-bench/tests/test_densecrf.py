"""The 512×512×21 CRF case and the pydensecrf peer (skipped where pydensecrf is not installed)."""

import pytest
import torch

from pac_bench.cases import CRF_CASES, NATIVE_SUITE, get_crf_case
from pac_bench.densecrf import CRF_512, case_tensors, densecrf_available, time_densecrf


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
