"""The block-mean consistency step of area input (depth.consistency and upsample)."""

import numpy as np
import pytest
import torch

from pac_models.depth import upsample
from pac_models.depth.consistency import block_means, project_block_means
from pac_models.depth.middlebury import area_lowres


def _scene(factor=8, h=4, w=6, seed=0):
    """A smooth truth with a step, its block means with two holes, and a poor prediction."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h * factor, dtype=torch.float64),
                            torch.arange(w * factor, dtype=torch.float64), indexing="ij")
    truth = (0.3 + 0.01 * yy + 0.3 * (xx > 2.5 * factor))[None, None]
    low = block_means(truth, factor)
    low[0, 0, 1, 2] = float("nan")
    valid = torch.ones_like(low, dtype=torch.bool)
    valid[0, 0, 2, 4] = False
    pred = truth + 0.2 * torch.randn(truth.shape, generator=g, dtype=torch.float64)
    return truth, low, valid, pred


@pytest.mark.parametrize("spread", ["box", "bilinear"])
def test_block_means_match_valid_input_within_range_holes_untouched(spread):
    f = 8
    truth, low, valid, pred = _scene(f)
    out = project_block_means(pred, low, f, valid=valid, spread=spread)
    known = valid & ~torch.isnan(low)
    lo, hi = low[known].min(), low[known].max()
    err = (block_means(out, f) - low)[known].abs().max()
    before = (block_means(pred.clamp(lo, hi), f) - low)[known].abs().max()
    assert before > 0.05  # the test's prediction is really off
    # box: exact; bilinear (30 rounds of back-projection): most of the way
    assert err < (1e-9 if spread == "box" else 0.25 * before)
    assert out.min() >= lo and out.max() <= hi
    # the blocks of missing samples keep the (clipped) prediction
    for i, j in ((1, 2), (2, 4)):
        blk = (..., slice(i * f, i * f + f), slice(j * f, j * f + f))
        torch.testing.assert_close(out[blk], pred[blk].clamp(lo, hi), rtol=0, atol=0)
    # the error to the truth shrinks
    assert (out - truth).pow(2).mean() < 0.5 * (pred - truth).pow(2).mean()


def test_strength_bounds_and_errors():
    f = 4
    _, low, valid, pred = _scene(f, seed=1)
    full = project_block_means(pred, low, f, spread="box")
    half = project_block_means(pred, low, f, spread="box", strength=0.5)
    lo, hi = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64)
    none = project_block_means(pred, low, f, strength=0.0)
    torch.testing.assert_close(half, (none + full) / 2)
    tight = project_block_means(pred, low, f, spread="bilinear", bounds=(lo, hi))
    assert tight.min() >= 0.4 and tight.max() <= 0.5
    with pytest.raises(ValueError, match="spread"):
        project_block_means(pred, low, f, spread="nearest")
    with pytest.raises(ValueError, match="strength"):
        project_block_means(pred, low, f, strength=1.5)
    with pytest.raises(ValueError, match="pred must be"):
        project_block_means(pred, low, 8)
    with pytest.raises(ValueError, match="valid must be"):
        project_block_means(pred, low, f, valid=valid[..., :2])
    with pytest.raises(ValueError, match="lo must not exceed hi"):
        project_block_means(pred, low, f, bounds=(hi, lo))


def test_upsample_area_output_keeps_the_block_means():
    rng = np.random.default_rng(0)
    f = 8
    yy, xx = np.mgrid[0:32, 0:48].astype(np.float64)
    depth = 2.0 + 0.02 * yy + 1.5 * (xx > 20) + 0.05 * np.sin(xx / 3)
    low = area_lowres(depth, f)
    valid = np.ones_like(low, bool)
    valid[1, 2] = False
    rgb = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    kw = dict(model="pac_refine", sampling="area", valid=valid)
    out = upsample(low, rgb, f, consistency="box", **kw).double()
    got = block_means(out[None, None], f)[0, 0].numpy()
    np.testing.assert_allclose(got[valid], low[valid], rtol=1e-5)
    assert out.min() >= np.float32(low[valid].min()) and out.max() <= np.float32(low[valid].max())
    plain = upsample(low, rgb, f, consistency="none", **kw)
    default = upsample(low, rgb, f, **kw)  # the default step for area input
    assert not torch.equal(default, plain)
    torch.testing.assert_close(default[8:16, 16:24], plain[8:16, 16:24])  # the hole's block
    with pytest.raises(ValueError, match="needs sampling='area'"):
        upsample(low, rgb, f, model="pac_refine", consistency="box")
    with pytest.raises(ValueError, match="consistency must be"):
        upsample(low, rgb, f, model="pac_refine", sampling="area", consistency="exact")


def test_cli_upsample_consistency(tmp_path):
    import imageio.v3 as iio

    from pac_models.cli import main

    rng = np.random.default_rng(1)
    d = rng.uniform(0.5, 3.0, (4, 6)).astype(np.float32)
    np.save(tmp_path / "d.npy", d)
    iio.imwrite(tmp_path / "rgb.png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    args = ["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
            "--factor", "8", "--model", "pac_refine", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "o.npy"), "--sampling", "area",
                 "--consistency", "box"]) == 0
    ref = upsample(d.astype(np.float64), iio.imread(tmp_path / "rgb.png"), 8,
                   model="pac_refine", sampling="area", consistency="box")
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), ref.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(SystemExit, match="needs sampling='area'"):
        main([*args, "--out", str(tmp_path / "o2.npy"), "--consistency", "bilinear"])
