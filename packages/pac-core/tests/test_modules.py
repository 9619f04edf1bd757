"""PacConv2d / PacConvTranspose2d / PacPool2d: construction (docs/semantics.md §4.1), state_dict (§4.2),
fillers (§4.3), forward (§4.4), extra_repr, and the extras (groups, padding_mode, dtypes,
channels_last)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d

torch.manual_seed(0)


def _kinds(m):
    params = dict(m.named_parameters(recurse=False))
    buffers = dict(m.named_buffers(recurse=False))
    out = {}
    for k, v in m.state_dict().items():
        out[k] = ("param" if k in params else "buffer" if k in buffers else "?", tuple(v.shape))
    return out


# -- §4.1 construction checks --------------------------------------------------------------------
@pytest.mark.parametrize("ks", [2, 4, (3, 4), (2, 3)])
def test_even_kernel_size_rejected(ks):
    with pytest.raises(ValueError, match="odd"):
        PacConv2d(3, 3, ks)
    with pytest.raises(ValueError, match="odd"):
        PacConvTranspose2d(3, 3, ks)
    with pytest.raises(ValueError, match="odd"):
        PacPool2d(ks)


@pytest.mark.parametrize("smooth", ["average_4", "full_2", "average_x", "gaussian_x", "foo_2"])
def test_even_or_non_integer_smoothing_size_rejected(smooth):
    with pytest.raises(ValueError, match="smooth_kernel_type"):
        PacConv2d(3, 3, 3, smooth_kernel_type=smooth)


def test_shared_filters_need_equal_channels():
    with pytest.raises(ValueError, match="shared_filters"):
        PacConv2d(3, 4, 3, shared_filters=True)
    with pytest.raises(ValueError, match="shared_filters"):
        PacConvTranspose2d(3, 4, 3, shared_filters=True)


def test_large_padding_accepted():
    m = PacConv2d(2, 2, 3, padding=5)
    y = m(torch.randn(1, 2, 4, 5), torch.randn(1, 1, 4, 5))
    assert y.shape == (1, 2, 4 + 10 - 2, 5 + 10 - 2)


@pytest.mark.parametrize("filler", ["pool", "crf_pool"])
def test_pool_fillers_need_shared_filters(filler):
    with pytest.raises(ValueError, match="shared_filters"):
        PacConv2d(3, 3, 3, filler=filler)


@pytest.mark.parametrize(
    "kernel_type", ["gaussian_asym", "foo", "inv_a_b", "inv_1", "Gaussian", "inv"]
)
def test_invalid_kernel_type(kernel_type):
    with pytest.raises(ValueError, match="kernel_type"):
        PacConv2d(3, 3, 3, kernel_type=kernel_type)


@pytest.mark.parametrize(
    "kernel_type", ["inv_1_-1_fixed", "inv_0.5_-1", "inv_0.2_0.3_asym", "inv_1_2_asym_fixed"]
)
def test_valid_inv_kernel_types(kernel_type):
    m = PacConv2d(3, 3, 3, kernel_type=kernel_type)
    alpha, lam = (float(v) for v in kernel_type.split("_")[1:3])
    assert m.inv_alpha_init == alpha and m.inv_lambda_init == lam


def test_channel_wise_learnable_inv_needs_out_channels():
    with pytest.raises(ValueError, match="out_channels"):
        PacPool2d(3, kernel_type="inv_0.5_-1", channel_wise=True)
    PacPool2d(3, kernel_type="inv_0.5_-1_fixed", channel_wise=True)  # fixed: fine
    PacPool2d(3, kernel_type="inv_0.5_-1", channel_wise=True, out_channels=4)


@pytest.mark.parametrize("smooth", ["median_3", "foo", "gauss", "average"])
def test_invalid_smoothing_type(smooth):
    with pytest.raises(ValueError, match="smooth_kernel_type"):
        PacConv2d(3, 3, 3, smooth_kernel_type=smooth)


def test_invalid_filler():
    with pytest.raises(ValueError, match="filler"):
        PacConv2d(3, 3, 3, filler="xavier")


def test_check_order():
    """Errors follow docs/semantics.md §4.1: kernel size, smoothing size, shared, filler, kernel type,
    smoothing type, then the filler requirements."""
    with pytest.raises(ValueError, match="kernel_size"):
        PacConv2d(3, 4, 4, shared_filters=True, smooth_kernel_type="average_4")
    with pytest.raises(ValueError, match="smooth"):
        PacConv2d(3, 4, 3, shared_filters=True, smooth_kernel_type="average_4")
    with pytest.raises(ValueError, match="shared_filters"):
        PacConv2d(3, 4, 3, shared_filters=True, kernel_type="foo")
    with pytest.raises(ValueError, match="filler='pool'"):
        PacConv2d(3, 3, 3, filler="pool", kernel_type="foo")
    with pytest.raises(ValueError, match="kernel_type"):
        PacConv2d(3, 3, 3, kernel_type="foo", smooth_kernel_type="bar")
    with pytest.raises(ValueError, match="smooth_kernel_type"):
        PacConv2d(3, 3, 3, smooth_kernel_type="bar", filler="nope")
    with pytest.raises(ValueError, match="filler"):
        PacConv2d(3, 3, 3, filler="nope")


def test_groups_and_padding_mode_checks():
    with pytest.raises(ValueError, match="groups"):
        PacConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="groups"):
        PacConv2d(4, 4, 3, groups=0)
    with pytest.raises(ValueError, match="groups"):
        PacConv2d(4, 4, 3, groups=2, shared_filters=True)
    with pytest.raises(ValueError, match="padding_mode"):
        PacConv2d(4, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding_mode"):
        PacConvTranspose2d(4, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode"):
        PacPool2d(3, padding_mode="foo")
    PacConv2d(4, 6, 3, groups=2, padding_mode="circular")


def test_signatures_and_attributes():
    m = PacConv2d(3, 4, 3)
    assert (m.stride, m.padding, m.dilation, m.output_padding) == ((1, 1), (0, 0), (1, 1), (0, 0))
    assert m.kernel_size == (3, 3) and not m.transposed and not m.pool_only
    assert (m.kernel_type, m.smooth_kernel_type, m.filler) == ("gaussian", "none", "uniform")
    assert not (m.channel_wise or m.normalize_kernel or m.shared_filters or m.native_impl)
    assert (m.groups, m.padding_mode) == (1, "zeros")
    t = PacConvTranspose2d(3, 4, (3, 5), 2, 1, 1, 2)
    assert (t.kernel_size, t.stride, t.padding, t.output_padding, t.dilation) == (
        (3, 5), (2, 2), (1, 1), (1, 1), (2, 2))
    assert t.transposed
    p = PacPool2d(3)
    assert p.stride == (1, 1)  # pacnet default, unlike nn.AvgPool2d
    assert p.pool_only and p.in_channels == -1 and p.out_channels == -1 and p.filler is None
    assert not hasattr(p, "weight") and not hasattr(p, "bias")
    # positional order of the pacnet arguments
    m = PacConv2d(3, 4, 3, 2, 1, 1, False, "inv_1_-1", "gaussian", True, False, "uniform", True)
    assert m.bias is None and m.kernel_type == "inv_1_-1" and m.normalize_kernel and m.native_impl
    p = PacPool2d(3, 2, 1, 1, "gaussian", "none", True, True, 5, False)
    assert p.channel_wise and p.normalize_kernel and p.out_channels == 5


# -- §4.2 parameters, buffers, state_dict --------------------------------------------------------
def test_state_dict_conv_full():
    m = PacConv2d(3, 4, 3, kernel_type="inv_0.5_-1", smooth_kernel_type="full_3")
    assert list(m.state_dict()) == ["weight", "bias", "inv_alpha", "inv_lambda", "smooth_kernel"]
    assert [n for n, _ in m.named_parameters()] == list(m.state_dict())
    assert _kinds(m) == {
        "weight": ("param", (4, 3, 3, 3)),
        "bias": ("param", (4,)),
        "inv_alpha": ("param", ()),
        "inv_lambda": ("param", ()),
        "smooth_kernel": ("param", (1, 1, 3, 3)),
    }
    for v in m.state_dict().values():
        assert v.dtype == torch.float32
    assert m.inv_alpha.item() == 0.5 and m.inv_lambda.item() == -1.0
    assert torch.all(m.smooth_kernel == torch.tensor(1 / 9, dtype=torch.float32))


def test_state_dict_variants():
    assert _kinds(PacConv2d(3, 4, 5, bias=False)) == {"weight": ("param", (4, 3, 5, 5))}
    assert PacConv2d(3, 4, 5, bias=None).bias is None
    assert _kinds(PacConv2d(3, 3, 3, shared_filters=True)) == {
        "weight": ("param", (1, 1, 3, 3)), "bias": ("param", (3,))}
    assert _kinds(PacConvTranspose2d(3, 4, (3, 5))) == {
        "weight": ("param", (3, 4, 3, 5)), "bias": ("param", (4,))}
    assert _kinds(PacConv2d(3, 3, 3, shared_filters=True, filler="pool", bias=False)) == {
        "weight": ("buffer", (1, 1, 3, 3))}
    assert _kinds(PacConv2d(3, 3, 3, bias=False, kernel_type="inv_1_-1_fixed",
                            smooth_kernel_type="gaussian")) == {
        "weight": ("param", (3, 3, 3, 3)), "inv_alpha": ("buffer", ()),
        "inv_lambda": ("buffer", ()), "smooth_kernel": ("buffer", (1, 1, 3, 3))}
    assert _kinds(PacPool2d(3, kernel_type="inv_1_-1", channel_wise=True, out_channels=5,
                            smooth_kernel_type="average_5")) == {
        "inv_alpha": ("param", (5,)), "inv_lambda": ("param", (5,)),
        "smooth_kernel": ("buffer", (1, 1, 5, 5))}
    assert _kinds(PacPool2d(3, kernel_type="inv_1_-1_fixed", channel_wise=True)) == {
        "inv_alpha": ("buffer", ()), "inv_lambda": ("buffer", ())}
    assert _kinds(PacPool2d(3)) == {}
    assert _kinds(PacConv2d(4, 6, 3, groups=2)) == {
        "weight": ("param", (6, 2, 3, 3)), "bias": ("param", (6,))}
    assert _kinds(PacConvTranspose2d(4, 6, 3, groups=2)) == {
        "weight": ("param", (4, 3, 3, 3)), "bias": ("param", (6,))}


def test_fixed_values_float32():
    m = PacConv2d(3, 3, 3, kernel_type="inv_0.2_0.3", smooth_kernel_type="average_3").double()
    assert m.inv_alpha.item() == float(np.float32(0.2))
    third = np.float32(1 / 3)
    assert torch.all(m.smooth_kernel == float(np.float32(third * third)))
    g = PacConv2d(3, 3, 3, smooth_kernel_type="gaussian").smooth_kernel[0, 0]
    v = torch.tensor([0.25, 0.5, 0.25])
    assert torch.equal(g, v[:, None] * v[None, :])


# -- §4.3 fillers ---------------------------------------------------------------------------------
def test_uniform_filler_bounds():
    torch.manual_seed(1)
    m = PacConv2d(8, 16, 3)
    sigma = 1 / np.sqrt(8 * 9)
    for t in (m.weight, m.bias):
        assert t.abs().max() <= sigma and t.abs().max() > 0.5 * sigma
    s = PacConv2d(8, 8, 3, shared_filters=True)  # σ multiplied by C_in (pacnet, L15)
    assert s.weight.abs().max() <= 8 * sigma and s.bias.abs().max() <= 8 * sigma
    assert s.bias.abs().max() > sigma
    g = PacConv2d(8, 16, 3, groups=4)  # fan-in per group
    sigma_g = 1 / np.sqrt(2 * 9)
    assert g.weight.abs().max() <= sigma_g and g.weight.abs().max() > sigma


def test_linear_filler():
    m = PacConvTranspose2d(2, 2, 5, stride=2, padding=2, output_padding=1, filler="linear")
    v = torch.tensor([0, 0.5, 1, 0.5, 0])
    expected = torch.zeros(2, 2, 5, 5)
    expected[0, 0] = expected[1, 1] = v[:, None] * v[None, :]
    assert torch.equal(m.weight.detach(), expected) and torch.all(m.bias == 0)
    m = PacConvTranspose2d(2, 2, 5, stride=2, filler="linear", normalize_kernel=True)
    v = torch.tensor([0.0, 1, 3, 1, 0])
    assert torch.equal(m.weight[1, 1].detach(), v[:, None] * v[None, :])
    s = PacConvTranspose2d(2, 2, 3, stride=2, filler="linear", shared_filters=True)
    v = torch.tensor([0.5, 1, 0.5])
    assert torch.equal(s.weight[0, 0].detach(), v[:, None] * v[None, :])
    # stride 3, k = 5 = 2s - 1: (1, 2, 3, 2, 1) / 3
    t = PacConvTranspose2d(1, 1, (5, 7), stride=(3, 2), filler="linear")
    vh = torch.tensor([1, 2, 3, 2, 1], dtype=torch.float64) / 3
    vw = torch.tensor([0, 0, 0.5, 1, 0.5, 0, 0], dtype=torch.float64)
    assert torch.equal(t.weight[0, 0].detach(), (vh[:, None] * vw[None, :]).float())
    d = PacConvTranspose2d(4, 4, 3, stride=2, filler="linear", groups=4)
    assert d.weight.shape == (4, 1, 3, 3) and torch.all(d.weight[:, 0, 1, 1] == 1)
    with pytest.raises(ValueError, match="linear"):
        PacConv2d(2, 2, 3, filler="linear")
    with pytest.raises(ValueError, match="linear"):
        PacConvTranspose2d(2, 3, 3, filler="linear")
    with pytest.raises(ValueError, match="linear"):
        PacConvTranspose2d(2, 2, 3, stride=3, filler="linear")


G3_EDGE, G3_CORNER = 1.1142924, 0.45809937
G5 = [[0.2135418, 0.5577063, 0.7680328, 0.5577063, 0.2135418],
      [0.5577063, 1.4565597, 2.0058684, 1.4565597, 0.5577063],
      [0.7680328, 2.0058684, 0.0, 2.0058684, 0.7680328]]


def test_crf_filler_values():
    s3 = PacConv2d(3, 3, 3, shared_filters=True, filler="crf").weight[0, 0].detach()
    assert s3[1, 1] == 0 and s3[0, 1].item() == pytest.approx(G3_EDGE, abs=6e-8)
    assert s3[0, 0].item() == pytest.approx(G3_CORNER, abs=6e-9)
    assert torch.equal(s3, s3.flip(0)) and torch.equal(s3, s3.t())
    s5 = PacConv2d(2, 2, 5, shared_filters=True, filler="crf").weight[0, 0].detach().double()
    g5 = torch.tensor(G5 + G5[1::-1], dtype=torch.float64)
    assert torch.allclose(s5, g5, atol=6e-8, rtol=0)
    full = PacConv2d(3, 3, 3, filler="crf", bias=True)
    for o in range(3):
        for c in range(3):
            assert torch.equal(full.weight[o, c], torch.zeros(3, 3) if o == c else s3)
    assert torch.all(full.bias == 0)
    with pytest.raises(ValueError, match="crf"):
        PacConv2d(3, 4, 3, filler="crf")
    with pytest.raises(ValueError, match="crf"):
        PacConv2d(3, 3, (3, 5), filler="crf")


def test_crf_perturbed_filler():
    base = PacConv2d(3, 3, 3, filler="crf").weight.detach()
    pert = PacConv2d(3, 3, 3, filler="crf_perturbed").weight.detach()
    diff = pert - base
    assert diff.abs().max() <= 5e-4 and diff.abs().max() > 0 and diff[0, 0].abs().max() > 0


@pytest.mark.parametrize("filler", ["pool", "crf_pool"])
def test_pool_fillers_zero_bias(filler):
    m = PacConv2d(3, 3, 3, shared_filters=True, filler=filler, bias=True)
    expected = torch.ones(1, 1, 3, 3)
    if filler == "crf_pool":
        expected[0, 0, 1, 1] = 0
    assert torch.equal(m.weight, expected) and not isinstance(m.weight, nn.Parameter)
    assert torch.all(m.bias == 0)  # L10: pacnet leaves it uninitialised


def test_reset_parameters_restores_inv_and_smoothing():
    m = PacConv2d(3, 3, 3, kernel_type="inv_0.5_-1", smooth_kernel_type="full_5",
                  filler="crf", shared_filters=True)
    with torch.no_grad():
        m.inv_alpha.fill_(3)
        m.inv_lambda.fill_(3)
        m.smooth_kernel.fill_(3)
        m.weight.fill_(3)
    m.reset_parameters()
    assert m.inv_alpha.item() == 0.5 and m.inv_lambda.item() == -1
    assert torch.allclose(m.smooth_kernel, torch.full((1, 1, 5, 5), 1 / 25))
    assert m.weight[0, 0, 1, 1] == 0


# -- extra_repr -----------------------------------------------------------------------------------
def test_extra_repr():
    assert PacConv2d(3, 4, 3).extra_repr() == "3, 4, kernel_size=(3, 3), kernel_type=gaussian"
    r = PacConvTranspose2d(3, 3, 5, stride=2, padding=2, output_padding=1, dilation=2, bias=False,
                           kernel_type="inv_1_-1", smooth_kernel_type="gaussian",
                           normalize_kernel=True, shared_filters=True).extra_repr()
    assert r == ("3, 3, kernel_size=(5, 5), kernel_type=inv_1_-1, stride=(2, 2), "
                 "padding=(2, 2), dilation=(2, 2), output_padding=(1, 1), bias=False, "
                 "smooth_kernel_type=gaussian, normalize_kernel=True, shared_filters=True")
    p = PacPool2d(3, channel_wise=True)
    assert p.extra_repr() == "-1, -1, kernel_size=(3, 3), kernel_type=gaussian, channel_wise=True"
    assert "PacPool2d(" in repr(p)  # L9: pacnet's repr raises AttributeError
    assert "groups=2, padding_mode=reflect" in PacConv2d(2, 2, 3, groups=2,
                                                         padding_mode="reflect").extra_repr()


# -- §4.4 forward ---------------------------------------------------------------------------------
def _data(b=2, c=3, h=7, w=9, cf=2, dtype=torch.float64):
    return torch.randn(b, c, h, w, dtype=dtype), torch.randn(b, cf, h, w, dtype=dtype)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="full_3"),
        lambda: PacConv2d(3, 3, 5, stride=2, padding=2, shared_filters=True, normalize_kernel=True),
        lambda: PacPool2d(3, stride=2, padding=1, normalize_kernel=True),
        lambda: PacPool2d(3, padding=1, channel_wise=True, kernel_type="inv_1_-1",
                          out_channels=3),
    ],
)
def test_guidance_vs_precomputed_kernel(factory):
    m = factory().double()
    x, g = _data(cf=3)
    y = m(x, g)
    k, mask = m.compute_kernel(g)
    assert mask is None
    assert torch.allclose(m(x, None, k), y, rtol=1e-12, atol=1e-12)
    assert torch.allclose(m(x, g, k), y, rtol=1e-12, atol=1e-12)  # guidance ignored


def test_transposed_guidance_vs_precomputed_kernel():
    m = PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1).double()
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    g = torch.randn(2, 2, 8, 10, dtype=torch.float64)
    y = m(x, g)
    assert y.shape == (2, 4, 8, 10)
    k, _ = m.compute_kernel(g)
    assert k.shape == (2, 1, 5, 5, 8, 10)
    assert torch.allclose(m(x, None, k), y, rtol=1e-12, atol=1e-12)


def test_mask_returns_tuple():
    m = PacConv2d(3, 4, 3, padding=1).double()
    x, g = _data()
    mask = (torch.rand(2, 1, 7, 9) > 0.3).double()
    out = m(x, g, None, mask)
    assert isinstance(out, tuple) and len(out) == 2
    y, out_mask = out
    assert y.shape == (2, 4, 7, 9) and out_mask.dtype == torch.bool
    k, km = m.compute_kernel(g, mask)
    assert torch.equal(km, out_mask)
    assert torch.allclose(m(x, None, k), y)
    assert isinstance(m(x, None, k, mask), torch.Tensor)  # mask ignored with a kernel
    t = PacConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1).double()
    y, tm = t(torch.randn(2, 3, 4, 5).double(), torch.randn(2, 2, 8, 10).double(), None,
              torch.ones(2, 1, 4, 5).double())
    assert y.shape == (2, 4, 8, 10) and tm.dtype == torch.bool
    p = PacPool2d(3, padding=1, normalize_kernel=True).double()
    y, pm = p(x, g, None, mask)
    assert y.shape == x.shape and pm.dtype == torch.bool


def test_unit_kernel_relations():
    """With K ≡ 1: conv = nn.Conv2d, transposed = nn.ConvTranspose2d with a flipped weight (§3.2),
    pool = window sum (§3.3)."""
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    m = PacConv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2).double()
    ones = torch.ones(2, 1, 3, 3, 3, 4, dtype=torch.float64)
    ref = F.conv2d(x, m.weight, m.bias, stride=2, padding=1, dilation=2, groups=2)
    assert torch.allclose(m(x, None, ones), ref)
    t = PacConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2).double()
    ones = torch.ones(2, 1, 3, 3, 14, 18, dtype=torch.float64)
    ref = F.conv_transpose2d(x, t.weight.flip(-1, -2), t.bias, stride=2, padding=1,
                             output_padding=1, groups=2)
    assert torch.allclose(t(x, None, ones), ref)
    p = PacPool2d(3, stride=2, padding=1).double()
    ones = torch.ones(2, 1, 3, 3, 4, 5, dtype=torch.float64)
    ref = 9 * F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)
    assert torch.allclose(p(x, None, ones), ref)


def test_groups_equal_split_layers():
    torch.manual_seed(3)
    m = PacConv2d(4, 6, 3, padding=1, groups=2, kernel_type="inv_0.5_-1").double()
    x, g = _data(c=4)
    y = m(x, g)
    for gi in range(2):
        part = PacConv2d(2, 3, 3, padding=1, kernel_type="inv_0.5_-1").double()
        with torch.no_grad():
            part.weight.copy_(m.weight[3 * gi:3 * gi + 3])
            part.bias.copy_(m.bias[3 * gi:3 * gi + 3])
        assert torch.allclose(part(x[:, 2 * gi:2 * gi + 2], g), y[:, 3 * gi:3 * gi + 3])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode(mode):
    m = PacConv2d(3, 4, 3, padding=1, padding_mode=mode).double()
    x, g = _data()
    ones = torch.ones(2, 1, 3, 3, 7, 9, dtype=torch.float64)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), m.weight, m.bias)
    assert torch.allclose(m(x, None, ones), ref)
    y = m(x, g)
    k, _ = m.compute_kernel(g)
    assert torch.allclose(m(x, None, k), y)
    p = PacPool2d(3, padding=1, padding_mode=mode).double()
    ref = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode=mode), 3, 1) * 9
    assert torch.allclose(p(x, None, ones), ref)


def test_padding_mode_changes_border_only():
    x, g = _data()
    z = PacConv2d(3, 4, 3, padding=1).double()
    r = PacConv2d(3, 4, 3, padding=1, padding_mode="replicate").double()
    r.load_state_dict(z.state_dict())
    yz, yr = z(x, g), r(x, g)
    assert torch.allclose(yz[..., 1:-1, 1:-1], yr[..., 1:-1, 1:-1])
    assert not torch.allclose(yz, yr)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    torch.manual_seed(4)
    x, g = _data(dtype=torch.float32)
    for m in (PacConv2d(3, 4, 3, padding=1), PacPool2d(3, padding=1, normalize_kernel=True)):
        ref = m(x, g)
        y = m.to(dtype)(x.to(dtype), g.to(dtype))
        assert y.dtype == dtype
        assert torch.allclose(y.float(), ref, rtol=5e-2, atol=5e-2)
    t = PacConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
    xt, gt = torch.randn(2, 3, 4, 5), torch.randn(2, 2, 8, 10)
    ref = t(xt, gt)
    y = t.to(dtype)(xt.to(dtype), gt.to(dtype))
    assert y.dtype == dtype and torch.allclose(y.float(), ref, rtol=5e-2, atol=5e-2)


def test_channels_last():
    x, g = _data(dtype=torch.float32)
    for m in (PacConv2d(3, 4, 3, padding=1), PacPool2d(3, padding=1)):
        ref = m(x, g)
        y = m(x.to(memory_format=torch.channels_last), g.to(memory_format=torch.channels_last))
        assert torch.allclose(y, ref, atol=1e-5)
    t = PacConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
    xt, gt = torch.randn(2, 3, 4, 5), torch.randn(2, 2, 8, 10)
    ref = t(xt, gt)
    cl = torch.channels_last
    assert torch.allclose(t(xt.to(memory_format=cl), gt.to(memory_format=cl)), ref, atol=1e-5)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="full_3"),
        lambda: PacConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1,
                                   kernel_type="inv_1_-1_fixed", smooth_kernel_type="gaussian"),
        lambda: PacConv2d(3, 3, 3, padding=1, shared_filters=True, filler="crf_pool"),
        lambda: PacPool2d(3, padding=1, channel_wise=True, kernel_type="inv_1_-1",
                          out_channels=3, smooth_kernel_type="average_3"),
    ],
)
def test_state_dict_round_trip(factory):
    torch.manual_seed(5)
    a = factory().double()
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    b = factory().double()
    b.load_state_dict(a.state_dict(), strict=True)
    transposed = isinstance(a, PacConvTranspose2d)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    g = torch.randn(2, 3, 8, 10, dtype=torch.float64) if transposed else torch.randn(
        2, 3, 4, 5, dtype=torch.float64)
    assert torch.equal(a(x, g), b(x, g))


def test_pool_channel_checks():
    x, g = _data()
    with pytest.raises(ValueError, match="channel"):
        PacPool2d(3, padding=1, channel_wise=True)(x, g)  # 2 guidance channels, 3 input
    with pytest.raises(ValueError, match="out_channels"):
        PacPool2d(3, padding=1, out_channels=4)(x, g)
    k = torch.ones(2, 2, 3, 3, 7, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="channel"):
        PacPool2d(3, padding=1, channel_wise=True)(x, None, k)


def test_gradients_reach_learnable_kernel_parameters():
    m = PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1", smooth_kernel_type="full_3")
    x, g = _data(dtype=torch.float32)
    m(x, g).square().sum().backward()
    for name in ("weight", "bias", "inv_alpha", "inv_lambda", "smooth_kernel"):
        assert getattr(m, name).grad is not None, name
