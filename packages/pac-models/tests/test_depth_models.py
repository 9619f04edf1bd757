"""Every registered model at every factor: forward shapes, state_dict keys/shapes against docs/semantics.md."""

import numpy as np
import pytest
import torch

from pac_models import create_model, list_models
from pac_models.depth import JointBilateral, PacJointUpsample, PacJointUpsampleLite

FACTORS = (4, 8, 16)


def conv(name, c_out, c_in, k):
    return {f"{name}.weight": (c_out, c_in, k, k), f"{name}.bias": (c_out,)}


def pac_keys(t, g, fc, u):
    """Expected keys of docs/semantics.md §A.2 from the channel tuples T, G, Fc (5x5 everywhere)."""
    keys = {}
    for l in range(1, len(t)):
        keys.update(conv(f"branch_t.conv{l}", t[l], t[l - 1], 5))
    for l in range(1, len(g)):
        keys.update(conv(f"branch_g.conv{l}", g[l], g[l - 1], 5))
    for i in range(u):  # transposed: weight [C_in, C_out, 5, 5]
        keys[f"up_convts.{i}.weight"] = (fc[i], fc[i + 1], 5, 5)
        keys[f"up_convts.{i}.bias"] = (fc[i + 1],)
    for l in range(1, len(fc) - u):
        keys.update(conv(f"branch_f.conv{l}", fc[u + l], fc[u + l - 1], 5))
    return keys


# docs/semantics.md §A.3 table "resulting layers"
LITE = {
    4: ((1, 12, 16, 22), (3, 12, 22, 24), (22, 12, 16, 22, 1)),
    8: ((1, 12, 16, 16), (3, 12, 16, 36), (16, 12, 16, 16, 20, 1)),
    16: ((1, 8, 16, 16), (3, 8, 16, 40), (16, 8, 16, 16, 16, 16, 1)),
}


def djif_keys(wide=False):
    a, b = (256, 128) if wide else (96, 48)
    c, d = (256, 128) if wide else (64, 32)
    keys = {}
    for br, cin in (("branch_t", 1), ("branch_g", 3)):
        keys.update(conv(f"{br}.0", a, cin, 9))
        keys.update(conv(f"{br}.2", b, a, 1))
        keys.update(conv(f"{br}.4", 1, b, 5))
    keys.update(conv("branch_joint.0", c, 2, 9))
    keys.update(conv("branch_joint.2", d, c, 1))
    keys.update(conv("branch_joint.4", 1, d, 5))
    return keys


def expected(name, f):
    u = f.bit_length() - 1
    if name == "pac_joint_upsample":
        return pac_keys((1, 32, 32, 32), (3, 32, 32, 16 * u), (32,) * (u + 2) + (1,), u)
    if name == "pac_joint_upsample_lite":
        return pac_keys(*LITE[f], u)
    if name == "djif":
        return djif_keys()
    if name == "djif_wide":
        return djif_keys(wide=True)
    if name == "joint_bilateral":
        return {"convt.weight": (1, 1, 2 * f + 1, 2 * f + 1)}
    if name == "pac_jbu_refine":
        u = f.bit_length() - 1
        keys = {"log_scale_color": (u,), "log_scale_space": (u,),
                "features.0.weight": (16, 3, 3, 3), "features.0.bias": (16,),
                "features.2.weight": (4, 16, 3, 3), "features.2.bias": (4,),
                "refine.0.weight": (16, 4, 3, 3), "refine.0.bias": (16,),
                "refine.2.weight": (16, 16, 3, 3), "refine.2.bias": (16,),
                "refine.4.weight": (1, 16, 3, 3), "refine.4.bias": (1,)}
        keys.update({f"up_convts.{i}.weight": (1, 1, 5, 5) for i in range(u)})
        return keys
    return {}  # bilinear, pac_refine: no parameters


PARAMS = {
    ("pac_joint_upsample", 4): 183_489, ("pac_joint_upsample", 8): 221_937,
    ("pac_joint_upsample", 16): 260_385, ("pac_joint_upsample_lite", 4): 55_509,
    ("pac_joint_upsample_lite", 8): 56_273, ("pac_joint_upsample_lite", 16): 55_777,
    ("djif", 4): 56_323, ("djif", 8): 56_323, ("djif", 16): 56_323,
    ("djif_wide", 8): 233_475, ("bilinear", 8): 0, ("pac_refine", 8): 0,
}


def test_builtin_names():
    assert {"pac_joint_upsample", "pac_joint_upsample_lite", "djif", "joint_bilateral",
            "bilinear"} <= set(list_models())


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("name", list_models(tag="depth"))
def test_every_model_every_factor(name, factor):
    torch.manual_seed(0)
    m = create_model(name, factor=factor)
    h, w = 2, 3
    low = torch.rand(2, 1, h, w)
    guide = torch.rand(2, 3, h * factor, w * factor)
    with torch.no_grad():
        out = m(low, guide)
    assert out.shape == (2, 1, h * factor, w * factor)
    assert torch.isfinite(out).all()
    sd = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert sd == expected(name, factor)
    if (name, factor) in PARAMS:
        assert sum(p.numel() for p in m.parameters()) == PARAMS[(name, factor)]


@pytest.mark.parametrize("name", ["pac_joint_upsample_lite", "djif", "joint_bilateral"])
def test_channel_folding(name):
    """A 2-channel target = each channel upsampled alone with the same weights."""
    torch.manual_seed(0)
    m = create_model(name, factor=4)
    low = torch.rand(2, 2, 3, 3)
    guide = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        both = m(low, guide)
        for c in range(2):
            torch.testing.assert_close(both[:, c:c + 1], m(low[:, c:c + 1], guide))


def test_batchnorm_keys_and_order():
    m = PacJointUpsample(4, t_bn=True, u_bn=True)
    keys = list(m.state_dict())
    assert "branch_t.bn3.running_mean" in keys and "up_bns.1.weight" in keys
    assert [n for n, _ in m.named_children()] == ["branch_t", "branch_g", "up_convts", "up_bns",
                                                  "branch_f"]
    assert m(torch.rand(1, 1, 2, 2), torch.rand(1, 3, 8, 8)).shape == (1, 1, 8, 8)


@pytest.mark.parametrize("kwargs", [{"factor": 6}, {"factor": 4, "f_sz_1": 4},
                                    {"factor": 4, "n_t_filters": (8, 8)},
                                    {"factor": 4, "n_g_layers": 0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        PacJointUpsample(**kwargs)


def test_lite_factor_and_size_checks():
    with pytest.raises(ValueError, match="factor"):
        PacJointUpsampleLite(2)
    m = create_model("pac_joint_upsample_lite", factor=4)
    with pytest.raises(ValueError, match="factor"):
        m(torch.rand(1, 1, 3, 3), torch.rand(1, 3, 11, 12))


def _constant_and_edge_errors(m):
    """A ×4 model keeps a constant constant (asserted); returns its mean error and bilinear's
    around a depth step edge that coincides with a colour edge (columns 6–9 of 16)."""
    low = torch.full((1, 1, 4, 5), 3.0)
    torch.testing.assert_close(m(low, torch.rand(1, 3, 16, 20)), torch.full((1, 1, 16, 20), 3.0))
    low = torch.zeros(1, 1, 4, 4)
    low[..., 2:] = 1.0
    guide = torch.zeros(1, 3, 16, 16)
    guide[..., 8:] = 1.0
    out = m(low, guide).detach()
    bil = create_model("bilinear", factor=4)(low)
    edge = (slice(None), slice(None), slice(None), slice(6, 10))
    truth = guide[:, :1][edge]
    return (out[edge] - truth).abs().mean(), (bil[edge] - truth).abs().mean()


def test_joint_bilateral_is_classic_jbu():
    """Normalised over the taps that hit samples: a constant stays constant, edges are kept."""
    m = create_model("JBU_9_10_0.5", factor=4)
    assert isinstance(m, JointBilateral) and m.kernel_size == 9
    assert m.scale_color == 10.0 and m.scale_space == 0.5
    err, bil_err = _constant_and_edge_errors(m)
    assert err < 0.5 * bil_err   # a depth edge on a colour edge stays sharp


def test_aliases_and_pacnet_names():
    assert type(create_model("PacJointUpsample", factor=4)).__name__ == "PacJointUpsample"
    assert type(create_model("DJIF", factor=4)).__name__ == "DJIF"
    assert type(create_model("Bilinear", factor=4)).__name__ == "Bilinear"


def test_pac_jbu_refine_starts_as_cascaded_jbu():
    """Untrained: a constant stays constant, a depth edge on a colour edge stays sharper than
    bilinear, and the residual branch adds nothing yet."""
    m = create_model("pac_jbu_refine", factor=4)
    err, bil_err = _constant_and_edge_errors(m)
    assert err < 0.75 * bil_err
    assert m.refine[-1].weight.abs().sum() == 0


@pytest.mark.parametrize("stage", [2, 4])
@pytest.mark.parametrize("factor", [4, 8])
def test_pac_jbu_refine_sample_alignment(factor, stage):
    """A low-resolution sample sits where the 'center' protocol took it: upsampling the centre
    samples of a smooth ramp reproduces the ramp closely (a one-pixel shift would not)."""
    from pac_models.data.joint import make_lowres

    m = create_model("pac_jbu_refine", factor=factor, stage=stage)
    n = 8 * factor
    ramp = torch.arange(n, dtype=torch.float32).expand(n, n) / n
    low = torch.from_numpy(make_lowres(ramp.numpy(), factor, "center"))[None, None]
    out = m(low, torch.full((1, 3, n, n), 0.5)).detach()[0, 0]
    inner = (slice(2 * factor, -2 * factor),) * 2
    assert (out - ramp)[inner].abs().max() < 0.25 / n


def test_pac_jbu_refine_gradients_reach_every_parameter():
    """From the fresh initialisation (only the residual branch's zero last layer opened, as one
    step would), every parameter gets a gradient: in particular the learned kernel features,
    which a zero-started last layer would leave at a saddle (equal features, zero gradient)."""
    torch.manual_seed(0)
    m = create_model("pac_jbu_refine", factor=8, context_channels=2)
    with torch.no_grad():
        m.refine[-1].weight.normal_(0, 0.1)
    out = m(torch.rand(2, 1, 3, 3), torch.rand(2, 3, 24, 24))
    out.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_pac_jbu_refine_context_features_start_neutral_and_learn():
    """Weights without context features load non-strictly into a model with them and give
    nearly the same output (the context stack starts near zero); it then gets gradients."""
    torch.manual_seed(0)
    base = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2)
    with torch.no_grad():
        base.features[-1].weight.normal_(0, 0.2)
        base.refine[-1].weight.normal_(0, 0.1)
    ctx = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2,
                       context_channels=3)
    res = ctx.load_state_dict(base.state_dict(), strict=False)
    assert res.unexpected_keys == []
    assert sorted(res.missing_keys) == sorted(
        f"context.{i}.{t}" for i in (0, 2, 4, 6) for t in ("weight", "bias"))
    low, guide = torch.rand(2, 1, 4, 5), torch.rand(2, 3, 32, 40)
    torch.testing.assert_close(ctx(low, guide), base(low, guide), rtol=0, atol=1e-4)
    assert ctx.guidance_features(guide, 0).shape[1] == 3 + 2 + 2 + 3
    ctx(low, guide).square().mean().backward()
    for name, p in ctx.context.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="context_channels"):
        create_model("pac_jbu_refine", factor=8, context_channels=-1)


def test_pac_jbu_refine_wide_refine_starts_as_identity_and_learns():
    """Weights without the wide residual branch load non-strictly into a model with it and give
    exactly the same output (its last layer starts at zero); one step opens it, after which its
    every layer gets gradients and its dilated stack sees 33 pixels."""
    torch.manual_seed(0)
    base = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2)
    with torch.no_grad():
        base.refine[-1].weight.normal_(0, 0.1)
    wide = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2,
                        wide_refine=4)
    assert "wide_refine=4" in repr(wide)
    res = wide.load_state_dict(base.state_dict(), strict=False)
    assert res.unexpected_keys == []
    assert sorted(res.missing_keys) == sorted(
        f"wide_refine.{i}.{t}" for i in (0, 2, 4, 6, 8) for t in ("weight", "bias"))
    low, guide = torch.rand(2, 1, 5, 6), torch.rand(2, 3, 40, 48)
    torch.testing.assert_close(wide(low, guide), base(low, guide), rtol=0, atol=0)
    with torch.no_grad():
        wide.wide_refine[-1].weight.normal_(0, 0.1)
    wide(low, guide).square().mean().backward()
    for name, p in wide.wide_refine.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # field of view: a change of the guidance 16 px away moves the branch's output, 17 px not
    x = torch.zeros(1, 4, 40, 40)
    with torch.no_grad():
        ref = wide.wide_refine(x)
        for d, moves in ((16, True), (17, False)):
            y = x.clone()
            y[0, 1, 20, 20 + d] = 5.0
            changed = (wide.wide_refine(y) - ref)[0, 0, 20, 20].abs().item() > 0
            assert changed == moves, d
    with pytest.raises(ValueError, match="wide_refine"):
        create_model("pac_jbu_refine", factor=8, wide_refine=-1)


def test_pac_jbu_refine_reach_widens_the_kernels_and_loads_smaller_ones():
    """``reach=r`` gives a ×s stage a ``(2rs+1)²`` kernel that reaches r samples each side;
    weights saved with a smaller kernel load (zero-padded) and give the same output; the new
    taps then get gradients, and a far sample moves the output only with the wider reach."""
    torch.manual_seed(0)
    base = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2)
    with torch.no_grad():
        for up in base.up_convts:
            up.weight.uniform_(0.5, 1.5)
        base.refine[-1].weight.normal_(0, 0.1)
    wide = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2,
                        reach=(2, 1))
    assert wide.reach == (2, 1) and "reach=(2, 1)" in repr(wide)
    assert [tuple(up.weight.shape[-2:]) for up in wide.up_convts] == [(9, 9), (9, 9)]
    wide = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2,
                        reach=2)
    assert [tuple(up.weight.shape[-2:]) for up in wide.up_convts] == [(9, 9), (17, 17)]
    wide.load_state_dict(base.state_dict())   # strict: only the kernels' sizes differ
    assert wide.up_convts[1].weight[..., :4, :].abs().sum() == 0
    low, guide = torch.rand(2, 1, 5, 6), torch.rand(2, 3, 40, 48)
    torch.testing.assert_close(wide(low, guide), base(low, guide), rtol=0, atol=1e-6)
    wide(low, guide).square().mean().backward()
    assert wide.up_convts[1].weight.grad[..., 0, :].abs().sum() > 0
    # reach: with a flat guidance, a sample two samples (16 px) away from a pixel moves it
    # only when the stages reach two samples (σ widened so the Gaussian does not vanish)
    flat = torch.full((1, 3, 40, 48), 0.5)
    for reach, moves in ((1, False), (2, True)):
        m = create_model("pac_jbu_refine", factor=8, stage=4, width=8, feat_channels=2,
                         reach=reach)
        with torch.no_grad():
            m.log_scale_space.fill_(-3.0)
            a = torch.zeros(1, 1, 5, 6)
            b = a.clone()
            b[0, 0, 2, 4] = 1.0
            # pixel of sample (2, 2) in the ×8 output ('center' offset 3): column 2·8 + 3
            diff = (m(b, flat) - m(a, flat))[0, 0, 19, 19].abs().item()
        assert (diff > 1e-6) == moves, (reach, diff)
    with pytest.raises(ValueError, match="reach"):
        create_model("pac_jbu_refine", factor=8, reach=0)
    with pytest.raises(ValueError, match="reach"):
        create_model("pac_jbu_refine", factor=8, stage=4, reach=(1, 1, 1))


def test_pac_jbu_refine_rejects_bad_factor():
    with pytest.raises(ValueError, match="power of two"):
        create_model("pac_jbu_refine", factor=6)
    with pytest.raises(ValueError, match="stage must be 2 or 4"):
        create_model("pac_jbu_refine", factor=8, stage=8)


@pytest.mark.parametrize(("factor", "steps"), [(4, (4,)), (8, (2, 4)), (16, (4, 4))])
def test_pac_jbu_refine_stage4_steps(factor, steps):
    m = create_model("pac_jbu_refine", factor=factor, stage=4, width=8, feat_channels=2)
    assert m.steps == steps
    sd = m.state_dict()
    for i, s in enumerate(steps):
        assert sd[f"up_convts.{i}.weight"].shape == (1, 1, 2 * s + 1, 2 * s + 1)
    out = m(torch.rand(1, 1, 3, 2), torch.rand(1, 3, 3 * factor, 2 * factor))
    assert out.shape == (1, 1, 3 * factor, 2 * factor) and torch.isfinite(out).all()


def test_pac_jbu_refine_x4_stage4_is_jbu_inside():
    """×4 with stage=4 is one joint bilateral step: away from the border it equals
    :class:`JointBilateral` with the same σ (the flat-kernel floor aside)."""
    m = create_model("pac_jbu_refine", factor=4, stage=4)
    j = create_model("joint_bilateral", factor=4)
    torch.manual_seed(0)
    low = torch.rand(1, 1, 8, 8)
    guide = 0.5 + 0.05 * torch.rand(1, 3, 32, 32)
    inner = (..., slice(6, -6), slice(6, -6))
    torch.testing.assert_close(m(low, guide)[inner], j(low, guide)[inner], atol=1e-3, rtol=0)


def test_eval_result_pooled_is_the_records_aggregate():
    """``EvalResult.pooled`` (root of the mean squared per-image RMSE) reproduces the held-out
    synthetic bilinear baseline recorded in the weights records (seed 2, 50 scenes of 256², ×16,
    no flips); ``value``, the plain mean, is lower."""
    from pac_models.data import AssembleJointUpsamplingInputs, SyntheticScenes
    from pac_models.depth.evaluate import EvalResult, evaluate
    from pac_models.weights import default_weights

    r = EvalResult("rmse", 3.5, 2, [3.0, 4.0])
    assert r.pooled == pytest.approx(12.5 ** 0.5)
    assert np.isnan(EvalResult("rmse", float("nan"), 0, []).pooled)
    tf = AssembleJointUpsamplingInputs(16, crop=None, flip=False, lowres_mode="center")
    ds = SyntheticScenes(50, (256, 256), 16, transform=tf, seed=2)
    res = evaluate(create_model("bilinear", factor=16), ds, 16)
    recorded = default_weights("pac_jbu_refine", 16).metrics["synthetic_bilinear_rmse_m"]
    assert round(res.pooled, 4) == recorded
    assert res.value < res.pooled
