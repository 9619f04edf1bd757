"""Weights records, hash checks, safe loading, pretrained paths/URLs, pacnet key mapping."""

import json
import os
import pathlib

import pytest
import torch

from pac_models import create_model, list_models, list_pretrained, weights
from pac_models.weights import (
    CheckpointError,
    UnsafeCheckpointError,
    Weights,
    default_weights,
    list_weights,
    load_checkpoint,
    load_manifest,
    map_legacy_keys,
    register_weights,
    save_weights,
    sha256sum,
    unregister_weights,
)


@pytest.fixture(autouse=True)
def hub_dir(tmp_path, monkeypatch):
    """Keep downloads out of the user's torch hub cache."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("record", [w for w in list_weights() if w.shipped], ids=lambda w: w.name)
def test_shipped_records_hash(record):
    """Every shipped file exists, matches its sha256 and loads strictly into its model, built
    with the arguments its record names."""
    path = weights.shipped_dir() / record.file
    assert path.is_file()
    assert sha256sum(path) == record.sha256
    model = create_model(record.name, pretrained=True)
    assert not model.training


def test_only_default_weights_ship_and_every_file_has_a_record():
    shipped = [w for w in list_weights() if w.shipped]
    assert shipped and all(w.default for w in shipped)
    files = {p.name for p in weights.shipped_dir().glob("*.safetensors")}
    assert files == {w.file for w in shipped}


def test_every_record_is_well_formed():
    from pac_models import is_model

    recs = list_weights()
    assert recs  # at least pacnet's listed checkpoints
    for w in recs:
        assert is_model(w.model), w.name
        assert w.name == f"{w.model}.{w.tag}"
        assert w.licence and (w.shipped or w.url.startswith(("http://", "https://")))
        if w.non_commercial:  # third-party non-commercial files: never shipped, never default
            assert not w.shipped and not w.default
        if w.shipped:
            assert len(w.sha256) == 64
        assert "pac " not in w.recipe  # no commit hashes in recipes


def test_pacnet_records_state_licence_and_need_explicit_unverified_load():
    recs = [w for w in list_weights("pac_joint_upsample") if w.tag.startswith("pacnet_")]
    assert {w.factor for w in recs} == {4, 8, 16}
    for w in recs:
        assert "NC" in w.licence and w.url.endswith("_weights_epoch_5000.pth")
    with pytest.raises(ValueError, match="sha256"), pytest.warns(UserWarning, match="NC"):
        create_model("pac_joint_upsample.pacnet_x8_nyu", pretrained=True)


def test_pretrained_true_without_default_weights():
    with pytest.raises(ValueError, match=r"no default weights for 'djif' at factor 8.*djif\.pacnet"):
        create_model("djif", factor=8, pretrained=True)


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_pretrained_true_builds_the_architecture_of_the_default_weights(factor):
    """timm's contract: the name and the factor are enough; the builder gets the arguments the
    weights need (×16: wide_refine and reach too)."""
    record = default_weights("pac_jbu_refine", factor)
    model = create_model("pac_jbu_refine", factor=factor, pretrained=True)
    reference = create_model("pac_jbu_refine", **record.model_kwargs)
    assert model.state_dict().keys() == reference.state_dict().keys()
    loaded = load_checkpoint(weights.shipped_dir() / record.file)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in loaded.items())
    # the same through the weights name, and an argument spelled differently but equal
    by_name = create_model(record.name, pretrained=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 by_name.state_dict().values()))
    same = create_model("pac_jbu_refine", pretrained=True,
                        **{k: list(v) if isinstance(v, tuple) else v
                           for k, v in record.model_kwargs.items()})
    assert same.state_dict().keys() == model.state_dict().keys()


def test_model_tag_without_pretrained_builds_the_architecture_only():
    torch.manual_seed(0)
    model = create_model("pac_jbu_refine.x16_synthetic_v11")
    assert model.reach == (2, 3) and model.training
    loaded = load_checkpoint(weights.shipped_dir() / "pac_jbu_refine_x16_synthetic_v11.safetensors")
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in loaded.items())


def test_arguments_that_contradict_the_weights_are_an_error():
    with pytest.raises(ValueError, match="need stage=4, got stage=2"):
        create_model("pac_jbu_refine", factor=8, stage=2, pretrained=True)
    with pytest.raises(ValueError, match="need factor=16, got factor=8"):
        create_model("pac_jbu_refine.x16_synthetic_v11", factor=8, pretrained=True)
    with pytest.raises(ValueError, match=r"unknown weights.*pac_jbu_refine\.x8_synthetic_v7"):
        create_model("pac_jbu_refine.nope", pretrained=True)
    with pytest.raises(ValueError, match="names weights already"):
        create_model("pac_jbu_refine.x8_synthetic_v7", pretrained="other.pth")
    with pytest.raises(FileNotFoundError, match="neither a weights name"):
        create_model("pac_jbu_refine", pretrained="x8_synthetic_v5")


def test_list_pretrained_and_list_models_filter():
    names = list_pretrained()
    assert "pac_jbu_refine.x8_synthetic_v7" in names and "paccrf_refiner.synthetic_v5" in names
    assert names == sorted(names) and all("." in n for n in names)
    assert list_pretrained("pac_jbu_refine*") == [
        "pac_jbu_refine.x16_synthetic_area_v2", "pac_jbu_refine.x16_synthetic_v11",
        "pac_jbu_refine.x4_synthetic_v6", "pac_jbu_refine.x8_synthetic_area_v2",
        "pac_jbu_refine.x8_synthetic_v7"]
    assert "pac_jbu_refine.x16_synthetic_v11" in list_pretrained("*x16*")
    assert list_models(pretrained=True) == names
    bare = list_models(pretrained=True, include_tags=False)
    assert "pac_jbu_refine" in bare and "bilinear" not in bare and "bilinear" in list_models()
    assert list_models("pac_jbu*", include_tags=True) == list_pretrained("pac_jbu*")


def test_manifest_rejects_bad_records(tmp_path):
    good = {"model": "djif", "tag": "t", "file": "a.safetensors", "sha256": "0" * 64,
            "model_kwargs": {"factor": 8}, "default": True}

    def manifest(*records, fmt=1):
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"format": fmt, "records": list(records)}))
        return path

    assert load_manifest(manifest(good))[0].name == "djif.t"
    for file in ("../../x.safetensors", "/abs/x.safetensors", "sub/x.safetensors", "..",
                 "C:\\x.safetensors", ""):
        with pytest.raises(ValueError, match=r"bare file name|exactly one"):
            load_manifest(manifest({**good, "file": file}))
    with pytest.raises(ValueError, match="unknown fields \\['colour'\\]"):
        load_manifest(manifest({**good, "colour": 1}))
    with pytest.raises(ValueError, match="both the default of djif at factor 8"):
        load_manifest(manifest(good, {**good, "tag": "u"}))
    with pytest.raises(ValueError, match=r"two records named 'djif\.t'"):
        load_manifest(manifest(good, {**good, "default": False}))
    with pytest.raises(ValueError, match="format"):
        load_manifest(manifest(good, fmt=2))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_manifest(tmp_path / "bad.json")


def test_shipped_file_that_resolves_outside_the_folder_is_refused(tmp_path, monkeypatch):
    inside, outside = tmp_path / "weights", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    digest = save_weights(create_model("djif", factor=4), outside / "djif.safetensors")
    (inside / "djif.safetensors").symlink_to(outside / "djif.safetensors")
    monkeypatch.setattr(weights, "shipped_dir", lambda: inside)
    rec = Weights(model="djif", tag="test_link", model_kwargs={"factor": 4},
                  file="djif.safetensors", sha256=digest)
    with pytest.raises(ValueError, match="outside the weights folder"):
        weights.resolve_file(rec)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Evil()}, path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        create_model("djif", factor=4, pretrained=str(path))
    assert not marker.exists()
    # a classic os.system payload too
    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save(Shell(), path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_pretrained_path_with_pacnet_wrapping(tmp_path):
    """A DataParallel, {'state_dict': ...}-wrapped pacnet-style file loads strictly."""
    src = create_model("pac_joint_upsample_lite", factor=4)
    wrapped = {"epoch": 5000, "state_dict": {"module." + k: v for k, v in src.state_dict().items()},
               "optimizer": {"lr": 1e-6}}
    path = tmp_path / "weights_epoch_5000.pth"
    torch.save(wrapped, path)
    dst = create_model("pac_joint_upsample_lite", factor=4, pretrained=path)
    assert _same(src, dst) and not dst.training
    # plain state_dict (pacnet's actual snapshot format)
    torch.save(src.state_dict(), path)
    assert _same(src, create_model("PacJointUpsampleLite", factor=4, pretrained=str(path)))


def test_key_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "x8.pth"
    torch.save(create_model("pac_joint_upsample", factor=8).state_dict(), path)
    with pytest.raises(ValueError, match=r"up_convts\.2") as info:
        create_model("pac_joint_upsample", factor=4, pretrained=path)
    assert "shape" in str(info.value)  # branch_g.conv3 is 48 vs 32 channels


def test_map_legacy_keys_prefixes():
    t = torch.zeros(1)
    assert map_legacy_keys({"conv.weight": t}, ["backbone.conv.weight"]) == {"backbone.conv.weight": t}
    assert map_legacy_keys({"model": {"net.a": t}}, ["a"]) == {"a": t}
    with pytest.raises(ValueError):
        map_legacy_keys({"epoch": 3}, ["a"])


def test_pretrained_file_url(tmp_path, hub_dir):
    src = create_model("djif", factor=4)
    path = tmp_path / "mine.pth"
    torch.save(src.state_dict(), path)
    dst = create_model("djif", factor=4, pretrained=path.as_uri(), progress=False)
    assert _same(src, dst)
    assert any(p.name.endswith("-mine.pth") for p in (hub_dir / "checkpoints" / "pac_models").iterdir())


def test_url_record_download_and_hash(tmp_path, monkeypatch):
    """A URL record is fetched through torch.hub.download_url_to_file and hash-checked."""
    src = create_model("djif", factor=8)
    served = tmp_path / "served.safetensors"
    digest = save_weights(src, served)
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        pathlib.Path(dst).write_bytes(served.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    rec = Weights(model="djif", tag="test_x8", model_kwargs={"factor": 8},
                  url="https://example.invalid/djif_x8.safetensors", sha256=digest,
                  metrics={"nyu_rmse_cm": 9.9})
    register_weights(rec)
    bad = Weights(model="djif", tag="test_x8_bad", model_kwargs={"factor": 8},
                  url="https://example.invalid/other/djif_x8_bad.safetensors", sha256="0" * 64)
    register_weights(bad)
    try:
        assert _same(src, create_model("djif", factor=8, pretrained="djif.test_x8"))
        assert _same(src, create_model("djif.test_x8", pretrained=True))
        assert _same(src, create_model("djif", pretrained="test_x8"))  # a bare tag of the model
        assert len(calls) == 1  # cached after the first time
        with pytest.raises(ValueError, match="need factor=8"):
            create_model("djif", factor=4, pretrained="djif.test_x8")
        with pytest.raises(ValueError, match="belong to"):
            create_model("pac_joint_upsample", factor=8, pretrained="djif.test_x8")
        with pytest.raises(ValueError, match="sha256 mismatch"):
            create_model("djif", factor=8, pretrained="djif.test_x8_bad")
        assert not list(weights.cache_dir().glob("*djif_x8_bad*"))  # deleted
    finally:
        unregister_weights("djif.test_x8")
        unregister_weights("djif.test_x8_bad")


def test_registered_default_record(tmp_path, monkeypatch):
    """A default record added by a plugin: pretrained=True, hash check, corrupted file; a second
    default for the same model and factor is refused."""
    monkeypatch.setattr(weights, "shipped_dir", lambda: tmp_path)
    src = create_model("pac_joint_upsample_lite", factor=16)
    digest = save_weights(src, tmp_path / "lite_x16.safetensors")
    rec = Weights(model="pac_joint_upsample_lite", tag="test_x16", model_kwargs={"factor": 16},
                  file="lite_x16.safetensors", sha256=digest, default=True)
    register_weights(rec)
    try:
        assert _same(src, create_model("pac_joint_upsample_lite", factor=16, pretrained=True))
        assert default_weights("pac_joint_upsample_lite", 16) is rec
        assert default_weights("pac_joint_upsample_lite", 8) is None
        with pytest.raises(ValueError, match="both the default"):
            register_weights(Weights(model="pac_joint_upsample_lite", tag="test_x16_b",
                                     model_kwargs={"factor": 16}, file="lite_x16.safetensors",
                                     sha256=digest, default=True))
        (tmp_path / "lite_x16.safetensors").write_bytes(b"corrupt")
        with pytest.raises(ValueError, match="sha256 mismatch"):
            create_model("pac_joint_upsample_lite", factor=16, pretrained=True)
    finally:
        unregister_weights("pac_joint_upsample_lite.test_x16")


def test_record_validation():
    with pytest.raises(ValueError):
        Weights(model="djif", tag="x")  # neither file nor url
    with pytest.raises(ValueError):
        Weights(model="djif", tag="x", file="a.pth")  # shipped without hash
    with pytest.raises(ValueError, match="must not contain"):
        Weights(model="djif", tag="x.y", url="https://example.invalid/a.pth")
    with pytest.raises(ValueError, match="bare file name"):
        Weights(model="djif", tag="x", file="../../x.safetensors", sha256="0" * 64)
    with pytest.raises(ValueError, match="already registered"):
        register_weights(list_weights()[0])


def test_missing_path():
    with pytest.raises(FileNotFoundError):
        create_model("djif", factor=4, pretrained="/nonexistent/file.pth")


def test_files_that_are_not_checkpoints_name_the_file(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=f"{text} is not a checkpoint"):
        load_checkpoint(text)
    with pytest.raises(ValueError, match=r"notes\.pth is not a checkpoint"):
        create_model("djif", factor=4, pretrained=text)
    src = create_model("djif", factor=4)
    full = tmp_path / "full.pth"
    torch.save(src.state_dict(), full)
    for name, data in (("cut.pth", full.read_bytes()[:200]),
                       ("cut.safetensors", None)):
        path = tmp_path / name
        if data is None:
            save_weights(src, tmp_path / "full.safetensors")
            data = (tmp_path / "full.safetensors").read_bytes()[:300]
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(path)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth"):
        load_checkpoint(empty)


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_shipped_depth_weights(factor):
    """The default pac_jbu_refine weights per factor: loadable, and better than bilinear on a
    held-out synthetic scene (seed 4: neither a training seed nor the records' metrics seed, 2)."""
    import numpy as np

    from pac_models.data.synthetic import dead_leaves_scene
    from pac_models.depth import upsample
    from pac_models.depth.middlebury import center_lowres, interpolate

    rec = default_weights("pac_jbu_refine", factor)
    assert rec is not None and rec.shipped and rec.licence == "Apache-2.0"
    pairs = [(v, rec.metrics[k.replace("_rmse_m", "_bilinear_rmse_m")])
             for k, v in rec.metrics.items() if k.startswith("synthetic") and "bilinear" not in k
             and k.replace("_rmse_m", "_bilinear_rmse_m") in rec.metrics]
    assert pairs and all(ours < bilinear for ours, bilinear in pairs)
    m = create_model("pac_jbu_refine", factor=factor, pretrained=True)
    # trained features and context (a zero layer would mean a dead gradient)
    assert m.context[-1].weight.abs().sum() > 0 and m.features[-1].weight.abs().sum() > 0
    rgb, depth = dead_leaves_scene(128, 128, np.random.default_rng([4, factor]))
    low = center_lowres(depth, factor)
    ours = upsample(low, rgb, factor).numpy()           # model=None: the default weights
    bil = interpolate(low, depth.shape, "bilinear")
    assert np.sqrt(np.mean((ours - depth) ** 2)) < np.sqrt(np.mean((bil - depth) ** 2))


def test_each_depth_recipe_is_a_valid_train_command_for_its_record():
    """The ``pac-models train`` command in each shipped depth record parses with the CLI's own
    parser and builds the record's layout: the same model, factor and ``--model-arg`` values."""
    import shlex

    from pac_models._keyvalue import parse_key_values
    from pac_models.cli import build_parser

    depth = list_weights("pac_jbu_refine")
    assert len(depth) == 5
    for rec in depth:
        command = rec.recipe.split("`")[1]
        assert command.startswith("pac-models train "), rec.name
        ns = build_parser().parse_args([*shlex.split(command)[1:], "--out", "unused"])
        assert ns.model == rec.model and ns.factor == rec.factor, rec.name
        built = parse_key_values(ns.model_arg) | {"factor": ns.factor}
        assert built.keys() == rec.model_kwargs.keys(), rec.name
        assert all(weights.same_kwarg(built[k], v) for k, v in rec.model_kwargs.items()), rec.name
        # weights for area input are trained on block means
        assert (ns.sampling == "block") == (rec.sampling == "area"), rec.name
