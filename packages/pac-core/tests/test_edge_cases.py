"""Edge cases both backends must treat alike: huge geometry, empty tensors, NaN/Inf, second
derivatives (docs/backends.md: "Invalid arguments", "Invalid values", "Second derivatives")."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    import pac_core
    from pac_core import backends, pacconv2d, packernel2d, pacpool2d

D = torch.float64
NATIVE = "native" in backends.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not built")
BACKENDS = backends.available()


def _r(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


# -- geometry limits in the Python layer ----------------------------------------------------------
@pytest.mark.parametrize("value", [2**31, 2**61, 2**63 - 1, 2**63, 2**64])
@pytest.mark.parametrize("arg", ["stride", "padding", "dilation"])
def test_huge_geometry_rejected_by_name(arg, value):
    x, k = _r(1, 1, 4, 4), torch.ones(1, 1, 1, 1, 4, 4, dtype=D)
    with pytest.raises(ValueError, match=rf"pacpool2d: {arg} must be in \[\d, 2147483647\]"):
        pacpool2d(x, k, kernel_size=1, **{arg: value})


def test_huge_module_geometry_rejected_by_name():
    with pytest.raises(ValueError, match=r"PacConv2d: stride must be in \[1, 2147483647\]"):
        pac_core.PacConv2d(1, 1, 3, stride=2**63)


@pytest.mark.parametrize("backend", BACKENDS)
def test_geometry_at_the_limit_computes(backend):
    """The largest accepted values compute (taps far outside read zero) on both backends."""
    x, k = _r(1, 2, 4, 4), torch.rand(1, 1, 1, 1, 1, 1, dtype=D)
    big = 2**31 - 1
    with backends.use(backend):
        out = pacpool2d(x, k, kernel_size=1, stride=big, padding=0)
    torch.testing.assert_close(out, x[:, :, :1, :1] * k[:, :, 0, 0])


# -- the operators' messages ----------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_op_messages_name_the_argument(device):
    ops = torch.ops.pac
    x = torch.ones(2, 4, 5, 6, dtype=D, device=device)
    k = torch.ones(2, 1, 3, 3, 5, 6, dtype=D, device=device)
    g = torch.ones(2, 4, 5, 6, dtype=D, device=device)
    one = [1, 1]
    with pytest.raises(RuntimeError, match=r"pac::pool2d_kernel_backward: output_mask must have "
                                           r"3 elements \(input, kernel, weight\), got 2"):
        ops.pool2d_kernel_backward(g, x, k, None, one, one, one, one, [True, True])
    with pytest.raises(RuntimeError, match=r"pac::pool2d_kernel: padding must be in "
                                           r"\[-2147483647, 2147483647\], got \[0, "
                                           r"9223372036854775807\]"):
        ops.pool2d_kernel(x, k, None, one, [0, 2**63 - 1], one, one)
    pg = torch.ones(2, 2, 5, 6, dtype=D, device=device)
    with pytest.raises(RuntimeError, match=r"inv_alpha must have 1 element \(the kernel has one "
                                           r"channel\), got 3"):
        ops.pool2d_guided(x, pg, pg, None, torch.ones(3, dtype=D, device=device),
                          torch.ones(1, dtype=D, device=device), [3, 3], one, one, one, one,
                          one, one, 1, False, False)


@needs_native
def test_pool_of_zero_channels_has_zero_channels():
    ops = torch.ops.pac
    for device in ("cpu", "meta"):
        x = torch.ones(2, 0, 5, 5, device=device)
        k = torch.ones(2, 1, 3, 3, 5, 5, device=device)
        out = ops.pool2d_kernel(x, k, None, [1, 1], [1, 1], [1, 1], [1, 1])
        assert out.shape == (2, 0, 5, 5)


# -- empty tensors --------------------------------------------------------------------------------
def _layers():
    torch.manual_seed(0)
    return {
        "PacConv2d": (pac_core.PacConv2d(2, 3, 3, padding=1), (4, 4)),
        "PacConv2d_smooth": (pac_core.PacConv2d(2, 3, 3, padding=1, kernel_type="inv_0.5_-1",
                                                smooth_kernel_type="gaussian"), (4, 4)),
        "PacConvTranspose2d": (pac_core.PacConvTranspose2d(2, 3, 3, stride=2, padding=1,
                                                           output_padding=1), (8, 8)),
        "PacPool2d": (pac_core.PacPool2d(3, padding=1, normalize_kernel=True), (4, 4)),
        "PacCRF": (pac_core.PacCRF(2, 2), (4, 4)),
        "PacCRFLoose": (pac_core.PacCRFLoose(2, 2), (4, 4)),
    }


@pytest.mark.parametrize("name", list(_layers()))
@pytest.mark.parametrize("shape", ["batch0", "guidance_channels0"])
def test_empty_tensors_agree(name, shape):
    layer, g_hw = _layers()[name]
    layer = layer.double()
    b, cf = (0, 1) if shape == "batch0" else (1, 0)
    x = _r(b, 2, 4, 4, seed=1)
    g = _r(b, cf, *g_hw, seed=2)
    outs = {}
    for backend in BACKENDS:
        with backends.use(backend):
            out = layer(x, g)
            outs[backend] = out[0] if isinstance(out, tuple) else out
    ref = outs["reference"]
    assert ref.shape[0] == b
    for out in outs.values():
        torch.testing.assert_close(out, ref)


# -- NaN / Inf ------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_bad_kernel_value_at_a_padding_tap_is_ignored(bad):
    x = _r(1, 2, 4, 5, seed=1)
    k, _ = packernel2d(_r(1, 1, 4, 5, seed=2), kernel_size=3, padding=1)
    k = k.clone()
    k[0, 0, 0, 0, 0, 0] = bad  # tap (0, 0) of output (0, 0) reads row -1: padding
    w = _r(3, 2, 3, 3, seed=3)
    outs = {}
    for backend in BACKENDS:
        with backends.use(backend):
            outs[backend] = (pacconv2d(x, k, w, padding=1), pacpool2d(x, k, 3, padding=1))
    for conv, pool in outs.values():
        assert torch.isfinite(conv).all() and torch.isfinite(pool).all()
        torch.testing.assert_close(conv, outs["reference"][0])
        torch.testing.assert_close(pool, outs["reference"][1])


@needs_native
@pytest.mark.parametrize("kernel_type", ["gaussian", "inv_0.5_-1_asym"])
def test_nan_guidance_propagates_alike(kernel_type):
    torch.manual_seed(0)
    layer = pac_core.PacConv2d(2, 3, 3, padding=1, kernel_type=kernel_type).double()
    x, g = _r(1, 2, 5, 5, seed=1), _r(1, 2, 5, 5, seed=2)
    g[0, 1, 2, 2] = math.nan
    outs = {}
    for backend in BACKENDS:
        with backends.use(backend):
            outs[backend] = layer(x, g)
    nat, ref = outs["native"], outs["reference"]
    assert torch.isnan(ref).any()
    assert torch.equal(torch.isnan(nat), torch.isnan(ref))
    torch.testing.assert_close(nat, ref, equal_nan=True)


# -- second derivatives ---------------------------------------------------------------------------
def _gg_layers():
    torch.manual_seed(0)
    return {
        "PacConv2d": pac_core.PacConv2d(2, 2, 3, padding=1, kernel_type="inv_0.5_-1").double(),
        "PacConvTranspose2d": pac_core.PacConvTranspose2d(2, 2, 3, stride=2, padding=1,
                                                          output_padding=1).double(),
        "PacPool2d": pac_core.PacPool2d(3, padding=1, normalize_kernel=True).double(),
    }


@pytest.mark.parametrize("name", list(_gg_layers()))
def test_reference_double_backward(name):
    layer = _gg_layers()[name]
    x = _r(1, 2, 3, 3, seed=1).requires_grad_()
    g_hw = (6, 6) if name == "PacConvTranspose2d" else (3, 3)
    g = _r(1, 1, *g_hw, seed=2).requires_grad_()
    with backends.use("reference"):
        assert torch.autograd.gradgradcheck(lambda a, b: layer(a, b), (x, g))


@needs_native
@pytest.mark.parametrize("name", list(_gg_layers()))
def test_native_double_backward_raises(name):
    layer = _gg_layers()[name]
    x = _r(1, 2, 3, 3, seed=1).requires_grad_()
    g_hw = (6, 6) if name == "PacConvTranspose2d" else (3, 3)
    g = _r(1, 1, *g_hw, seed=2).requires_grad_()
    with backends.use("native"):
        out = layer(x, g)
        (gx,) = torch.autograd.grad((out * out).sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="double backward is not supported by the native "
                                               r"backend; use the reference backend"):
            gx.sum().backward()
        # first derivatives are unchanged by the marking
        (gx2,) = torch.autograd.grad((layer(x, g) ** 2).sum(), x)
        torch.testing.assert_close(gx.detach(), gx2)
