"""The ``torch.ops.pac`` operators themselves: opcheck, float64 gradcheck, argument checking
(wrong ranks/sizes/dtypes/devices/strides raise RuntimeError, never crash) and torch.compile."""

from __future__ import annotations

import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from pac_core import PacConv2d, PacConvTranspose2d, PacCRF, PacPool2d, backends
    from pac_core.compat.torch_version import HAS_COMPILE, HAS_OPCHECK

pytestmark = pytest.mark.skipif(
    "native" not in backends.available(), reason="native extension not built"
)

ops = torch.ops.pac
D = torch.float64


def _r(*shape, seed=0, dtype=D):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# Argument sets: (op, args) with tensors first. Geometry lists follow the schemas in ops.cpp.
def _conv_guided_args(kind=0, transposed=False, dtype=D):
    x = _r(2, 4, 5, 6, seed=1, dtype=dtype)
    if transposed:  # k3 s2 p1 q1: output 10x12, guidance at the output size
        g = _r(2, 2, 10, 12, seed=2, dtype=dtype)
        geo = ([1, 1], [1, 1], [1, 1], [2, 2], [1, 1], [1, 1])
    else:
        g = _r(2, 2, 5, 6, seed=2, dtype=dtype)
        geo = ([1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1])
    w = _r(6, 2, 3, 3, seed=3, dtype=dtype)
    b = _r(6, seed=4, dtype=dtype)
    a = torch.tensor(0.5, dtype=dtype) if kind else None
    lam = torch.tensor(-1.0, dtype=dtype) if kind else None
    return (x, g, g.clone(), w, b, a, lam, *geo, 2, kind, False)


def _pool_guided_args(kind=0, channel_wise=False, weight=False, dtype=D):
    c_f = 3 if channel_wise else 2
    x = _r(2, 3, 6, 5, seed=1, dtype=dtype)
    g = _r(2, c_f, 6, 5, seed=2, dtype=dtype)
    # stride 2, padding 1, k 3: 3x3 windows; phi off the centre values (no ReLU kink at Δ = 0)
    phi = g[:, :, ::2, ::2] + 0.1 * _r(2, c_f, 3, 3, seed=9, dtype=dtype)
    w = _r(1, 1, 3, 3, seed=3, dtype=dtype) if weight else None
    n = c_f if channel_wise else 1
    a = (0.2 + 0.1 * torch.rand(n, dtype=dtype)) if kind else None
    lam = (0.3 + 0.1 * torch.rand(n, dtype=dtype)) if kind else None
    return (x, g, phi, w, a, lam, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1], [2, 2], [1, 1], kind,
            bool(kind), channel_wise)


def _conv_kernel_args(dtype=D):
    x = _r(2, 4, 5, 6, seed=1, dtype=dtype)
    k = torch.rand(2, 1, 3, 3, 3, 3, dtype=dtype)
    w = _r(6, 2, 3, 3, seed=3, dtype=dtype)
    return (x, k, w, _r(6, seed=4, dtype=dtype), [2, 2], [1, 1], [1, 1], [1, 1], 2)


def _pool_kernel_args(dtype=D, upsample=False):
    x = _r(2, 3, 4, 5, seed=1, dtype=dtype)
    if upsample:  # transposed k3 s2 p1 q1 -> 8x10
        k = torch.rand(2, 3, 3, 3, 8, 10, dtype=dtype)
        return (x, k, _r(1, 1, 3, 3, seed=3, dtype=dtype), [1, 1], [1, 1], [1, 1], [2, 2])
    k = torch.rand(2, 3, 3, 3, 4, 5, dtype=dtype)
    return (x, k, None, [1, 1], [1, 1], [1, 1], [1, 1])


CASES = {
    "conv2d_guided": _conv_guided_args(),
    "conv2d_guided_inv": _conv_guided_args(kind=1),
    "conv2d_guided_transposed": _conv_guided_args(transposed=True),
    "pool2d_guided": _pool_guided_args(),
    "pool2d_guided_inv_cw_weight": _pool_guided_args(kind=1, channel_wise=True, weight=True),
    "conv2d_kernel": _conv_kernel_args(),
    "pool2d_kernel": _pool_kernel_args(),
    "pool2d_kernel_upsample": _pool_kernel_args(upsample=True),
}


def _op_of(name):
    return getattr(ops, name.split("_inv")[0].split("_transposed")[0].split("_upsample")[0])


def _with_grad(args):
    return tuple(a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a
                 for a in args)


@pytest.mark.skipif(not HAS_OPCHECK, reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_opcheck(name, requires_grad):
    args = CASES[name]
    if requires_grad:
        args = _with_grad(args)
    torch.library.opcheck(_op_of(name), args)


@pytest.mark.skipif(not HAS_OPCHECK, reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_backward_ops():
    x, g, phi, w, b, a, lam, *rest = _conv_guided_args(kind=1)
    out = ops.conv2d_guided(x, g, phi, w, b, a, lam, *rest)
    grad = torch.randn_like(out)
    for mask in ([True] * 6, [False, True, False, True, False, False]):
        torch.library.opcheck(ops.conv2d_guided_backward,
                              (grad, x, g, phi, w, a, lam, *rest, mask))
    px, pg, pphi, pw, pa, pl, *prest = _pool_guided_args(kind=1, channel_wise=True, weight=True)
    pout = ops.pool2d_guided(px, pg, pphi, pw, pa, pl, *prest)
    torch.library.opcheck(ops.pool2d_guided_backward,
                          (torch.randn_like(pout), px, pg, pphi, pw, pa, pl, *prest, [True] * 6))
    kx, kk, kw, kb, *krest = _conv_kernel_args()
    kout = ops.conv2d_kernel(kx, kk, kw, kb, *krest)
    torch.library.opcheck(ops.conv2d_kernel_backward,
                          (torch.randn_like(kout), kx, kk, kw, *krest, [True, True, True]))
    qx, qk, qw, *qrest = _pool_kernel_args(upsample=True)
    qout = ops.pool2d_kernel(qx, qk, qw, *qrest)
    torch.library.opcheck(ops.pool2d_kernel_backward,
                          (torch.randn_like(qout), qx, qk, qw, *qrest, [True, False, True]))


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name):
    args = _with_grad(CASES[name])
    op = _op_of(name)
    assert torch.autograd.gradcheck(lambda *a: op(*a), args, eps=1e-6, atol=1e-6,
                                    nondet_tol=1e-12)


def test_gradcheck_smaller_grid_asym():
    """Asymmetric inv kernel with per-channel params, strides and dilation on the guided conv."""
    x = _r(1, 2, 6, 7, seed=1).requires_grad_()
    g = _r(1, 3, 6, 7, seed=2).requires_grad_()
    phi = _r(1, 3, 2, 3, seed=5).requires_grad_()  # k3 s2 p1 d2 on 6x7 -> 2x3 windows
    w = _r(3, 2, 3, 3, seed=3).requires_grad_()
    a = torch.tensor([0.3], dtype=D, requires_grad=True)
    lam = torch.tensor([0.7], dtype=D, requires_grad=True)
    geo = ([2, 2], [1, 1], [2, 2], [1, 1], [2, 2], [1, 1])
    assert torch.autograd.gradcheck(
        lambda *t: ops.conv2d_guided(t[0], t[1], t[2], t[3], None, t[4], t[5], *geo, 1, 1, True),
        (x, g, phi, w, a, lam), eps=1e-6, atol=1e-6)


# -- robustness: every bad call is a RuntimeError ----------------------------------------------
def _bad_calls():
    x, g, phi, w, b, a, lam, s, p, d, u, gs, gp, groups, kind, asym = _conv_guided_args(kind=1)
    good = [x, g, phi, w, b, a, lam, s, p, d, u, gs, gp, groups, kind, asym]

    def conv(**over):
        args = list(good)
        names = ["x", "g", "phi", "w", "b", "a", "lam", "s", "p", "d", "u", "gs", "gp", "groups",
                 "kind", "asym"]
        for k, v in over.items():
            args[names.index(k)] = v
        return lambda: ops.conv2d_guided(*args)

    calls = {
        "input 3-D": conv(x=x[0]),
        "input int": conv(x=x.to(torch.int32)),
        "input half": conv(x=x.half()),
        "guidance dtype": conv(g=g.float()),
        "guidance batch": conv(g=g[:1]),
        "guidance 5-D": conv(g=g[None]),
        "phi size": conv(phi=phi[:, :, :-1]),
        "phi channels": conv(phi=phi[:, :1]),
        "weight channels": conv(w=w[:, :1]),
        "weight 2-D": conv(w=w[0, 0]),
        "groups 0": conv(groups=0),
        "groups 4": conv(groups=4),
        "bias size": conv(b=b[:-1]),
        "bias 2-D": conv(b=b[None]),
        "alpha missing": conv(a=None),
        "alpha size": conv(a=torch.ones(3, dtype=D)),
        "alpha dtype": conv(a=a.float()),
        "kernel_type": conv(kind=5),
        "stride 0": conv(s=[0, 1]),
        "stride len": conv(s=[1, 1, 1]),
        "dilation 0": conv(d=[1, 0]),
        "upsample 0": conv(u=[0, 1]),
        "guidance stride 0": conv(gs=[0, 1]),
        "conv kernel 5-D": lambda: ops.conv2d_kernel(x, torch.ones(2, 1, 3, 3, 5), w, b, s, p,
                                                     d, u, 2),
        "conv kernel channels": lambda: ops.conv2d_kernel(x, torch.ones(2, 2, 3, 3, 5, 6,
                                                                        dtype=D), w, b, s, p, d,
                                                          u, 2),
        "conv kernel taps": lambda: ops.conv2d_kernel(x, torch.ones(2, 1, 5, 5, 5, 6, dtype=D),
                                                      w, b, s, p, d, u, 2),
        "conv kernel batch": lambda: ops.conv2d_kernel(x, torch.ones(3, 1, 3, 3, 5, 6, dtype=D),
                                                       w, b, s, p, d, u, 2),
        "pool kernel channels": lambda: ops.pool2d_kernel(x, torch.ones(2, 3, 3, 3, 5, 6,
                                                                        dtype=D), None, s, p, d,
                                                          u),
        "pool weight shape": lambda: ops.pool2d_kernel(x, torch.ones(2, 1, 3, 3, 5, 6, dtype=D),
                                                       torch.ones(1, 2, 3, 3, dtype=D), s, p, d,
                                                       u),
        "pool channel_wise mismatch": lambda: ops.pool2d_guided(
            x, g, phi, None, None, None, [3, 3], s, p, d, u, gs, gp, 0, False, True),
        "grad_out shape": lambda: ops.conv2d_guided_backward(
            torch.ones(2, 6, 5, 5, dtype=D), x, g, phi, w, a, lam, s, p, d, u, gs, gp, 2, 1,
            False, [True] * 6),
        "grad_out dtype": lambda: ops.conv2d_kernel_backward(
            torch.ones(2, 6, 5, 6), x, torch.ones(2, 1, 3, 3, 5, 6, dtype=D), w, s, p, d, u, 2,
            [True] * 3),
        "output_mask length": lambda: ops.pool2d_kernel_backward(
            torch.ones(2, 4, 5, 6, dtype=D), x, torch.ones(2, 1, 3, 3, 5, 6, dtype=D), None, s,
            p, d, u, [True, True]),
    }
    return calls


BAD = _bad_calls()


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_raise(name):
    with pytest.raises((RuntimeError, TypeError)):
        BAD[name]()


def test_any_strides_accepted():
    """Non-contiguous and channels-last inputs give the same result as contiguous ones."""
    x, g, phi, w, b, a, lam, *rest = _conv_guided_args(kind=1)
    ref = ops.conv2d_guided(x, g, phi, w, b, a, lam, *rest)
    xs = x.to(memory_format=torch.channels_last)
    gs = torch.cat([g, g], dim=3)[..., : g.shape[3]]
    ws = w.transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(ops.conv2d_guided(xs, gs, phi, ws, b, a, lam, *rest), ref)


def test_extreme_geometry_is_safe():
    """Huge paddings, strides and dilations only read zeros, never out of bounds."""
    x = _r(1, 2, 4, 4, seed=1)
    k = torch.rand(1, 1, 3, 3, 2, 2, dtype=D)
    w = _r(3, 2, 3, 3, seed=2)
    for s, p, d, u in [([9, 9], [50, 50], [40, 40], [1, 1]), ([1, 1], [-30, -30], [7, 7], [3, 3]),
                       ([100, 1], [0, 100], [1, 1000], [5, 1])]:
        out = ops.conv2d_kernel(x, k, w, None, s, p, d, u, 1)
        assert out.shape == (1, 3, 2, 2) and torch.isfinite(out).all()
        grads = ops.conv2d_kernel_backward(torch.ones_like(out), x, k, w, s, p, d, u, 1,
                                           [True] * 3)
        assert all(torch.isfinite(t).all() for t in grads)


def test_empty_batch():
    x, g, phi, w, b, a, lam, *rest = _conv_guided_args()
    out = ops.conv2d_guided(x[:0], g[:0], phi[:0], w, b, a, lam, *rest)
    assert out.shape == (0, 6, 5, 6)


# -- torch.compile --------------------------------------------------------------------------------
class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1",
                              smooth_kernel_type="gaussian")
        self.pool = PacPool2d(3, stride=2, padding=1, normalize_kernel=True)
        self.up = PacConvTranspose2d(4, 2, 5, stride=2, padding=2, output_padding=1,
                                     normalize_kernel=True)
        self.crf = PacCRF(2, 2, pairwise_kernels=[dict(compat_type="4d"),
                                                  dict(compat_type="potts", spatial_filter=False,
                                                       blur=2)])

    def forward(self, x, g):
        y = torch.relu(self.conv(x, g))
        y = self.pool(y, g)  # 8x10 -> 4x5
        y = self.up(y, g)  # 4x5 -> 8x10
        return self.crf(y, g)  # two mean-field steps guided by g


@pytest.mark.compile
@pytest.mark.skipif(not HAS_COMPILE, reason="torch.compile unavailable")
def test_compile_fullgraph_matches_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(2, 3, 8, 10)
    g = torch.randn(2, 2, 8, 10)

    def run(model):
        net.zero_grad(set_to_none=True)
        xs, gs = x.clone().requires_grad_(), g.clone().requires_grad_()
        with backends.use("native"):
            out = model(xs, gs)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return [out, xs.grad, gs.grad] + [p.grad for p in net.parameters()]

    torch._dynamo.reset()
    eager = run(net)
    compiled = run(torch.compile(net, fullgraph=True, backend="inductor"))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5)
