"""Functional ops against the loop oracle of ``_utils.py`` (docs/semantics.md §1–§3), plus dtypes/layouts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _utils import (
    loop_pacconv2d,
    loop_pacconv_transpose2d,
    loop_packernel2d,
    loop_pacpool2d,
    randn,
    smooth_filter,
)

import pac_core
from pac_core import functional as PF
from pac_core import nd2col, np_gaussian_2d, pacconv2d, pacconv_transpose2d, packernel2d, pacpool2d

D = torch.float64

# (name, guidance shape, packernel2d kwargs, mask spec)
KERNEL_CASES = [
    ("k3", (1, 2, 5, 6), dict(kernel_size=3, padding=1), None),
    ("k1", (1, 2, 4, 5), dict(kernel_size=1), None),
    ("k3s2", (2, 2, 5, 6), dict(kernel_size=3, stride=2, padding=1), None),
    ("k5d2p4", (1, 2, 5, 6), dict(kernel_size=5, padding=4, dilation=2), None),
    ("k3p3-large-pad", (1, 1, 4, 5), dict(kernel_size=3, padding=3), None),
    ("pairs", (1, 2, 6, 7), dict(kernel_size=(3, 5), stride=(1, 2), padding=(1, 2), dilation=(2, 1)),
     None),
    ("inv", (1, 2, 5, 6), dict(kernel_size=3, padding=1, kernel_type="inv_0.5_-1",
                               inv_alpha=0.5, inv_lambda=-1.0), None),
    ("inv-asym", (1, 3, 5, 6), dict(kernel_size=3, padding=1, kernel_type="inv_0.2_0.3_asym",
                                    inv_alpha=0.2, inv_lambda=0.3), None),
    ("inv-cw-vec", (1, 2, 5, 6), dict(kernel_size=3, padding=1, kernel_type="inv_1_-1_asym_fixed",
                                      channel_wise=True, inv_alpha=[0.5, 0.1],
                                      inv_lambda=[-1.0, -0.5]), None),
    ("smooth-gauss", (1, 2, 5, 6), dict(kernel_size=3, padding=1, smooth_kernel_type="gaussian"),
     None),
    ("smooth-avg3-d2", (1, 2, 6, 7), dict(kernel_size=3, padding=2, dilation=2,
                                          smooth_kernel_type="average_3"), None),
    ("smooth-full3-s2", (1, 2, 6, 7), dict(kernel_size=5, padding=2, stride=2,
                                           smooth_kernel_type="full_3"), None),
    ("smooth-avg5-largepad", (1, 1, 5, 5), dict(kernel_size=3, padding=3,
                                                smooth_kernel_type="average_5"), None),
    ("channel-wise", (1, 3, 5, 6), dict(kernel_size=3, padding=1, channel_wise=True), None),
    ("normalize", (1, 2, 5, 6), dict(kernel_size=3, padding=1, normalize_kernel=True), None),
    ("normalize-cw-s2", (2, 2, 5, 6), dict(kernel_size=3, padding=2, stride=2, channel_wise=True,
                                           normalize_kernel=True), None),
    ("mask", (2, 2, 5, 6), dict(kernel_size=3, padding=1), 1),
    ("mask-normalize", (1, 2, 5, 6), dict(kernel_size=3, padding=1, normalize_kernel=True), 1),
    ("mask-cw", (1, 2, 5, 6), dict(kernel_size=3, padding=1, channel_wise=True), 2),
    ("mask-cw-1ch-normalize", (1, 2, 5, 6), dict(kernel_size=3, padding=1, channel_wise=True,
                                                 normalize_kernel=True), 1),
    ("mask-empty-windows", (1, 1, 3, 3), dict(kernel_size=3, padding=4), 1),
    ("mask-empty-normalize", (1, 1, 3, 3), dict(kernel_size=3, padding=4, normalize_kernel=True), 1),
    ("T-k3s2p1q1", (1, 2, 6, 8), dict(kernel_size=3, stride=2, padding=1, output_padding=1,
                                      transposed=True), None),
    ("T-k5s2p2q1-norm", (1, 2, 6, 8), dict(kernel_size=5, stride=2, padding=2, output_padding=1,
                                           transposed=True, normalize_kernel=True), None),
    ("T-k3s3q2d2-mask", (1, 2, 10, 13), dict(kernel_size=3, stride=3, output_padding=2,
                                             dilation=2, transposed=True), "T"),
    ("T-mask-normalize", (2, 1, 7, 9), dict(kernel_size=3, stride=2, padding=1,
                                            transposed=True, normalize_kernel=True), "T"),
    ("T-smooth-inv", (1, 2, 6, 8), dict(kernel_size=3, stride=2, padding=1, output_padding=1,
                                        transposed=True, kernel_type="inv_0.2_0.3_asym",
                                        inv_alpha=0.2, inv_lambda=0.3,
                                        smooth_kernel_type="average_3"), None),
    ("T-unreachable-size", (1, 1, 7, 8), dict(kernel_size=3, stride=2, padding=0,
                                              transposed=True), "T"),
]


def _mask_for(spec, shape, kw, seed=7):
    if spec is None:
        return None
    b = shape[0]
    if spec == "T":
        from pac_core.helpers import transposed_input_size

        k, s, p = kw["kernel_size"], kw.get("stride", 1), kw.get("padding", 0)
        q, d = kw.get("output_padding", 0), kw.get("dilation", 1)
        h = transposed_input_size(shape[2], k, s, p, q, d)
        w = transposed_input_size(shape[3], k, s, p, q, d)
        return (randn(b, 1, h, w, seed=seed) > -0.3).double()
    return (randn(b, spec, *shape[2:], seed=seed) > -0.3).double()


def _kernel_kwargs(kw, dtype=D):
    kw = dict(kw)
    st = kw.get("smooth_kernel_type", "none")
    if st != "none":
        m = int(st.split("_")[1]) if "_" in st else 3
        kw["smooth_kernel"] = smooth_filter(st, m, dtype)
    for name in ("inv_alpha", "inv_lambda"):
        if isinstance(kw.get(name), list):
            kw[name] = torch.tensor(kw[name], dtype=dtype)
    return kw


@pytest.mark.parametrize("name,shape,kw,mask_spec", KERNEL_CASES, ids=[c[0] for c in KERNEL_CASES])
def test_packernel2d_matches_loop(backend_name, name, shape, kw, mask_spec):
    g = randn(*shape, seed=1)
    mask = _mask_for(mask_spec, shape, kw)
    kw = _kernel_kwargs(kw)
    K, out_mask = packernel2d(g, mask, **kw)
    loop_kw = {k: v for k, v in kw.items() if k != "smooth_kernel_type"}
    K_ref, mask_ref = loop_packernel2d(g, mask, **loop_kw)
    assert K.dtype == D
    torch.testing.assert_close(K, K_ref, rtol=1e-12, atol=1e-12)
    assert not torch.isnan(K).any()
    if mask is None:
        assert out_mask is None
    else:
        assert out_mask.dtype == torch.bool
        assert torch.equal(out_mask, mask_ref)


def test_centre_tap_is_one_for_gaussian():
    K, _ = packernel2d(randn(1, 3, 5, 6), kernel_size=5, padding=2)
    assert torch.equal(K[:, :, 2, 2], torch.ones_like(K[:, :, 2, 2]))


def test_transposed_kernel_centre_reads_guidance_pixel():
    g = randn(1, 2, 8, 10)
    K, _ = packernel2d(g, kernel_size=3, stride=2, padding=1, output_padding=1, transposed=True,
                       kernel_type="inv_0_1", inv_alpha=0.0, inv_lambda=2.0)
    # with λ = 2, α = 0: K = D + 1e-4; the tap right of the centre compares F[y, x+1] with F[y, x]
    d = ((g[:, :, :, 1:] - g[:, :, :, :-1]) ** 2).sum(1)
    torch.testing.assert_close(K[:, 0, 1, 2, :, :-1], d + 1e-4)


OP_CASES = [
    dict(k=3, s=1, p=1, d=1, groups=1, shared=False, bias=True),
    dict(k=3, s=2, p=1, d=1, groups=2, shared=False, bias=False),
    dict(k=5, s=1, p=4, d=2, groups=1, shared=False, bias=True),
    dict(k=1, s=1, p=0, d=1, groups=2, shared=False, bias=True),
    dict(k=3, s=1, p=3, d=1, groups=1, shared=False, bias=False),
    dict(k=3, s=1, p=1, d=1, groups=1, shared=True, bias=True),
    dict(k=(3, 1), s=(2, 1), p=(1, 0), d=(1, 1), groups=1, shared=False, bias=True),
]


@pytest.mark.parametrize("case", OP_CASES)
def test_pacconv2d_matches_loop(backend_name, case):
    k = case["k"] if isinstance(case["k"], tuple) else (case["k"], case["k"])
    x = randn(2, 4, 5, 6, seed=2)
    c_out = 4 if case["shared"] else 6
    wshape = (1, 1, *k) if case["shared"] else (c_out, 4 // case["groups"], *k)
    w = randn(*wshape, seed=3)
    b = randn(c_out, seed=4) if case["bias"] else None
    K, _ = packernel2d(randn(2, 2, 5, 6, seed=5), kernel_size=case["k"], stride=case["s"],
                       padding=case["p"], dilation=case["d"])
    y = pacconv2d(x, K, w, b, case["s"], case["p"], case["d"], case["shared"],
                  groups=case["groups"])
    ref = loop_pacconv2d(x, K, w, b, case["s"], case["p"], case["d"], case["shared"],
                         case["groups"])
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


T_CASES = [
    dict(k=3, s=2, p=1, q=1, d=1, groups=1, shared=False, bias=True),
    dict(k=5, s=2, p=2, q=1, d=1, groups=2, shared=False, bias=False),
    dict(k=3, s=3, p=0, q=2, d=2, groups=1, shared=False, bias=True),
    dict(k=3, s=1, p=1, q=0, d=1, groups=1, shared=True, bias=True),
    dict(k=3, s=2, p=3, q=0, d=1, groups=1, shared=False, bias=True),  # negative P: crops
    dict(k=1, s=2, p=0, q=1, d=1, groups=2, shared=False, bias=False),
]


@pytest.mark.parametrize("case", T_CASES)
def test_pacconv_transpose2d_matches_loop(backend_name, case):
    x = randn(1, 4, 4, 5, seed=2)
    k, s, p, q, d = case["k"], case["s"], case["p"], case["q"], case["d"]
    c_out = 4 if case["shared"] else 6
    wshape = (1, 1, k, k) if case["shared"] else (4, c_out // case["groups"], k, k)
    w = randn(*wshape, seed=3)
    b = randn(c_out, seed=4) if case["bias"] else None
    ho = (4 - 1) * s - 2 * p + d * (k - 1) + q + 1
    wo = (5 - 1) * s - 2 * p + d * (k - 1) + q + 1
    K, _ = packernel2d(randn(1, 2, ho, wo, seed=5), kernel_size=k, stride=s, padding=p,
                       output_padding=q, dilation=d, transposed=True)
    y = pacconv_transpose2d(x, K, w, b, s, p, q, d, case["shared"], groups=case["groups"])
    ref = loop_pacconv_transpose2d(x, K, w, b, s, p, q, d, case["shared"], case["groups"])
    assert y.shape == (1, c_out, ho, wo)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channel_wise", [False, True])
@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 1, 1), (5, 1, 4, 2), (1, 2, 0, 1)])
def test_pacpool2d_matches_loop(backend_name, channel_wise, k, s, p, d):
    x = randn(2, 3, 5, 6, seed=2)
    g = randn(2, 3 if channel_wise else 2, 5, 6, seed=5)
    K, _ = packernel2d(g, kernel_size=k, stride=s, padding=p, dilation=d, channel_wise=channel_wise)
    y = pacpool2d(x, K, k, s, p, d)
    torch.testing.assert_close(y, loop_pacpool2d(x, K, k, s, p, d), rtol=1e-12, atol=1e-12)


# -- guided entry points -----------------------------------------------------------------------
KT = dict(kernel_type="inv_0.2_0.3_asym", smooth_kernel_type="average_3",
          smooth_kernel=smooth_filter("average_3"), inv_alpha=torch.tensor(0.2, dtype=D),
          inv_lambda=torch.tensor(0.3, dtype=D))


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_pacconv2d_guided_equals_two_steps(backend_name, with_mask, normalize, padding_mode):
    x, g, w, b = randn(2, 4, 5, 6, seed=1), randn(2, 2, 5, 6, seed=2), randn(6, 2, 3, 3), randn(6)
    mask = (randn(2, 1, 5, 6, seed=9) > 0).double() if with_mask else None
    geo = dict(stride=2, padding=1, dilation=1)
    out, out_mask = PF._pacconv2d_guided(x, g, mask, w, b, **geo, shared_filters=False, groups=2,
                                         padding_mode=padding_mode, normalize_kernel=normalize, **KT)
    K, m2 = packernel2d(g, mask, kernel_size=3, **geo, normalize_kernel=normalize,
                        padding_mode=padding_mode, **KT)
    ref = pacconv2d(x, K, w, b, **geo, groups=2, padding_mode=padding_mode)
    torch.testing.assert_close(out, ref)
    assert (out_mask is None) == (m2 is None)
    if m2 is not None:
        assert torch.equal(out_mask, m2)


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_pacconv_transpose2d_guided_equals_two_steps(backend_name, with_mask, shared):
    x, g = randn(2, 4, 4, 5, seed=1), randn(2, 2, 8, 10, seed=2)
    w = randn(1, 1, 3, 3) if shared else randn(4, 3, 3, 3)
    b = randn(4 if shared else 3)
    mask = (randn(2, 1, 4, 5, seed=9) > 0).double() if with_mask else None
    geo = dict(stride=2, padding=1, output_padding=1, dilation=1)
    out, out_mask = PF._pacconv_transpose2d_guided(x, g, mask, w, b, **geo, shared_filters=shared,
                                                   groups=1, normalize_kernel=True, **KT)
    K, m2 = packernel2d(g, mask, kernel_size=3, **geo, normalize_kernel=True, transposed=True, **KT)
    torch.testing.assert_close(out, pacconv_transpose2d(x, K, w, b, **geo, shared_filters=shared))
    if with_mask:
        assert torch.equal(out_mask, m2)
    else:
        assert out_mask is None


@pytest.mark.parametrize("channel_wise", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "circular"])
def test_pacpool2d_guided_equals_two_steps(backend_name, channel_wise, padding_mode):
    x = randn(2, 3, 5, 6, seed=1)
    g = randn(2, 3 if channel_wise else 2, 5, 6, seed=2)
    mask = (randn(2, 1, 5, 6, seed=9) > 0).double()
    geo = dict(kernel_size=3, stride=1, padding=2, dilation=2)
    out, out_mask = PF._pacpool2d_guided(x, g, mask, **geo, padding_mode=padding_mode,
                                         channel_wise=channel_wise, normalize_kernel=False, **KT)
    K, m2 = packernel2d(g, mask, **geo, channel_wise=channel_wise, padding_mode=padding_mode, **KT)
    torch.testing.assert_close(out, pacpool2d(x, K, **geo, padding_mode=padding_mode))
    assert torch.equal(out_mask, m2)


# -- padding modes -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("groups", [1, 2])
def test_padding_mode_matches_nn_conv2d(backend_name, mode, groups):
    x = randn(2, 4, 5, 6, seed=1)
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=(1, 2), dilation=(2, 1), groups=groups,
                           padding_mode=mode).double()
    geo = dict(stride=2, padding=(1, 2), dilation=(2, 1))
    const = torch.full((2, 2, 5, 6), 0.3, dtype=D)
    # a constant guidance gives a flat kernel (K ≡ 1), with any padding mode
    K, _ = packernel2d(const, kernel_size=3, padding_mode=mode, **geo)
    assert torch.equal(K, torch.ones_like(K))
    y = pacconv2d(x, K, conv.weight, conv.bias, **geo, groups=groups, padding_mode=mode)
    torch.testing.assert_close(y, conv(x))
    y2, _ = PF._pacconv2d_guided(
        x, const, None, conv.weight, conv.bias, **geo, shared_filters=False, groups=groups,
        padding_mode=mode, kernel_type="gaussian", smooth_kernel_type="none", smooth_kernel=None,
        inv_alpha=None, inv_lambda=None, normalize_kernel=False)
    torch.testing.assert_close(y2, conv(x))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_kernel_is_kernel_of_padded_guidance(mode):
    g, mask = randn(1, 2, 5, 6), (randn(1, 1, 5, 6, seed=3) > 0).double()
    K, m = packernel2d(g, mask, kernel_size=3, padding=(1, 2), padding_mode=mode,
                       normalize_kernel=True)
    gp, mp = F.pad(g, (2, 2, 1, 1), mode=mode), F.pad(mask, (2, 2, 1, 1), mode=mode)
    K2, m2 = packernel2d(gp, mp, kernel_size=3, normalize_kernel=True)
    torch.testing.assert_close(K, K2)
    assert torch.equal(m, m2)
    x = randn(1, 3, 5, 6, seed=5)
    torch.testing.assert_close(pacpool2d(x, K, 3, padding=(1, 2), padding_mode=mode),
                               pacpool2d(F.pad(x, (2, 2, 1, 1), mode=mode), K, 3))


# -- helpers -----------------------------------------------------------------------------------
def test_nd2col_matches_definition():
    x = randn(2, 3, 5, 6)
    cols = nd2col(x, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    xp = F.pad(x, (2, 2, 1, 1))
    assert cols.shape == (2, 3, 3, 5, 3, 2)
    for a in range(3):
        for e in range(5):
            ref = xp[:, :, a:a + 2 * 3:2, e * 2:e * 2 + 2]
            torch.testing.assert_close(cols[:, :, a, e], ref)


def test_nd2col_transposed_any_channels():
    x = randn(2, 3, 4, 5)
    cols = nd2col(x, 3, stride=2, padding=1, output_padding=1, transposed=True,
                  use_pyinn_if_possible=True)
    assert cols.shape == (2, 3, 3, 3, 8, 10)
    w = torch.zeros(3, 1, 3, 3, dtype=D)
    for c in range(3):
        one = nd2col(x[:, c:c + 1], 3, stride=2, padding=1, output_padding=1, transposed=True)
        torch.testing.assert_close(cols[:, c:c + 1], one)
    # reading every tap with weight e_{a,e} gives conv_transpose2d with the flipped one-hot weight
    w[:, 0, 0, 2] = 1
    ref = F.conv_transpose2d(x, w.flip(-1, -2), stride=2, padding=1, output_padding=1, groups=3)
    torch.testing.assert_close(cols[:, :, 0, 2], ref)


def test_np_gaussian_2d():
    g = np_gaussian_2d(3)
    assert g.dtype.name == "float32" and abs(float(g.sum()) - 1) < 1e-6
    G = g * 9
    assert abs(G[0, 1] - 1.1142924) < 1e-6 and abs(G[0, 0] - 0.45809937) < 1e-6
    G5 = np_gaussian_2d(5) * 25
    assert abs(G5[1, 2] - 2.0058684) < 1e-6 and abs(G5[0, 0] - 0.2135418) < 1e-6
    with pytest.raises(ValueError):
        np_gaussian_2d(4)


# -- dtypes and layouts ------------------------------------------------------------------------
def _all_ops(dtype, memory_format=torch.contiguous_format):
    """Every functional op on fixed inputs, returned as a list of float64 results."""
    def t(*shape, seed=0):
        return randn(*shape, seed=seed).to(dtype)

    def cl(x):
        return x.contiguous(memory_format=memory_format)

    x, g = cl(t(2, 4, 6, 7, seed=1)), cl(t(2, 3, 6, 7, seed=2))
    mask = cl((t(2, 1, 6, 7, seed=3) > 0).to(dtype))
    sk = smooth_filter("gaussian").to(dtype)
    outs = []
    K, _ = packernel2d(g, mask, kernel_size=3, padding=1, kernel_type="inv_0.5_-1_asym",
                       inv_alpha=torch.tensor(0.5, dtype=dtype),
                       inv_lambda=torch.tensor(-1.0, dtype=dtype), smooth_kernel_type="gaussian",
                       smooth_kernel=sk, normalize_kernel=True)
    assert K.dtype == dtype
    outs.append(K)
    w = cl(t(6, 2, 3, 3, seed=4))
    outs.append(pacconv2d(x, K, w, t(6, seed=5), padding=1, groups=2))
    xs = cl(t(2, 4, 3, 4, seed=6))
    Kt, _ = packernel2d(g, kernel_size=3, stride=2, padding=1, output_padding=(1, 0),
                        transposed=True)
    outs.append(pacconv_transpose2d(xs, Kt, cl(t(4, 3, 3, 3, seed=7)), None, 2, 1, (1, 0)))
    Kp, _ = packernel2d(cl(t(2, 4, 6, 7, seed=8)), kernel_size=3, stride=2, padding=1,
                        channel_wise=True)
    outs.append(pacpool2d(x, Kp, 3, 2, 1, padding_mode="reflect"))
    for o in outs:
        assert o.dtype == dtype
    return [o.double() for o in outs]


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 3e-2), (torch.bfloat16, 1e-1),
                                       (torch.float32, 1e-5)])
def test_low_precision_close_to_float64(backend_name, dtype, tol):
    for lo, hi in zip(_all_ops(dtype), _all_ops(torch.float64)):
        torch.testing.assert_close(lo, hi, rtol=tol, atol=tol)


def test_channels_last(backend_name):
    for a, b in zip(_all_ops(torch.float64, torch.channels_last), _all_ops(torch.float64)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_native_impl_is_ignored():
    g, x = randn(1, 2, 5, 6), randn(1, 3, 5, 6)
    K1, _ = packernel2d(g, kernel_size=3, padding=1, native_impl=True)
    K2, _ = packernel2d(g, kernel_size=3, padding=1)
    assert torch.equal(K1, K2)
    assert torch.equal(pacpool2d(x, K1, 3, 1, 1, native_impl=True), pacpool2d(x, K1, 3, 1, 1))


def test_public_names():
    for name in ("packernel2d", "pacconv2d", "pacconv_transpose2d", "pacpool2d", "nd2col",
                 "np_gaussian_2d"):
        assert getattr(pac_core, name).__doc__
