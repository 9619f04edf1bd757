"""Sample assembly, NYU / Sintel readers on tiny files in the real formats, synthetic scenes."""

import numpy as np
import pytest
import torch

from pac_models.data import (
    AssembleJointUpsamplingInputs,
    NYUDepthV2,
    SceneConfig,
    SintelFlow,
    SyntheticScenes,
    dead_leaves_scene,
    make_lowres,
    nyu_indices,
    read_flo,
    sintel_split_labels,
    write_flo,
)


@pytest.mark.parametrize("f,off", [(4, 1), (8, 3), (16, 7)])
def test_center_lowres_offsets(f, off):
    x = np.arange(32 * 48, dtype=np.float32).reshape(32, 48)
    low = make_lowres(x, f, "center")
    assert low.shape == (32 // f, 48 // f)
    np.testing.assert_array_equal(low, x[off::f, off::f])
    np.testing.assert_array_equal(make_lowres(x, f, "last"), x[f - 1::f, f - 1::f])


def test_lowres_resize_modes_and_odd_sizes():
    x = np.random.default_rng(0).random((2, 30, 41)).astype(np.float32)
    for mode in ("bilinear", "bicubic", "nearest", "center", "area"):
        assert make_lowres(x, 8, mode).shape == (2, 4, 6)
    const = np.full((16, 16), 3.0, np.float32)
    np.testing.assert_allclose(make_lowres(const, 4, "bilinear"), 3.0, rtol=1e-6)
    with pytest.raises(ValueError):
        make_lowres(x, 4, "box")


def test_assemble_crop_flip_normalise():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (3, 40, 48), dtype=np.uint8)
    t = rng.uniform(1, 5, (40, 48)).astype(np.float32)
    tf = AssembleJointUpsamplingInputs(8, crop=32, flip=True, output_crop=2)
    s = tf(g, t, np.random.default_rng(1))
    assert s.low.shape == (1, 4, 4) and s.guide.shape == (3, 32, 32) and s.target.shape == (1, 28, 28)
    assert s.low.min() == 0 and s.low.max() == 1 and s.raw_range.shape == (1, 2)
    assert s.guide.dtype == torch.float32 and s.guide.max() <= 1
    # the crop window is shared: the low-res samples are the target's centre samples
    lo, hi = s.raw_range[0]
    full = s.target[0]  # border 2 removed: target pixel (y, x) is crop pixel (y+2, x+2)
    np.testing.assert_allclose(s.low[0, 1, 1] * (hi - lo) + lo, full[8 + 3 - 2, 8 + 3 - 2], rtol=1e-5)
    assert len(AssembleJointUpsamplingInputs(4, normalize_target=False)(g, t).as_tuple()) == 3
    const = AssembleJointUpsamplingInputs(4, flip=False)(g, np.full((40, 48), 2.0, np.float32))
    assert torch.allclose(const.raw_range, torch.tensor([[1.5, 2.5]]))
    with pytest.raises(ValueError):
        AssembleJointUpsamplingInputs(8, crop=30)
    with pytest.raises(ValueError):
        AssembleJointUpsamplingInputs(8, crop=64)(g, t)


def test_assemble_d4_shows_all_symmetries_consistently():
    # a target whose values are its pixel index: each sample tells which symmetry was drawn
    size, f = 16, 4
    t = np.arange(size * size, dtype=np.float32).reshape(size, size)
    g = np.stack([t.astype(np.uint8), (t // 256).astype(np.uint8), np.zeros_like(t, np.uint8)])
    syms = {"id": t, "h": t[:, ::-1], "v": t[::-1], "hv": t[::-1, ::-1], "t": t.T,
            "ht": t[:, ::-1].T, "vt": t[::-1].T, "hvt": t[::-1, ::-1].T}
    tf = AssembleJointUpsamplingInputs(f, crop=size, flip=True, d4=True, normalize_target=False)
    seen = set()
    for seed in range(64):
        s = tf(g, t, np.random.default_rng(seed))
        out = s.target[0].numpy()
        name = next(k for k, v in syms.items() if np.array_equal(out, v))
        seen.add(name)
        # guidance moved with the target; low-res = centre samples of the moved target
        np.testing.assert_array_equal(s.guide[0].numpy() * 255, out.astype(np.uint8))
        c = (f - 1) // 2  # make_lowres centre rows/cols
        np.testing.assert_array_equal(s.low[0].numpy(), out[c::f, c::f])
    assert seen == set(syms)
    # without d4 only the horizontal flip, with the same random draws as before
    plain = AssembleJointUpsamplingInputs(f, crop=size, flip=True, normalize_target=False)
    for seed in range(8):
        a = plain(g, t, np.random.default_rng(seed)).target[0].numpy()
        b = tf(g, t, np.random.default_rng(seed)).target[0].numpy()
        assert any(np.array_equal(a, syms[k]) for k in ("id", "h"))
        assert np.array_equal(a, b) or np.array_equal(a, b[::-1]) or np.array_equal(a, b.T) \
            or np.array_equal(a, b.T[::-1])
    with pytest.raises(ValueError, match="square"):
        AssembleJointUpsamplingInputs(f, d4=True)(g[:, :, :12], t[:, :12])


def test_nyu_reader(nyu_file):
    path, rgb, depth = nyu_file
    assert nyu_indices("train", 1449) == list(range(1000))
    assert nyu_indices("test", 1449) == list(range(1000, 1449))
    assert nyu_indices("val", 1449, val_ratio=0.1) == list(range(900, 1000))
    assert len(nyu_indices("train", 1449, val_ratio=0.1)) == 900
    ds = NYUDepthV2(path, split="test", factor=4, train_size=3)
    assert len(ds) == 2
    r, d = ds.raw(0)
    np.testing.assert_array_equal(r, rgb[3])  # transposed back to H×W
    np.testing.assert_array_equal(d, depth[3])
    s = ds[1]
    assert s.low.shape == (1, 6, 8) and s.guide.shape == (3, 24, 32)
    assert s.target.shape == (1, 12, 20)  # 6-pixel evaluation border
    lo, hi = s.raw_range[0]
    np.testing.assert_allclose(s.low[0] * (hi - lo) + lo, depth[4][1::4, 1::4], rtol=1e-5)
    import pickle

    assert len(pickle.loads(pickle.dumps(ds))) == 2  # DataLoader workers reopen the file
    with pytest.raises(FileNotFoundError):
        NYUDepthV2(path.parent / "missing.mat")


def test_flo_roundtrip_and_errors(tmp_path):
    fl = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", fl)
    raw = (tmp_path / "a.flo").read_bytes()
    assert raw[:4] == b"PIEH" and len(raw) == 12 + 5 * 7 * 2 * 4
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), fl)
    (tmp_path / "b.flo").write_bytes(b"XXXX" + raw[4:])
    with pytest.raises(ValueError, match="magic"):
        read_flo(tmp_path / "b.flo")
    (tmp_path / "c.flo").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match="expected"):
        read_flo(tmp_path / "c.flo")


def test_sintel_split_rule_counts():
    """The rule reproduces the published split's sizes on Sintel's real sequence lengths."""
    lengths = {"alley_1": 49, "alley_2": 49, "ambush_2": 20, "ambush_4": 32, "ambush_5": 49,
               "ambush_6": 19, "ambush_7": 49, "bamboo_1": 49, "bamboo_2": 49, "bandage_1": 49,
               "bandage_2": 49, "cave_2": 49, "cave_4": 49, "market_2": 49, "market_5": 49,
               "market_6": 39, "mountain_1": 49, "shaman_2": 49, "shaman_3": 49, "sleeping_1": 49,
               "sleeping_2": 49, "temple_2": 49, "temple_3": 49}
    pairs = [(s, i) for s in sorted(lengths) for i in range(lengths[s])]
    labels = sintel_split_labels(pairs)
    assert len(labels) == 1041 and labels.count(2) == 133 and labels.count(1) == 908
    bamboo = [lab for (s, _), lab in zip(pairs, labels) if s == "bamboo_2"]
    assert bamboo == [1] * 24 + [2] * 25


def test_sintel_reader(tmp_path, sintel_writer):
    flows = sintel_writer(tmp_path, {"ambush_6": 2, "bamboo_2": 3, "alley_1": 2})
    val = SintelFlow(tmp_path, split="val", factor=4)
    train = SintelFlow(tmp_path, split="train", factor=4, pass_name="Sintel-final")
    assert len(val) == 5 and len(train) == 2 and train.pass_name == "final"
    assert val.keys[0] == ("ambush_6", 0)
    s = val[0]
    assert s.low.shape == (2, 4, 6) and s.target.shape == (2, 16, 24) and s.guide.shape == (3, 16, 24)
    np.testing.assert_array_equal(s.target.numpy(), flows[("ambush_6", 0)].transpose(2, 0, 1))
    (tmp_path / "split.txt").write_text("1\n1\n2\n2\n1\n1\n1\n")
    assert len(SintelFlow(tmp_path, split="val", split_file=tmp_path / "split.txt")) == 2
    with pytest.raises(ValueError):
        SintelFlow(tmp_path, pass_name="dusty")


def test_dead_leaves_scene_properties():
    rgb, depth = dead_leaves_scene(96, 128, 3)
    assert rgb.shape == (96, 128, 3) and rgb.dtype == np.uint8
    assert depth.shape == (96, 128) and depth.dtype == np.float32
    assert 0.5 <= depth.min() and depth.max() <= 10.0
    r2, d2 = dead_leaves_scene(96, 128, 3)
    assert np.array_equal(rgb, r2) and np.array_equal(depth, d2)  # deterministic per seed
    assert not np.array_equal(rgb, dead_leaves_scene(96, 128, 4)[0])
    # depth edges coincide with colour edges; colour edges without depth edges exist too
    col = rgb.astype(np.float32).mean(axis=2)
    dz = np.abs(np.diff(depth, axis=1)) > 0.05 * depth[:, 1:]
    dc = np.abs(np.diff(col, axis=1)) > 8
    dc = dc | np.roll(dc, 1, axis=1) | np.roll(dc, -1, axis=1)  # anti-aliasing spreads edges by 1px
    assert dz.sum() > 20
    assert (dz & dc).sum() / dz.sum() > 0.8
    assert (dc & ~dz).sum() > dz.sum()


def test_dead_leaves_noise_free_is_piecewise_smooth():
    cfg = SceneConfig(read_noise=0.0, shot_noise=0.0, stripe_prob=0.0, blob_prob=0.0,
                      decal_prob=0.0, shading=0.0, blur_sigma=0.0)
    rgb, _ = dead_leaves_scene(64, 64, 0, cfg)
    flat = np.abs(np.diff(rgb.astype(int), axis=1)).max(axis=2) == 0
    assert flat.mean() > 0.7


def test_fractal_texture_option():
    """fractal_prob=0 (the default) leaves every scene as it was; the noise field is zero-mean,
    unit-std and smoother for a larger β; textured scenes keep depth within range."""
    from pac_models.data.synthetic import fractal_noise

    for seed in (0, 7):
        a = dead_leaves_scene(48, 64, seed)
        b = dead_leaves_scene(48, 64, seed, SceneConfig(fractal_prob=0.0))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    rough = fractal_noise(np.random.default_rng(0), 128, 96, 1.0)
    smooth = fractal_noise(np.random.default_rng(0), 128, 96, 3.0)
    for f in (rough, smooth):
        assert f.shape == (128, 96) and abs(f.mean()) < 1e-5 and abs(f.std() - 1) < 1e-4
    assert np.abs(np.diff(smooth, axis=1)).mean() < 0.5 * np.abs(np.diff(rough, axis=1)).mean()
    cfg = SceneConfig(fractal_prob=1.0, fractal_amplitude=(0.2, 0.2), read_noise=0.0,
                      shot_noise=0.0, stripe_prob=0.0, blob_prob=0.0, decal_prob=0.0,
                      shading=0.0, blur_sigma=0.0)
    rgb, depth = dead_leaves_scene(64, 64, 0, cfg)
    assert 0.5 <= depth.min() and depth.max() <= 10.0
    flat = np.abs(np.diff(rgb.astype(int), axis=1)).max(axis=2) == 0
    assert flat.mean() < 0.3  # textured everywhere (the plain scene is > 70 % flat, see above)


_CLEAN = dict(read_noise=0.0, shot_noise=0.0, stripe_prob=0.0, blob_prob=0.0, decal_prob=0.0,
              shading=0.0, blur_sigma=0.0)


def test_camouflage_option_lowers_colour_contrast_at_depth_edges():
    """camouflage_prob=1: shapes take nearly the colour they occlude, so depth edges carry far
    less colour contrast (measured: mean max-channel step 34 → 5 grey levels)."""
    def contrast(cam: float) -> float:
        steps = []
        for seed in range(4):
            rgb, d = dead_leaves_scene(96, 96, seed, SceneConfig(camouflage_prob=cam, **_CLEAN))
            dz = np.abs(np.diff(d, axis=1)) > 0.05
            steps.append(np.abs(np.diff(rgb.astype(int), axis=1)).max(axis=2)[dz].mean())
        return float(np.mean(steps))

    assert contrast(1.0) < 0.4 * contrast(0.0)


def test_thin_option_draws_thin_near_structures():
    """thin_prob=1: every shape is a bar 1–2 px wide; pixels nearer than both neighbours two
    pixels away (a structure under 3 px wide) become several times more common."""
    def thin_fraction(prob: float, seed: int) -> float:
        _, d = dead_leaves_scene(96, 96, seed, SceneConfig(thin_prob=prob, thin_width=(1.0, 2.0),
                                                           **_CLEAN))
        h = (d[:, 2:-2] < d[:, :-4] - 0.2) & (d[:, 2:-2] < d[:, 4:] - 0.2)
        v = (d[2:-2] < d[:-4] - 0.2) & (d[2:-2] < d[4:] - 0.2)
        return float(h.mean() + v.mean())

    plain = np.mean([thin_fraction(0.0, s) for s in range(4)])
    bars = np.mean([thin_fraction(1.0, s) for s in range(4)])
    assert bars > 3 * plain
    rgb, depth = dead_leaves_scene(64, 64, 0, SceneConfig(thin_prob=0.5, camouflage_prob=0.5))
    assert rgb.shape == (64, 64, 3) and 0.5 <= depth.min() and depth.max() <= 10.0


def test_photo_option_paints_surfaces_with_bundled_photos():
    """photo_prob=1: every surface shows a photo crop (few flat pixels, unlike the > 70 % of the
    plain scene); the bank is scikit-image's samples without the Middlebury evaluation image."""
    from pac_models.data.synthetic import PHOTO_TEXTURES, photo_textures

    assert "stereo_motorcycle" not in PHOTO_TEXTURES
    bank = photo_textures()
    assert len(bank) == len(PHOTO_TEXTURES)
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.float32 for p in bank)
    assert all(0.0 <= p.min() and p.max() <= 1.0 for p in bank)
    rgb, depth = dead_leaves_scene(64, 64, 0, SceneConfig(photo_prob=1.0, **_CLEAN))
    flat = np.abs(np.diff(rgb.astype(int), axis=1)).max(axis=2) == 0
    assert flat.mean() < 0.3
    assert 0.5 <= depth.min() and depth.max() <= 10.0 and np.isfinite(depth).all()


def _edge_offset(supersample: int, seeds: range) -> tuple[float, float]:
    """Mean (row, column) offset of the depth mask's centroid from the RGB coverage's centroid
    for one flat shape on a flat background (RGB coverage = the shape's area in each pixel)."""
    offs = []
    cfg = SceneConfig(n_shapes=(1, 1), radius=(0.15, 0.2), max_slant=0.0,
                      supersample=supersample, **_CLEAN)
    for seed in seeds:
        rgb, depth = dead_leaves_scene(64, 64, seed, cfg)
        inside = depth < depth.max()
        if inside.sum() < 50 or inside.all():
            continue
        c = rgb.astype(np.float64)
        fg, bg = c[inside & np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1)
                   & np.roll(inside, -1, 1)].mean(0), c[~inside].mean(0)
        ch = int(np.argmax(np.abs(fg - bg)))
        if abs(fg[ch] - bg[ch]) < 40:
            continue
        cov = np.clip((c[..., ch] - bg[ch]) / (fg[ch] - bg[ch]), 0, 1)
        yy, xx = np.mgrid[:64, :64]
        offs.append((yy[inside].mean() - (yy * cov).sum() / cov.sum(),
                     xx[inside].mean() - (xx * cov).sum() / cov.sum()))
    assert len(offs) >= 5
    return tuple(np.mean(offs, axis=0))


def test_supersample_3_aligns_depth_with_rgb():
    """With an odd supersampling the depth is sampled at the RGB pixel's centre; the default 2
    (kept for reproducibility) samples it ¼ px below and right of it, which shifts the depth
    mask ¼ px up-left of the colour edge."""
    dy, dx = _edge_offset(3, range(12))
    assert abs(dy) < 0.05 and abs(dx) < 0.05
    dy, dx = _edge_offset(2, range(12))
    assert -0.4 < dy < -0.1 and -0.4 < dx < -0.1
    with pytest.raises(ValueError, match="supersample"):
        SceneConfig(supersample=0)
    a = dead_leaves_scene(32, 32, 4, SceneConfig())
    b = dead_leaves_scene(32, 32, 4, SceneConfig(supersample=2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_synthetic_dataset():
    tf = AssembleJointUpsamplingInputs(4, crop=32, flip=True)
    ds = SyntheticScenes(3, (48, 48), factor=4, transform=tf, seed=5)
    a, b = ds[1], ds[1]
    assert torch.equal(a.low, b.low) and a.low.shape == (1, 8, 8)
    ds.epoch = 1
    assert len(ds) == 3
    with pytest.raises(IndexError):
        ds[3]


def test_synthetic_cache_gives_the_same_samples():
    tf = AssembleJointUpsamplingInputs(4, crop=32, flip=True)
    plain = SyntheticScenes(2, (48, 48), factor=4, transform=tf, seed=5)
    cached = SyntheticScenes(2, (48, 48), factor=4, transform=tf, seed=5, cache=True)
    for epoch in (0, 1):
        plain.epoch = cached.epoch = epoch
        for i in range(2):
            a, b = plain[i], cached[i]
            assert torch.equal(a.low, b.low) and torch.equal(a.guide, b.guide)
    assert len(cached._cache) == 2
    # the cached arrays are not modified by the transform
    rgb, depth = cached.raw(0)
    assert np.array_equal(rgb, plain.raw(0)[0]) and np.array_equal(depth, plain.raw(0)[1])
