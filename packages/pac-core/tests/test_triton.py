"""The ``triton`` backend against the reference backend.

Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors, through a backend
instance that also claims the CPU; ``TRITON_INTERPRET=1`` must then be in the environment when the
process starts (Triton reads it before this module could set it), as ``nox -s triton`` does.
Skipped when Triton is not importable (CPU builds of torch do not bring it) or, without a GPU,
when the variable is unset. Shapes stay tiny: the interpreter is slow.
"""

from __future__ import annotations

import os
from typing import Optional

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU: run with TRITON_INTERPRET=1 in the environment to test the Triton "
                "kernels in the interpreter", allow_module_level=True)

from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d, backends
from pac_core.backends.reference import ReferenceBackend
from pac_core.compat import torch_version as tv

if not tv.HAS_CUSTOM_OP:
    pytest.skip("the triton backend needs torch >= 2.4", allow_module_level=True)

from pac_core.backends.triton_backend import TritonBackend, fused_supports

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAME = "triton-test"
REF = ReferenceBackend()
BF16_TOL = {"atol": 3e-2, "rtol": 3e-2}
F32_TOL = {"atol": 2e-4, "rtol": 2e-4}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def _backend():
    """A triton backend that also runs CPU tensors (in the interpreter), as ``triton-test``."""
    inst = TritonBackend(devices=("cpu", "cuda"))
    backends.register(NAME, lambda: inst, replace=True)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare IEEE float32 on a GPU too
    yield inst
    torch.backends.cudnn.allow_tf32 = tf32
    backends.register(NAME, lambda: None, replace=True)  # unavailable again


_HAS_NATIVE = "native" in backends.available()


@pytest.fixture(params=["triton", "torch", "native"])
def backward(request, monkeypatch):
    """Each backward implementation in turn: the fused Triton kernels, the plain-torch
    recomputation, the native fused operators."""
    from pac_core.backends import triton_ops

    if request.param == "native" and not _HAS_NATIVE:
        pytest.skip("the native extension is not built")
    monkeypatch.setattr(triton_ops, "BACKWARD", request.param)
    return request.param


def _rand(*shape, dtype=torch.float32, grad=False):
    t = torch.randn(*shape, dtype=dtype, device=DEVICE)
    return t.requires_grad_(grad)


def _kernel_args(kernel_type="gaussian", smooth=False, dtype=torch.float32):
    inv = kernel_type.startswith("inv_")
    return dict(
        kernel_type=kernel_type,
        smooth_kernel_type="gaussian" if smooth else "none",
        smooth_kernel=(torch.tensor([[0.05, 0.1, 0.05], [0.1, 0.4, 0.1], [0.05, 0.1, 0.05]],
                                    dtype=dtype, device=DEVICE).reshape(1, 1, 3, 3)
                       if smooth else None),
        inv_alpha=torch.tensor(0.2, device=DEVICE, requires_grad=True) if inv else None,
        inv_lambda=torch.tensor(-1.0, device=DEVICE, requires_grad=True) if inv else None,
    )


def _both(method, tensors, kwargs):
    """Run ``method`` on the triton backend and the reference; return both outputs."""
    tri = getattr(backends.get(NAME), method)(*tensors, **kwargs)[0]
    ref = getattr(REF, method)(*tensors, **kwargs)[0]
    return tri, ref


def _grads(out, inputs, seed):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    ins = [t for t in inputs if t is not None and t.requires_grad]
    return torch.autograd.grad(out, ins, g)


# -- forward and backward parity --------------------------------------------------------------------
CONV_CASES = [
    # k, stride, padding, dilation, normalize, kernel type, smoothing, shared filters
    (3, 1, 1, 1, False, "gaussian", False, False),
    (5, 2, 2, 2, True, "gaussian", False, False),
    (3, 1, 0, 1, False, "inv_asym", True, False),
    (3, 2, 1, 1, True, "inv_", False, True),
]


@pytest.mark.parametrize("k,s,p,d,normalize,ktype,smooth,shared", CONV_CASES)
def test_conv2d_matches_reference(k, s, p, d, normalize, ktype, smooth, shared, backward):
    x, g = _rand(2, 5, 9, 8, grad=True), _rand(2, 3, 9, 8, grad=True)
    w = _rand(*((1, 1) if shared else (6, 5)), k, k, grad=True)
    b = _rand(5 if shared else 6, grad=True)
    kw = dict(stride=(s, s), padding=(p, p), dilation=(d, d), shared_filters=shared, groups=1,
              normalize_kernel=normalize, **_kernel_args(ktype, smooth))
    tri, ref = _both("pacconv2d_guided", (x, g, None, w, b), kw)
    torch.testing.assert_close(tri, ref, **F32_TOL)
    inputs = [x, g, w, b, kw["inv_alpha"], kw["inv_lambda"]]
    for gt, gr in zip(_grads(tri, inputs, 1), _grads(ref, inputs, 1)):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


TRANSPOSED_CASES = [
    # k, stride, padding, output padding, dilation, normalize
    (5, 2, 2, 1, 1, False),
    (3, 2, 1, 1, 1, True),
    (3, 3, 1, 2, 2, False),
    (3, 1, 1, 0, 1, True),
]


@pytest.mark.parametrize("k,s,p,q,d,normalize", TRANSPOSED_CASES)
def test_conv_transpose2d_matches_reference(k, s, p, q, d, normalize, backward):
    h, w_ = 4, 5
    ho = (h - 1) * s - 2 * p + d * (k - 1) + q + 1
    wo = (w_ - 1) * s - 2 * p + d * (k - 1) + q + 1
    x, g = _rand(2, 4, h, w_, grad=True), _rand(2, 3, ho, wo, grad=True)
    w, b = _rand(4, 6, k, k, grad=True), _rand(6, grad=True)
    kw = dict(stride=(s, s), padding=(p, p), output_padding=(q, q), dilation=(d, d),
              shared_filters=False, groups=1, normalize_kernel=normalize, **_kernel_args())
    tri, ref = _both("pacconv_transpose2d_guided", (x, g, None, w, b), kw)
    torch.testing.assert_close(tri, ref, **F32_TOL)
    for gt, gr in zip(_grads(tri, [x, g, w, b], 2), _grads(ref, [x, g, w, b], 2)):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


def test_conv_transpose2d_with_an_empty_sub_pixel_class():
    # Output 1 x 3 at stride 2: the odd-row class holds no pixel.
    x, g = _rand(1, 4, 1, 2, grad=True), _rand(1, 3, 1, 3, grad=True)
    w = _rand(4, 5, 3, 3, grad=True)
    kw = dict(stride=(2, 2), padding=(1, 1), output_padding=(0, 0), dilation=(1, 1),
              shared_filters=False, groups=1, normalize_kernel=True, **_kernel_args())
    tri, ref = _both("pacconv_transpose2d_guided", (x, g, None, w, None), kw)
    assert tri.shape == (1, 5, 1, 3)
    torch.testing.assert_close(tri, ref, **F32_TOL)
    for gt, gr in zip(_grads(tri, [x, g, w], 5), _grads(ref, [x, g, w], 5)):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("k,s,p,d,normalize", [(5, 1, 2, 1, True), (3, 2, 2, 2, False)])
def test_pool2d_matches_reference(k, s, p, d, normalize, backward):
    x, g = _rand(2, 4, 9, 7, grad=True), _rand(2, 2, 9, 7, grad=True)
    kw = dict(kernel_size=(k, k), stride=(s, s), padding=(p, p), dilation=(d, d),
              channel_wise=False, normalize_kernel=normalize, **_kernel_args())
    tri, ref = _both("pacpool2d_guided", (x, g, None), kw)
    torch.testing.assert_close(tri, ref, **F32_TOL)
    for gt, gr in zip(_grads(tri, [x, g], 3), _grads(ref, [x, g], 3)):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


def test_bfloat16_forward_and_backward(backward):
    x, g = _rand(1, 16, 8, 8), _rand(1, 4, 8, 8)
    w, b = _rand(16, 16, 3, 3), _rand(16)
    lp = [t.bfloat16().requires_grad_() for t in (x, g, w, b)]
    kw = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), shared_filters=False, groups=1,
              normalize_kernel=True, **_kernel_args(dtype=torch.bfloat16))
    tri, ref = _both("pacconv2d_guided", (*lp[:2], None, *lp[2:]), kw)
    assert tri.dtype == torch.bfloat16
    torch.testing.assert_close(tri.float(), ref.float(), **BF16_TOL)
    for gt, gr in zip(_grads(tri, lp, 4), _grads(ref, lp, 4)):
        assert gt.dtype == torch.bfloat16
        # bfloat16 rounding of summed gradients: compare against the gradient's own scale.
        scale = gr.float().abs().max().item()
        torch.testing.assert_close(gt.float(), gr.float(), atol=2e-2 * scale, rtol=0)


# -- the fused backward ---------------------------------------------------------------------------
FUSED_BWD_CASES = [
    # op, k, stride, padding, dilation, normalize, kernel type, shared filters, guidance grad,
    # (C_in, C_out)
    ("conv", (3, 3), (1, 1), (1, 1), (1, 1), False, "gaussian", False, True, (5, 6)),
    ("conv", (1, 1), (1, 1), (0, 0), (1, 1), True, "inv_", False, True, (5, 6)),
    ("conv", (3, 5), (2, 1), (1, 2), (1, 1), True, "gaussian", False, False, (5, 6)),
    ("conv", (3, 3), (2, 2), (2, 2), (2, 2), False, "inv_asym", False, True, (5, 6)),
    ("conv", (3, 3), (1, 1), (1, 1), (1, 1), True, "gaussian", False, True, (40, 20)),
    ("conv", (3, 3), (1, 2), (1, 1), (1, 1), True, "inv_asym", True, True, (5, 5)),
    ("conv_t", (3, 3), (2, 2), (1, 1), (1, 1), True, "inv_", False, True, (4, 6)),
    ("conv_t", (5, 3), (2, 3), (1, 0), (1, 1), False, "gaussian", False, True, (4, 6)),
    ("conv_t", (3, 3), (2, 2), (1, 1), (2, 2), True, "gaussian", True, True, (4, 4)),
    ("conv", (3, 3), (2, 3), (3, 4), (1, 1), True, "inv_", False, True, (3, 17)),
    ("conv_t", (3, 3), (3, 2), (0, 2), (1, 2), True, "inv_asym", False, True, (3, 5)),
    ("pool", (3, 3), (2, 2), (1, 1), (1, 1), True, "inv_asym", False, True, (4, 4)),
    ("pool", (5, 3), (1, 1), (2, 1), (1, 2), False, "gaussian", False, False, (4, 4)),
]


def _fused_case(op, k, s, p, d, normalize, ktype, shared, guidance_grad, channels,
                dtype=torch.float32, input_grad=True):
    """``(method, tensors, kwargs, differentiable inputs)`` of one case on tiny tensors."""
    c_in, c_out = channels
    kargs = _kernel_args(ktype, dtype=dtype)
    if op == "conv_t":
        h, w_ = 4, 3
        q = tuple(min(si, di) - 1 for si, di in zip(s, d))
        hw = tuple((n - 1) * si - 2 * pi + di * (ki - 1) + qi + 1
                   for n, si, pi, di, ki, qi in zip((h, w_), s, p, d, k, q))
        x, g = _rand(2, c_in, h, w_, dtype=dtype), _rand(2, 3, *hw, dtype=dtype)
        w = _rand(*((1, 1) if shared else (c_in, c_out)), *k, dtype=dtype)
        b = _rand(c_in if shared else c_out, dtype=dtype)
        kw = dict(stride=s, padding=p, output_padding=q, dilation=d, shared_filters=shared,
                  groups=1, normalize_kernel=normalize, **kargs)
        method, tensors = "pacconv_transpose2d_guided", [x, g, None, w, b]
    elif op == "conv":
        x, g = _rand(2, c_in, 7, 6, dtype=dtype), _rand(2, 3, 7, 6, dtype=dtype)
        w = _rand(*((1, 1) if shared else (c_out, c_in)), *k, dtype=dtype)
        b = _rand(c_in if shared else c_out, dtype=dtype)
        kw = dict(stride=s, padding=p, dilation=d, shared_filters=shared, groups=1,
                  normalize_kernel=normalize, **kargs)
        method, tensors = "pacconv2d_guided", [x, g, None, w, b]
    else:
        x, g = _rand(2, c_in, 7, 6, dtype=dtype), _rand(2, 3, 7, 6, dtype=dtype)
        kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, channel_wise=False,
                  normalize_kernel=normalize, **kargs)
        method, tensors = "pacpool2d_guided", [x, g, None]
    for t in tensors:
        if t is not None and (t is not g or guidance_grad) and (t is not x or input_grad):
            t.requires_grad_()
    inputs = [t for t in tensors if t is not None] + [kargs["inv_alpha"], kargs["inv_lambda"]]
    return method, tensors, kw, inputs


@pytest.mark.parametrize("case", FUSED_BWD_CASES, ids=lambda c: "-".join(map(str, c[:9])))
def test_fused_backward_matches_reference(case):
    """The Triton backward kernels (the default) against the reference backend's autograd."""
    method, tensors, kw, inputs = _fused_case(*case)
    tri, ref = _both(method, tensors, kw)
    torch.testing.assert_close(tri, ref, **F32_TOL)
    grads_tri, grads_ref = _grads(tri, inputs, 6), _grads(ref, inputs, 6)
    assert len(grads_tri) == len([t for t in inputs if t is not None and t.requires_grad])
    for gt, gr in zip(grads_tri, grads_ref):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("case", [
    ("conv", (3, 3), (1, 1), (1, 1), (1, 1), True, "inv_asym", False, True, (3, 4)),
    ("conv_t", (3, 3), (2, 2), (1, 1), (1, 1), True, "inv_", False, True, (3, 4)),
    ("pool", (3, 3), (1, 1), (1, 1), (1, 1), True, "inv_", False, True, (3, 3)),
    ("conv", (3, 3), (2, 1), (1, 1), (1, 1), True, "gaussian", False, True, (130, 3)),
], ids=["conv", "conv_t", "pool", "conv-130-channels"])
def test_fused_backward_without_the_input_gradient_or_with_many_channels(case):
    """The kernel's gradient formed by its own kernel: when the input needs no gradient, or when
    the input channels do not fit one block of the input-gradient kernel (more than 128)."""
    many = case[-1][0] > 128
    method, tensors, kw, inputs = _fused_case(*case, input_grad=many)
    tri, ref = _both(method, tensors, kw)
    for gt, gr in zip(_grads(tri, inputs, 9), _grads(ref, inputs, 9)):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


def _random_case(rng):
    """A random small configuration for :func:`_fused_case` (odd kernel sizes)."""
    op = rng.choice(["conv", "conv_t", "pool"])
    k = tuple(rng.choice([1, 3, 5]) for _ in range(2))
    s = tuple(rng.choice([1, 2, 3]) for _ in range(2))
    d = tuple(rng.choice([1, 2]) for _ in range(2))
    p = tuple(rng.randint(0, (ki - 1) * di // 2 + 1) for ki, di in zip(k, d))
    if op == "conv_t":  # the output must not be empty
        p = tuple(min(pi, ((ki - 1) * di) // 2) for pi, ki, di in zip(p, k, d))
    else:  # a window must fit the 7 x 6 input with its padding
        d = tuple(di if di * (ki - 1) < n + 2 * pi else 1
                  for di, ki, pi, n in zip(d, k, p, (7, 6)))
    shared = op != "pool" and rng.random() < 0.3
    c_in = rng.choice([1, 3, 17])
    c_out = c_in if (shared or op == "pool") else rng.choice([1, 5, 20])
    return (op, k, s, p, d, rng.random() < 0.5, rng.choice(["gaussian", "inv_", "inv_asym"]),
            shared, rng.random() < 0.8, (c_in, c_out))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_fused_backward_random_configurations(seed):
    """Random small configurations: the fused backward against the reference, float32."""
    import random

    case = _random_case(random.Random(seed))
    method, tensors, kw, inputs = _fused_case(*case, input_grad=seed % 4 != 3)
    tri, ref = _both(method, tensors, kw)
    torch.testing.assert_close(tri, ref, **F32_TOL)
    for gt, gr in zip(_grads(tri, inputs, seed), _grads(ref, inputs, seed)):
        torch.testing.assert_close(gt, gr, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", [FUSED_BWD_CASES[6], FUSED_BWD_CASES[11]], ids=["conv_t", "pool"])
def test_fused_backward_low_precision(case, dtype, monkeypatch):
    """16-bit inputs: gradients in the input dtype, close (at the gradient's own scale) to the
    exact plain-torch backward of the same forward. Both start from the saved 16-bit output, which
    with ``normalize_kernel`` moves ``∂α``/``∂λ`` by several percent from a float32 run."""
    from pac_core.backends import triton_ops

    method, tensors, kw, inputs = _fused_case(*case, dtype=dtype)
    out = getattr(backends.get(NAME), method)(*tensors, **kw)[0]
    assert out.dtype == dtype
    fused = _grads(out, inputs, 7)
    monkeypatch.setattr(triton_ops, "BACKWARD", "torch")
    out = getattr(backends.get(NAME), method)(*tensors, **kw)[0]
    for gt, gr in zip(fused, _grads(out, inputs, 7)):
        assert gt.dtype == gr.dtype
        scale = gr.float().abs().max().item()
        torch.testing.assert_close(gt.float(), gr.float(), atol=2e-2 * scale, rtol=0)


@pytest.mark.parametrize("case", [FUSED_BWD_CASES[1], FUSED_BWD_CASES[6]], ids=["conv", "conv_t"])
def test_fused_backward_is_deterministic(case):
    """Two forward + backward runs give bit-identical gradients (no atomics; split partials are
    summed in a fixed order)."""
    method, tensors, kw, inputs = _fused_case(*case)
    runs = []
    for _ in range(2):
        out = getattr(backends.get(NAME), method)(*tensors, **kw)[0]
        runs.append(_grads(out, inputs, 8))
    for g1, g2 in zip(*runs):
        assert torch.equal(g1, g2)


def test_fused_backward_rejects_float64():
    from pac_core.backends.triton_ops import guided_backward

    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, device=DEVICE)
    with pytest.raises(TypeError, match="float64"):
        guided_backward(x, x.new_empty(0, dtype=torch.float32), x, x, x, None, None, None,
                        [3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 0, False, True, False, False,
                        [True] * 6)


# -- selection and fallback -------------------------------------------------------------------------
def test_modules_run_on_the_backend_and_match_reference():
    x, g, x_low = _rand(1, 4, 8, 8), _rand(1, 3, 8, 8), _rand(1, 4, 4, 4)
    layers = [(PacConv2d(4, 5, 3, padding=1), (x, g)),
              (PacConvTranspose2d(4, 5, 3, stride=2, padding=1, output_padding=1), (x_low, g)),
              (PacPool2d(3, padding=1, normalize_kernel=True), (x, g))]
    for layer, args in layers:
        layer = layer.to(DEVICE)
        with backends.use(NAME):
            tri = layer(*args)
        with backends.use("reference"):
            ref = layer(*args)
        torch.testing.assert_close(tri, ref, **F32_TOL)


def test_uncovered_configurations_fall_back():
    x, g, w = _rand(1, 4, 6, 6), _rand(1, 3, 6, 6), _rand(4, 2, 3, 3)
    mask = (torch.rand(1, 1, 6, 6, device=DEVICE) > 0.3).float()
    base = dict(kernel_type="gaussian", inv_alpha=None, inv_lambda=None)
    assert fused_supports(x, g, None, _rand(4, 4, 3, 3), **base)
    assert not fused_supports(x, g, mask, w, **base)
    assert not fused_supports(x, g, None, w, groups=2, **base)
    assert not fused_supports(x, g, None, None, channel_wise=True, **base)
    assert not fused_supports(x.double(), g.double(), None, w.double(), **base)
    assert not fused_supports(x, _rand(1, 65, 6, 6), None, w, **base)
    kw = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), shared_filters=False, groups=2,
              normalize_kernel=False, **_kernel_args())
    tri = backends.get(NAME).pacconv2d_guided(x, g, mask, w, None, **kw)
    ref = REF.pacconv2d_guided(x, g, mask, w, None, **kw)
    torch.testing.assert_close(tri[0], ref[0], **F32_TOL)
    torch.testing.assert_close(tri[1], ref[1])


def test_supports_claims_its_devices_and_dtypes():
    inst = backends.get(NAME)
    assert inst.supports(torch.device(DEVICE), torch.bfloat16)
    assert not inst.supports(torch.device(DEVICE), torch.float64)
    assert not TritonBackend().supports(torch.device("cpu"), torch.float32)


# -- the operator ---------------------------------------------------------------------------------
def _op_args(normalize=True):
    from pac_core.backends.triton_ops import guided  # noqa: F401  (registers the op)

    x, g = _rand(1, 4, 5, 6, grad=True), _rand(1, 2, 5, 6, grad=True)
    w, b = _rand(3, 4, 3, 3, grad=True), _rand(3, grad=True)
    geometry = [3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    return (x, g, g.detach().clone().requires_grad_(), w, b, None, None, geometry, 0, False,
            False, normalize, False)


# The interpreter's kernels are plain Python that wrap_triton cannot trace: fake tensors and
# torch.compile are checked on a GPU only.
NEEDS_TRACEABLE_KERNELS = pytest.mark.skipif(
    DEVICE != "cuda", reason="Triton's interpreter runs kernels that torch cannot trace")


@pytest.mark.skipif(not tv.HAS_OPCHECK, reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_schema_and_autograd_registration():
    torch.library.opcheck(torch.ops.pac_triton.guided.default, _op_args(),
                          test_utils=("test_schema", "test_autograd_registration"))


@pytest.mark.skipif(not tv.HAS_OPCHECK, reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("normalize", [False, True])
def test_opcheck_backward_schema(normalize):
    torch.library.opcheck(torch.ops.pac_triton.guided_backward.default, _bwd_op_args(normalize),
                          test_utils=("test_schema",))


def _bwd_op_args(normalize):
    from pac_core.backends.triton_ops import guided_backward  # noqa: F401  (registers the op)

    x, g, phi, w, _b, _a, _l, geometry, *_ = _op_args()
    grad = torch.randn(1, 3, 5, 6, device=DEVICE)
    dnorm = (torch.randn(1, 5, 6, device=DEVICE) if normalize
             else x.new_empty((0,), dtype=torch.float32))
    return (grad, dnorm, x.detach(), g.detach(), phi.detach(), w.detach(), None, None, geometry,
            0, False, False, normalize, False, [True, True, True, True, False, False])


@NEEDS_TRACEABLE_KERNELS
@pytest.mark.skipif(not tv.HAS_OPCHECK, reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_fake_tensor():
    torch.library.opcheck(torch.ops.pac_triton.guided.default, _op_args(),
                          test_utils=("test_faketensor", "test_aot_dispatch_dynamic"))
    torch.library.opcheck(torch.ops.pac_triton.guided_backward.default, _bwd_op_args(True),
                          test_utils=("test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.compile
@NEEDS_TRACEABLE_KERNELS
@pytest.mark.skipif(not tv.HAS_TRITON_OP, reason="triton_op needs torch >= 2.6")
def test_compile_fullgraph_forward_and_backward(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    layer = PacConv2d(4, 5, 3, padding=1).to(DEVICE)
    x, g = _rand(1, 4, 6, 6, grad=True), _rand(1, 3, 6, 6, grad=True)
    with backends.use(NAME):
        eager = layer(x, g)
        compiled = torch.compile(layer, fullgraph=True)
        out = compiled(x, g)
    torch.testing.assert_close(out, eager, **F32_TOL)
    inputs = [x, g, layer.weight]
    for gc, ge in zip(torch.autograd.grad(out.sum(), inputs),
                      torch.autograd.grad(eager.sum(), inputs)):
        torch.testing.assert_close(gc, ge, **F32_TOL)


# -- the kernels compile for a GPU ------------------------------------------------------------------
_COMPILE_FOR_SM90 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from pac_core.backends import triton_bwd_kernels as KB
from pac_core.backends import triton_kernels as K

# Pointers in float32 whatever the input dtype; every other pointer is in the input dtype.
F32_PTRS = {"alpha_ptr", "lam_ptr", "norm_ptr", "dnorm_ptr", "ddist_ptr", "part_ptr"}
conv = dict(BLOCK_M=64, BLOCK_N=32, BLOCK_K=32, BLOCK_CF=16)
variants = [
    (K.pac_conv_fwd_kernel, dt, dict(KIND=kind, ASYM=kind == 1, HAS_BIAS=True, NORMALIZE=norm,
                                     PRECISION=prec, DOT_F32=False, **conv))
    for dt in ("fp32", "bf16", "fp16") for kind, norm, prec in ((0, False, "tf32"), (1, True, "ieee"))
] + [
    (K.pac_pool_fwd_kernel, dt, dict(KIND=0, ASYM=False, HAS_W=w, HAS_BIAS=w, NORMALIZE=not w,
                                     BLOCK_M=64, BLOCK_C=32, BLOCK_CF=16))
    for dt in ("fp32", "bf16") for w in (False, True)
] + [
    (KB.pac_bwd_input_kernel, dt, dict(KIND=kind, ASYM=kind == 1, POOL=pool, HAS_W=pool,
                                       NORMALIZE=fuse, FUSE_DK=fuse, PRECISION=prec,
                                       DOT_F32=False, **conv))
    for dt, kind, pool, fuse, prec in (("fp32", 0, False, True, "tf32"),
                                       ("fp32", 1, False, False, "tf32"),
                                       ("bf16", 1, False, True, "ieee"),
                                       ("fp16", 0, True, True, "ieee"),
                                       ("bf16", 1, True, False, "ieee"))
] + [
    (KB.pac_bwd_centre_kernel, dt, dict(ASYM=asym, BLOCK_M=64, BLOCK_CF=16))
    for dt, asym in (("fp32", False), ("bf16", True))
] + [
    (KB.pac_bwd_kernel_grad_kernel, dt, dict(KIND=kind, ASYM=kind == 1, POOL=pool, HAS_W=pool,
                                             NORMALIZE=norm, STORE_DDIST=True, PRECISION=prec,
                                             DOT_F32=False, **conv))
    for dt, kind, pool, norm, prec in (("fp32", 1, False, True, "tf32"),
                                       ("bf16", 0, False, False, "ieee"),
                                       ("bf16", 1, True, True, "ieee"))
] + [
    (KB.pac_bwd_guidance_kernel, dt, dict(ASYM=asym, BLOCK_M=64, BLOCK_CF=16))
    for dt, asym in (("fp32", False), ("bf16", True))
] + [
    (KB.pac_bwd_weight_kernel, dt, dict(KIND=kind, ASYM=False, PRECISION=prec, DOT_F32=False,
                                        **conv))
    for dt, kind, prec in (("fp32", 0, "tf32"), ("bf16", 1, "ieee"))
]
for fn, dt, consts in variants:
    sig = {n: "constexpr" if n in consts else
           ("*fp32" if n in F32_PTRS else f"*{dt}") if n.endswith("_ptr") else "i32"
           for n in fn.arg_names}
    triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32))
print("compiled", len(variants))
"""


def test_kernels_compile_for_sm90():
    """Triton's front end and ptxas accept every kernel variant for sm_90, with no GPU present.

    A subprocess without ``TRITON_INTERPRET``: the interpreter checks none of this.
    """
    import subprocess
    import sys

    pytest.importorskip("triton.backends.compiler")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _COMPILE_FOR_SM90], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled 24" in proc.stdout


_FAKE_TRACE = """
import torch
from torch.fx.experimental.proxy_tensor import make_fx
from pac_core.backends.triton_ops import guided

x, g = torch.randn(1, 4, 5, 6, requires_grad=True), torch.randn(1, 2, 5, 6, requires_grad=True)
phi = torch.randn(1, 2, 5, 6, requires_grad=True)
w, b = torch.randn(3, 4, 3, 3, requires_grad=True), torch.randn(3, requires_grad=True)
alpha, lam = torch.tensor([0.2], requires_grad=True), torch.tensor([-1.0], requires_grad=True)
geometry = [3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]

def f(*args):
    out, _ = guided(*args[:5], *args[5:], geometry, 1, True, False, True, False)
    return torch.autograd.grad(out.sum(), args)

args = (x, g, phi, w, b, alpha, lam)
gm = make_fx(f, tracing_mode="fake")(*args)
grads = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
assert [tuple(a.meta["val"].shape) for a in grads] == [tuple(a.shape) for a in args]
print(sorted({str(n.target) for n in gm.graph.nodes if "pac_triton" in str(n.target)}))
"""


def test_backward_traces_with_fake_tensors():
    """Forward and backward trace with fake tensors into the two operators (as AOTAutograd does
    under torch.compile), with gradients of the right shapes. A subprocess without
    ``TRITON_INTERPRET``: the interpreter's kernels cannot be traced."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _FAKE_TRACE], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pac_triton.guided.default" in proc.stdout
    assert "pac_triton.guided_backward.default" in proc.stdout


@pytest.mark.compile
@pytest.mark.parametrize("layer_kind", ["conv", "conv_transpose", "pool", "conv_mask_fallback"])
def test_backend_dispatch_traces_without_graph_break(layer_kind, monkeypatch):
    """Dynamo traces the backend's Python (coverage check, φ, geometry, fallback choice) with
    fullgraph=True. The Triton op is swapped for an opaque stand-in op: the interpreter's kernels
    cannot be traced, and the op itself is checked on a GPU."""
    import types

    @torch.library.custom_op("pac_triton_test::guided_stub", mutates_args=())
    def stub(x: torch.Tensor, guidance: torch.Tensor, phi: torch.Tensor,
             weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
             alpha: Optional[torch.Tensor], lam: Optional[torch.Tensor], geometry: list[int],
             kind: int, asym: bool, pool: bool, normalize: bool, tf32: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
        c = x.shape[1] if pool else weight.shape[0]
        return x.new_zeros((x.shape[0], c, *phi.shape[2:])), x.new_zeros((0,))

    @stub.register_fake
    def _(x, guidance, phi, weight, bias, alpha, lam, geometry, kind, asym, pool, normalize,
          tf32):
        c = x.shape[1] if pool else weight.shape[0]
        return x.new_empty((x.shape[0], c, *phi.shape[2:])), x.new_empty((0,))

    inst = backends.get(NAME)
    monkeypatch.setattr(inst, "_ops", types.SimpleNamespace(guided=stub))
    x, g, x_low = _rand(1, 4, 8, 8), _rand(1, 3, 8, 8), _rand(1, 4, 4, 4)
    mask = torch.ones(1, 1, 8, 8, device=DEVICE)
    layer, args = {
        "conv": (PacConv2d(4, 5, 3, padding=1, normalize_kernel=True,
                           smooth_kernel_type="gaussian"), (x, g)),
        "conv_transpose": (PacConvTranspose2d(4, 5, 3, stride=2, padding=1, output_padding=1),
                           (x_low, g)),
        "pool": (PacPool2d(3, padding=1, kernel_type="inv_0.5_-1"), (x, g)),
        "conv_mask_fallback": (PacConv2d(4, 5, 3, padding=1), (x, g, None, mask)),
    }[layer_kind]
    layer = layer.to(DEVICE)
    with backends.use(NAME):
        out = torch.compile(layer, fullgraph=True, backend="eager")(*args)
    assert isinstance(out, (torch.Tensor, tuple))
