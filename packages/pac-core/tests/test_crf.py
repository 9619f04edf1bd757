"""PacCRF / PacCRFLoose (docs/semantics.md §6, §5.4, fixes L11/L12)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pac_core import PacConv2d, PacCRF, PacCRFLoose
from pac_core.crf import _blur_pad, _blur_pool, _blur_upsample

D = torch.float64
L = 3


def _inputs(b=2, h=9, w=11, cf=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, L, h, w, generator=gen, dtype=D)
    f = torch.randn(b, cf, h, w, generator=gen, dtype=D)
    return u, f


ALL_KERNELS = [
    dict(compat_type="na", kernel_size=3),
    dict(compat_type="4d", kernel_size=3, dilation=2, pairwise_weight=0.7),
    dict(compat_type="2d", kernel_size=3, spatial_filter=True, blur=2),
    dict(compat_type="2d", kernel_size=5, spatial_filter=False, blur=3),
    dict(compat_type="potts", kernel_size=3, spatial_filter=True, pairwise_weight=0.3),
    dict(compat_type="potts", kernel_size=5, spatial_filter=False, blur=4, pairwise_weight=0.5),
]


# -- construction, containers, state_dict ---------------------------------------------------------
def test_state_dict_example_from_spec():
    crf = PacCRF(21, 5, pairwise_kernels=[dict(kernel_size=5, dilation=64, compat_type="4d"),
                                          dict(kernel_size=5, dilation=16, compat_type="4d")])
    sd = crf.state_dict()
    assert list(sd) == ["unary_weight", "messengers.0.weight", "messengers.1.weight",
                        "pairwise_weights.0", "pairwise_weights.1"]
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "unary_weight": (), "messengers.0.weight": (21, 21, 5, 5),
        "messengers.1.weight": (21, 21, 5, 5), "pairwise_weights.0": (),
        "pairwise_weights.1": ()}
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert crf.messengers[0].padding == (128, 128) and crf.messengers[1].dilation == (16, 16)


def test_state_dict_all_compat_types_and_order():
    crf = PacCRF(L, 1, pairwise_kernels=ALL_KERNELS)
    assert crf.num_pairwise_kernels() == 6
    names = [n for n, _ in crf.named_parameters()]
    assert names == ["unary_weight", "messengers.0.weight", "messengers.1.weight",
                     "messengers.2.weight", "messengers.4.weight", "compat.2.weight",
                     "compat.3.weight"] + [f"pairwise_weights.{i}" for i in range(6)]
    sd = crf.state_dict()
    assert tuple(sd["messengers.0.weight"].shape) == (L, L, 3, 3)  # 'na': plain conv
    assert tuple(sd["messengers.1.weight"].shape) == (L, L, 3, 3)
    assert tuple(sd["messengers.2.weight"].shape) == (1, 1, 3, 3)
    assert tuple(sd["messengers.3.weight"].shape) == (1, 1, 5, 5)  # crf_pool buffer
    assert tuple(sd["compat.2.weight"].shape) == (L, L, 1, 1)
    assert "compat.0.weight" not in sd and crf.compat[0] is None and len(crf.compat) == 6
    assert type(crf.messengers[0]) is nn.Conv2d and crf.messengers[0].bias is None
    assert isinstance(crf.messengers[1], PacConv2d) and not crf.messengers[1].shared_filters
    assert crf.messengers[3].filler == "crf_pool" and crf.messengers[4].filler == "crf_perturbed"
    assert torch.equal(crf.messengers[3].weight[0, 0, 2], torch.tensor([1.0, 1, 0, 1, 1]))
    assert [crf.pairwise_weights[i].item() for i in range(6)] == pytest.approx(
        [1.0, 0.7, 1.0, 1.0, -0.3, -0.5])


def test_fixed_weighting_has_no_unary_weight_key():
    crf = PacCRF(L, 1, fixed_weighting=True, unary_weight=0.8,
                 pairwise_kernels=dict(compat_type="4d"))
    assert "unary_weight" not in crf.state_dict() and crf.unary_weight == 0.8
    assert list(crf.state_dict()) == ["messengers.0.weight", "pairwise_weights.0"]


def test_init_values_and_reset():
    crf = PacCRF(L, 1, perturbed_init=False, unary_weight=0.5,
                 pairwise_kernels=[dict(compat_type="2d"), dict(compat_type="4d")])
    eye = torch.eye(L)
    assert torch.equal(crf.compat[0].weight[:, :, 0, 0], 1 - eye)
    assert crf.messengers[0].filler == "crf" and crf.unary_weight.item() == 0.5
    with torch.no_grad():
        crf.compat[0].weight.fill_(7)
        crf.messengers[1].weight.fill_(7)
        crf.unary_weight.fill_(7)
        crf.pairwise_weights[1].fill_(7)
    crf.reset_parameters(-1)  # only the last kernel
    assert crf.pairwise_weights[1].item() == 1.0 and crf.messengers[1].weight[0, 0, 1, 1] == 0
    assert torch.all(crf.compat[0].weight == 7) and crf.unary_weight.item() == 7
    crf.reset_parameters()
    assert torch.equal(crf.compat[0].weight[:, :, 0, 0], 1 - eye)
    assert crf.unary_weight.item() == 0.5
    pert = PacCRF(L, 1, pairwise_kernels=dict(compat_type="2d"))
    d = pert.compat[0].weight[:, :, 0, 0] - (1 - eye)
    assert d.abs().max() <= 5e-4 and d.abs().max() > 0


def test_invalid_arguments():
    with pytest.raises(ValueError, match="compat_type"):
        PacCRF(L, 1, pairwise_kernels=dict(compat_type="3d"))  # L12: validated
    with pytest.raises(ValueError, match="odd"):
        PacCRF(L, 1, pairwise_kernels=dict(kernel_size=4))
    with pytest.raises(ValueError, match="odd"):
        PacCRF(L, 1, pairwise_kernels=dict(kernel_size=4, compat_type="na"))
    crf = PacCRF(L, 1, final_output="probs")  # validated only in forward
    u, f = _inputs()
    with pytest.raises(ValueError, match="final_output"):
        crf(u, f)
    with pytest.raises(ValueError, match="final_output"):
        PacCRFLoose(L, 1, final_output="probs")(u, f)


# -- forward ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL_KERNELS, ids=lambda k: f"{k['compat_type']}-{k.get('blur', 1)}")
@pytest.mark.parametrize("cls", [PacCRF, PacCRFLoose])
def test_every_compat_type(cls, kernel):
    crf = cls(L, 2, pairwise_kernels=kernel).double()
    u, f = _inputs()
    u.requires_grad_()
    f.requires_grad_()
    y = crf(u, f)
    assert y.shape == u.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert u.grad is not None
    if kernel["compat_type"] == "na":
        assert f.grad is None  # no guidance read
    else:
        assert f.grad is not None and f.grad.abs().sum() > 0


def test_all_compat_types_together_match_list_and_dict_feats():
    crf = PacCRF(L, 2, pairwise_kernels=ALL_KERNELS).double()
    u, f = _inputs()
    y = crf(u, f)
    feats = [f.clone() for _ in ALL_KERNELS]
    feats[0] = None  # 'na' entries are never read
    assert torch.allclose(crf(u, feats), y, rtol=1e-13, atol=1e-13)
    as_dict = {i: f.clone() for i in range(1, len(ALL_KERNELS))}
    assert torch.allclose(crf(u, as_dict), y, rtol=1e-13, atol=1e-13)
    loose = PacCRFLoose(L, 2, pairwise_kernels=ALL_KERNELS).double()  # L11: 'na' works
    assert loose(u, f).shape == u.shape
    assert torch.allclose(loose(u, feats), loose(u, f), rtol=1e-13, atol=1e-13)


def test_separate_feature_tensors_are_used_per_kernel():
    crf = PacCRF(L, 1, pairwise_kernels=[dict(compat_type="4d"), dict(compat_type="4d")]).double()
    u, f = _inputs()
    _, f2 = _inputs(seed=1)
    a, b = crf(u, [f, f2]), crf(u, [f2, f])
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("final_output", ["log_Q", "softmax", "log_softmax"])
def test_final_outputs_and_zero_steps(final_output):
    u, f = _inputs()
    crf = PacCRF(L, 0, final_output, pairwise_kernels=dict(compat_type="4d")).double()
    loose = PacCRFLoose(L, 0, final_output, pairwise_kernels=dict(compat_type="4d")).double()
    expected = {"log_Q": u, "softmax": F.softmax(u, 1), "log_softmax": F.log_softmax(u, 1)}
    assert torch.equal(crf(u, f), expected[final_output])
    assert torch.equal(loose(u, f), expected[final_output])
    assert loose.num_pairwise_kernels() == 0
    one = PacCRF(L, 2, "log_Q", pairwise_kernels=dict(compat_type="4d")).double()
    other = PacCRF(L, 2, final_output, pairwise_kernels=dict(compat_type="4d")).double()
    other.load_state_dict(one.state_dict())
    log_q = one(u, f)
    out = {"log_Q": log_q, "softmax": F.softmax(log_q, 1),
           "log_softmax": F.log_softmax(log_q, 1)}[final_output]
    assert torch.allclose(other(u, f), out, rtol=1e-13, atol=1e-13)


def test_mean_field_update_by_hand():
    """One step with one '4d' kernel and one '2d' kernel: logQ = w_u·U − Σ pw_i·M_i."""
    crf = PacCRF(L, 1, unary_weight=0.7, pairwise_kernels=[
        dict(compat_type="4d", pairwise_weight=0.3),
        dict(compat_type="2d", dilation=2, pairwise_weight=0.6)]).double()
    u, f = _inputs()
    q = F.softmax(u, 1)
    m0, m1 = crf.messengers
    msg0 = m0(q, None, m0.compute_kernel(f)[0])
    msg1 = crf.compat[1](m1(q, None, m1.compute_kernel(f)[0]))
    w_u = crf.unary_weight  # float32(0.7), converted by .double()
    assert w_u.item() == pytest.approx(0.7, rel=1e-7)
    expected = w_u * u - 0.3 * msg0 - 0.6 * msg1
    assert torch.allclose(crf(u, f), expected, rtol=1e-13, atol=1e-13)
    init = torch.randn_like(u)  # logQ: the initial state
    q = F.softmax(init, 1)
    expected = w_u * u - 0.3 * m0(q, None, m0.compute_kernel(f)[0]) - 0.6 * crf.compat[1](
        m1(q, None, m1.compute_kernel(f)[0]))
    assert torch.allclose(crf(u, f, logQ=init), expected, rtol=1e-13, atol=1e-13)


def test_edge_kernel():
    crf = PacCRF(L, 2, pairwise_kernels=ALL_KERNELS).double()
    u, f = _inputs()
    kernels = crf.compute_kernels(f)
    assert kernels[0] is None and kernels[2].shape == (2, 1, 3, 3, 5, 6)
    assert kernels[3].shape == (2, 1, 5, 5, 3, 4)
    y = crf(u, f)
    assert torch.allclose(crf(u, None, kernels), y, rtol=1e-13, atol=1e-13)
    assert torch.allclose(crf(u, torch.zeros_like(f), kernels), y, rtol=1e-13, atol=1e-13)
    loose = PacCRFLoose(L, 2, pairwise_kernels=ALL_KERNELS).double()
    assert torch.allclose(loose(u, None, kernels), loose(u, f), rtol=1e-13, atol=1e-13)
    # one tensor for every kernel
    same = PacCRF(L, 1, pairwise_kernels=[dict(compat_type="4d"), dict(compat_type="potts")])
    same = same.double()
    k = same.messengers[0].compute_kernel(f)[0]
    assert torch.allclose(same(u, None, k), same(u, [f, f]), rtol=1e-13, atol=1e-13)


def test_loose_steps_are_independent():
    loose = PacCRFLoose(L, 3, pairwise_kernels=[dict(compat_type="4d"),
                                               dict(compat_type="potts", spatial_filter=False)])
    assert len(loose.steps) == 3 and loose.num_pairwise_kernels() == 2
    keys = list(loose.state_dict())
    assert keys[:5] == ["steps.0.unary_weight", "steps.0.messengers.0.weight",
                        "steps.0.messengers.1.weight", "steps.0.pairwise_weights.0",
                        "steps.0.pairwise_weights.1"]
    assert len(keys) == 15
    assert not torch.equal(loose.steps[0].messengers[0].weight, loose.steps[1].messengers[0].weight)
    loose.add_pairwise_kernel(kernel_size=5, compat_type="2d")
    assert all(s.num_pairwise_kernels() == 3 for s in loose.steps)
    loose = loose.double()
    u, f = _inputs()
    # by hand: kernels from step 0, then one update per step with its own weights
    kernels = loose.steps[0].compute_kernels(f)
    log_q = u
    for step in loose.steps:
        log_q = step(u, None, kernels, log_q)
    assert torch.allclose(loose(u, f), log_q, rtol=1e-13, atol=1e-13)


def test_dead_pairwise_weights():
    """L12: only learnable Potts weights (non-spatial, not fixed_weighting) are used."""
    crf = PacCRF(L, 2, pairwise_kernels=[
        dict(compat_type="4d"), dict(compat_type="potts", spatial_filter=False),
        dict(compat_type="potts", spatial_filter=True), dict(compat_type="2d")]).double()
    u, f = _inputs()
    y = crf(u, f)
    y.square().sum().backward()
    grads = [crf.pairwise_weights[i].grad for i in range(4)]
    assert grads[0] is None and grads[2] is None and grads[3] is None
    assert grads[1] is not None
    assert crf.unary_weight.grad is not None
    with torch.no_grad():  # a loaded value of a dead weight has no effect
        crf.pairwise_weights[0].fill_(123.0)
        crf.pairwise_weights[3].fill_(-5.0)
    assert torch.equal(crf(u, f), y)
    with torch.no_grad():
        crf.pairwise_weights[1].fill_(2.0)
    assert not torch.allclose(crf(u, f), y)
    fixed = PacCRF(L, 1, fixed_weighting=True,
                   pairwise_kernels=dict(compat_type="potts", spatial_filter=False)).double()
    fixed(u.requires_grad_(), f).sum().backward()
    assert fixed.pairwise_weights[0].grad is None


# -- blur (§5.4) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n", [7, 9, 10, 11, 12])
def test_blur_geometry(n, b):
    p = _blur_pad(n, b)
    assert p == ((b - n % b) % b + 1) // 2
    t = torch.randn(1, 2, n, n + 1, dtype=D)
    pooled = _blur_pool(t, b)
    up = _blur_upsample(pooled, b, (n, n + 1))
    assert up.shape == t.shape
    const = torch.full((1, 2, n, n + 1), 3.0, dtype=D)
    assert torch.allclose(_blur_upsample(_blur_pool(const, b), b, (n, n + 1)), const)


def test_blur_pool_and_upsample_values():
    t = torch.arange(2 * 9 * 11, dtype=D).view(1, 2, 9, 11)
    ref = F.avg_pool2d(t, 2, 2, padding=(1, 1), count_include_pad=False)
    assert torch.equal(_blur_pool(t, 2), ref)
    up = F.interpolate(ref, size=(10, 12), mode="bilinear", align_corners=False)
    assert torch.equal(_blur_upsample(ref, 2, (9, 11)), up[:, :, 1:10, 1:12])
    assert torch.equal(_blur_pool(t, 1), t)


def _step_by_formula(crf, u, log_q, kernels):
    """One step written as docs/semantics.md §6.1 states it: ``w_u·U − Σ_i pw_i·M_i``."""
    q = F.softmax(log_q, 1)
    out = crf.unary_weight * u
    for i, m in enumerate(crf.messengers):
        b = crf.blur[i]
        qb = _blur_pool(q, b)
        msg = m(qb) if crf._compat_types[i] == "na" else m(qb, None, kernels[i])
        if crf.compat[i] is not None:
            msg = crf.compat[i](msg)
        out = out - crf._pairwise_weight(i) * _blur_upsample(msg, b, u.shape[-2:])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["no_grad", "grad"])
def test_step_accumulation_is_bitwise_the_formula(backend_name, dtype, mode):
    """The step's accumulation (``acc ∓ M_i`` for constant weights ±1) gives bit for bit the
    values of the formula (every compatibility type, blur, weights 0.3/0.5/0.7, a learnable Potts
    weight, the default +1 and the negated Potts −1), without autograd and where autograd
    records, in both CRF classes."""
    grad = mode == "grad"
    kernels = [*ALL_KERNELS, dict(compat_type="potts", kernel_size=5, dilation=3)]
    crf = PacCRF(L, 3, pairwise_kernels=kernels).to(dtype)
    loose = PacCRFLoose(L, 2, pairwise_kernels=kernels).to(dtype)
    u, f = (t.to(dtype) for t in _inputs(h=10, w=13))
    if grad:
        u.requires_grad_()
    with torch.set_grad_enabled(grad):
        ks = crf.compute_kernels(f)
        expected = u
        for _ in range(3):
            expected = _step_by_formula(crf, u, expected, ks)
        out = crf(u, f)
        assert torch.equal(out, expected)
        ks = loose.steps[0].compute_kernels(f)
        expected_loose = u
        for step in loose.steps:
            expected_loose = _step_by_formula(step, u, expected_loose, ks)
        assert torch.equal(loose(u, f), expected_loose)
    if grad:  # the input gradient too, bit for bit
        (g,) = torch.autograd.grad(out.square().sum(), u)
        (g_expected,) = torch.autograd.grad(expected.square().sum(), u)
        assert torch.isfinite(g).all() and torch.equal(g, g_expected)


def test_step_leaves_its_inputs_unchanged():
    crf = PacCRF(L, 2, pairwise_kernels=ALL_KERNELS).double()
    u, f = _inputs()
    log_q = torch.randn_like(u)
    u0, f0, q0 = u.clone(), f.clone(), log_q.clone()
    kernels = crf.compute_kernels(f)
    k0 = [None if k is None else k.clone() for k in kernels]
    with torch.no_grad():
        crf(u, None, kernels, log_q)
    assert torch.equal(u, u0) and torch.equal(f, f0) and torch.equal(log_q, q0)
    assert all(a is None or torch.equal(a, b) for a, b in zip(kernels, k0))


def test_vmap_over_the_kernels(reference_backend):
    """torch.func.vmap over the edge kernels only (the unary is shared), with and without
    autograd: the same as a loop over the batch."""
    crf = PacCRF(L, 2, pairwise_kernels=[dict(compat_type="potts", kernel_size=3),
                                        dict(compat_type="4d", kernel_size=3)]).double()
    u, _ = _inputs(b=1)
    feats = torch.randn(3, 1, 2, 9, 11, dtype=D)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            ks = [torch.stack([crf.compute_kernels(f)[i] for f in feats]) for i in range(2)]
            out = torch.func.vmap(lambda k0, k1: crf(u, None, [k0, k1]))(*ks)
            loop = torch.stack([crf(u, None, [k0, k1]) for k0, k1 in zip(*ks)])
        assert torch.allclose(out, loop, rtol=1e-12, atol=1e-12)


def test_shared_feature_pooled_once_per_blur_matches_list():
    crf = PacCRF(L, 1, pairwise_kernels=[dict(compat_type="4d", blur=3),
                                        dict(compat_type="2d", blur=3),
                                        dict(compat_type="potts", blur=2)]).double()
    u, f = _inputs(h=10, w=13)
    assert torch.allclose(crf(u, f), crf(u, [f, f, f]), rtol=1e-13, atol=1e-13)


@pytest.mark.compile
@pytest.mark.slow
def test_crf_compiles_fullgraph(reference_backend):
    """The CRF and its modules add no graph breaks of their own (DESIGN: fullgraph compile)."""
    crf = PacCRF(L, 2, pairwise_kernels=[dict(compat_type="na"), dict(compat_type="4d"),
                                         dict(compat_type="2d", blur=2),
                                         dict(compat_type="potts", spatial_filter=False)])
    u, f = (t.float() for t in _inputs(b=1))
    compiled = torch.compile(crf, fullgraph=True)
    y = compiled(u, f)
    assert torch.allclose(y, crf(u, f), atol=1e-5)
