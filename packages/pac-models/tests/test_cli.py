"""The pac-models command: list, eval, upsample, train (smoke), demo dispatch."""

import re

import numpy as np
import pytest
import torch

from pac_models import weights
from pac_models.cli import main
from pac_models.depth import upsample


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("pac_joint_upsample", "pac_joint_upsample_lite", "djif", "joint_bilateral",
                 "bilinear"):
        assert name in out
    assert ":class:" not in out and "``" not in out  # plain text, no reST
    line = next(x for x in out.splitlines() if x.startswith("pac_jbu_refine "))
    marks = " ".join(f"×{w.factor}" + ("" if w.sampling == "center" else f" {w.sampling}")
                     for w in sorted(weights.list_weights("pac_jbu_refine"),
                                     key=lambda w: (w.factor, w.sampling != "center"))
                     if w.default)
    assert f"[default weights: {marks}]" in line and "×4 ×8 ×8 area ×16" in marks
    assert main(["list", "pac_*", "--weights"]) == 0
    out = capsys.readouterr().out
    assert "djif" not in out.split("pacnet_")[0] and "CC BY-NC-SA" in out
    assert "pac_jbu_refine.x8_synthetic_v7 [default at ×8]" in out
    assert "pac_jbu_refine.x8_synthetic_area_v2 [default at ×8, sampling=area]" in out
    with pytest.raises(SystemExit) as info:
        main(["list", "nothing_*"])
    assert info.value.code == 2


def test_eval_middlebury(capsys):
    assert main(["eval", "--model", "bilinear", "--factor", "16", "--crop", "0", "0", "256",
                 "256"]) == 0
    out = capsys.readouterr().out
    assert "RMSE bilinear" in out
    ours, bil = (float(x.split()[0]) for x in out.split("RMSE bilinear ")[1].split(", bilinear "))
    assert ours == pytest.approx(bil, rel=1e-5)  # same protocol as the demo's baseline


def test_eval_nyu_file(capsys, nyu_file):
    path, _, _ = nyu_file
    assert main(["eval", "--model", "bilinear", "--factor", "4", "--dataset", "nyu", "--data",
                 str(path), "--split", "all", "--limit", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "RMSE" in out and "cm" in out and "over 2 images" in out


def test_upsample_files(tmp_path, capsys):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    np.save(tmp_path / "d.npy", rng.uniform(0.5, 3.0, (4, 6)).astype(np.float32))
    iio.imwrite(tmp_path / "rgb.png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    assert main(["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
                 "--factor", "8", "--out", str(tmp_path / "o.npy")]) == 0
    out = np.load(tmp_path / "o.npy")
    assert out.shape == (32, 48) and out.dtype == np.float32
    assert weights.default_weights("pac_jbu_refine", 8).name in capsys.readouterr().out
    # the shipped weights run with their ensemble unless told not to
    ref = upsample(np.load(tmp_path / "d.npy").astype(np.float64), iio.imread(tmp_path / "rgb.png"), 8)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-6, atol=1e-6)
    assert main(["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
                 "--factor", "8", "--out", str(tmp_path / "o1.npy"), "--ensemble", "none"]) == 0
    one = upsample(np.load(tmp_path / "d.npy").astype(np.float64), iio.imread(tmp_path / "rgb.png"),
                   8, ensemble="none")
    np.testing.assert_allclose(np.load(tmp_path / "o1.npy"), one.numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.load(tmp_path / "o1.npy"), out)
    iio.imwrite(tmp_path / "d.png", (np.load(tmp_path / "d.npy") * 1000).astype(np.uint16))
    assert main(["upsample", "--depth", str(tmp_path / "d.png"), "--rgb", str(tmp_path / "rgb.png"),
                 "--factor", "8", "--model", "bilinear", "--out", str(tmp_path / "o.png")]) == 0
    png = iio.imread(tmp_path / "o.png")
    assert png.dtype == np.uint16 and png.shape == (32, 48)
    d_mm = torch.from_numpy(iio.imread(tmp_path / "d.png").astype(np.float64))[None, None]
    ref = torch.nn.functional.interpolate(d_mm, scale_factor=8, mode="bilinear")[0, 0].numpy()
    assert np.abs(png.astype(float) - ref).max() <= 1.0  # millimetres in, millimetres out
    with pytest.raises(SystemExit, match="must be"):
        main(["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
              "--factor", "4", "--out", str(tmp_path / "x.npy")])


def test_train_smoke_and_resume(tmp_path, capsys):
    args = ["train", "--model", "pac_joint_upsample_lite", "--factor", "4", "--scenes", "2",
            "--scene-size", "32", "--crop", "16", "--batch-size", "2", "--eval-limit", "1",
            "--out", str(tmp_path / "run"), "--seed", "3", "--quiet"]
    assert main([*args, "--epochs", "2"]) == 0
    assert (tmp_path / "run" / "weights_epoch_2.pth").exists()
    assert (tmp_path / "run" / "checkpoint_epoch_2.pth").exists()
    first = capsys.readouterr().out
    assert "epoch 2: loss" in first and "eval rmse" in first
    assert main([*args, "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed" in out and "epoch 3: loss" in out and "epoch 2: loss" not in out
    # the snapshot is a plain state_dict that create_model loads
    from pac_models import create_model

    m = create_model("pac_joint_upsample_lite", factor=4,
                     pretrained=str(tmp_path / "run" / "weights_epoch_3.pth"))
    sd = torch.load(tmp_path / "run" / "weights_epoch_3.pth", weights_only=True)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in sd.items())


def test_train_is_reproducible(tmp_path, capsys):
    args = ["train", "--model", "djif", "--factor", "4", "--scenes", "2", "--scene-size", "32",
            "--crop", "16", "--eval-limit", "0", "--epochs", "1", "--seed", "7", "--quiet"]
    main([*args, "--out", str(tmp_path / "a")])
    main([*args, "--out", str(tmp_path / "b")])
    a = torch.load(tmp_path / "a" / "weights_epoch_1.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights_epoch_1.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_and_eval_pass_model_args(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "pac_jbu_refine", "--factor", "4", "--scenes", "2",
                 "--scene-size", "32", "--crop", "32", "--batch-size", "2", "--eval-limit", "0",
                 "--epochs", "1", "--quiet", "--cache-scenes", "--model-arg", "width=8",
                 "--model-arg", "feat_channels=2", "--out", str(run)]) == 0
    sd = torch.load(run / "weights_epoch_1.pth", weights_only=True)
    assert sd["refine.0.weight"].shape == (8, 4, 3, 3) and sd["features.2.weight"].shape[0] == 2
    assert main(["eval", "--model", "pac_jbu_refine", "--factor", "4", "--model-arg", "width=8",
                 "--model-arg", "feat_channels=2", "--weights", str(run / "weights_epoch_1.pth"),
                 "--crop", "0", "0", "64", "64"]) == 0
    assert "RMSE pac_jbu_refine" in capsys.readouterr().out


def test_train_init_weights_for_depth(tmp_path, capsys):
    """--init-weights takes a file or a weights tag (loaded non-strictly, keys reported); a value
    that is neither is a clear error."""
    common = ["train", "--model", "pac_jbu_refine", "--scenes", "2", "--scene-size", "32",
              "--crop", "32", "--batch-size", "2", "--eval-limit", "0", "--epochs", "1",
              "--quiet", "--max-steps", "1", "--lr", "0"]
    first = tmp_path / "first"
    assert main([*common, "--factor", "4", "--model-arg", "width=8", "--model-arg",
                 "feat_channels=2", "--out", str(first)]) == 0
    init = first / "weights_epoch_1.pth"
    assert main([*common, "--factor", "4", "--model-arg", "width=8", "--model-arg",
                 "feat_channels=2", "--model-arg", "context_channels=2", "--init-weights",
                 str(init), "--out", str(tmp_path / "second")]) == 0
    out = capsys.readouterr().out
    assert "missing keys ['context.0.weight'" in out and "unexpected keys none" in out
    assert "excluded keys none" in out
    a = torch.load(init, weights_only=True)
    b = torch.load(tmp_path / "second" / "weights_epoch_1.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)  # lr 0: the loaded values survive
    assert main([*common, "--factor", "4", "--model-arg", "stage=4", "--model-arg", "width=32",
                 "--model-arg", "feat_channels=8", "--model-arg", "context_channels=8",
                 "--init-weights", "pac_jbu_refine.x4_synthetic_v6",
                 "--out", str(tmp_path / "tag")]) == 0
    out = capsys.readouterr().out
    assert "loaded pac_jbu_refine.x4_synthetic_v6 non-strictly: missing keys none" in out
    excl = tmp_path / "excl"
    assert main([*common, "--factor", "4", "--model-arg", "width=8", "--model-arg",
                 "feat_channels=2", "--init-weights", str(init), "--init-exclude", "features.2.*",
                 "--init-exclude", "refine.0.bias", "--seed", "5", "--out", str(excl)]) == 0
    assert ("excluded keys ['features.2.bias', 'features.2.weight', 'refine.0.bias']"
            in capsys.readouterr().out)
    c = torch.load(excl / "weights_epoch_1.pth", weights_only=True)
    assert torch.equal(c["refine.0.weight"], a["refine.0.weight"])
    assert not torch.equal(c["features.2.weight"], a["features.2.weight"])  # a fresh draw
    with pytest.raises(SystemExit, match="neither a file nor a weights tag"):
        main([*common, "--factor", "4", "--init-weights", str(tmp_path / "nope.pth"),
              "--out", str(tmp_path / "bad")])


def test_train_lr_scale_gives_matching_parameters_their_own_rate(tmp_path, capsys):
    """Adam's first step moves every parameter by about its learning rate: with
    ``--lr-scale 'up_convts.*=10'`` the stage kernels move 10× as far as the rest."""
    common = ["train", "--model", "pac_jbu_refine", "--factor", "4", "--scenes", "2",
              "--scene-size", "32", "--crop", "32", "--batch-size", "2", "--eval-limit", "0",
              "--epochs", "1", "--quiet", "--max-steps", "1", "--lr", "1e-3", "--model-arg",
              "width=8", "--model-arg", "feat_channels=2"]
    base, scaled = tmp_path / "base", tmp_path / "scaled"
    assert main([*common, "--lr", "0", "--out", str(base)]) == 0
    assert main([*common, "--lr-scale", "up_convts.*=10", "--init-weights",
                 str(base / "weights_epoch_1.pth"), "--out", str(scaled)]) == 0
    a = torch.load(base / "weights_epoch_1.pth", weights_only=True)
    b = torch.load(scaled / "weights_epoch_1.pth", weights_only=True)
    moved = {k: float((b[k] - a[k]).abs().max()) for k in a}
    assert max(moved["up_convts.0.weight"], moved["up_convts.1.weight"]) == pytest.approx(
        1e-2, rel=1e-3)
    assert max(v for k, v in moved.items() if not k.startswith("up_convts")) == pytest.approx(
        1e-3, rel=1e-3)
    state = torch.load(scaled / "checkpoint_epoch_1.pth", weights_only=True)
    assert [(g["lr"], g["lr_scale"]) for g in state["optimizer"]["param_groups"]] == [
        (1e-3, 1.0), (pytest.approx(1e-2), 10.0)]
    for bad, match in (("up_convts.*", "PATTERN=FACTOR"), ("up_convts.*=0", "positive"),
                       ("=3", "PATTERN=FACTOR"), ("up_convts.*=x", "positive"),
                       ("nothing.*=2", "matches no trainable parameter of PacJBURefine")):
        with pytest.raises(SystemExit, match=match):
            main([*common, "--lr-scale", bad, "--out", str(tmp_path / "bad")])


def test_train_scene_args(tmp_path, capsys):
    args = ["train", "--model", "bilinear", "--factor", "4", "--scenes", "2", "--scene-size",
            "32", "--crop", "16", "--eval-limit", "0", "--epochs", "1", "--quiet",
            "--max-steps", "1", "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit, match="unknown SceneConfig field"):
        main([*args, "--scene-arg", "fractal=1"])
    with pytest.raises(SystemExit, match="--scene-arg must be KEY=VALUE"):
        main([*args, "--scene-arg", "fractal_prob"])
    with pytest.raises(SystemExit, match="--scene-arg: supersample must be an integer"):
        main([*args, "--scene-arg", "supersample=0"])
    with pytest.raises(SystemExit, match="--augment d4 is only for --dataset synthetic"):
        main([*args[:-2], "--dataset", "sintel", "--data", str(tmp_path), "--augment", "d4",
              "--out", str(tmp_path / "run")])
    d4 = [*args[:-2], "--out", str(tmp_path / "d4"), "--augment", "d4"]
    d4[2] = "pac_joint_upsample_lite"
    assert main([*d4, "--scene-arg", "supersample=3"]) == 0
    assert (tmp_path / "d4" / "weights_epoch_1.pth").exists()
    from pac_models._keyvalue import scene_config
    from pac_models.cli import build_parser

    ns = build_parser().parse_args([*args, "--scene-arg", "fractal_prob=0.5", "--scene-arg",
                                    "fractal_beta=[1.5, 2.5]", "--scene-arg", "supersample=3"])
    cfg = scene_config(ns.scene_arg)
    assert cfg.fractal_prob == 0.5 and cfg.fractal_beta == (1.5, 2.5) and cfg.supersample == 3


def test_demo_subcommand_runs_both_halves(monkeypatch):
    import pac_models.demo as demo
    import pac_models.segmentation.demo as seg_demo

    seen = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(("depth", argv)) or 0)
    monkeypatch.setattr(seg_demo, "main", lambda argv: seen.append(("segmentation", argv)) or 0)
    assert main(["demo", "--out", "x", "--factors", "4", "--quiet"]) == 0
    assert seen == [("depth", ["--out", "x", "--factors", "4", "--quiet"]),
                    ("segmentation", ["--out", "x", "--quiet"])]


def _fails(capsys, argv, match):
    """``main(argv)`` exits with 2 after one line on stderr matching ``match``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(match, err), err


def test_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import imageio.v3 as iio

    import pac_models.cli as cli

    rng = np.random.default_rng(0)
    np.save(tmp_path / "d.npy", rng.uniform(0.5, 3.0, (4, 6)))
    iio.imwrite(tmp_path / "rgb.png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    (tmp_path / "notes.pth").write_text("not weights")
    up = ["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
          "--factor", "8", "--quiet"]
    out = ["--out", str(tmp_path / "o.npy")]
    # every check runs before any model is built or run
    monkeypatch.setattr(cli, "upsample", lambda *a, **k: pytest.fail("computed"))
    _fails(capsys, [*up[:2], str(tmp_path / "none.npy"), *up[3:], *out], "none.npy: no such file")
    _fails(capsys, [*up[:4], str(tmp_path / "d.npy"), *up[5:], *out], "cannot read it as an image")
    _fails(capsys, [*up, "--out", str(tmp_path / "o.tiff")], r"--out must end in \.npy or \.png")
    _fails(capsys, [*up, "--weights", str(tmp_path / "notes.pth"), *out],
           "notes.pth is not a checkpoint")
    _fails(capsys, [*up, "--weights", "pac_jbu_refine.nope", *out],
           "neither a weights name")
    _fails(capsys, [*up, "--weights", "pac_jbu_refine.x4_synthetic_v6", *out],
           "need factor=4, got factor=8")
    _fails(capsys, [*up[:-2], "4", "--quiet", *out], "the image must be 16×24")
    (tmp_path / "text.npy").write_text("x")
    _fails(capsys, [*up[:2], str(tmp_path / "text.npy"), *up[3:], *out], "not a readable .npy")
    _fails(capsys, ["eval", "--dataset", "nyu", "--data", str(tmp_path / "none.mat")],
           "none.mat: no such file")
    with pytest.raises(SystemExit) as info:  # argparse: a factor it does not know
        main([*up[:-2], "5", *out])
    assert info.value.code == 2


def test_weights_without_model(tmp_path, capsys):
    """``--weights`` alone: a weights name brings its model, a file loads into the default
    model's architecture at that factor."""
    import imageio.v3 as iio

    rng = np.random.default_rng(1)
    np.save(tmp_path / "d.npy", rng.uniform(0.5, 3.0, (2, 3)))
    iio.imwrite(tmp_path / "rgb.png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    base = ["upsample", "--depth", str(tmp_path / "d.npy"), "--rgb", str(tmp_path / "rgb.png"),
            "--factor", "16", "--quiet", "--ensemble", "none"]
    assert main([*base, "--out", str(tmp_path / "a.npy")]) == 0
    assert main([*base, "--weights", "pac_jbu_refine.x16_synthetic_v11",
                 "--out", str(tmp_path / "b.npy")]) == 0
    shipped = weights.shipped_dir() / "pac_jbu_refine_x16_synthetic_v11.safetensors"
    assert main([*base, "--weights", str(shipped), "--out", str(tmp_path / "c.npy")]) == 0
    a, b, c = (np.load(tmp_path / f"{x}.npy") for x in "abc")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert "pac_jbu_refine.x16_synthetic_v11" in capsys.readouterr().out
