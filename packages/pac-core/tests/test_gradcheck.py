"""First and second derivatives of every functional op (float64 ``gradcheck``/``gradgradcheck``).

The default grid is small and fast; the full grid runs under ``-m slow``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from _utils import randn, smooth_filter
from torch.autograd import gradcheck, gradgradcheck

from pac_core import functional as PF
from pac_core import pacconv2d, pacconv_transpose2d, packernel2d, pacpool2d
from pac_core.helpers import conv_transpose_output_size

pytestmark = pytest.mark.usefixtures("reference_backend")

INV = {"inv_0.5_-1": (0.5, -1.0), "inv_0.2_0.3_asym": (0.2, 0.3), "inv_1_2": (1.0, 2.0)}


def _case_inputs(op, *, k, s, p, d, q, kernel_type, smooth, channel_wise, mask, shared, groups):
    """The differentiable tensors of one case (name → tensor) and the fixed mask."""
    b, c, h, w = 1, 2, 5, 6
    t = {}
    if op == "convT":
        hi, wi = 3, 4
        t["x"] = randn(b, c, hi, wi, seed=1, requires_grad=True)
        ho = conv_transpose_output_size(hi, k, s, p, q, d)
        wo = conv_transpose_output_size(wi, k, s, p, q, d)
        t["g"] = randn(b, 2, ho, wo, seed=2, requires_grad=True)
        fixed_mask = (randn(b, 1, hi, wi, seed=3) > -0.5).double() if mask else None
    else:
        t["x"] = randn(b, c, h, w, seed=1, requires_grad=True)
        t["g"] = randn(b, c if channel_wise else 2, h, w, seed=2, requires_grad=True)
        fixed_mask = (randn(b, 1, h, w, seed=3) > -0.5).double() if mask else None
    if op in ("conv", "convT"):
        if shared:
            t["w"] = randn(1, 1, k, k, seed=4, requires_grad=True)
        elif op == "conv":
            t["w"] = randn(4, c // groups, k, k, seed=4, requires_grad=True)
        else:
            t["w"] = randn(c, 4 // groups, k, k, seed=4, requires_grad=True)
        t["b"] = randn(c if shared else 4, seed=5, requires_grad=True)
    if kernel_type in INV:
        a0, l0 = INV[kernel_type]
        n = c if channel_wise else 1
        shape = (n,) if channel_wise else ()
        t["alpha"] = (torch.full(shape, a0, dtype=torch.float64) + 0.1 * randn(*shape, seed=6))
        t["lam"] = (torch.full(shape, l0, dtype=torch.float64) + 0.1 * randn(*shape, seed=7))
        t["alpha"].requires_grad_(True)
        t["lam"].requires_grad_(True)
    if smooth != "none":
        sk = smooth_filter(smooth, 3)
        if smooth.startswith("full"):
            sk = (sk + 0.05 * randn(1, 1, 3, 3, seed=8)).requires_grad_(True)
            t["smooth"] = sk
        else:
            t["smooth_fixed"] = sk
    return t, fixed_mask


def _check(op, *, k=3, s=1, p=1, d=1, q=0, kernel_type="gaussian", smooth="none",
           channel_wise=False, normalize=False, mask=False, shared=False, groups=1,
           padding_mode="zeros", guided=False, gradgrad=True):
    t, fixed_mask = _case_inputs(op, k=k, s=s, p=p, d=d, q=q, kernel_type=kernel_type,
                                 smooth=smooth, channel_wise=channel_wise, mask=mask,
                                 shared=shared, groups=groups)
    smooth_fixed = t.pop("smooth_fixed", None)
    names = list(t)

    def f(*args):
        v = dict(zip(names, args))
        kern = dict(kernel_type=kernel_type, smooth_kernel_type=smooth,
                    smooth_kernel=v.get("smooth", smooth_fixed), inv_alpha=v.get("alpha"),
                    inv_lambda=v.get("lam"), normalize_kernel=normalize)
        if guided:
            if op == "conv":
                return PF._pacconv2d_guided(
                    v["x"], v["g"], fixed_mask, v["w"], v["b"], stride=s, padding=p, dilation=d,
                    shared_filters=shared, groups=groups, padding_mode=padding_mode, **kern)[0]
            if op == "convT":
                return PF._pacconv_transpose2d_guided(
                    v["x"], v["g"], fixed_mask, v["w"], v["b"], stride=s, padding=p,
                    output_padding=q, dilation=d, shared_filters=shared, groups=groups, **kern)[0]
            return PF._pacpool2d_guided(
                v["x"], v["g"], fixed_mask, kernel_size=k, stride=s, padding=p, dilation=d,
                padding_mode=padding_mode, channel_wise=channel_wise, **kern)[0]
        if op == "convT":
            K, _ = packernel2d(v["g"], fixed_mask, k, s, p, q, d, transposed=True, **kern)
            return pacconv_transpose2d(v["x"], K, v["w"], v["b"], s, p, q, d, shared,
                                       groups=groups)
        K, _ = packernel2d(v["g"], fixed_mask, k, s, p, 0, d, channel_wise=channel_wise,
                           padding_mode=padding_mode, **kern)
        if op == "conv":
            return pacconv2d(v["x"], K, v["w"], v["b"], s, p, d, shared, groups=groups,
                             padding_mode=padding_mode)
        if op == "pool":
            return pacpool2d(v["x"], K, k, s, p, d, padding_mode=padding_mode)
        return K  # op == "kernel"

    inputs = tuple(t[n] for n in names)
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, nondet_tol=1e-10)
    if gradgrad:
        assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, nondet_tol=1e-10)


FAST = [
    dict(op="conv"),
    dict(op="conv", k=1, p=0, guided=True),
    dict(op="conv", s=2, kernel_type="inv_0.2_0.3_asym", smooth="average_3", mask=True),
    dict(op="conv", k=5, p=4, d=2, smooth="gaussian", normalize=True),
    dict(op="conv", shared=True, smooth="full_3", d=2, p=2, mask=True, normalize=True,
         guided=True),
    dict(op="conv", groups=2, p=3, kernel_type="inv_0.5_-1"),
    dict(op="conv", s=2, padding_mode="reflect", normalize=True, guided=True),
    dict(op="convT", s=2, p=1, q=1),
    dict(op="convT", k=5, s=2, p=2, q=1, normalize=True, mask=True, guided=True),
    dict(op="convT", k=3, s=1, p=1, shared=True, kernel_type="inv_1_2", smooth="full_3"),
    dict(op="convT", k=3, s=3, p=0, q=2, d=2, groups=2, mask=True),
    dict(op="pool", s=2, channel_wise=True, kernel_type="inv_0.2_0.3_asym"),
    dict(op="pool", p=2, d=2, normalize=True, mask=True, guided=True, padding_mode="replicate"),
    dict(op="kernel", k=3, p=1, channel_wise=True, mask=True, smooth="full_3",
         kernel_type="inv_0.5_-1"),
]


@pytest.mark.parametrize("case", FAST, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradcheck_fast(case):
    _check(**case)


def _slow_grid():
    cases = []
    for op, k, s, d in itertools.product(("conv", "convT", "pool"), (1, 3, 5), (1, 2), (1, 2)):
        for p in sorted({0, (k - 1) * d // 2, (k - 1) * d // 2 + 2}):
            if op == "convT" and conv_transpose_output_size(3, k, s, p, s - 1, d) < 1:
                continue
            if op != "convT" and 5 + 2 * p - d * (k - 1) < 1:  # empty output on 5×6
                continue
            cases.append(dict(op=op, k=k, s=s, d=d, p=p, q=s - 1 if op == "convT" else 0,
                              gradgrad=False))
    variants = [
        dict(kernel_type="inv_0.5_-1"), dict(kernel_type="inv_0.2_0.3_asym"),
        dict(smooth="gaussian"), dict(smooth="average_3"), dict(smooth="full_3"),
        dict(normalize=True), dict(mask=True), dict(mask=True, normalize=True),
        dict(guided=True),
    ]
    for op, extra in itertools.product(("conv", "convT", "pool"), variants):
        for d in (1, 2):
            cases.append(dict(op=op, k=3, s=2, d=d, p=d, q=1 if op == "convT" else 0, **extra))
    for op in ("conv", "convT"):
        cases.append(dict(op=op, shared=True, kernel_type="inv_0.2_0.3_asym", mask=True))
        cases.append(dict(op=op, groups=2, smooth="full_3", normalize=True))
    cases.append(dict(op="pool", channel_wise=True, mask=True, normalize=True, smooth="full_3"))
    for mode in ("reflect", "replicate", "circular"):
        cases.append(dict(op="conv", padding_mode=mode, guided=True, mask=True))
        cases.append(dict(op="pool", padding_mode=mode, normalize=True))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("case", _slow_grid(),
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradcheck_full_grid(case):
    _check(**case)
