import math

import numpy as np
import pytest

from pac_models.data.middlebury import block_average, load_middlebury
from pac_models.demo import main, run_demo


def test_middlebury_loader():
    s = load_middlebury()
    assert s.rgb.shape == (500, 741, 3) and s.rgb.dtype == np.uint8
    assert s.disparity.shape == (500, 741) and s.disparity.dtype == np.float32
    assert s.valid.shape == (500, 741) and s.valid.dtype == bool
    assert np.isfinite(s.disparity).all()          # the inf entries are gone...
    assert 0 < (~s.valid).sum() < 0.2 * s.valid.size  # ...and marked invalid
    assert (s.disparity[~s.valid] == 0).all()
    assert s.disparity[s.valid].min() > 0


def test_block_average_ignores_invalid():
    x = np.array([[1.0, 3.0, 5.0, 5.0], [np.inf, 2.0, 5.0, 5.0]], dtype=np.float32)
    v = np.isfinite(x)
    v[:, 2:] = False
    low, lv = block_average(x, v, 2)
    assert low.shape == (1, 2)
    assert low[0, 0] == pytest.approx(2.0) and lv.tolist() == [[True, False]]


def test_demo_on_crop(tmp_path):
    res = run_demo(tmp_path, factors=(4, 8), downscale=2, crop=(60, 100, 96, 128))
    fig = tmp_path / "joint_upsampling.png"
    assert res.figure == fig and fig.exists() and fig.stat().st_size > 1000
    assert [r.factor for r in res.results] == [4, 8]
    for r in res.results:
        assert r.bilinear.shape == r.pac.shape == r.truth.shape
        assert math.isfinite(r.rmse_bilinear) and math.isfinite(r.rmse_pac)
        assert np.isfinite(r.pac).all()
        assert np.abs(r.pac - r.bilinear).max() > 1e-3   # the guided filter did something
    assert "| ×4 |" in res.table()


def test_demo_cli(tmp_path, capsys, monkeypatch):
    import pac_models.demo as demo

    real = demo.run_demo
    monkeypatch.setattr(demo, "run_demo",
                        lambda out, factors, downscale: real(out, factors, downscale, (0, 0, 64, 64)))
    assert main(["--out", str(tmp_path), "--factors", "4"]) == 0
    out = capsys.readouterr().out
    assert "RMSE" in out and "| ×4 |" in out
