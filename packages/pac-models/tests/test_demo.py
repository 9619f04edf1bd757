import math

import numpy as np
import pytest

from pac_models.data.middlebury import block_average, load_middlebury
from pac_models.demo import METHODS, main, run_demo


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
    res = run_demo(tmp_path, factors=(4, 8), crop=(120, 200, 128, 160))
    fig = tmp_path / "joint_upsampling.png"
    assert res.figure == fig and fig.exists() and fig.stat().st_size > 1000
    assert [r.factor for r in res.results] == [4, 8]
    for r in res.results:
        assert set(r.preds) == set(METHODS) == set(r.rmse)
        for m in METHODS:
            assert r.preds[m].shape == r.truth.shape == (128, 160)
            assert np.isfinite(r.preds[m]).all() and math.isfinite(r.rmse[m])
        # guided methods differ from bilinear (they use the image)
        assert np.abs(r.preds["ours"] - r.bilinear).max() > 1e-2
        assert np.abs(r.preds["joint_bilateral"] - r.bilinear).max() > 1e-2
    assert "| ×4 |" in res.table() and "joint_bilateral" in res.table()
    for r in res.results:   # the last column: ours / bilinear, to three decimals
        assert r.ratio == pytest.approx(r.rmse["ours"] / r.rmse["bilinear"])
        assert f"| {r.ratio:.3f} |" in res.table()
    # the sensor cases: both samplings at the own and a shifted crop, and 5 % missing samples
    cases = {(r.factor, r.sampling, r.shift, r.missing) for r in res.sensors}
    assert cases == {(f, s, sh, 0.0) for f in (4, 8) for s in ("center", "area")
                     for sh in ((0, 0), (5, 3))} | {(f, s, (0, 0), 0.05) for f in (4, 8)
                                                   for s in ("center", "area")}
    own = next(r for r in res.sensors if (r.factor, r.sampling, r.shift, r.missing)
               == (4, "center", (0, 0), 0.0))
    assert own.rmse == pytest.approx(res.results[0].rmse["ours"], rel=1e-5)
    assert "| ×8 | area | (5, 3) | 0% |" in res.sensor_table()


def test_demo_low_resolution_is_the_block_centre():
    from pac_models.depth.middlebury import center_lowres

    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    assert center_lowres(x, 4).tolist() == [[9.0, 13.0], [41.0, 45.0]]  # rows/cols 1 and 5
    assert center_lowres(x, 8).tolist() == [[27.0]]                     # row/col 3


def test_demo_cli(tmp_path, capsys, monkeypatch):
    import pac_models.demo as demo

    real = demo.run_demo
    monkeypatch.setattr(demo, "run_demo",
                        lambda out, factors, **kw: real(out, factors, (0, 0, 64, 64), **kw))
    assert main(["--out", str(tmp_path), "--factors", "4"]) == 0
    out = capsys.readouterr().out
    assert "RMSE" in out and "| ×4 |" in out
    assert "met at" not in out and "≤ 0.8×" not in out  # a table of facts, no targets
