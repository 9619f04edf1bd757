"""FCN-8s family, PAC-FCN and the CRF heads (docs/semantics.md §B.1, §B.2): keys, shapes, behaviour."""

import hashlib

import pytest
import torch

from pac_core import PacConv2d, PacCRF, PacCRFLoose
from pac_models import create_model
from pac_models.segmentation import (
    FCN8s,
    FCN8sAltPad,
    FCN8sPac,
    ModelWithConvCrf,
    ModelWithCrf,
    load_backbone_weights,
)
from pac_models.segmentation.models import bilinear_kernel

TINY = {"width": 4, "fc_channels": 8, "init": "default"}

FCN_SHAPES = {
    "conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
    "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256),
    "conv4_1": (512, 256), "conv4_2": (512, 512), "conv4_3": (512, 512),
    "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512),
}


def _expected_fcn(prefix=""):
    exp = {}
    for k, (o, i) in FCN_SHAPES.items():
        exp[f"{prefix}{k}.weight"] = (o, i, 3, 3)
        exp[f"{prefix}{k}.bias"] = (o,)
    exp.update({
        f"{prefix}fc6.weight": (4096, 512, 7, 7), f"{prefix}fc6.bias": (4096,),
        f"{prefix}fc7.weight": (4096, 4096, 1, 1), f"{prefix}fc7.bias": (4096,),
        f"{prefix}score_fr.weight": (21, 4096, 1, 1), f"{prefix}score_fr.bias": (21,),
        f"{prefix}score_pool3.weight": (21, 256, 1, 1), f"{prefix}score_pool3.bias": (21,),
        f"{prefix}score_pool4.weight": (21, 512, 1, 1), f"{prefix}score_pool4.bias": (21,),
        f"{prefix}upscore2.weight": (21, 21, 4, 4),
        f"{prefix}upscore_pool4.weight": (21, 21, 4, 4),
        f"{prefix}upscore8.weight": (21, 21, 16, 16),
    })
    return exp


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_full_size_state_dict_matches_spec():
    """fcn8s_crfi5p4d5641p4d5161 at full size: every key and shape listed in docs/semantics.md §B.2."""
    m = create_model("fcn8s_crfi5p4d5641p4d5161")
    exp = _expected_fcn("backbone.")
    exp.update({"crf.unary_weight": (), "crf.messengers.0.weight": (21, 21, 5, 5),
                "crf.messengers.1.weight": (21, 21, 5, 5), "crf.pairwise_weights.0": (),
                "crf.pairwise_weights.1": (), "feat_scales.0": (3,), "feat_scales.1": (3,)})
    assert _shapes(m) == exp
    assert torch.equal(m.feat_scales[0].detach(), torch.full((3,), 30.0))
    assert m.feat_scales[0].dtype == torch.float32
    # pacnet init: every Conv2d zero, ConvTranspose2d bilinear
    assert not m.backbone.fc6.weight.any() and not m.backbone.conv1_1.bias.any()
    assert torch.equal(m.backbone.upscore8.weight, bilinear_kernel(21, 16))


@pytest.mark.parametrize("name", ["fcn8s", "fcn8saltpad", "fcn8spac"])
def test_backbone_key_sets_identical(name):
    m = create_model(name, width=4, fc_channels=8)
    exp = {k: v for k, v in _expected_fcn().items()}
    got = _shapes(m)
    assert set(got) == set(exp)
    # with width 4 the shapes scale by 1/16 (fc by 8/4096) but keep their rank
    assert all(len(got[k]) == len(exp[k]) for k in exp)
    if name == "fcn8spac":
        for k in ("conv3_3", "conv4_3", "conv5_3"):
            assert isinstance(getattr(m, k), PacConv2d)


def test_loose_and_convcrf_keys():
    loose = create_model("fcn8s_crfi5lp4d5641p4d5161", **TINY)
    crf_keys = sorted(k for k in loose.state_dict() if not k.startswith("backbone."))
    exp = sorted([f"crf.steps.{t}.{r}" for t in range(5) for r in (
        "unary_weight", "messengers.0.weight", "messengers.1.weight", "pairwise_weights.0",
        "pairwise_weights.1")] + ["feat_scales.0", "feat_scales.1"])
    assert crf_keys == exp and isinstance(loose.crf, PacCRFLoose)
    conv = create_model("fcn8s_convcrf", **TINY)
    assert isinstance(conv, ModelWithConvCrf)
    sd = {k: tuple(v.shape) for k, v in conv.state_dict().items() if k.startswith("crf.")}
    assert sd == {"crf.unary_weight": (), "crf.messengers.0.weight": (1, 1, 11, 11),
                  "crf.messengers.1.weight": (1, 1, 11, 11),
                  "crf.compat.0.weight": (21, 21, 1, 1), "crf.compat.1.weight": (21, 21, 1, 1),
                  "crf.pairwise_weights.0": (), "crf.pairwise_weights.1": ()}
    assert "crf.messengers.0.weight" in dict(conv.named_buffers())
    two = create_model("fcn8s_crfi2p2ds312p0d313", **TINY)
    assert tuple(two.crf.messengers[0].weight.shape) == (1, 1, 3, 3)
    assert tuple(two.crf.compat[0].weight.shape) == (21, 21, 1, 1)


def test_bilinear_kernel():
    w = bilinear_kernel(2, 4)
    f = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.allclose(w[0, 0], torch.outer(f, f)) and not w[0, 1].any()
    w3 = bilinear_kernel(1, 3)[0, 0]
    assert torch.allclose(w3[1], torch.tensor([0.5, 1.0, 0.5]))


@pytest.mark.parametrize("size", [(37, 53), (64, 64)])
def test_fcn8s_any_size_and_out_crop(size):
    torch.manual_seed(0)
    m = FCN8s(3, **TINY).eval()
    x = torch.randn(2, 3, *size) * 50
    out = m(x)
    assert out.shape == (2, 3, *size)
    assert torch.equal(m(x, (20, 30)), out[:, :, :20, :30])


@pytest.mark.parametrize("cls", [FCN8sAltPad, FCN8sPac])
def test_multiple_of_32(cls):
    m = cls(3, **TINY).eval()
    assert m(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match=r"divisible by 32.*\(1, 3, 50, 64\)"):
        m(torch.randn(1, 3, 50, 64))
    with pytest.raises(ValueError, match="\\[B, 3, H, W\\]"):
        m(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="out_crop"):
        m(torch.randn(1, 3, 64, 64), (65, 10))


def test_pac_fcn_starts_near_plain_conv():
    """With the guidance scaled by 1e-4 the PAC layers act as the convs they replace."""
    torch.manual_seed(0)
    alt = FCN8sAltPad(3, **TINY).eval()
    pac = FCN8sPac(3, **TINY).eval()
    pac.load_state_dict(alt.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64) * 50
    with torch.no_grad():
        a, b = alt._trunk(x), pac._trunk(x)
        out = pac(x)
    for u, v in zip(a, b):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-4 * u.abs().max().item())
    assert out.shape == (1, 3, 64, 64)


def test_crf_head_forward_backward_and_feature_scales():
    torch.manual_seed(0)
    m = ModelWithCrf(FCN8s(4, **TINY), num_steps=2, pairwise="p4d531p0d311",
                     shared_scales=False)
    x = torch.randn(1, 3, 40, 36) * 50
    out = m(x, (33, 30))
    assert out.shape == (1, 4, 33, 30)
    out.logsumexp(1).mean().backward()
    assert m.feat_scales[0].grad is not None and m.feat_scales[0].grad.abs().sum() > 0
    feats = m.edge_features(x)
    assert torch.allclose(feats[0], x / 30.0)
    assert isinstance(m.crf, PacCRF) and m.crf.num_steps == 2
    yx = ModelWithCrf(FCN8s(4, **TINY), pairwise=("4d_5_16_1",), use_yx=True)
    assert torch.allclose(yx.feat_scales[0], torch.tensor([(4 * 16 + 1) / 4, 30.0]))
    assert yx.edge_features(x)[0].shape == (1, 5, 40, 36)
    yx5 = ModelWithCrf(FCN8s(4, **TINY), pairwise=("4d_5_16_1",), use_yx=True,
                       shared_scales=False, adaptive_init=False)
    assert yx5.feat_scales[0].tolist() == [100.0, 100.0, 30.0, 30.0, 30.0]
    assert ModelWithCrf(FCN8s(4, **TINY)).feat_scales[0].dim() == 0
    with pytest.raises(ValueError, match="TYPE"):
        ModelWithCrf(FCN8s(4, **TINY), pairwise=("5d_5_16_1",))


def test_loose_loads_shared_checkpoint_non_strictly():
    torch.manual_seed(0)
    shared = create_model("fcn8sfrozen_crfi5p4d5641p4d5161", **TINY)
    with torch.no_grad():
        shared.crf.messengers[0].weight.mul_(3.0)
    sd = {k: v for k, v in shared.state_dict().items() if not k.startswith("backbone.")}
    loose = create_model("fcn8s_crfi5lp4d5641p4d5161", **TINY)
    with pytest.raises(ValueError, match=r"shared-weight CRF.*strict=False"):
        loose.load_state_dict(sd)
    loose.load_state_dict(sd, strict=False)
    for t in range(5):
        assert torch.equal(loose.crf.steps[t].messengers[0].weight, shared.crf.messengers[0].weight)
    with pytest.raises(ValueError, match="loose CRF"):
        shared.load_state_dict(loose.state_dict())


def test_backbone_weights_vgg_and_fcn_layouts(tmp_path):
    torch.manual_seed(0)
    src = FCN8s(21, **TINY)
    fcn_file = tmp_path / "fcn8s_tiny.pth"
    torch.save(src.state_dict(), fcn_file)
    digest = hashlib.sha256(fcn_file.read_bytes()).hexdigest()
    m = create_model("fcn8s_crfi5p4d5321", width=4, fc_channels=8,
                     backbone_weights=str(fcn_file), backbone_sha256=digest)
    assert torch.equal(m.backbone.fc6.weight, src.fc6.weight)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        create_model("fcn8s", width=4, fc_channels=8, backbone_weights=str(fcn_file),
                     backbone_sha256="0" * 64)
    # torchvision VGG-16 layout (features.<i>, classifier.{0,3,6})
    names = [n for n in FCN_SHAPES]
    idx = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    vgg = {}
    for n, i in zip(names, idx):
        vgg[f"features.{i}.weight"] = getattr(src, n).weight.detach().clone()
        vgg[f"features.{i}.bias"] = getattr(src, n).bias.detach().clone()
    vgg["classifier.0.weight"] = src.fc6.weight.detach().reshape(8, -1).clone()
    vgg["classifier.0.bias"] = src.fc6.bias.detach().clone()
    vgg["classifier.3.weight"] = src.fc7.weight.detach().reshape(8, 8).clone()
    vgg["classifier.3.bias"] = src.fc7.bias.detach().clone()
    vgg["classifier.6.weight"] = torch.zeros(1000, 8)
    vgg_file = tmp_path / "vgg16.pth"
    torch.save({"state_dict": vgg}, vgg_file)
    pac = FCN8sPac(21, width=4, fc_channels=8)
    assert load_backbone_weights(pac, vgg_file) == "vgg16"
    assert torch.equal(pac.conv4_3.weight, src.conv4_3.weight)
    assert torch.equal(pac.fc6.weight, src.fc6.weight)
    assert not pac.score_fr.weight.any()  # untouched (pacnet init: zero)
    assert load_backbone_weights(pac, f"file://{fcn_file}") == "fcn8s"
    bad = tmp_path / "bad.pth"
    torch.save({"foo.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="neither an FCN-8s"):
        load_backbone_weights(pac, bad)
    with pytest.raises(ValueError, match="does not fit"):
        create_model("fcn8s", width=8, fc_channels=8, backbone_weights=str(fcn_file))
    with pytest.raises(FileNotFoundError):
        create_model("fcn8s", width=4, fc_channels=8, backbone_weights=str(tmp_path / "no"))


def test_pretrained_crf_checkpoint_loads_strictly(tmp_path):
    torch.manual_seed(0)
    a = create_model("fcn8spac_crfi5p4d5641p4d5161", **TINY)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in a.state_dict().items()}}, path)
    b = create_model("fcn8spac_crfi5p4d5641p4d5161", pretrained=str(path), width=4,
                     fc_channels=8)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not b.training


def test_invalid_constructor_args():
    with pytest.raises(ValueError, match="num_classes"):
        FCN8s(0)
    with pytest.raises(ValueError, match="init"):
        FCN8s(21, width=4, fc_channels=8, init="xavier")
    with pytest.raises(ValueError, match="frozen=True needs a CRF"):
        create_model("fcn8s", frozen=True, **TINY)
    with pytest.raises(TypeError, match="out_crop"):
        FCN8s(3, **TINY)(torch.randn(1, 3, 32, 32), "ab")
