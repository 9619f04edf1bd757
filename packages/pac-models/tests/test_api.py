"""pac_models.depth.upsample and the evaluation protocol helpers."""

import numpy as np
import pytest
import torch

from pac_models import create_model
from pac_models.depth import (
    DEFAULT_ENSEMBLE,
    DEFAULT_FALLBACK,
    ENSEMBLES,
    apply_model,
    denormalize,
    epe,
    normalize_lowres,
    rmse,
    upsample,
)
from pac_models.depth.train import lr_at


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 4.0, (5, 6)).astype(np.float32)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    return depth, rgb


def test_upsample_default_shape_and_unit(pair):
    depth, rgb = pair
    out = upsample(depth, rgb, 4)
    assert isinstance(out, torch.Tensor) and out.shape == (20, 24) and out.dtype == torch.float32
    # joint bilateral stages average the input; the residual refinement may overshoot a little
    # (the ×4 v3 weights: 0.8 % of the range on this noise pair), never by a whole step
    slack = 0.05 * float(depth.max() - depth.min())
    assert depth.min() - slack <= out.min() and out.max() <= depth.max() + slack
    # the result is in the input's unit: millimetres in, millimetres out
    out_mm = upsample(torch.from_numpy(depth) * 1000, torch.from_numpy(rgb), 4)
    torch.testing.assert_close(out_mm, out * 1000, rtol=1e-4, atol=1e-3)
    assert DEFAULT_FALLBACK == "pac_refine"


def test_upsample_with_named_model_and_module(pair):
    depth, rgb = pair
    bil = upsample(depth, rgb, 4, model="bilinear")
    ref = torch.nn.functional.interpolate(torch.from_numpy(depth)[None, None], scale_factor=4,
                                          mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(bil, ref, rtol=1e-5, atol=1e-5)
    net = create_model("pac_joint_upsample_lite", factor=4).train()
    out = upsample(depth, rgb, 4, model=net)
    assert out.shape == (20, 24) and net.training  # mode restored
    const = upsample(np.full((5, 6), 7.0), rgb, 4, model="joint_bilateral")
    torch.testing.assert_close(const, torch.full((20, 24), 7.0))


class _SamplePlacer(torch.nn.Module):
    """Writes each low-resolution sample at its pixel (row/col ``⌊(f−1)/2⌋ + f·i``) on top of the
    guidance's red channel (both halved, so that the output stays in the input's range, to which
    upsample clips): its output shows where a view put the samples and the image."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, low, guide):
        f, off = self.factor, (self.factor - 1) // 2
        out = guide[:, :1] * 0.5
        out[..., off::f, off::f] += 0.5 * low
        return out


@pytest.mark.parametrize("ensemble", ["h", "hv", "d4"])
@pytest.mark.parametrize("factor", [4, 8, 16])
def test_ensemble_keeps_the_alignment(factor, ensemble):
    """Mirroring moves a block's centre sample to the other side of the centre for even factors;
    each mirrored view is shifted one pixel so that the model sees the samples at its usual
    offset, and back. A model that places the samples at their pixels must then give the same
    output in every view (but the last row and column, where the shift repeats the edge of
    the image)."""
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 2.0, (3, 4))
    rgb = rng.integers(0, 256, (3 * factor, 4 * factor, 3), dtype=np.uint8)
    one = upsample(depth, rgb, factor, model=_SamplePlacer(factor))
    off = (factor - 1) // 2
    red = rgb[off::factor, off::factor, 0] / 255.0   # in units of the depth range
    lo, span = depth.min(), depth.max() - depth.min()
    expected = lo + (0.5 * red + 0.5 * (depth - lo) / span) * span
    torch.testing.assert_close(one[off::factor, off::factor], torch.from_numpy(expected).float())
    many = upsample(depth, rgb, factor, model=_SamplePlacer(factor), ensemble=ensemble)
    torch.testing.assert_close(many[:-1, :-1], one[:-1, :-1])


def test_ensemble_views_are_the_symmetries_of_the_square():
    assert ENSEMBLES["none"] == ((False, False, False),)
    assert len(ENSEMBLES["h"]) == 2 and len(ENSEMBLES["hv"]) == 4 and len(ENSEMBLES["d4"]) == 8
    assert len(set(ENSEMBLES["d4"])) == 8 and set(ENSEMBLES["hv"]) < set(ENSEMBLES["d4"])


def test_ensemble_default_for_the_shipped_weights(pair):
    depth, rgb = pair
    default = upsample(depth, rgb, 4)
    torch.testing.assert_close(default, upsample(depth, rgb, 4, ensemble=DEFAULT_ENSEMBLE))
    assert DEFAULT_ENSEMBLE != "none"
    assert not torch.allclose(default, upsample(depth, rgb, 4, ensemble="none"))
    # a user's model runs once unless asked
    net = create_model("pac_joint_upsample_lite", factor=4)
    torch.testing.assert_close(upsample(depth, rgb, 4, model=net),
                               upsample(depth, rgb, 4, model=net, ensemble="none"))
    with pytest.raises(ValueError, match="ensemble must be"):
        upsample(depth, rgb, 4, ensemble="x")


@pytest.mark.parametrize("depth_shape,rgb_shape,factor,match", [
    ((5, 6), (20, 24, 3), 3, "factor"),
    ((5, 6), (20, 24, 3), 2, "factor"),
    ((5, 6), (21, 24, 3), 4, "must be 20×24"),
    ((5, 6), (40, 48, 3), 4, "must be 20×24"),
    ((1, 5, 6), (20, 24, 3), 4, "2-D"),
    ((5, 6), (20, 24), 4, r"\[H, W, 3\]"),
])
def test_upsample_shape_errors(depth_shape, rgb_shape, factor, match):
    with pytest.raises(ValueError, match=match):
        upsample(np.ones(depth_shape, np.float32), np.zeros(rgb_shape, np.uint8), factor)


def test_upsample_value_errors(pair):
    depth, rgb = pair
    for bad in (np.inf, -np.inf):  # NaN marks a missing sample (test_sensors.py)
        d = depth.copy()
        d[2, 3] = bad
        with pytest.raises(ValueError, match="infinite"):
            upsample(d, rgb, 4)
    with pytest.raises(ValueError, match="uint8"):
        upsample(depth, rgb.astype(np.float32) / 255, 4)
    with pytest.raises(ValueError, match="model"):
        upsample(depth, rgb, 4, model=42)
    with pytest.raises(ValueError, match="unknown model"):
        upsample(depth, rgb, 4, model="nope")


@pytest.mark.parametrize("value", [0.0, 2.5, -7.0, 1e30])
def test_upsample_of_a_constant_map_is_exactly_that_constant(pair, value):
    _, rgb = pair
    for model in (None, "bilinear"):
        out = upsample(np.full((5, 6), value), rgb, 4, model=model)
        assert out.shape == (20, 24) and bool((out == np.float32(value)).all()), (value, model)


def test_upsample_of_extreme_values(pair):
    """Values near float32's limit come back finite and in order; beyond it is a clear error."""
    depth, rgb = pair
    big = float(np.finfo(np.float32).max) / 2
    scaled = (depth - depth.min()) / (depth.max() - depth.min()) * 2 - 1  # in [-1, 1]
    out = upsample(scaled.astype(np.float64) * big, rgb, 4, model="bilinear")
    assert torch.isfinite(out).all()
    ref = upsample(scaled, rgb, 4, model="bilinear")
    torch.testing.assert_close(out.double() / big, ref.double(), rtol=1e-5, atol=1e-5)
    for bad in (1e308, -1e308):
        d = depth.astype(np.float64)
        d[0, 0] = bad
        with pytest.raises(ValueError, match="beyond what the float32 result can hold"):
            upsample(d, rgb, 4)


def test_normalisation_roundtrip():
    x = torch.rand(2, 3, 4, 5) * 10 - 2
    x[1, 2] = 3.0  # a constant channel
    n, rng = normalize_lowres(x)
    assert rng.shape == (2, 3, 2)
    torch.testing.assert_close(rng[1, 2], torch.tensor([2.5, 3.5]))
    torch.testing.assert_close(n[0].amin(dim=(-2, -1)), torch.zeros(3))
    torch.testing.assert_close(denormalize(n, rng), x)
    n3, rng3 = normalize_lowres(x[0])
    torch.testing.assert_close(rng3, rng[0])
    torch.testing.assert_close(n3, n[0])


def test_metrics():
    gt = torch.zeros(2, 1, 4, 4)
    pred = torch.ones(2, 1, 4, 4)
    pred[1] = 3.0
    assert float(rmse(pred, gt)) == pytest.approx(2.0)  # mean over the batch of per-image RMSE
    flow = torch.zeros(1, 2, 2, 2)
    pf = torch.zeros(1, 2, 2, 2)
    pf[0, 0] = 3.0
    pf[0, 1] = 4.0
    assert float(epe(pf, flow)) == pytest.approx(5.0)
    flow[0, 0, 0, 0] = 1e9  # unknown: counts as a zero error pixel
    assert float(epe(pf, flow)) == pytest.approx(5.0 * 3 / 4)


def test_apply_model_resizes_mismatched_guidance():
    seen = {}

    def model(low, guide):
        seen["guide"] = tuple(guide.shape[-2:])
        return torch.nn.functional.interpolate(low, size=guide.shape[-2:], mode="bilinear")

    low = torch.rand(1, 2, 7, 16)
    out = apply_model(model, low, torch.rand(1, 3, 54, 128), 8, target_size=(50, 120))
    assert seen["guide"] == (56, 128) and out.shape == (1, 2, 50, 120)


def test_scaled_param_groups_and_their_scheduled_rates():
    from pac_models.training import begin_epoch, scaled_param_groups

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Conv2d(2, 1, 1))
    model[2].bias.requires_grad_(False)
    groups = scaled_param_groups(model, 1e-3, [("2.*", 5.0), ("*.weight", 2.0)])
    names = {id(p): n for n, p in model.named_parameters()}
    assert [([names[id(p)] for p in g["params"]], g["lr"], g["lr_scale"]) for g in groups] == [
        (["0.bias"], 1e-3, 1.0), (["2.weight"], 5e-3, 5.0), (["0.weight"], 2e-3, 2.0)]
    opt = torch.optim.Adam(groups)
    begin_epoch(4, opt, None, 1e-3, (3,), 0.1, seed=1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 5e-4, 2e-4])
    assert scaled_param_groups(model, 1e-3)[0]["params"] == [
        p for p in model.parameters() if p.requires_grad]
    with pytest.raises(ValueError, match=r"'3\.\*' matches no trainable parameter of Sequential"):
        scaled_param_groups(model, 1e-3, [("3.*", 2.0)])
    with pytest.raises(ValueError, match="must be a positive finite number"):
        scaled_param_groups(model, 1e-3, [("0.*", float("inf"))])


def test_lr_schedule_matches_pacnet_recipe():
    lrs = {e: lr_at(e, 1e-4, (3500, 4500), 0.1) for e in (1, 3499, 3500, 4499, 4500, 5000)}
    assert lrs[1] == lrs[3499] == 1e-4
    assert lrs[3500] == pytest.approx(1e-5) and lrs[4499] == pytest.approx(1e-5)
    assert lrs[4500] == pytest.approx(1e-6) and lrs[5000] == pytest.approx(1e-6)
