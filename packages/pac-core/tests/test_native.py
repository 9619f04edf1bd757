"""Parity of the ``native`` backend (``torch.ops.pac``) with the ``reference`` backend.

Forward results and every gradient (input, guidance, mask, weight, bias, inv_alpha, inv_lambda,
smoothing kernel, precomputed kernel) must agree over a grid of layer configurations, in float64
(tight) and float32. A small grid runs by default, a bigger one under ``-m slow``.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d, backends
    from pac_core import functional as PF

pytestmark = pytest.mark.skipif(
    "native" not in backends.available(), reason="native extension not built"
)

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=2e-4, atol=2e-4)}


def _run(layer, x, g, mask, kernel, backend: str):
    """Forward + backward of ``layer`` under ``backend``: (outputs, grads by name)."""
    layer.zero_grad(set_to_none=True)
    leaves = {"x": x, "g": g, "mask": mask, "kernel": kernel}
    inputs = {k: (None if v is None else v.detach().clone().requires_grad_(True))
              for k, v in leaves.items()}
    with backends.use(backend):
        res = layer(inputs["x"], inputs["g"], kernel=inputs["kernel"], mask=inputs["mask"])
    outs = res if isinstance(res, tuple) else (res,)
    gen = torch.Generator().manual_seed(7)
    weights = torch.randn(outs[0].shape, generator=gen, dtype=outs[0].dtype)
    (outs[0] * weights).sum().backward()
    grads = {k: v.grad for k, v in inputs.items() if v is not None}
    grads.update({n: p.grad for n, p in layer.named_parameters()})
    return outs, grads


def _compare(layer, x, g, mask=None, kernel=None):
    tol = TOL[x.dtype]
    ref_outs, ref_grads = _run(layer, x, g, mask, kernel, "reference")
    nat_outs, nat_grads = _run(layer, x, g, mask, kernel, "native")
    assert len(ref_outs) == len(nat_outs)
    torch.testing.assert_close(nat_outs[0], ref_outs[0], **tol)
    for r, n in zip(ref_outs[1:], nat_outs[1:]):
        assert n.dtype == torch.bool and torch.equal(n, r)
    assert ref_grads.keys() == nat_grads.keys()
    for name, r in ref_grads.items():
        n = nat_grads[name]
        if r is None:
            assert n is None or not n.any(), name
            continue
        assert n is not None, name
        torch.testing.assert_close(n, r, **tol, msg=lambda m, name=name: f"grad {name}: {m}")


def _rand(*shape, dtype, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _mask(b, c, h, w, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(b, c, h, w, generator=gen) > 0.3).to(dtype)


def _perturb(layer, seed=3):
    """Random parameter values (also for filler-initialised ones), so every gradient matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name in ("inv_alpha", "inv_lambda"):
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return layer


KERNEL_TYPES = ["gaussian", "inv_0.5_-1", "inv_0.2_0.3_asym"]
SMOOTH = ["none", "gaussian", "full_3"]


# -- conv -----------------------------------------------------------------------------------------
def _conv_case(dtype, *, k=3, s=1, p=1, d=1, groups=1, shared=False, normalize=False,
               kernel_type="gaussian", smooth="none", masked=False, bias=True, hw=(7, 9),
               c_in=4, c_out=6, c_f=2, b=2):
    if shared:
        c_out = c_in
    layer = PacConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, bias=bias,
                      kernel_type=kernel_type, smooth_kernel_type=smooth,
                      normalize_kernel=normalize, shared_filters=shared, groups=groups)
    layer = _perturb(layer.to(dtype))
    x = _rand(b, c_in, *hw, dtype=dtype, seed=1)
    g = _rand(b, c_f, *hw, dtype=dtype, seed=2)
    mask = _mask(b, 1, *hw, dtype, 4) if masked else None
    _compare(layer, x, g, mask)


CONV_GRID_FAST = [
    dict(),
    dict(s=2),
    dict(k=5, p=4, d=2),
    dict(k=5, s=2, p=0),
    dict(k=3, p=3),  # padding larger than the kernel reach
    dict(groups=2),
    dict(shared=True),
    dict(normalize=True),
    dict(masked=True),
    dict(masked=True, normalize=True),
    dict(kernel_type="inv_0.5_-1"),
    dict(kernel_type="inv_0.2_0.3_asym", smooth="average_3"),
    dict(k=5, s=2, p=2, smooth="gaussian", normalize=True),
    dict(smooth="full_3", d=2, p=2),
    dict(bias=False, masked=True, s=2),
    dict(shared=True, normalize=True, masked=True, kernel_type="inv_0.5_-1"),
    dict(k=(3, 5), p=(1, 2), s=(1, 2), d=(2, 1)),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONV_GRID_FAST, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_conv_parity(cfg, dtype):
    _conv_case(dtype, **cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "k,s,p,d,kernel_type,smooth,normalize,masked,groups,shared",
    [
        combo
        for combo in itertools.product(
            [3, 5], [1, 2], [0, 2], [1, 2], KERNEL_TYPES, SMOOTH, [False, True], [False, True],
            [1, 2], [False, True])
        if not (combo[-1] and combo[-2] != 1)
    ][::7],
)
def test_conv_parity_slow(k, s, p, d, kernel_type, smooth, normalize, masked, groups, shared):
    _conv_case(torch.float64, k=k, s=s, p=p, d=d, kernel_type=kernel_type, smooth=smooth,
               normalize=normalize, masked=masked, groups=groups, shared=shared, hw=(11, 13))


# -- transposed conv --------------------------------------------------------------------------
def _convt_case(dtype, *, k=3, s=2, p=1, q=1, d=1, groups=1, shared=False, normalize=False,
                kernel_type="gaussian", smooth="none", masked=False, bias=True, hw=(4, 5),
                c_in=4, c_out=6, c_f=2, b=2):
    if shared:
        c_out = c_in
    layer = PacConvTranspose2d(c_in, c_out, k, stride=s, padding=p, output_padding=q,
                               dilation=d, bias=bias, kernel_type=kernel_type,
                               smooth_kernel_type=smooth, normalize_kernel=normalize,
                               shared_filters=shared, groups=groups)
    layer = _perturb(layer.to(dtype))
    ks = layer.kernel_size
    h_o = [(hw[i] - 1) * layer.stride[i] - 2 * layer.padding[i] + layer.dilation[i] * (ks[i] - 1)
           + layer.output_padding[i] + 1 for i in range(2)]
    x = _rand(b, c_in, *hw, dtype=dtype, seed=1)
    g = _rand(b, c_f, *h_o, dtype=dtype, seed=2)
    mask = _mask(b, 1, *hw, dtype, 4) if masked else None
    _compare(layer, x, g, mask)


CONVT_GRID_FAST = [
    dict(),
    dict(k=5, s=2, p=2, q=1),
    dict(k=3, s=3, p=0, q=2, d=2),
    dict(k=3, s=1, p=1, q=0),
    dict(k=5, s=2, p=4, q=1),  # negative (k-1)d - p: a crop
    dict(normalize=True),
    dict(masked=True),
    dict(masked=True, normalize=True),
    dict(groups=2),
    dict(shared=True),
    dict(kernel_type="inv_0.2_0.3_asym", smooth="average_3"),
    dict(k=5, smooth="gaussian", d=2, p=3, normalize=True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONVT_GRID_FAST, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_conv_transpose_parity(cfg, dtype):
    _convt_case(dtype, **cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "k,s,p,q,d,kernel_type,normalize,masked,groups",
    [
        combo
        for combo in itertools.product(
            [3, 5], [1, 2, 3], [0, 1, 2], [0, 1], [1, 2], KERNEL_TYPES, [False, True],
            [False, True], [1, 2])
        if combo[3] < max(combo[1], combo[4])
    ][::5],
)
def test_conv_transpose_parity_slow(k, s, p, q, d, kernel_type, normalize, masked, groups):
    _convt_case(torch.float64, k=k, s=s, p=p, q=q, d=d, kernel_type=kernel_type,
                normalize=normalize, masked=masked, groups=groups, hw=(5, 6))


# -- pool -------------------------------------------------------------------------------------
def _pool_case(dtype, *, k=3, s=1, p=1, d=1, normalize=False, kernel_type="gaussian",
               smooth="none", masked=False, channel_wise=False, hw=(7, 9), c=3, c_f=2, b=2,
               mask_channels=1):
    if channel_wise:
        c_f = c
    layer = PacPool2d(k, stride=s, padding=p, dilation=d, kernel_type=kernel_type,
                      smooth_kernel_type=smooth, channel_wise=channel_wise,
                      normalize_kernel=normalize, out_channels=c)
    layer = _perturb(layer.to(dtype))
    x = _rand(b, c, *hw, dtype=dtype, seed=1)
    g = _rand(b, c_f, *hw, dtype=dtype, seed=2)
    mask = _mask(b, mask_channels, *hw, dtype, 4) if masked else None
    _compare(layer, x, g, mask)


POOL_GRID_FAST = [
    dict(),
    dict(s=2),
    dict(normalize=True, s=2),
    dict(k=3, s=1, p=2, d=2, channel_wise=True),
    dict(channel_wise=True, kernel_type="inv_0.5_-1"),
    dict(channel_wise=True, kernel_type="inv_0.2_0.3_asym", normalize=True, masked=True),
    dict(channel_wise=True, masked=True, mask_channels=3),
    dict(masked=True),
    dict(masked=True, normalize=True, smooth="average_3"),
    dict(k=5, p=0, smooth="full_3"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", POOL_GRID_FAST, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_pool_parity(cfg, dtype):
    _pool_case(dtype, **cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "k,s,p,d,kernel_type,smooth,normalize,masked,channel_wise",
    list(itertools.product([3, 5], [1, 2], [0, 2], [1, 2], KERNEL_TYPES, SMOOTH, [False, True],
                           [False, True], [False, True]))[::6],
)
def test_pool_parity_slow(k, s, p, d, kernel_type, smooth, normalize, masked, channel_wise):
    _pool_case(torch.float64, k=k, s=s, p=p, d=d, kernel_type=kernel_type, smooth=smooth,
               normalize=normalize, masked=masked, channel_wise=channel_wise, hw=(11, 10))


# -- precomputed kernels ----------------------------------------------------------------------
def _kernel_for(layer, g, mask=None):
    with backends.use("reference"):
        return layer.compute_kernel(g, mask)[0].detach()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("geo", [dict(k=3, s=1, p=1), dict(k=5, s=2, p=3, d=2)])
def test_conv_precomputed_kernel_parity(dtype, shared, geo):
    c_out = 4 if shared else 5
    layer = _perturb(PacConv2d(4, c_out, geo["k"], stride=geo["s"], padding=geo["p"],
                               dilation=geo.get("d", 1), shared_filters=shared).to(dtype))
    x, g = _rand(2, 4, 8, 9, dtype=dtype, seed=1), _rand(2, 2, 8, 9, dtype=dtype, seed=2)
    _compare(layer, x, None, kernel=_kernel_for(layer, g))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared,groups", [(False, 1), (False, 2), (True, 1)])
def test_conv_transpose_precomputed_kernel_parity(dtype, shared, groups):
    c_out = 4 if shared else 6
    layer = _perturb(PacConvTranspose2d(4, c_out, 5, stride=2, padding=2, output_padding=1,
                                        shared_filters=shared, groups=groups).to(dtype))
    x, g = _rand(2, 4, 4, 5, dtype=dtype, seed=1), _rand(2, 2, 8, 10, dtype=dtype, seed=2)
    _compare(layer, x, None, kernel=_kernel_for(layer, g))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channel_wise", [False, True])
def test_pool_precomputed_kernel_parity(dtype, channel_wise):
    layer = PacPool2d(3, stride=2, padding=1, channel_wise=channel_wise, normalize_kernel=True)
    x, g = _rand(2, 3, 8, 9, dtype=dtype, seed=1), _rand(2, 3, 8, 9, dtype=dtype, seed=2)
    _compare(layer.to(dtype), x, None, kernel=_kernel_for(layer, g))


def test_functional_precomputed_ops_parity():
    """The public functional ops with a kernel tensor that requires grad."""
    dt = torch.float64
    x, g = _rand(2, 3, 7, 8, dtype=dt, seed=1), _rand(2, 2, 7, 8, dtype=dt, seed=2)
    w = _rand(4, 3, 3, 3, dtype=dt, seed=3)
    with backends.use("reference"):
        kern = PF.packernel2d(g, kernel_size=3, padding=1)[0]

    def run(backend):
        xs, ks, ws = (t.clone().requires_grad_(True) for t in (x, kern, w))
        with backends.use(backend):
            y = PF.pacconv2d(xs, ks, ws, padding=1)
            z = PF.pacpool2d(xs, ks, 3, padding=1)
        (y.square().sum() + z.square().sum()).backward()
        return y, z, xs.grad, ks.grad, ws.grad

    for r, n in zip(run("reference"), run("native")):
        torch.testing.assert_close(n, r, **TOL[dt])


# -- dtypes ---------------------------------------------------------------------------------------
def test_native_supports():
    nat = backends.get("native")
    assert nat.name == "native" and nat.priority == 10
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        assert nat.supports(torch.device("cpu"), dt)
    assert not nat.supports(torch.device("cpu"), torch.int64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_computed_in_float32(dtype):
    """Half inputs: the same result as the reference backend (both compute in float32)."""
    layer = _perturb(PacConv2d(3, 4, 3, padding=1, normalize_kernel=True)).to(dtype)
    x = _rand(2, 3, 6, 7, dtype=torch.float32, seed=1).to(dtype)
    g = _rand(2, 2, 6, 7, dtype=torch.float32, seed=2).to(dtype)
    outs = {}
    for name in ("reference", "native"):
        xs = x.clone().requires_grad_(True)
        with backends.use(name):
            y = layer(xs, g)
        y.float().sum().backward()
        assert y.dtype == dtype and xs.grad.dtype == dtype
        outs[name] = (y.float(), xs.grad.float())
    for r, n in zip(outs["reference"], outs["native"]):
        torch.testing.assert_close(n, r, rtol=2e-2, atol=2e-2)
