"""pac_models.segmentation.refine: shapes, input forms, errors, every crf form, the learned CRF."""

import numpy as np
import pytest
import torch

from pac_core import PacCRF, PacCRFLoose
from pac_models import create_model, is_model
from pac_models.data.synthetic import dead_leaves_scene
from pac_models.data.synthetic_seg import (
    IGNORE_INDEX,
    coarse_logits,
    dead_leaves_segmentation,
    depth_labels,
    synthetic_seg_batch,
)
from pac_models.segmentation import refine
from pac_models.segmentation.api import (
    DEFAULT_CRF,
    PacCrfRefiner,
    default_refiner,
    image_tensor,
)
from pac_models.segmentation.crf_training import TrainConfig, mean_iou, train_crf
from pac_models.weights import default_weights, load_checkpoint, sha256sum, shipped_dir

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b=2, n=3, h=12, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, n, h, w, generator=g)
    rgb = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
    return logits, rgb


def _is_log_prob(out):
    return torch.allclose(out.exp().sum(1), torch.ones(()), atol=1e-5)


def test_refine_default_shapes_and_log_probabilities():
    logits, rgb = _inputs()
    out = refine(logits, rgb)
    assert out.shape == logits.shape and out.dtype == logits.dtype
    assert torch.isfinite(out).all() and _is_log_prob(out)
    assert not out.requires_grad  # the default CRF's parameters are frozen


def test_rgb_forms_agree():
    logits, rgb = _inputs(b=2)
    ref = refine(logits, rgb)
    as_float = rgb.permute(2, 0, 1)[None].float() / 255.0
    torch.testing.assert_close(refine(logits, rgb.numpy()), ref)
    torch.testing.assert_close(refine(logits, as_float), ref)
    torch.testing.assert_close(refine(logits, as_float.expand(2, -1, -1, -1)), ref)
    torch.testing.assert_close(refine(logits, as_float[0]), ref)
    torch.testing.assert_close(refine(logits, rgb[None].expand(2, -1, -1, -1)), ref)


def test_image_tensor_conversion():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    t = image_tensor(rgb)
    assert t.shape == (1, 3, 4, 5) and t.dtype == torch.float32
    assert float(t[0, 0].min()) == 1.0 and float(t[0, 1:].max()) == 0.0


def test_batch_entries_are_independent():
    logits, rgb = _inputs(b=2)
    out = refine(logits, rgb)
    torch.testing.assert_close(refine(logits[1:], rgb), out[1:])


def test_half_precision_logits_keep_their_dtype():
    logits, rgb = _inputs(b=1)
    out = refine(logits.to(torch.bfloat16), rgb)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("bad, exc, match", [
    (lambda lg, rgb: (lg.long(), rgb), TypeError, "floating"),
    (lambda lg, rgb: ([[0.0]], rgb), TypeError, "floating"),
    (lambda lg, rgb: (lg[0], rgb), ValueError, r"\[B, L, H, W\]"),
    (lambda lg, rgb: (lg[:, :1], rgb), ValueError, "at least 2 labels"),
    (lambda lg, rgb: (lg, rgb[:-1]), ValueError, "rgb is"),
    (lambda lg, rgb: (lg, rgb.permute(2, 0, 1)), ValueError, "channels last"),
    (lambda lg, rgb: (lg, rgb.float()), ValueError, "float rgb must be"),
    (lambda lg, rgb: (lg, rgb.permute(2, 0, 1)[None].float()), ValueError, r"\[0, 1\]"),
    (lambda lg, rgb: (lg, rgb.permute(2, 0, 1)[None].float() / 255 - 0.5), ValueError,
     "normalised"),
    (lambda lg, rgb: (lg, rgb[None].expand(3, -1, -1, -1)), ValueError, "batch 3"),
    (lambda lg, rgb: (lg, rgb.int()), TypeError, "uint8 or floating"),
    (lambda lg, rgb: (lg, [[1, 2, 3]]), TypeError, "Tensor or numpy"),
])
def test_input_errors(bad, exc, match):
    logits, rgb = _inputs()
    with pytest.raises(exc, match=match):
        refine(*bad(logits, rgb))


@pytest.mark.parametrize("crf, exc, match", [
    ("crfx5", ValueError, "crfx5"),
    ("crfi5p4d6161", ValueError, "kernel size"),
    ("4d_5_16", ValueError, "<type>_<k>_<d>_<blur>"),
    ("fcn8s_convcrf", ValueError, "ConvCRF"),
    ("fcn8s", ValueError, "no CRF part"),
    (3, TypeError, "crf must be"),
    (torch.nn.Conv2d(3, 3, 1), TypeError, "PacCRF"),
    (PacCRF(2, 1, pairwise_kernels=dict(kernel_size=3)), ValueError, "2 labels"),
])
def test_crf_errors(crf, exc, match):
    logits, rgb = _inputs()
    with pytest.raises(exc, match=match):
        refine(logits, rgb, crf)


@pytest.mark.parametrize("crf", [
    "crfi2p4d311", "crfi2lp4d311p0ds321", "crf", "fcn8s_crfi1p2ds312", "fcn8sfrozen_crfi2p0d311",
    "p0ds311p4d321", "4d_3_1_1", "4d_3_1_1, 0ds_3_2_1", ["nas_3_1_1", "2d_3_1_2"],
])
def test_every_crf_string_form(crf):
    logits, rgb = _inputs()
    out = refine(logits, rgb, crf)
    assert out.shape == logits.shape and _is_log_prob(out)


def test_name_builds_the_spec_crf():
    """A name gives the PacCRF docs/semantics.md §B.2/§B.3 describes, with features scaled by 30."""
    logits, rgb = _inputs()
    torch.manual_seed(3)
    by_name = refine(logits, rgb, "crfi2p4d312p0d311")
    torch.manual_seed(3)
    crf = PacCRF(3, 2, pairwise_kernels=[
        dict(kernel_size=3, dilation=1, blur=2, compat_type="4d", spatial_filter=False),
        dict(kernel_size=3, dilation=1, blur=1, compat_type="potts", spatial_filter=False)])
    torch.testing.assert_close(refine(logits, rgb, crf), by_name)
    # the same by hand: mean-subtracted BGR on the 0-255 scale / 30
    img = rgb.permute(2, 0, 1)[None].float()
    bgr = (img - torch.tensor([122.675, 116.669, 104.008]).view(1, 3, 1, 1)).flip(1)
    bgr = bgr.expand(2, -1, -1, -1)
    with torch.no_grad():
        manual = torch.log_softmax(crf(logits, [bgr / 30.0, bgr / 30.0]), 1)
    torch.testing.assert_close(manual, by_name, rtol=1e-4, atol=1e-5)


def test_module_forms():
    logits, rgb = _inputs()
    loose = PacCRFLoose(3, 2, pairwise_kernels=[dict(kernel_size=3, compat_type="2d")])
    assert _is_log_prob(refine(logits, rgb, loose))
    softmax_crf = PacCRF(3, 1, final_output="softmax", pairwise_kernels=dict(kernel_size=3))
    assert _is_log_prob(refine(logits, rgb, softmax_crf))
    refiner = PacCrfRefiner(3, "crfi1p0ds311")
    out = refine(logits, rgb, refiner)
    out.sum().backward()  # a user's module stays trainable through refine
    assert refiner.feat_scales[0].grad is not None
    with pytest.raises(ValueError, match="labels"):
        refine(logits[:, :2], rgb, refiner)


def test_default_crf_is_the_learned_record_for_any_label_count():
    record = default_weights("paccrf_refiner")
    assert record.name == "paccrf_refiner.synthetic_v5"
    assert record.shipped and record.default and record.licence == "Apache-2.0"
    assert record.model_kwargs["crf"] == DEFAULT_CRF
    path = shipped_dir() / record.file
    assert sha256sum(path) == record.sha256
    state = load_checkpoint(path)
    for n in (2, 5):
        model = default_refiner(n)
        for k, v in state.items():
            torch.testing.assert_close(model.state_dict()[k], v)
    assert is_model("paccrf_refiner")
    model = create_model("paccrf_refiner", num_classes=4, pretrained=True)
    assert isinstance(model, PacCrfRefiner) and model.crf.num_steps == 8
    # learned, not the initialisation
    fresh = PacCrfRefiner(2, DEFAULT_CRF)
    assert not torch.allclose(fresh.crf.steps[0].unary_weight,
                              default_refiner(2).crf.steps[0].unary_weight)


def test_default_crf_is_a_loose_crf_with_weights_per_step():
    """The default weights: a loose CRF (8 steps with weights of their own, four kernels each);
    a CRF that contradicts them is a clear error."""
    default = default_refiner(2)
    assert isinstance(default.crf, PacCRFLoose) and default.crf.num_steps == 8
    steps = default.crf.steps
    assert all(len(step.messengers) == 4 for step in steps)
    # the steps learned different weights (not one shared set)
    assert not torch.allclose(steps[0].unary_weight, steps[-1].unary_weight)
    assert create_model("paccrf_refiner", pretrained=True).crf.num_steps == 8
    with pytest.raises(ValueError, match="need crf="):
        create_model("paccrf_refiner", crf="crfp0ds511p0ds541p0ds5121", pretrained=True)


@pytest.mark.parametrize("where", ["logits", "rgb"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_inputs_are_rejected(where, value):
    logits, rgb = _inputs()
    image = rgb.permute(2, 0, 1)[None].float() / 255
    if where == "logits":
        logits[0, 1, 3, 4] = value
    else:
        image[0, 2, 1, 1] = value
    with pytest.raises(ValueError, match=f"{where} ha.* 1 non-finite"):
        refine(logits, image)


def test_batch_zero_gives_an_empty_result():
    logits, rgb = _inputs()
    empty = logits[:0]
    out = refine(empty, rgb)
    assert out.shape == empty.shape and out.dtype == empty.dtype
    assert refine(empty, rgb, "crfi1p0ds311").shape == empty.shape


def test_learned_crf_improves_held_out_synthetic_scenes():
    """Scenes of a seed the training never saw (it used seeds 0 and 1000)."""
    logits, rgb, labels = synthetic_seg_batch(6, (96, 96), (8, 16), seed=4242)
    before = mean_iou(logits.argmax(1), labels, 2)
    after = mean_iou(refine(logits, rgb).argmax(1), labels, 2)
    assert after > before + 0.5, (before, after)  # measured: 88.85 -> 90.04


def test_train_crf_runs_and_lowers_the_loss():
    cfg = TrainConfig(steps=6, batch=2, scenes=4, size=(32, 32), eval_scenes=2, seed=5)
    res = train_crf(cfg, log=None)
    assert len(res.losses) == 6 and all(np.isfinite(res.losses))
    assert min(scale.min() for scale in res.model.feat_scales) >= 1.0
    assert 0.0 <= res.miou_before <= 100.0 and 0.0 <= res.miou_after[1] <= 100.0


def test_crf_training_cli_writes_weights_that_refine_loads(tmp_path, capsys):
    from pac_models.segmentation.crf_training import main as crf_main
    from pac_models.weights import load_checkpoint

    out = tmp_path / "crf.safetensors"
    assert crf_main(["--out", str(out), "--steps", "2", "--batch", "1", "--scenes", "2",
                     "--size", "32", "32", "--crf", "crfi2p0ds311", "--factors", "8",
                     "--scene-arg", "fractal_prob=0.5"]) == 0
    text = capsys.readouterr().out
    assert "trained 2 steps" in text and "sha256" in text
    model = PacCrfRefiner(2, "crfi2p0ds311")
    model.load_state_dict(load_checkpoint(out))
    logits = torch.randn(1, 2, 16, 16)
    assert refine(logits, torch.rand(1, 3, 16, 16), model).shape == (1, 2, 16, 16)


# -- synthetic labelled scenes and coarse logits ----------------------------------------------

def test_dead_leaves_segmentation_keeps_the_scene():
    rgb, depth = dead_leaves_scene(40, 48, 7)
    scene = dead_leaves_segmentation(40, 48, 7, percentile=30.0)
    assert np.array_equal(scene.rgb, rgb) and np.array_equal(scene.depth, depth)
    assert set(np.unique(scene.labels)) <= {0, 1}
    assert abs(scene.labels.mean() - 0.30) < 0.05
    assert np.array_equal(scene.labels == 1, depth < np.percentile(depth, 30.0))
    drawn = dead_leaves_segmentation(40, 48, 7, percentile=(30.0, 70.0))
    assert 30.0 <= drawn.percentile <= 70.0


def test_depth_labels_disparity_and_ignore():
    disp = np.arange(20, dtype=np.float32).reshape(4, 5)
    valid = np.ones((4, 5), bool)
    valid[0, 0] = False
    lab = depth_labels(disp, 25.0, valid, nearer_is_smaller=False)
    assert lab[0, 0] == IGNORE_INDEX
    assert (lab[valid] == 1).sum() in (4, 5) and lab[3, 4] == 1 and lab[0, 1] == 0
    with pytest.raises(ValueError, match="percentile"):
        depth_labels(disp, 100.0)


def test_coarse_logits():
    labels = np.zeros((16, 24), np.uint8)
    labels[:, 10:] = 1
    labels[0, :] = IGNORE_INDEX
    lg = coarse_logits(labels, 2, 8)
    assert lg.shape == (2, 16, 24) and lg.dtype == np.float32
    np.testing.assert_allclose(np.exp(lg).sum(0), 1.0, atol=1e-5)
    assert lg[1, 5, 23] > lg[0, 5, 23] and lg[0, 5, 0] > lg[1, 5, 0]
    exact = coarse_logits(np.where(labels == IGNORE_INDEX, 0, labels), 2, 1)
    assert np.array_equal(exact.argmax(0), np.where(labels == IGNORE_INDEX, 0, labels))
    assert np.isclose(exact.max(), np.log(0.975), atol=1e-6)
    # a block with no labelled pixel takes its nearest neighbour's value
    holes = labels.copy()
    holes[:8, :8] = IGNORE_INDEX
    assert np.isfinite(coarse_logits(holes, 2, 8)).all()
    with pytest.raises(ValueError, match="multiple"):
        coarse_logits(labels[:, :20], 2, 8)
    with pytest.raises(ValueError, match="outside"):
        coarse_logits(labels + 3 * (labels == 1), 2, 8)


def test_mean_iou():
    t = torch.tensor([[0, 0, 1, IGNORE_INDEX]])
    assert mean_iou(torch.tensor([[0, 0, 1, 1]]), t, 2) == 100.0
    assert mean_iou(torch.tensor([[0, 1, 1, 0]]), t, 2) == pytest.approx(50.0 * (0.5 + 0.5))
    assert mean_iou(np.array([0, 0]), np.array([0, 0]), 3) == 100.0
