"""The Middlebury CRF-refinement demo on a small crop, and its data."""

import numpy as np
import pytest

from pac_models.data.synthetic_seg import IGNORE_INDEX
from pac_models.segmentation import demo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_data_labels():
    rgb, labels = demo.demo_data()
    assert rgb.shape == (496, 736, 3) and rgb.dtype == np.uint8
    assert labels.shape == (496, 736)
    valid = labels != IGNORE_INDEX
    assert 0 < (~valid).sum() < 0.2 * labels.size  # Middlebury's unknown disparities
    assert set(np.unique(labels[valid])) == {0, 1}
    assert abs(labels[valid].mean() - demo.PERCENTILE / 100) < 0.02


def test_demo_on_a_crop(tmp_path):
    res = demo.run_demo(tmp_path, factors=(8, 16), crop=(150, 250, 100, 140))
    assert res.labels.shape == (96, 128)
    assert [r.factor for r in res.results] == [8, 16]
    for r in res.results:
        assert r.before.shape == r.after.shape == (96, 128)
        assert 0.0 <= r.miou_before <= 100.0 and 0.0 <= r.miou_after <= 100.0
    assert res.figure == tmp_path / "crf_refinement.png" and res.figure.stat().st_size > 1000
    table = res.table()
    assert "×8" in table and "×16" in table


def test_demo_rejects_a_factor_that_does_not_divide_the_crop_multiple(tmp_path):
    with pytest.raises(ValueError, match="divide"):
        demo.run_demo(tmp_path, factors=(5,), crop=(0, 0, 32, 32))
