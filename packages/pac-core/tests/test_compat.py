"""pac_core.compat.pac / pac_core.compat.paccrf: pacnet's public names, and checkpoints laid out like
pacnet's (built by hand from docs/semantics.md §4.2 / §6.1) loading with ``strict=True``."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

import pac_core
import pac_core.compat.pac as pac
import pac_core.compat.paccrf as paccrf

D = torch.float64

PAC_NAMES = ["packernel2d", "pacconv2d", "pacconv_transpose2d", "pacpool2d", "PacConv2d",
             "PacConvTranspose2d", "PacPool2d", "nd2col", "np_gaussian_2d"]
PACCRF_NAMES = ["PacCRF", "PacCRFLoose", "create_YXRGB", "create_position_feats"]


@pytest.mark.parametrize(("module", "names"), [(pac, PAC_NAMES), (paccrf, PACCRF_NAMES)])
def test_public_names(module, names):
    assert sorted(module.__all__) == sorted(names)
    for name in names:
        assert getattr(module, name) is getattr(pac_core, name), name


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed))


def test_pacnet_era_usage_runs_unchanged():
    x, g = _rand(2, 3, 8, 8).double(), _rand(2, 2, 8, 8, seed=1).double()
    conv = pac.PacConv2d(3, 4, 5, padding=2, native_impl=True).double()
    k, _ = pac.packernel2d(g, kernel_size=5, padding=2, native_impl=True)
    assert torch.allclose(conv(x, g), conv(x, None, k))
    assert torch.allclose(pac.pacconv2d(x, k, conv.weight, conv.bias, 1, 2), conv(x, g))
    up = pac.PacConvTranspose2d(3, 3, 5, stride=2, padding=2, output_padding=1, filler="linear")
    assert up.double()(x, _rand(2, 2, 16, 16).double()).shape == (2, 3, 16, 16)
    assert pac.np_gaussian_2d(3).shape == (3, 3)
    feats = paccrf.create_YXRGB(_rand(2, 3, 8, 8), yx_scale=4.0, rgb_scale=0.5)
    crf = paccrf.PacCRF(3, 2, pairwise_kernels=[dict(kernel_size=5, dilation=2)])
    assert crf(_rand(2, 3, 8, 8), feats).shape == (2, 3, 8, 8)


def test_pacconv2d_checkpoint():
    sd = OrderedDict(
        weight=_rand(4, 3, 3, 3), bias=_rand(4, seed=1), inv_alpha=torch.tensor(0.3),
        inv_lambda=torch.tensor(-0.8), smooth_kernel=_rand(1, 1, 3, 3, seed=2).abs())
    m = pac.PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="full_3")
    m.load_state_dict(sd, strict=True)
    m = m.double()
    x, g = _rand(2, 3, 7, 9, seed=3).double(), _rand(2, 2, 7, 9, seed=4).double()
    sdd = {k: v.double() for k, v in sd.items()}
    k, _ = pac.packernel2d(g, kernel_size=3, padding=1, kernel_type="inv_0.5_-1",
                           smooth_kernel_type="full_3", smooth_kernel=sdd["smooth_kernel"],
                           inv_alpha=sdd["inv_alpha"], inv_lambda=sdd["inv_lambda"])
    expected = pac.pacconv2d(x, k, sdd["weight"], sdd["bias"], 1, 1)
    assert torch.allclose(m(x, g), expected, rtol=1e-13, atol=1e-13)


def test_pacconv_transpose2d_checkpoint():
    sd = OrderedDict(
        weight=_rand(3, 4, 5, 5), bias=_rand(4, seed=1), inv_alpha=torch.tensor(1.0),
        inv_lambda=torch.tensor(-1.0), smooth_kernel=torch.full((1, 1, 3, 3), 1 / 9))
    m = pac.PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1,
                               kernel_type="inv_1_-1_fixed", smooth_kernel_type="average_3")
    m.load_state_dict(sd, strict=True)
    m = m.double()
    x, g = _rand(2, 3, 4, 5, seed=3).double(), _rand(2, 2, 8, 10, seed=4).double()
    sdd = {k: v.double() for k, v in sd.items()}
    k, _ = pac.packernel2d(g, kernel_size=5, stride=2, padding=2, output_padding=1,
                           kernel_type="inv_1_-1_fixed", smooth_kernel_type="average_3",
                           smooth_kernel=sdd["smooth_kernel"], inv_alpha=sdd["inv_alpha"],
                           inv_lambda=sdd["inv_lambda"], transposed=True)
    expected = pac.pacconv_transpose2d(x, k, sdd["weight"], sdd["bias"], 2, 2, 1)
    assert torch.allclose(m(x, g), expected, rtol=1e-13, atol=1e-13)


def test_shared_and_pool_checkpoints():
    m = pac.PacConv2d(3, 3, 3, padding=1, shared_filters=True, filler="crf_pool", bias=False)
    m.load_state_dict(OrderedDict(weight=torch.ones(1, 1, 3, 3)), strict=True)
    p = pac.PacPool2d(3, padding=1, channel_wise=True, kernel_type="inv_1_-1", out_channels=3)
    sd = OrderedDict(inv_alpha=torch.tensor([0.5, 1.0, 2.0]), inv_lambda=torch.tensor([-1.0] * 3))
    p.load_state_dict(sd, strict=True)
    p = p.double()
    x, g = _rand(2, 3, 7, 9).double(), _rand(2, 3, 7, 9, seed=1).double()
    k, _ = pac.packernel2d(g, kernel_size=3, padding=1, kernel_type="inv_1_-1", channel_wise=True,
                           inv_alpha=sd["inv_alpha"].double(), inv_lambda=sd["inv_lambda"].double())
    assert torch.allclose(p(x, g), pac.pacpool2d(x, k, 3, 1, 1), rtol=1e-13, atol=1e-13)
    with pytest.raises(RuntimeError):  # strict: a pacnet PacPool2d has no weight
        pac.PacPool2d(3).load_state_dict(OrderedDict(weight=torch.ones(1)), strict=True)


def test_paccrf_checkpoint():
    L = 4
    sd = OrderedDict([
        ("unary_weight", torch.tensor(0.9)),
        ("messengers.0.weight", _rand(L, L, 5, 5) * 0.1),
        ("messengers.1.weight", _rand(1, 1, 3, 3, seed=1).abs()),
        ("compat.1.weight", _rand(L, L, 1, 1, seed=2)),
        ("pairwise_weights.0", torch.tensor(0.5)),
        ("pairwise_weights.1", torch.tensor(0.25)),
    ])
    crf = paccrf.PacCRF(L, 1, pairwise_kernels=[
        dict(kernel_size=5, dilation=2, compat_type="4d", pairwise_weight=0.7),
        dict(kernel_size=3, dilation=1, blur=2, compat_type="2d", pairwise_weight=0.6)])
    crf.load_state_dict(sd, strict=True)
    crf = crf.double()
    u, f = _rand(2, L, 9, 11, seed=3).double(), _rand(2, 3, 9, 11, seed=4).double()
    # one mean-field step from the checkpoint tensors with the functional ops; the loaded
    # pairwise_weights are dead for these kernel types (docs/semantics.md §6.1): the constants 0.7 / 0.6 apply
    s = {k: v.double() for k, v in sd.items()}
    q = F.softmax(u, 1)
    k0, _ = pac.packernel2d(f, kernel_size=5, padding=4, dilation=2)
    m0 = pac.pacconv2d(q, k0, s["messengers.0.weight"], None, 1, 4, 2)
    fb = F.avg_pool2d(f, 2, 2, padding=1, count_include_pad=False)
    qb = F.avg_pool2d(q, 2, 2, padding=1, count_include_pad=False)
    k1, _ = pac.packernel2d(fb, kernel_size=3, padding=1)
    m1 = pac.pacconv2d(qb, k1, s["messengers.1.weight"], None, 1, 1, 1, True)
    m1 = F.conv2d(m1, s["compat.1.weight"])
    m1 = F.interpolate(m1, scale_factor=2, mode="bilinear", align_corners=False)[:, :, 1:10, 1:12]
    expected = s["unary_weight"] * u - 0.7 * m0 - 0.6 * m1
    assert torch.allclose(crf(u, f), expected, rtol=1e-12, atol=1e-12)


def test_paccrf_loose_checkpoint_keys():
    loose = paccrf.PacCRFLoose(3, 2, pairwise_kernels=dict(kernel_size=3, compat_type="potts",
                                                           spatial_filter=False))
    sd = OrderedDict()
    for t in range(2):
        sd[f"steps.{t}.unary_weight"] = torch.tensor(1.0)
        sd[f"steps.{t}.messengers.0.weight"] = torch.ones(1, 1, 3, 3)  # crf_pool buffer
        sd[f"steps.{t}.pairwise_weights.0"] = torch.tensor(-0.5 * (t + 1))
    loose.load_state_dict(sd, strict=True)
    assert loose.steps[1].pairwise_weights[0].item() == -1.0
