"""docs/semantics.md §8: reference values computed with the original (pacnet, float64), every row of both tables.

Inputs are closed-form; modules are built in float32 (the default dtype), converted with ``.double()``
and their weight/bias are then written in float64 from the formulas. ``L = ½ Σ Y²`` is
back-propagated and ``Σ|grad|`` compared, on every available backend (``backend_name`` fixture).
Agreement is required to 1e-9 relative.
"""

from __future__ import annotations

import pytest
import torch

from pac_core import PacConv2d, PacConvTranspose2d, PacCRF, PacCRFLoose, PacPool2d

RTOL = 1e-9
ABS = 1e-12
F64 = torch.float64


def _grid(b: int, c: int, h: int, w: int):
    i = torch.arange(h, dtype=F64).view(1, 1, h, 1)
    j = torch.arange(w, dtype=F64).view(1, 1, 1, w)
    cc = torch.arange(c, dtype=F64).view(1, c, 1, 1)
    bb = torch.arange(b, dtype=F64).view(b, 1, 1, 1)
    return bb, cc, i, j


def make_x(b, c, h, w):
    bb, cc, i, j = _grid(b, c, h, w)
    return torch.sin(0.3 * i + 0.5 * j + 0.7 * cc + 1.1 * bb)


def make_g(b, c, h, w):
    bb, cc, i, j = _grid(b, c, h, w)
    return torch.cos(0.4 * i - 0.3 * j + 0.9 * cc + 0.6 * bb)


def make_unary(b, c, h, w):
    bb, cc, i, j = _grid(b, c, h, w)
    return 2 * torch.sin(0.3 * i + 0.2 * j + 0.5 * cc + bb)


def weight_formula(n_o: int, n_c: int, k: int, transposed: bool = False) -> torch.Tensor:
    """``W[o,c,a,e] = 0.1(o+1) − 0.05(c+1) + 0.02(a−e)``; transposed layout ``W_T[c,o,a,e]``."""
    o = torch.arange(n_o, dtype=F64).view(-1, 1, 1, 1)
    c = torch.arange(n_c, dtype=F64).view(1, -1, 1, 1)
    a = torch.arange(k, dtype=F64).view(1, 1, k, 1)
    e = torch.arange(k, dtype=F64).view(1, 1, 1, k)
    if transposed:  # first index is c (input channel), second o
        o, c = o.view(1, -1, 1, 1), c.view(-1, 1, 1, 1)
        return 0.1 * (c + 1) - 0.05 * (o + 1) + 0.02 * (a - e)
    return 0.1 * (o + 1) - 0.05 * (c + 1) + 0.02 * (a - e)


def _set_weights(m, transposed=False):
    k = m.kernel_size[0]
    with torch.no_grad():
        if m.shared_filters:
            m.weight.copy_(weight_formula(1, 1, k))
        elif transposed:
            m.weight.copy_(weight_formula(m.out_channels, m.in_channels, k, transposed=True))
        else:
            m.weight.copy_(weight_formula(m.out_channels, m.in_channels, k))
        if m.bias is not None:
            m.bias.copy_(0.01 * torch.arange(m.out_channels, dtype=F64))


# (id, factory, x shape, guidance channels (None: same as x), transposed,
#  shape, sum, first, last, sum|dX|, sum|dG|, sum|dW|)
CONV = [
    ("conv k3 s1 p1 d1", lambda: PacConv2d(3, 4, 3, padding=1), (2, 4, 7, 9),
     -292.922941113, -0.115525417274, 2.09894214837, 3603.61883783, 668.141852726, 10210.0110868),
    ("conv k3 s2 p1 d1", lambda: PacConv2d(3, 4, 3, stride=2, padding=1), (2, 4, 4, 5),
     -75.0876494446, -0.115525417274, 2.09894214837, 890.459797312, 173.481897897, 2523.71930184),
    ("conv k5 s1 p4 d2", lambda: PacConv2d(3, 4, 5, padding=4, dilation=2), (2, 4, 7, 9),
     -312.848946975, 0.169116568109, -1.02770483251, 2048.66547726, 899.638887893, 3930.48027915),
    ("conv k3 p1 normalize_kernel", lambda: PacConv2d(3, 4, 3, padding=1, normalize_kernel=True),
     (2, 4, 7, 9),
     -30.3552018359, -0.0295349722034, 0.567535021391, 69.6090084982, 1.64924281051, 196.395244078),
    ("conv k3 p1 inv_0.5_-1", lambda: PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1"),
     (2, 4, 7, 9),
     -5127.23625021, -5.35729019361, 78.6647268892, 1407773.57985, 1964725.6035, 4023331.89174),
    ("conv k3 p1 inv_0.2_0.3_asym average_3",
     lambda: PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.2_0.3_asym",
                       smooth_kernel_type="average_3"),
     (2, 4, 7, 9),
     -219.024648268, -0.130306759908, 2.17179758163, 2277.46093106, 882.152341663, 6475.75074466),
    ("conv k5 s2 p2 smooth gaussian normalize",
     lambda: PacConv2d(3, 4, 5, stride=2, padding=2, smooth_kernel_type="gaussian",
                       normalize_kernel=True),
     (2, 4, 4, 5),
     -8.93448331895, -0.00191252909814, 0.308516822737, 17.2534103539, 2.53132490267,
     48.3031603335),
    ("conv k3 p1 shared_filters", lambda: PacConv2d(3, 3, 3, padding=1, shared_filters=True),
     (2, 3, 7, 9),
     -23.8682256655, 0.0691911320181, 0.204459876626, 25.005941115, 5.46702516658, 379.740283684),
]

CONVT = [
    ("convT k5 s2 p2 q1", lambda: PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1),
     (2, 4, 8, 10),
     -71.2015805649, 1.35182243833, 0.0284146552096, 383.228386638, 175.536981385, 2124.83037367),
    ("convT k3 s2 p1 q1 normalize",
     lambda: PacConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1,
                                normalize_kernel=True),
     (2, 4, 8, 10),
     -19.4130703963, 0.342995085583, 0.0284038007752, 27.0213246159, 1.97117245205, 145.025439313),
    ("convT k3 s3 p0 q2 d2",
     lambda: PacConvTranspose2d(3, 4, 3, stride=3, padding=0, output_padding=2, dilation=2),
     (2, 4, 16, 19),
     12.0233107408, 0.33812076423, 0.03, 43.5199880028, 25.5072281512, 233.366182388),
]

POOL = [
    ("pool k3 s2 p1", lambda: PacPool2d(3, stride=2, padding=1), 2, (2, 3, 4, 5),
     -144.636372475, 1.46078805702, 3.67836754071, 2495.18998445, 497.904475846),
    ("pool k3 s2 p1 normalize", lambda: PacPool2d(3, stride=2, padding=1, normalize_kernel=True), 2,
     (2, 3, 4, 5),
     -18.9517508098, 0.373461837899, 0.955682292151, 64.0856989521, 1.84421424781),
    ("pool k3 s1 p2 d2 channel_wise",
     lambda: PacPool2d(3, stride=1, padding=2, dilation=2, channel_wise=True), 3, (2, 3, 7, 9),
     -479.420471508, 2.36736858147, 2.89528649705, 4370.79828844, 1176.63317742),
]


def _check(y, shape, total, first, last):
    assert tuple(y.shape) == shape
    assert y.dtype == F64
    assert y.sum().item() == pytest.approx(total, rel=RTOL, abs=ABS)
    assert y.flatten()[0].item() == pytest.approx(first, rel=RTOL, abs=ABS)
    assert y.flatten()[-1].item() == pytest.approx(last, rel=RTOL, abs=ABS)


def _grad_sum(t):
    assert t.grad is not None
    return t.grad.abs().sum().item()


@pytest.mark.parametrize("case", CONV, ids=[c[0] for c in CONV])
def test_conv(case, backend_name):
    _, factory, shape, total, first, last, dx, dg, dw = case
    m = factory().double()
    _set_weights(m)
    x = make_x(2, 3, 7, 9).requires_grad_()
    g = make_g(2, 2, 7, 9).requires_grad_()
    y = m(x, g)
    _check(y, shape, total, first, last)
    (0.5 * (y**2).sum()).backward()
    assert _grad_sum(x) == pytest.approx(dx, rel=RTOL)
    assert _grad_sum(g) == pytest.approx(dg, rel=RTOL)
    assert _grad_sum(m.weight) == pytest.approx(dw, rel=RTOL)


@pytest.mark.parametrize("case", CONVT, ids=[c[0] for c in CONVT])
def test_conv_transpose(case, backend_name):
    _, factory, shape, total, first, last, dx, dg, dw = case
    m = factory().double()
    _set_weights(m, transposed=True)
    x = make_x(2, 3, 4, 5).requires_grad_()
    g = make_g(2, 2, shape[2], shape[3]).requires_grad_()
    y = m(x, g)
    _check(y, shape, total, first, last)
    (0.5 * (y**2).sum()).backward()
    assert _grad_sum(x) == pytest.approx(dx, rel=RTOL)
    assert _grad_sum(g) == pytest.approx(dg, rel=RTOL)
    assert _grad_sum(m.weight) == pytest.approx(dw, rel=RTOL)


@pytest.mark.parametrize("case", POOL, ids=[c[0] for c in POOL])
def test_pool(case, backend_name):
    _, factory, g_channels, shape, total, first, last, dx, dg = case
    m = factory().double()
    x = make_x(2, 3, 7, 9).requires_grad_()
    g = make_g(2, g_channels, 7, 9).requires_grad_()
    y = m(x, g)
    _check(y, shape, total, first, last)
    (0.5 * (y**2).sum()).backward()
    assert _grad_sum(x) == pytest.approx(dx, rel=RTOL)
    assert _grad_sum(g) == pytest.approx(dg, rel=RTOL)


# -- CRF ------------------------------------------------------------------------------------------
K1 = dict(compat_type="4d", kernel_size=3, dilation=1, blur=1, pairwise_weight=1.0)
K2 = dict(compat_type="2d", spatial_filter=True, kernel_size=3, dilation=2, blur=2,
          pairwise_weight=0.5)
K3 = dict(compat_type="potts", spatial_filter=False, kernel_size=5, dilation=1, blur=1,
          pairwise_weight=0.5)
CRF_KW = dict(perturbed_init=False, native_impl=True, unary_weight=1.0)


def _crf_inputs(n_feats):
    u = make_unary(2, 3, 9, 11).requires_grad_()
    feats = [make_g(2, 2, 9, 11).requires_grad_() for _ in range(n_feats)]
    return u, feats


def test_crf_three_kernels_log_q_feature_list(backend_name):
    crf = PacCRF(3, 3, "log_Q", pairwise_kernels=[K1, K2, K3], **CRF_KW).double()
    assert crf.pairwise_weights[2].item() == -0.5  # learnable Potts weight, negated
    u, feats = _crf_inputs(3)
    y = crf(u, feats)
    _check(y, (2, 3, 9, 11), -933.07153124, -2.46830401174, 2.90797755823)
    (0.5 * (y**2).sum()).backward()
    assert _grad_sum(u) == pytest.approx(13539.2008243, rel=RTOL)
    for f, ref in zip(feats, (3080.78840683, 3833.7068485, 6607.14970932)):
        assert _grad_sum(f) == pytest.approx(ref, rel=RTOL)


def test_crf_three_kernels_softmax_shared_feature(backend_name):
    crf = PacCRF(3, 2, "softmax", pairwise_kernels=[K1, K2, K3], **CRF_KW).double()
    u, (g,) = _crf_inputs(1)
    y = crf(u, g)
    _check(y, (2, 3, 9, 11), 198.0, 0.00393993723622, 0.99723281982)
    (0.5 * (y**2).sum()).backward()
    assert _grad_sum(u) == pytest.approx(35.9347829125, rel=RTOL)
    assert _grad_sum(g) == pytest.approx(6.34556578042, rel=RTOL)


def test_crf_loose_log_softmax_feature_list(backend_name):
    crf = PacCRFLoose(3, 2, "log_softmax", pairwise_kernels=[K1, K2], **CRF_KW).double()
    u, feats = _crf_inputs(2)
    y = crf(u, feats)
    _check(y, (2, 3, 9, 11), -2021.99956544, -3.38545159589, -0.0790550811239)
    (0.5 * (y**2).sum()).backward()
    assert _grad_sum(u) == pytest.approx(13999.2384251, rel=RTOL)
    for f, ref in zip(feats, (2529.05374101, 2684.29666516)):
        assert _grad_sum(f) == pytest.approx(ref, rel=RTOL)
