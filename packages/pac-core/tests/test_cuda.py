"""The CUDA backend of ``torch.ops.pac`` (marker ``cuda``; skipped without a GPU).

* the ``native`` backend on CUDA tensors equals the ``reference`` backend on CUDA tensors, forward
  and backward, over a grid of layers and options (public API);
* every op on CUDA equals the same op on the CPU (``torch.ops.pac`` directly), forward and
  backward, including geometry the layers rarely produce (zero insertion, negative padding,
  tiles that split images, several images per tile);
* float64 ``gradcheck``, ``torch.library.opcheck``, ``torch.compile(fullgraph=True)``, autocast
  and half inputs, a non-default stream, deterministic mode, errors, and a second GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d, _ext, backends
    from pac_core.compat.torch_version import HAS_OPCHECK

HAS_GPU = torch.cuda.is_available()
_INFO = _ext.build_info() if HAS_GPU else None
HAS_CUDA_BUILD = bool(_INFO and "cuda" in _INFO.get("devices", ()))

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU"),
]
needs_cuda_build = pytest.mark.skipif(
    not HAS_CUDA_BUILD, reason="pac_core._C was built without CUDA (see test_build_has_cuda)"
)

DEV = "cuda"
F64 = {"atol": 1e-9, "rtol": 1e-7}
F32 = {"atol": 2e-4, "rtol": 2e-4}


def test_build_has_cuda():
    """On a GPU machine the extension must have been built with its CUDA kernels."""
    assert _INFO is not None, f"pac_core._C failed to load: {_ext.error()}"
    assert "cuda" in _INFO["devices"], f"pac_core._C built without CUDA: {_INFO}"
    assert "native" in backends.available()
    assert backends.get("native").supports(torch.device("cuda"), torch.float32)
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pac::"))
    assert names
    missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
    assert not missing


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _randn(*shape, seed, dtype=torch.float64, device=DEV, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(tuple(shape), generator=gen, dtype=dtype)).to(device)


def _run_layer(layer, backend, x, guide, mask=None, kernel_from_guide=False):
    """Output(s) and the gradients of (x, guide, *parameters) of one layer call."""
    x = x.detach().clone().requires_grad_()
    guide = guide.detach().clone().requires_grad_()
    params = [p for p in layer.parameters() if p.requires_grad]
    with backends.use(backend):
        if kernel_from_guide:
            kernel, _ = layer.compute_kernel(guide)
            res = layer(x, None, kernel)
        else:
            res = layer(x, guide, None, mask) if mask is not None else layer(x, guide)
    out, out_mask = (res if isinstance(res, tuple) else (res, None))
    gy = _randn(*out.shape, seed=99, dtype=out.dtype)
    grads = torch.autograd.grad(out, [x, guide, *params], gy, allow_unused=True)
    return out.detach(), out_mask, grads


def _assert_parity(layer, x, guide, mask=None, tol=F64, kernel_from_guide=False):
    ref = _run_layer(layer, "reference", x, guide, mask, kernel_from_guide)
    nat = _run_layer(layer, "native", x, guide, mask, kernel_from_guide)
    torch.testing.assert_close(nat[0], ref[0], **tol, msg="forward")
    if ref[1] is not None:
        assert nat[1] is not None and torch.equal(nat[1], ref[1])
    names = ["input", "guidance"] + [n for n, p in layer.named_parameters() if p.requires_grad]
    for name, gn, gr in zip(names, nat[2], ref[2]):
        if gr is None:
            assert gn is None or torch.count_nonzero(gn) == 0, name
            continue
        assert gn is not None, f"native gave no gradient for {name}"
        torch.testing.assert_close(gn, gr, **tol, msg=f"grad of {name}")


# ------------------------------------------------------------------------------------------------
# native (CUDA) == reference (CUDA), public API
# ------------------------------------------------------------------------------------------------
CONV_CASES = [
    dict(k=3, p=1),
    dict(k=3, s=2, p=1),
    dict(k=5, p=2, d=2),
    dict(k=3, p=0, groups=2),
    dict(k=3, p=1, shared_filters=True),
    dict(k=3, p=1, normalize_kernel=True),
    dict(k=3, s=2, p=2, d=2, normalize_kernel=True, mask=True),
    dict(k=3, p=1, mask=True),
    dict(k=5, p=2, kernel_type="inv_0.5_-1"),
    dict(k=3, p=1, kernel_type="inv_0.2_0.3_asym", normalize_kernel=True),
    dict(k=3, p=1, kernel_type="inv_1_2_fixed"),
    dict(k=3, p=1, smooth_kernel_type="gaussian"),
    dict(k=3, p=1, smooth_kernel_type="full_3", normalize_kernel=True),
    dict(k=(3, 5), s=(1, 2), p=(1, 2), d=(2, 1)),
    dict(k=7, s=3, p=3),
    dict(k=3, p=1, padding_mode="reflect"),
    dict(k=3, p=1, kernel_from_guide=True),
    dict(k=3, p=1, groups=2, kernel_from_guide=True, shared_filters=False),
]


def _ids(cases):
    return ["-".join(f"{k}={v}" for k, v in c.items()) for c in cases]


@needs_cuda_build
@pytest.mark.parametrize("case", CONV_CASES, ids=_ids(CONV_CASES))
def test_conv2d_parity(case):
    c = dict(case)
    mask, from_guide = c.pop("mask", False), c.pop("kernel_from_guide", False)
    groups = c.pop("groups", 1)
    shared = c.get("shared_filters", False)
    cin, cout = 4, (4 if shared else 6)
    layer = PacConv2d(cin, cout, c.pop("k"), stride=c.pop("s", 1), padding=c.pop("p", 0),
                      dilation=c.pop("d", 1), groups=groups, **c).to(DEV, torch.float64)
    x = _randn(2, cin, 9, 11, seed=1)
    g = _randn(2, 3, 9, 11, seed=2)
    m = (_randn(2, 1, 9, 11, seed=3) > -0.3).double() if mask else None
    _assert_parity(layer, x, g, m, kernel_from_guide=from_guide)


CONVT_CASES = [
    dict(k=5, s=2, p=2, q=1),
    dict(k=3, s=1, p=1),
    dict(k=3, s=2, p=1, q=1, d=2),
    dict(k=3, s=2, p=1, q=1, groups=2),
    dict(k=3, s=2, p=1, q=1, shared_filters=True),
    dict(k=5, s=2, p=2, q=1, normalize_kernel=True, mask=True),
    dict(k=3, s=3, p=1, q=2, mask=True),
    dict(k=5, s=2, p=2, q=1, kernel_type="inv_0.5_-1", normalize_kernel=True),
    dict(k=3, s=2, p=0, q=0, kernel_from_guide=True),
    dict(k=(3, 5), s=(2, 1), p=(1, 2), q=(1, 0)),
]


@needs_cuda_build
@pytest.mark.parametrize("case", CONVT_CASES, ids=_ids(CONVT_CASES))
def test_conv_transpose2d_parity(case):
    c = dict(case)
    mask, from_guide = c.pop("mask", False), c.pop("kernel_from_guide", False)
    groups = c.pop("groups", 1)
    shared = c.get("shared_filters", False)
    cin, cout = 4, (4 if shared else 6)
    k, s, p, q, d = c.pop("k"), c.pop("s", 1), c.pop("p", 0), c.pop("q", 0), c.pop("d", 1)
    layer = PacConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=q, dilation=d,
                               groups=groups, **c).to(DEV, torch.float64)
    hi, wi = 5, 6
    x = _randn(2, cin, hi, wi, seed=1)
    probe = torch.nn.functional.conv_transpose2d(
        torch.zeros(1, 1, hi, wi), torch.zeros(1, 1, *layer.kernel_size), stride=s, padding=p,
        output_padding=q, dilation=d)
    g = _randn(2, 3, *probe.shape[-2:], seed=2)
    m = (_randn(2, 1, hi, wi, seed=3) > -0.3).double() if mask else None
    _assert_parity(layer, x, g, m, kernel_from_guide=from_guide)


POOL_CASES = [
    dict(k=3, p=1),
    dict(k=5, s=2, p=2),
    dict(k=3, p=2, d=2),
    dict(k=3, p=1, channel_wise=True),
    dict(k=3, p=1, channel_wise=True, kernel_type="inv_0.5_-1", out_channels=3),
    dict(k=3, p=1, kernel_type="inv_0.2_0.3_asym"),
    dict(k=3, p=1, normalize_kernel=True),
    dict(k=3, p=1, normalize_kernel=True, mask=True),
    dict(k=3, p=1, channel_wise=True, normalize_kernel=True),
    dict(k=3, p=1, smooth_kernel_type="average_3"),
    dict(k=3, p=1, kernel_from_guide=True),
    dict(k=3, p=1, channel_wise=True, kernel_from_guide=True),
]


@needs_cuda_build
@pytest.mark.parametrize("case", POOL_CASES, ids=_ids(POOL_CASES))
def test_pool2d_parity(case):
    c = dict(case)
    mask, from_guide = c.pop("mask", False), c.pop("kernel_from_guide", False)
    layer = PacPool2d(c.pop("k"), stride=c.pop("s", 1), padding=c.pop("p", 0),
                      dilation=c.pop("d", 1), **c).to(DEV, torch.float64)
    x = _randn(2, 3, 9, 11, seed=1)
    g = _randn(2, 3, 9, 11, seed=2)
    m = (_randn(2, 1, 9, 11, seed=3) > -0.3).double() if mask else None
    _assert_parity(layer, x, g, m, kernel_from_guide=from_guide)


@needs_cuda_build
def test_parity_float32_and_split_tiles():
    """float32, and an image large enough that the CUDA tiles split it mid-row."""
    layer = PacConv2d(64, 8, 5, padding=2).to(DEV)
    x = _randn(2, 64, 121, 97, seed=1, dtype=torch.float32)
    g = _randn(2, 3, 121, 97, seed=2, dtype=torch.float32)
    _assert_parity(layer, x, g, tol={"atol": 2e-3, "rtol": 2e-3})
    pool = PacPool2d(5, padding=2, channel_wise=True).to(DEV)
    _assert_parity(pool, x[:, :3], g, tol=F32)


# ------------------------------------------------------------------------------------------------
# every op: CUDA == CPU (torch.ops.pac directly)
# ------------------------------------------------------------------------------------------------
def _out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


# (kernel size, stride, padding, dilation, upsample, guidance stride, guidance padding,
#  input size, guidance size)
GEOMETRIES = {
    "plain": ((3, 3), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1), (7, 9), (7, 9)),
    "strided": ((3, 5), (2, 1), (1, 2), (1, 2), (1, 1), (2, 1), (1, 2), (8, 11), (8, 11)),
    # transposed stride 2, padding 2, k 5: input stride 1, padding (k-1)d-p = 2, upsample 2
    "transposed": ((5, 5), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1), (2, 2), (4, 5), (8, 10)),
    # negative padding (a crop) with zero insertion 3x2 and dilation
    "crop": ((3, 3), (1, 1), (-1, 0), (2, 1), (3, 2), (1, 1), (2, 1), (4, 6), (9, 12)),
}


def _guided_args(geo, *, C, Cf, B=2, seed=0, kernel_type=0, alpha_shape=None, ck=1):
    k, s, p, d, u, gs, gp, hw, ghw = GEOMETRIES[geo] if isinstance(geo, str) else geo
    ho = _out_size(ghw[0], k[0], gs[0], gp[0], d[0])
    wo = _out_size(ghw[1], k[1], gs[1], gp[1], d[1])
    x = _randn(B, C, *hw, seed=seed + 1, device="cpu")
    g = _randn(B, Cf, *ghw, seed=seed + 2, device="cpu")
    phi = _randn(B, Cf, ho, wo, seed=seed + 3, device="cpu")
    alpha = lam = None
    if kernel_type == 1:
        shape = () if alpha_shape is None else alpha_shape
        alpha = 0.3 + 0.1 * _randn(*shape, seed=seed + 4, device="cpu")
        lam = -0.7 + 0.2 * _randn(*shape, seed=seed + 5, device="cpu")
    geo_args = [list(s), list(p), list(d), list(u), list(gs), list(gp)]
    return k, (ho, wo), x, g, phi, alpha, lam, geo_args


def _compare_devices(fn, *args):
    """fn(*args) on the CPU and on CUDA (tensors moved), outputs compared (tuples elementwise)."""
    def move(a, dev):
        if isinstance(a, torch.Tensor):
            return a.to(dev)
        return a

    cpu = fn(*[move(a, "cpu") for a in args])
    gpu = fn(*[move(a, DEV) for a in args])
    cpu = cpu if isinstance(cpu, tuple) else (cpu,)
    gpu = gpu if isinstance(gpu, tuple) else (gpu,)
    assert len(cpu) == len(gpu)
    for i, (a, b) in enumerate(zip(cpu, gpu)):
        assert b.device.type == "cuda", i
        assert a.shape == b.shape, (i, a.shape, b.shape)
        torch.testing.assert_close(b.cpu(), a, **F64, msg=f"output {i}")
    return gpu


CONV_OP_CASES = [
    ("plain", 1, 0, False, None),
    ("strided", 2, 0, False, None),
    ("transposed", 1, 1, False, (1,)),
    ("crop", 2, 1, True, None),
    ("plain", 1, 1, True, ()),
]


@needs_cuda_build
@pytest.mark.parametrize("geo,groups,kernel_type,asym,alpha_shape", CONV_OP_CASES)
def test_op_conv2d_guided_cuda_equals_cpu(geo, groups, kernel_type, asym, alpha_shape):
    k, _, x, g, phi, a, lam, geo_args = _guided_args(geo, C=4, Cf=3, kernel_type=kernel_type,
                                                     alpha_shape=alpha_shape)
    w = _randn(6, 4 // groups, *k, seed=10, device="cpu")
    b = _randn(6, seed=11, device="cpu")
    out = _compare_devices(
        lambda *t: torch.ops.pac.conv2d_guided(*t, *geo_args, groups, kernel_type, asym),
        x, g, phi, w, b, a, lam)[0]
    gy = _randn(*out.shape, seed=12, device="cpu")
    mask = [True, True, True, True, a is not None, lam is not None]
    _compare_devices(
        lambda *t: torch.ops.pac.conv2d_guided_backward(*t, *geo_args, groups, kernel_type, asym,
                                                        mask),
        gy, x, g, phi, w, a, lam)


POOL_OP_CASES = [
    # geometry, C_in, channel_wise, weight, kernel_type, alpha shape
    ("plain", 3, False, False, 0, None),
    ("strided", 3, True, True, 1, (3,)),
    ("transposed", 1, True, False, 0, None),
    ("crop", 3, False, True, 1, ()),
    ("plain", 1, False, True, 1, (1,)),
]


@needs_cuda_build
@pytest.mark.parametrize("geo,cin,channel_wise,weighted,kernel_type,alpha_shape", POOL_OP_CASES)
def test_op_pool2d_guided_cuda_equals_cpu(geo, cin, channel_wise, weighted, kernel_type,
                                          alpha_shape):
    k, _, x, g, phi, a, lam, geo_args = _guided_args(geo, C=cin, Cf=3, kernel_type=kernel_type,
                                                     alpha_shape=alpha_shape)
    w = _randn(1, 1, *k, seed=10, device="cpu") if weighted else None
    args = [list(k), *geo_args]
    out = _compare_devices(
        lambda *t: torch.ops.pac.pool2d_guided(*t, *args, kernel_type, False, channel_wise),
        x, g, phi, w, a, lam)[0]
    gy = _randn(*out.shape, seed=12, device="cpu")
    mask = [True, True, True, w is not None, a is not None, lam is not None]
    _compare_devices(
        lambda *t: torch.ops.pac.pool2d_guided_backward(*t, *args, kernel_type, False,
                                                        channel_wise, mask),
        gy, x, g, phi, w, a, lam)


@needs_cuda_build
@pytest.mark.parametrize("geo", list(GEOMETRIES))
@pytest.mark.parametrize("groups", [1, 2])
def test_op_conv2d_kernel_cuda_equals_cpu(geo, groups):
    k, (ho, wo), x, _, _, _, _, geo_args = _guided_args(geo, C=4, Cf=1)
    s, p, d, u = geo_args[:4]
    kern = _randn(2, 1, *k, ho, wo, seed=20, device="cpu")
    w = _randn(6, 4 // groups, *k, seed=21, device="cpu")
    b = _randn(6, seed=22, device="cpu")
    out = _compare_devices(
        lambda *t: torch.ops.pac.conv2d_kernel(*t, s, p, d, u, groups), x, kern, w, b)[0]
    gy = _randn(*out.shape, seed=23, device="cpu")
    _compare_devices(
        lambda *t: torch.ops.pac.conv2d_kernel_backward(*t, s, p, d, u, groups,
                                                        [True, True, True]),
        gy, x, kern, w)


@needs_cuda_build
@pytest.mark.parametrize("geo", list(GEOMETRIES))
@pytest.mark.parametrize("cin,ck,weighted", [(3, 1, False), (3, 3, True), (1, 3, True)])
def test_op_pool2d_kernel_cuda_equals_cpu(geo, cin, ck, weighted):
    k, (ho, wo), x, _, _, _, _, geo_args = _guided_args(geo, C=cin, Cf=1)
    s, p, d, u = geo_args[:4]
    kern = _randn(2, ck, *k, ho, wo, seed=20, device="cpu")
    w = _randn(1, 1, *k, seed=21, device="cpu") if weighted else None
    out = _compare_devices(lambda *t: torch.ops.pac.pool2d_kernel(*t, s, p, d, u), x, kern, w)[0]
    gy = _randn(*out.shape, seed=23, device="cpu")
    _compare_devices(
        lambda *t: torch.ops.pac.pool2d_kernel_backward(*t, s, p, d, u, [True, True, True]),
        gy, x, kern, w)


@needs_cuda_build
@pytest.mark.parametrize("batch,size,channels", [(5, (6, 7), 4), (1, (130, 97), 64),
                                                 (2, (90, 200), 48)])
def test_op_tiling_cuda_equals_cpu(batch, size, channels):
    """Several images per tile (small images) and images split mid-row over tiles (large)."""
    geo = ((5, 5), (1, 1), (2, 2), (1, 1), (1, 1), (1, 1), (2, 2), size, size)
    k, _, x, g, phi, a, lam, geo_args = _guided_args(geo, C=channels, Cf=3, B=batch,
                                                     kernel_type=1)
    w = _randn(8, channels, *k, seed=10, device="cpu", scale=0.1)
    out = _compare_devices(
        lambda *t: torch.ops.pac.conv2d_guided(*t, *geo_args, 1, 1, False),
        x, g, phi, w, None, a, lam)[0]
    gy = _randn(*out.shape, seed=12, device="cpu")
    _compare_devices(
        lambda *t: torch.ops.pac.conv2d_guided_backward(*t, *geo_args, 1, 1, False, [True] * 6),
        gy, x, g, phi, w, a, lam)
    _compare_devices(
        lambda *t: torch.ops.pac.pool2d_guided_backward(*t, list(k), *geo_args, 1, False, True,
                                                        [True] * 6),
        gy[:, :3], x[:, :3], g, phi, None, a.expand(3).contiguous(), lam)


@needs_cuda_build
def test_op_partial_output_mask():
    """Only the requested gradients are computed; the others come back empty."""
    k, _, x, g, phi, a, lam, geo_args = _guided_args("plain", C=4, Cf=3, kernel_type=1)
    x, g, phi, a, lam = (t.to(DEV) for t in (x, g, phi, a, lam))
    w = _randn(6, 4, *k, seed=10)
    gy = _randn(2, 6, 7, 9, seed=12)
    full = torch.ops.pac.conv2d_guided_backward(gy, x, g, phi, w, a, lam, *geo_args, 1, 1, False,
                                                [True] * 6)
    for i in range(6):
        mask = [j == i for j in range(6)]
        part = torch.ops.pac.conv2d_guided_backward(gy, x, g, phi, w, a, lam, *geo_args, 1, 1,
                                                    False, mask)
        for j in range(6):
            if j == i:
                torch.testing.assert_close(part[j], full[j], **F64)
            else:
                assert part[j].numel() == 0


# ------------------------------------------------------------------------------------------------
# gradcheck, opcheck, torch.compile
# ------------------------------------------------------------------------------------------------
def _functional(layer):
    names = [n for n, p in layer.named_parameters() if p.requires_grad]

    def fn(x, g, *params):
        out = torch.func.functional_call(layer, dict(zip(names, params)), (x, g))
        return out[0] if isinstance(out, tuple) else out

    return fn, [p.detach().clone().requires_grad_() for n, p in layer.named_parameters()
                if p.requires_grad]


@needs_cuda_build
@pytest.mark.parametrize("which", ["conv", "convT", "pool_cw", "conv_inv_norm"])
def test_gradcheck_cuda_float64(which):
    if which == "conv":
        layer = PacConv2d(2, 3, 3, padding=1, groups=1)
        x, g = _randn(1, 2, 5, 6, seed=1), _randn(1, 2, 5, 6, seed=2)
    elif which == "conv_inv_norm":
        layer = PacConv2d(2, 2, 3, stride=2, padding=1, kernel_type="inv_0.5_-1",
                          normalize_kernel=True, smooth_kernel_type="full_3")
        x, g = _randn(1, 2, 5, 6, seed=1), _randn(1, 2, 5, 6, seed=2)
    elif which == "convT":
        layer = PacConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)
        x, g = _randn(1, 2, 3, 4, seed=1), _randn(1, 2, 6, 8, seed=2)
    else:
        layer = PacPool2d(3, padding=1, channel_wise=True, kernel_type="inv_0.3_-0.5",
                          out_channels=2)
        x, g = _randn(1, 2, 5, 6, seed=1), _randn(1, 2, 5, 6, seed=2)
    layer = layer.to(DEV, torch.float64)
    fn, params = _functional(layer)
    inputs = (x.requires_grad_(), g.requires_grad_(), *params)
    with backends.use("native"):
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def _op_samples():
    """(op, args) pairs on CUDA for opcheck, every op once."""
    k, _, x, g, phi, a, lam, geo = _guided_args("strided", C=4, Cf=3, kernel_type=1,
                                                alpha_shape=(1,))
    x, g, phi, a, lam = (t.to(DEV).requires_grad_() for t in (x, g, phi, a, lam))
    w = _randn(6, 2, *k, seed=10).requires_grad_()
    b = _randn(6, seed=11).requires_grad_()
    ho, wo = phi.shape[-2:]
    gy = _randn(2, 6, ho, wo, seed=12)
    ops = torch.ops.pac
    kern = _randn(2, 1, *k, ho, wo, seed=13).requires_grad_()
    pw = _randn(1, 1, *k, seed=14).requires_grad_()
    s, p, d, u = geo[:4]
    return [
        (ops.conv2d_guided.default, (x, g, phi, w, b, a, lam, *geo, 2, 1, False)),
        (ops.conv2d_guided_backward.default,
         (gy, x, g, phi, w, a, lam, *geo, 2, 1, False, [True] * 6)),
        (ops.pool2d_guided.default, (x[:, :3], g, phi, pw, a, lam, list(k), *geo, 1, True, False)),
        (ops.pool2d_guided_backward.default,
         (gy[:, :3], x[:, :3], g, phi, pw, a, lam, list(k), *geo, 1, True, False, [True] * 6)),
        (ops.conv2d_kernel.default, (x, kern, w, b, s, p, d, u, 2)),
        (ops.conv2d_kernel_backward.default, (gy, x, kern, w, s, p, d, u, 2, [True] * 3)),
        (ops.pool2d_kernel.default, (x, kern, pw, s, p, d, u)),
        (ops.pool2d_kernel_backward.default, (gy[:, :4], x, kern, pw, s, p, d, u, [True] * 3)),
    ]


@needs_cuda_build
@pytest.mark.skipif(not HAS_OPCHECK, reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("index", range(8))
def test_opcheck_cuda(index):
    backends.get("native")  # registers the fake kernels and autograd formulas
    op, args = _op_samples()[index]
    if "backward" in op.name():  # no autograd formula for the backward ops themselves
        args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


# ------------------------------------------------------------------------------------------------
# dtypes, streams, determinism, errors, devices
# ------------------------------------------------------------------------------------------------
@needs_cuda_build
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    """Half inputs: the native backend says it does not support them (clear error when forced);
    'auto' runs them on the reference backend."""
    layer = PacConv2d(3, 4, 3, padding=1).to(DEV)
    x = _randn(1, 3, 8, 8, seed=1, dtype=dtype)
    g = _randn(1, 3, 8, 8, seed=2, dtype=dtype)
    native = backends.get("native")
    if not native.supports(torch.device(DEV), dtype):
        with backends.use("native"), pytest.raises(RuntimeError, match="does not support"):
            layer.to(dtype)(x, g)
        with backends.use("auto"):
            out = layer.to(dtype)(x, g)
        assert out.dtype == dtype and torch.isfinite(out).all()
        return
    with backends.use("native"):
        out = layer.to(dtype)(x, g)
    assert out.dtype == dtype and torch.isfinite(out).all()


AUTOCAST_LAYERS = {
    "conv": lambda: PacConv2d(3, 4, 3, padding=1),
    "conv_smooth_norm": lambda: PacConv2d(3, 4, 3, padding=1, smooth_kernel_type="gaussian",
                                          normalize_kernel=True),
    "convT_mask": lambda: PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1),
    "pool_mask": lambda: PacPool2d(3, padding=1, kernel_type="inv_0.5_-1"),
}


@needs_cuda_build
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("which", list(AUTOCAST_LAYERS))
def test_autocast(dtype, which):
    """Under autocast the layers run (the native ops see float32) and stay close to float32,
    also where the native backend uses autocast-affected torch ops (smoothing, mask ρ)."""
    layer = AUTOCAST_LAYERS[which]().to(DEV)
    transposed = which.startswith("convT")
    x = _randn(2, 3, 6 if transposed else 12, 6 if transposed else 12, seed=1,
               dtype=torch.float32).requires_grad_()
    g = _randn(2, 3, 12, 12, seed=2, dtype=torch.float32)
    mask = (_randn(2, 1, *x.shape[-2:], seed=3, dtype=torch.float32) > -0.3).float()
    args = (x, g, None, mask) if which.endswith("mask") else (x, g)

    def first(res):
        return res[0] if isinstance(res, tuple) else res

    with backends.use("native"):
        ref = first(layer(*args))
        with torch.autocast("cuda", dtype=dtype):
            out = first(layer(*args))
        out.float().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


@needs_cuda_build
def test_non_default_stream():
    layer = PacConvTranspose2d(4, 3, 5, stride=2, padding=2, output_padding=1).to(DEV)
    x = _randn(2, 4, 20, 24, seed=1, dtype=torch.float32)
    g = _randn(2, 3, 40, 48, seed=2, dtype=torch.float32)
    with backends.use("native"):
        ref, _, ref_grads = _run_layer(layer, "native", x, g)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            out, _, grads = _run_layer(layer, "native", x, g)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)  # cuBLAS may differ per stream
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@needs_cuda_build
def test_deterministic_mode(monkeypatch):
    """Deterministic mode is honoured (the backward gathers instead of atomics): two runs agree
    bit for bit. cuBLAS needs CUBLAS_WORKSPACE_CONFIG; without it torch raises a clear error."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    layer = PacConv2d(8, 8, 5, padding=2, kernel_type="inv_0.5_-1").to(DEV)
    pool = PacPool2d(3, padding=1, channel_wise=True).to(DEV)
    x = _randn(2, 8, 33, 35, seed=1, dtype=torch.float32)
    g = _randn(2, 8, 33, 35, seed=2, dtype=torch.float32)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [(_run_layer(layer, "native", x, g), _run_layer(pool, "native", x, g))
                for _ in range(2)]
    except RuntimeError as exc:  # an op without a deterministic implementation must say so
        assert "determinis" in str(exc)
        return
    finally:
        torch.use_deterministic_algorithms(prev)
    for (a1, a2) in zip(runs[0], runs[1]):
        assert torch.equal(a1[0], a2[0])
        for g1, g2 in zip(a1[2], a2[2]):
            assert (g1 is None and g2 is None) or torch.equal(g1, g2)


@needs_cuda_build
def test_errors_are_clear():
    k, _, x, g, phi, _, _, geo = _guided_args("plain", C=4, Cf=3)
    w = _randn(6, 4, *k, seed=10)
    x, g, phi = x.to(DEV), g.to(DEV), phi.to(DEV)
    with pytest.raises(RuntimeError, match=r"guidance must be a CUDA tensor|device"):
        torch.ops.pac.conv2d_guided(x, g.cpu(), phi, w, None, None, None, *geo, 1, 0, False)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.pac.conv2d_guided(x.half(), g.half(), phi.half(), w.half(), None, None, None,
                                    *geo, 1, 0, False)
    with pytest.raises(RuntimeError, match="phi must have shape"):
        torch.ops.pac.conv2d_guided(x, g, phi[:, :, 1:], w, None, None, None, *geo, 1, 0, False)
    with pytest.raises(RuntimeError, match="inv_alpha and inv_lambda"):
        torch.ops.pac.conv2d_guided(x, g, phi, w, None, None, None, *geo, 1, 1, False)


@needs_cuda_build
def test_empty_batch():
    k, _, x, g, phi, _, _, geo = _guided_args("plain", C=4, Cf=3, B=0)
    x, g, phi = x.to(DEV), g.to(DEV), phi.to(DEV)
    w = _randn(6, 4, *k, seed=10)
    out = torch.ops.pac.conv2d_guided(x, g, phi, w, None, None, None, *geo, 1, 0, False)
    assert out.shape == (0, 6, 7, 9)
    grads = torch.ops.pac.conv2d_guided_backward(out, x, g, phi, w, None, None, *geo, 1, 0,
                                                 False, [True] * 6)
    assert grads[0].shape == x.shape and grads[1].shape == g.shape
    assert grads[3].shape == w.shape and torch.count_nonzero(grads[3]) == 0


@needs_cuda_build
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_second_device():
    """Tensors on cuda:1 while cuda:0 is current: the ops run on cuda:1 (device guard)."""
    layer = PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_-1").to("cuda:1", torch.float64)
    x = _randn(2, 3, 9, 10, seed=1, device="cuda:1")
    g = _randn(2, 3, 9, 10, seed=2, device="cuda:1")
    with torch.cuda.device(0):
        nat = _run_layer(layer, "native", x, g)
        ref = _run_layer(layer, "reference", x, g)
    assert nat[0].device == torch.device("cuda:1")
    torch.testing.assert_close(nat[0], ref[0], **F64)
    for a, b in zip(nat[2], ref[2]):
        torch.testing.assert_close(a, b, **F64)
    with pytest.raises((RuntimeError, ValueError)):
        with backends.use("native"):
            layer(x, g.to("cuda:0"))


# torch.compile last: the slowest tests (inductor compiles Triton kernels).
class _Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = PacConv2d(3, 8, 3, padding=1)
        self.up = PacConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1)
        self.pool = PacPool2d(3, padding=1, normalize_kernel=True)

    def forward(self, x, g_low, g_high):
        y = torch.relu(self.conv(x, g_low))
        y = self.up(y, g_high)
        return self.pool(y, g_high)


@needs_cuda_build
@pytest.mark.compile
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_cuda(backend):
    if backend == "inductor":
        from torch.utils._triton import has_triton

        if not has_triton():
            pytest.skip("inductor on CUDA needs triton")
    torch._dynamo.reset()
    model = _Small().to(DEV)
    x = _randn(2, 3, 16, 16, seed=1, dtype=torch.float32)
    gl = _randn(2, 3, 16, 16, seed=2, dtype=torch.float32)
    gh = _randn(2, 3, 32, 32, seed=3, dtype=torch.float32)
    with backends.use("native"):
        eager = model(x, gl, gh)
        compiled = torch.compile(model, fullgraph=True, backend=backend)
        xc = x.clone().requires_grad_()
        out = compiled(xc, gl, gh)
        out.sum().backward()
    torch.testing.assert_close(out, eager, **F32)
    assert xc.grad is not None and torch.isfinite(xc.grad).all()
