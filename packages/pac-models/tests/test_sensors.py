"""Sensor-like depth: area sampling, missing samples, noise (data, model, upsample, CLI)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pac_models import create_model
from pac_models.data import (
    AssembleJointUpsamplingInputs,
    SensorConfig,
    SyntheticScenes,
    aligned_area_lowres,
    make_lowres,
)
from pac_models.data.joint import normalize_lowres
from pac_models.depth import upsample
from pac_models.depth.api import _views
from pac_models.depth.middlebury import area_lowres, lowres, missing_mask, sensor_report
from pac_models.depth.models import fill_missing


def test_area_lowres_is_block_mean():
    x = np.random.default_rng(0).uniform(0, 5, (1, 16, 24)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x)[None], scale_factor=1 / 8, mode="area")[0].numpy()
    np.testing.assert_allclose(make_lowres(x, 8, "area"), ref, rtol=1e-6)
    np.testing.assert_allclose(area_lowres(x[0], 8), ref[0], rtol=1e-6)
    np.testing.assert_allclose(lowres(x[0], 8, "area"), ref[0], rtol=1e-6)
    with pytest.raises(ValueError, match="sampling"):
        lowres(x[0], 8, "bilinear")


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_aligned_area_sits_on_the_center_sample(factor):
    # on a plane, a box mean is the value at the box centre: the 'center' sample
    yy, xx = np.mgrid[0:2 * factor, 0:3 * factor].astype(np.float32)
    plane = (2.0 + 0.3 * yy - 0.2 * xx)[None]
    got = aligned_area_lowres(plane, factor)
    want = make_lowres(plane, factor, "center")
    # the first row/column repeats the border, so only the interior blocks are exact
    np.testing.assert_allclose(got[:, 1:, 1:], want[:, 1:, 1:], rtol=1e-5)


def test_sensor_config_checks_and_default_keeps_streams():
    with pytest.raises(ValueError, match="sampling"):
        SensorConfig("bilinear")
    with pytest.raises(ValueError, match="holes"):
        SensorConfig(holes=1.5)
    with pytest.raises(ValueError, match="noise"):
        SensorConfig(noise=float("nan"))
    with pytest.raises(ValueError, match="lowres_mode"):
        AssembleJointUpsamplingInputs(4, lowres_mode="bilinear", sensor=SensorConfig("area"))
    rgb = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    depth = np.random.default_rng(2).uniform(1, 3, (32, 32)).astype(np.float32)
    a = AssembleJointUpsamplingInputs(4, crop=16)(rgb, depth, np.random.default_rng(5))
    b = AssembleJointUpsamplingInputs(4, crop=16, sensor=SensorConfig())(
        rgb, depth, np.random.default_rng(5))
    torch.testing.assert_close(a.low, b.low)
    torch.testing.assert_close(a.target, b.target)


def test_sensor_samples_have_holes_noise_and_both_samplings():
    cfg = SensorConfig("mixed", holes=0.3, blob_prob=1.0, noise=0.02)
    ds = SyntheticScenes(6, (64, 64), factor=8,
                         transform=AssembleJointUpsamplingInputs(8, sensor=cfg), seed=3)
    area = center = 0
    for i in range(len(ds)):
        s = ds[i]
        nan = torch.isnan(s.low)
        assert nan.any() and nan.float().mean() <= 0.5
        v = s.low[~nan]
        assert float(v.min()) == 0.0 and float(v.max()) == 1.0  # normalised over valid samples
        assert torch.isfinite(s.raw_range).all()
    # both samplings are drawn (without noise/holes the draw is visible in the values)
    for i in range(8):
        rgb, depth = ds.raw(i % len(ds))
        s = AssembleJointUpsamplingInputs(8, flip=False, sensor=SensorConfig("mixed"))(
            rgb, depth, np.random.default_rng(i))
        low = make_lowres(depth, 8, "center")
        is_center = np.allclose(denorm(s), low)
        center += is_center
        area += not is_center
    assert area and center


def denorm(sample):
    lo, hi = sample.raw_range[0]
    return (sample.low[0] * (hi - lo) + lo).numpy()


def test_block_sampling_is_the_plain_block_mean():
    rgb, depth = SyntheticScenes(1, (64, 64), factor=8, seed=4).raw(0)
    s = AssembleJointUpsamplingInputs(8, flip=False, sensor=SensorConfig("block"))(
        rgb, depth, np.random.default_rng(0))
    np.testing.assert_allclose(denorm(s), make_lowres(depth, 8, "area"), rtol=1e-5, atol=1e-5)


def test_normalize_lowres_ignores_nan():
    x = torch.tensor([[[1.0, float("nan")], [3.0, 5.0]]])
    out, rng = normalize_lowres(x)
    torch.testing.assert_close(rng, torch.tensor([[1.0, 5.0]]))
    assert torch.isnan(out[0, 0, 1]) and float(out[0, 1, 1]) == 1.0


def test_fill_missing_fills_everything_from_valid_values():
    x = torch.arange(30, dtype=torch.float64).reshape(1, 1, 5, 6)
    valid = torch.zeros_like(x, dtype=torch.bool)
    valid[..., 0, 0] = True
    valid[..., 4, 5] = True
    out = fill_missing(torch.where(valid, x, torch.nan), valid)
    assert torch.isfinite(out).all()
    # guided: a hole takes the value of the neighbour of its colour
    g = torch.zeros(1, 3, 5, 6, dtype=torch.float64)
    g[..., :, 3:] = 1.0
    guided = fill_missing(torch.where(valid, x, torch.nan), valid, g)
    assert float(guided[0, 0, 0, 2]) == pytest.approx(0.0, abs=1e-6)
    assert float(guided[0, 0, 4, 3]) == pytest.approx(29.0, abs=1e-6)
    assert float(out.min()) >= -1e-9 and float(out.max()) <= 29.0 + 1e-9
    assert float(out[0, 0, 0, 0]) == 0.0 and float(out[0, 0, 4, 5]) == 29.0


def test_pac_jbu_refine_takes_missing_samples():
    torch.manual_seed(0)
    net = create_model("pac_jbu_refine", factor=4).eval()
    low = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    guide = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    net = net.double()
    full = net(low, guide)
    holed = low.clone()
    holed[0, 0, 2, 3] = float("nan")
    holed[0, 0, 0, :] = float("nan")
    out = net(holed, guide)
    assert torch.isfinite(out).all()
    # the untrained net is a normalised joint bilateral average: within the valid range
    v = low[~torch.isnan(holed)]
    assert float(out.min()) >= float(v.min()) - 1e-9 and float(out.max()) <= float(v.max()) + 1e-9
    # a missing sample no longer pulls its pixel towards its value
    changed = (out - full).abs()[0, 0, 8:12, 12:16]
    assert float(changed.max()) > 0
    # the shipped weights (learned kernel taps, some negative) stay bounded with many holes
    shipped = create_model("pac_jbu_refine", factor=8, pretrained=True).eval()
    g = torch.rand(1, 3, 64, 64)
    lo8 = torch.rand(1, 1, 8, 8)
    lo8[0, 0, 2:6, 1:5] = float("nan")
    lo8[0, 0, torch.rand(8, 8) < 0.2] = float("nan")
    with torch.no_grad():
        o8 = shipped(lo8, g)
    assert torch.isfinite(o8).all() and float(o8.abs().max()) < 1.5
    # gradients stay finite with holes
    low_g = holed.clone()
    net.train()
    net(low_g, guide).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_upsample_valid_mask_and_nan_agree_and_stay_in_range():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 4.0, (5, 6))
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    valid = np.ones_like(depth, bool)
    valid[1, 2] = valid[3, 4] = False
    depth[3, 4] = 100.0  # an outlier marked invalid does not matter
    with_mask = upsample(depth, rgb, 8, valid=valid, ensemble="none")
    nan = depth.copy()
    nan[~valid] = np.nan
    with_nan = upsample(nan, rgb, 8, ensemble="none")
    torch.testing.assert_close(with_mask, with_nan)
    lo, hi = depth[valid].min(), depth[valid].max()
    assert float(with_mask.min()) >= np.float32(lo) and float(with_mask.max()) <= np.float32(hi)
    # a model without its own hole handling gets the holes filled first
    bil = upsample(nan, rgb, 8, model="bilinear")
    assert torch.isfinite(bil).all()
    with pytest.raises(ValueError, match="no valid sample"):
        upsample(np.full((5, 6), np.nan), rgb, 8)
    with pytest.raises(ValueError, match="valid must be a bool mask"):
        upsample(depth, rgb, 8, valid=valid[:4])
    with pytest.raises(ValueError, match="valid must be a bool mask"):
        upsample(depth, rgb, 8, valid=valid.astype(np.uint8))
    inf = depth.copy()
    inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        upsample(inf, rgb, 8)
    with pytest.raises(ValueError, match="sampling"):
        upsample(depth, rgb, 8, sampling="bilinear")


def test_area_sampling_averages_both_half_pixel_phases():
    assert len(_views("none", "area", 8)) == 2
    assert set(_views("h", "area", 8)) == set(_views("hv", "center", 8))
    assert len(_views("d4", "area", 8)) == 8
    assert _views("none", "center", 8) == ((False, False, False),)
    for views in (_views(e, "area", 4) for e in ("none", "h", "hv", "d4")):
        assert sum(v[1] for v in views) * 2 == len(views)  # rows mirrored in half of them
        assert sum(v[2] for v in views) * 2 == len(views)
    # a block-mean map of a plane upsamples to (nearly) the plane
    yy, xx = np.mgrid[0:32, 0:48].astype(np.float64)
    plane = 2.0 + 0.05 * yy + 0.03 * xx
    rgb = np.full((32, 48, 3), 128, np.uint8)
    # (the consistency step off: the views alone; it flattens the blocks whose mean is the
    # input's min or max, since the output keeps to the input's range)
    out = upsample(area_lowres(plane, 8), rgb, 8, model="pac_refine", sampling="area",
                   consistency="none")
    assert np.abs(out.numpy() - plane)[8:-8, 8:-8].max() < 0.05


def test_sensor_report_rows():
    torch.manual_seed(0)
    net = create_model("pac_jbu_refine", factor=16).eval()
    rows = sensor_report((16,), ("area",), ((5, 3),), (0.05,), model=net, ensemble="none")
    assert len(rows) == 1
    r = rows[0]
    assert (r.factor, r.sampling, r.shift, r.missing) == (16, "area", (5, 3), 0.05)
    assert 0 < r.ratio < 2
    assert (~missing_mask((10, 10), 0.05)).sum() == 5


def test_cli_upsample_sampling_and_valid(tmp_path):
    import imageio.v3 as iio

    from pac_models.cli import main

    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 3.0, (4, 6)).astype(np.float32)
    d[1, 1] = np.nan
    np.save(tmp_path / "d.npy", d)
    mask = np.ones((4, 6), np.uint8)
    mask[2, 3] = 0
    np.save(tmp_path / "m.npy", mask)
    iio.imwrite(tmp_path / "rgb.png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    assert main(["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
                 "--factor", "8", "--out", str(tmp_path / "o.npy"), "--sampling", "area",
                 "--valid", str(tmp_path / "m.npy"), "--ensemble", "none", "--quiet"]) == 0
    out = np.load(tmp_path / "o.npy")
    ref = upsample(d.astype(np.float64), iio.imread(tmp_path / "rgb.png"), 8, sampling="area",
                   valid=mask != 0, ensemble="none")
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-6, atol=1e-6)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(SystemExit, match="--valid"):
        main(["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
              "--factor", "8", "--out", str(tmp_path / "o2.npy"), "--valid",
              str(tmp_path / "bad.npy")])
    np.save(tmp_path / "m4.npy", mask[:3])
    with pytest.raises(SystemExit, match="valid must be a bool mask"):
        main(["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
              "--factor", "8", "--out", str(tmp_path / "o3.npy"), "--valid",
              str(tmp_path / "m4.npy")])


@pytest.mark.parametrize("sampling", ["mixed", "block"])
def test_cli_train_sensor_options(tmp_path, sampling):
    from pac_models.cli import main

    assert main(["train", "--model", "pac_jbu_refine", "--factor", "4", "--scenes", "2",
                 "--scene-size", "32", "--crop", "32", "--batch-size", "2", "--eval-limit", "0",
                 "--epochs", "1", "--quiet", "--model-arg", "width=4", "--sampling", sampling,
                 "--holes", "0.2", "--hole-blobs", "0.5", "--depth-noise", "0.01",
                 "--out", str(tmp_path / "run")]) == 0
    sd = torch.load(tmp_path / "run" / "weights_epoch_1.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in sd.values())


@pytest.fixture
def area_default(tmp_path, monkeypatch):
    """A temporary area default at ×4 (random weights of the ×4 default's architecture)."""
    import shutil

    from pac_models import weights

    center = weights.default_weights("pac_jbu_refine", 4)
    shutil.copy(weights.shipped_dir() / center.file, tmp_path / center.file)
    monkeypatch.setattr(weights, "shipped_dir", lambda: tmp_path)
    torch.manual_seed(3)
    net = create_model("pac_jbu_refine", **center.model_kwargs)
    digest = weights.save_weights(net, tmp_path / "area.safetensors")
    rec = weights.Weights(model="pac_jbu_refine", tag="test_x4_area",
                          model_kwargs=center.model_kwargs, file="area.safetensors",
                          sha256=digest, default=True, sampling="area")
    weights.register_weights(rec)
    yield rec, center, net.eval()
    weights.unregister_weights(rec.name)


def test_weights_sampling_defaults(area_default):
    from pac_models import weights

    rec, center, _ = area_default
    assert center.sampling == "center"
    assert weights.default_weights("pac_jbu_refine", 4, "area") is rec
    assert weights.default_weights("pac_jbu_refine", 4) is center
    # a sampling without weights of its own falls back to the center default
    seg = weights.default_weights("paccrf_refiner")
    assert seg is not None and weights.default_weights("paccrf_refiner", None, "area") is seg
    with pytest.raises(ValueError, match="sampling must be one of"):
        weights.default_weights("pac_jbu_refine", 4, "bilinear")
    with pytest.raises(ValueError, match="unknown sampling"):
        weights.Weights(model="djif", tag="x", url="https://example.invalid/a.pth",
                        sampling="block")
    with pytest.raises(ValueError, match=r"both the default.*'area'"):
        weights.register_weights(weights.Weights(**{**rec.__dict__, "tag": "test_x4_area_b"}))
    with pytest.raises(ValueError, match="sampling must be None or one of"):
        create_model("pac_jbu_refine", factor=4, pretrained=True, sampling="nearest")
    with pytest.raises(ValueError, match="are for sampling='area'"):
        create_model(rec.name, pretrained=True, sampling="center")


def test_upsample_area_uses_the_area_weights(area_default):
    from pac_models.depth.api import select_model

    rec, center, net = area_default
    got = create_model("pac_jbu_refine", factor=4, pretrained=True, sampling="area")
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(),
                                                  net.state_dict().values()))
    assert select_model(4, "area")[1] == rec.name
    assert select_model(4, "center")[1] == center.name
    rng = np.random.default_rng(0)
    d = rng.uniform(1.0, 3.0, (6, 8))
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ref = upsample(d, rgb, 4, model=net, sampling="area", ensemble="d4")
    torch.testing.assert_close(upsample(d, rgb, 4, sampling="area"), ref)
    ref_center = upsample(d, rgb, 4, model=create_model("pac_jbu_refine", factor=4,
                                                        pretrained=True), ensemble="d4")
    torch.testing.assert_close(upsample(d, rgb, 4), ref_center)


def test_shipped_defaults_per_sampling():
    """Every factor has a 'center' default; where an 'area' default ships, upsample picks it for
    sampling='area' and keeps the 'center' one for sampling='center'."""
    from pac_models import weights
    from pac_models.depth.api import SUPPORTED_FACTORS, select_model

    area = []
    for f in SUPPORTED_FACTORS:
        center = weights.default_weights("pac_jbu_refine", f)
        assert center is not None and center.sampling == "center" and center.shipped
        rec = weights.default_weights("pac_jbu_refine", f, "area")
        assert rec is not None and rec.shipped and rec.default
        assert dict(rec.model_kwargs) == dict(center.model_kwargs)
        assert select_model(f, "area")[1] == rec.name
        assert select_model(f, "center")[1] == center.name
        if rec.sampling == "area":
            area.append(f)
            assert rec.metrics["synthetic_sensor_block_rmse_m"] > 0
    assert 8 in area
