"""The CPU kernels' instruction-set dispatch: every compiled set against the reference backend.

The extension compiles its CPU kernels once per instruction set (a portable baseline, AVX2+FMA and
AVX-512 where the compiler supports them) and picks one at load time; ``PAC_CPU_ISA`` forces one.
Here each set this processor supports runs the native parity checks (on images wide enough for
the vector loops and their tails), and its vectorised ``exp`` is checked against float64.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from pac_core import _ext, backends

import test_native as tn

pytestmark = pytest.mark.skipif(
    "native" not in backends.available(), reason="native extension not built"
)

_INFO = _ext.build_info() or {}
SUPPORTED = list(_INFO.get("cpu_isas_supported", []))
# Documented bound (docs/backends.md) of the float32 exp's relative error on [-87.3, 88.7].
EXP_MAX_REL_ERR = 2.5e-7


@pytest.fixture(params=SUPPORTED)
def isa(request):
    """Each instruction set this build has and this processor runs, made active in turn."""
    mod = _ext.load()
    previous = mod._set_cpu_isa(request.param)
    try:
        yield request.param
    finally:
        mod._set_cpu_isa(previous)


def test_build_info_names_the_isa():
    assert _INFO["cpu_isa"] in _INFO["cpu_isas_compiled"]
    assert _INFO["cpu_isas_compiled"][0] == "baseline"
    assert set(SUPPORTED) <= set(_INFO["cpu_isas_compiled"])
    assert "baseline" in SUPPORTED
    # without PAC_CPU_ISA the widest supported set runs
    if not os.environ.get("PAC_CPU_ISA"):
        assert _INFO["cpu_isa"] == SUPPORTED[-1]


def test_set_cpu_isa_rejects_unknown_names():
    with pytest.raises(RuntimeError, match="not compiled in"):
        _ext.load()._set_cpu_isa("sse9")


def _isa_in_subprocess(value: str) -> tuple[str, str]:
    code = "from pac_core import _ext; print(_ext.build_info()['cpu_isa'])"
    env = {**os.environ, "PAC_CPU_ISA": value}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return res.stdout.strip(), res.stderr


def test_env_var_forces_baseline():
    assert _isa_in_subprocess("baseline")[0] == "baseline"


def test_env_var_unknown_warns_and_uses_the_widest():
    isa_name, err = _isa_in_subprocess("sse9")
    assert isa_name == SUPPORTED[-1]
    assert "PAC_CPU_ISA=sse9" in err


def test_exp_accuracy(isa):
    mod = _ext.load()

    def exp(x: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(x, dtype=np.float32).tobytes()
        return np.frombuffer(mod._exp_float(data), dtype=np.float32)

    x = np.linspace(-87.3, 88.7, 2_000_003, dtype=np.float32)
    want = np.exp(x.astype(np.float64))
    got = exp(x).astype(np.float64)
    rel = np.abs(got - want) / want
    assert rel.max() < EXP_MAX_REL_ERR, (isa, float(rel.max()), float(x[rel.argmax()]))
    # subnormal results: exact to within the subnormal spacing 2^-149
    xs = np.linspace(-104.5, -87.3, 100_001, dtype=np.float32)
    assert np.abs(exp(xs) - np.exp(xs.astype(np.float64))).max() <= 2.0**-149
    special = np.array([-np.inf, -1e30, -200.0, 0.0, -0.0, 89.0, 1e30, np.inf, np.nan],
                       dtype=np.float32)
    got = exp(special)
    np.testing.assert_array_equal(got[:8], [0, 0, 0, 1, 1, np.inf, np.inf, np.inf])
    assert np.isnan(got[8])


# Wide enough (W = 37) for full vectors of every width plus a tail.
_HW = (6, 37)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", [
    dict(),
    dict(k=5, s=2, p=2, groups=2, kernel_type="inv_0.5_-1"),
    dict(normalize=True, masked=True, smooth="gaussian"),
    dict(shared=True, kernel_type="inv_0.2_0.3_asym"),
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_conv_parity_per_isa(isa, cfg, dtype):
    tn._conv_case(dtype, hw=_HW, **cfg)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", [
    dict(),
    dict(k=5, s=3, p=2, normalize=True, kernel_type="inv_0.5_-1"),
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_conv_transpose_parity_per_isa(isa, cfg, dtype):
    tn._convt_case(dtype, hw=(4, 15), **cfg)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", [
    dict(normalize=True, k=5, p=2),
    dict(normalize=True, masked=True, s=2),
    dict(channel_wise=True, kernel_type="inv_0.2_0.3_asym", normalize=True),
    dict(k=3, p=2, d=2, smooth="full_3"),
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_pool_parity_per_isa(isa, cfg, dtype):
    tn._pool_case(dtype, hw=_HW, **cfg)


def _input_weight_grads(layer, x, g, backend, kernel=None):
    """Output and the input / weight gradients with the guidance (or kernel) held fixed: the
    backward pass that computes no kernel gradient."""
    layer.zero_grad(set_to_none=True)
    xr = x.detach().clone().requires_grad_(True)
    with backends.use(backend):
        y = layer(xr, g, kernel=kernel) if kernel is not None else layer(xr, g)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype)
    (y * w).sum().backward()
    return y, xr.grad, layer.weight.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", [
    dict(c_in=5, c_out=19, k=3, p=1, hw=(9, 37)),
    dict(c_in=16, c_out=16, k=5, p=2, hw=(7, 33)),
    dict(c_in=6, c_out=8, k=3, p=4, d=2, groups=2, hw=(5, 11)),
    dict(c_in=3, c_out=4, k=5, p=0, hw=(9, 5)),
    dict(c_in=4, c_out=6, k=3, p=1, s=2, hw=(8, 21)),
    dict(c_in=4, c_out=6, k=5, p=2, transposed=True, hw=(4, 13)),
    dict(c_in=3, c_out=5, k=3, p=1, given_kernel=True, hw=(6, 37)),
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_input_weight_backward_per_isa(isa, cfg, dtype):
    """Input and weight gradients alone (no kernel gradient asked) against the reference:
    channel counts off the register blocks, rows with and without vector tails, padding wider
    than the kernel's reach, groups, dilation, a strided and a transposed layer, a given kernel."""
    from pac_core import PacConv2d, PacConvTranspose2d

    cfg = dict(cfg)
    hw = cfg.pop("hw")
    transposed = cfg.pop("transposed", False)
    given = cfg.pop("given_kernel", False)
    c_in, c_out, k = cfg.pop("c_in"), cfg.pop("c_out"), cfg.pop("k")
    p, d, s, groups = cfg.pop("p"), cfg.pop("d", 1), cfg.pop("s", 1), cfg.pop("groups", 1)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, c_in, *hw, generator=gen, dtype=dtype)
    if transposed:
        layer = PacConvTranspose2d(c_in, c_out, k, stride=2, padding=p, output_padding=1,
                                   dilation=d).to(dtype)
        g = torch.randn(2, 3, *[(n - 1) * 2 - 2 * p + d * (k - 1) + 2 for n in hw],
                        generator=gen, dtype=dtype)
    else:
        layer = PacConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=groups)
        layer = layer.to(dtype)
        g = torch.randn(2, 3, *hw, generator=gen, dtype=dtype)
    kernel = None
    if given:
        from pac_core.functional import packernel2d

        kernel = packernel2d(g, kernel_size=k, padding=p, dilation=d)[0]
        g = None
    ref = _input_weight_grads(layer, x, g, "reference", kernel)
    nat = _input_weight_grads(layer, x, g, "native", kernel)
    for name, r, n in zip(("output", "input grad", "weight grad"), ref, nat):
        torch.testing.assert_close(n, r, **tn.TOL[dtype], msg=lambda m, name=name: f"{name}: {m}")
