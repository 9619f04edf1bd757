"""The CUDA backend's kernels and drivers, run on the CPU (marker ``slow``; no GPU needed).

``csrc/cuda/pac_cuda_impl.cuh`` compiles as plain C++ with ``PAC_CUDA_EMULATE`` defined: every
kernel launch becomes a serial loop over the kernel's index space and the entry points take CPU
tensors. Built here with ``torch.utils.cpp_extension.load_inline`` (with tiny tiles, so that
images are split over tiles mid-row and several images share a tile), it must agree with the CPU
backend (``torch.ops.pac`` on CPU tensors) on every op, forward and backward. This checks the
CUDA index math, tiling and gather formulation; what it cannot check (launch configuration,
streams, device guards, cuBLAS) is left to ``test_cuda.py`` on a GPU.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from pac_core import _ext

from test_cuda import GEOMETRIES, _guided_args, _randn

pytestmark = pytest.mark.slow

CSRC = Path(__file__).resolve().parents[1] / "csrc"
OPS = ["conv2d_guided", "conv2d_guided_backward", "pool2d_guided", "pool2d_guided_backward",
       "conv2d_kernel", "conv2d_kernel_backward", "pool2d_kernel", "pool2d_kernel_backward"]
TOL = {"atol": 1e-10, "rtol": 1e-8}


# The backward ops take output_mask as c10::List<bool> (schema bool[]); pybind11 has no caster
# for it, so the emulation module brings one (a Python sequence of bools).
_LIST_BOOL_CASTER = """
namespace pybind11 { namespace detail {
template <> struct type_caster<c10::List<bool>> {
  PYBIND11_TYPE_CASTER(c10::List<bool>, _("List[bool]"));
  bool load(handle src, bool) {
    if (!isinstance<sequence>(src)) return false;
    value = c10::List<bool>();
    for (auto item : reinterpret_borrow<sequence>(src)) value.push_back(item.cast<bool>());
    return true;
  }
  static handle cast(const c10::List<bool>&, return_value_policy, handle) {
    return none().release();
  }
};
}}  // namespace pybind11::detail
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """The emulated CUDA entry points (``emu.conv2d_guided(...)`` etc. on CPU tensors)."""
    if _ext.load() is None:
        pytest.skip(f"pac_core._C not built: {_ext.error()}")
    if not (CSRC / "cuda" / "pac_cuda_impl.cuh").exists():
        pytest.skip("no CUDA sources next to the tests (installed package)")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    from torch.utils.cpp_extension import is_ninja_available, load_inline

    if not is_ninja_available():
        pytest.skip("torch.utils.cpp_extension needs ninja")

    src = '#define PAC_CUDA_EMULATE 1\n#include "cuda/pac_cuda_impl.cuh"\n' + _LIST_BOOL_CASTER + "".join(
        f"using pac::cuda_impl::{n}_cuda;\n" for n in OPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = load_inline(
            "pac_cuda_emulation", cpp_sources=[src], functions=[f"{n}_cuda" for n in OPS],
            extra_include_paths=[str(CSRC)],
            extra_cflags=["-O1", "-DPAC_CUDA_TILE_ELEMS=3000", "-DPAC_CUDA_MIN_TILE_PIXELS=7",
                          "-DPAC_CUDA_MIN_CHUNK_ROWS=1"],
            build_directory=str(tmp_path_factory.mktemp("pac_cuda_emulation")), verbose=False)

    class Ops:
        pass

    ops = Ops()
    for n in OPS:
        setattr(ops, n, getattr(mod, f"{n}_cuda"))
    return ops


def _same(emu_out, cpu_out):
    emu_out = emu_out if isinstance(emu_out, tuple) else (emu_out,)
    cpu_out = cpu_out if isinstance(cpu_out, tuple) else (cpu_out,)
    assert len(emu_out) == len(cpu_out)
    for i, (a, b) in enumerate(zip(emu_out, cpu_out)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        torch.testing.assert_close(a, b, **TOL, msg=f"output {i}")


def _both(emu, name, *args):
    cpu = getattr(torch.ops.pac, name)(*args)
    _same(getattr(emu, name)(*args), cpu)
    return cpu


# Extra geometries: larger images so that the tiny tiles split them, and one-pixel outputs.
GEOS = dict(GEOMETRIES)
GEOS["tiled"] = ((5, 3), (1, 2), (2, 1), (1, 1), (1, 1), (1, 2), (2, 1), (23, 19), (23, 19))
GEOS["tiled_transposed"] = ((3, 3), (1, 1), (1, 1), (2, 1), (2, 2), (1, 1), (2, 2), (9, 8),
                            (18, 16))
GEOS["one_pixel"] = ((3, 3), (1, 1), (0, 0), (1, 1), (1, 1), (1, 1), (0, 0), (3, 3), (3, 3))


@pytest.mark.parametrize("geo", list(GEOS))
@pytest.mark.parametrize("groups,kernel_type,asym,alpha_shape,batch",
                         [(1, 0, False, None, 2), (2, 1, True, (1,), 3), (1, 1, False, (), 1)])
def test_conv2d_guided(emu, geo, groups, kernel_type, asym, alpha_shape, batch):
    k, _, x, g, phi, a, lam, geo_args = _guided_args(GEOS[geo], C=4, Cf=3, B=batch,
                                                     kernel_type=kernel_type,
                                                     alpha_shape=alpha_shape)
    w = _randn(6, 4 // groups, *k, seed=10, device="cpu")
    b = _randn(6, seed=11, device="cpu")
    out = _both(emu, "conv2d_guided", x, g, phi, w, b, a, lam, *geo_args, groups, kernel_type,
                asym)
    gy = _randn(*out.shape, seed=12, device="cpu")
    full = [True, True, True, True, a is not None, lam is not None]
    _both(emu, "conv2d_guided_backward", gy, x, g, phi, w, a, lam, *geo_args, groups,
          kernel_type, asym, full)
    for i in range(6):
        mask = [m and j == i for j, m in enumerate(full)]
        _both(emu, "conv2d_guided_backward", gy, x, g, phi, w, a, lam, *geo_args, groups,
              kernel_type, asym, mask)


@pytest.mark.parametrize("geo", list(GEOS))
@pytest.mark.parametrize("cin,channel_wise,weighted,kernel_type,alpha_shape",
                         [(3, False, False, 0, None), (3, True, True, 1, (3,)),
                          (1, True, False, 1, ()), (1, False, True, 0, None),
                          (3, False, True, 1, (1,))])
def test_pool2d_guided(emu, geo, cin, channel_wise, weighted, kernel_type, alpha_shape):
    k, _, x, g, phi, a, lam, geo_args = _guided_args(GEOS[geo], C=cin, Cf=3, B=2,
                                                     kernel_type=kernel_type,
                                                     alpha_shape=alpha_shape)
    w = _randn(1, 1, *k, seed=10, device="cpu") if weighted else None
    args = [list(k), *geo_args]
    out = _both(emu, "pool2d_guided", x, g, phi, w, a, lam, *args, kernel_type, True,
                channel_wise)
    gy = _randn(*out.shape, seed=12, device="cpu")
    full = [True, True, True, w is not None, a is not None, lam is not None]
    _both(emu, "pool2d_guided_backward", gy, x, g, phi, w, a, lam, *args, kernel_type, True,
          channel_wise, full)
    for i in range(6):
        mask = [m and j == i for j, m in enumerate(full)]
        _both(emu, "pool2d_guided_backward", gy, x, g, phi, w, a, lam, *args, kernel_type, True,
              channel_wise, mask)


@pytest.mark.parametrize("geo", list(GEOS))
@pytest.mark.parametrize("groups,batch", [(1, 2), (2, 3)])
def test_conv2d_kernel(emu, geo, groups, batch):
    k, (ho, wo), x, _, _, _, _, geo_args = _guided_args(GEOS[geo], C=4, Cf=1, B=batch)
    s, p, d, u = geo_args[:4]
    kern = _randn(batch, 1, *k, ho, wo, seed=20, device="cpu")
    w = _randn(6, 4 // groups, *k, seed=21, device="cpu")
    b = _randn(6, seed=22, device="cpu")
    out = _both(emu, "conv2d_kernel", x, kern, w, b, s, p, d, u, groups)
    gy = _randn(*out.shape, seed=23, device="cpu")
    for mask in ([True, True, True], [True, False, False], [False, True, False],
                 [False, False, True]):
        _both(emu, "conv2d_kernel_backward", gy, x, kern, w, s, p, d, u, groups, mask)


@pytest.mark.parametrize("geo", list(GEOS))
@pytest.mark.parametrize("cin,ck,weighted", [(3, 1, False), (3, 3, True), (1, 3, True),
                                             (1, 1, True)])
def test_pool2d_kernel(emu, geo, cin, ck, weighted):
    k, (ho, wo), x, _, _, _, _, geo_args = _guided_args(GEOS[geo], C=cin, Cf=1, B=2)
    s, p, d, u = geo_args[:4]
    kern = _randn(2, ck, *k, ho, wo, seed=20, device="cpu")
    w = _randn(1, 1, *k, seed=21, device="cpu") if weighted else None
    out = _both(emu, "pool2d_kernel", x, kern, w, s, p, d, u)
    gy = _randn(*out.shape, seed=23, device="cpu")
    for mask in ([True, True, True], [False, True, False], [False, False, True]):
        _both(emu, "pool2d_kernel_backward", gy, x, kern, w, s, p, d, u, mask)


def test_errors_match_the_cpu_backend(emu):
    k, _, x, g, phi, _, _, geo = _guided_args("plain", C=4, Cf=3)
    w = _randn(6, 4, *k, seed=10, device="cpu")
    with pytest.raises(RuntimeError, match="phi must have shape"):
        emu.conv2d_guided(x, g, phi[:, :, 1:], w, None, None, None, *geo, 1, 0, False)
    with pytest.raises(RuntimeError, match="inv_alpha and inv_lambda"):
        emu.conv2d_guided(x, g, phi, w, None, None, None, *geo, 1, 1, False)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        emu.conv2d_guided(x.half(), g, phi, w, None, None, None, *geo, 1, 0, False)
    # the limits and overflow checks of pac_args.h, shared with the CPU backend
    huge = [[2**31, 1], *geo[1:]]
    with pytest.raises(RuntimeError, match=r"stride must be in \[1, 2147483647\]"):
        emu.conv2d_guided(x, g, phi, w, None, None, None, *huge, 1, 0, False)
    kern = _randn(x.shape[0], 1, *k, *phi.shape[2:], seed=3, device="cpu")
    out = emu.conv2d_kernel(x, kern, w, None, *geo[:4], 1)
    with pytest.raises(RuntimeError, match="output_mask must have 3 elements"):
        emu.conv2d_kernel_backward(out, x, kern, w, *geo[:4], 1, [True, True])


@pytest.mark.parametrize("cap", ["40", "1000000"])
def test_tile_cap_from_environment(emu, monkeypatch, cap):
    """PAC_CUDA_TILE_ELEMS (read at every call) changes the tiling, not the result."""
    monkeypatch.setenv("PAC_CUDA_TILE_ELEMS", cap)
    k, _, x, g, phi, a, lam, geo_args = _guided_args(GEOS["tiled"], C=4, Cf=3, B=3)
    w = _randn(6, 4, *k, seed=10, device="cpu")
    out = _both(emu, "conv2d_guided", x, g, phi, w, None, a, lam, *geo_args, 1, 0, False)
    gy = _randn(*out.shape, seed=12, device="cpu")
    _both(emu, "conv2d_guided_backward", gy, x, g, phi, w, a, lam, *geo_args, 1, 0, False,
          [True, True, True, True, False, False])
    _both(emu, "pool2d_guided", x, g, phi, None, a, lam, list(k), *geo_args, 0, False, False)
