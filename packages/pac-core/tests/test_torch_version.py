"""pac_core.compat.torch_version: the supported-range check at import and the capability flags."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from pac_core.compat import torch_version as tv


def _import_with_torch_version(version: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import torch
        torch.__version__ = {version!r}
        import pac_core
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("version", ["2.0.1", "1.13.1+cu117"])
def test_import_fails_clearly_below_the_supported_range(version):
    res = _import_with_torch_version(version)
    assert res.returncode != 0
    assert "ImportError: pac-core needs torch >= 2.1" in res.stderr
    assert f"found {version}" in res.stderr


@pytest.mark.parametrize(("version", "parsed"), [
    ("2.1.2+cu121", (2, 1)), ("2.13.0+cpu", (2, 13)), ("2.15.0a0+git1234", (2, 15)),
    ("2.6.0.dev20241112", (2, 6)),
])
def test_parse(version, parsed):
    assert tv._parse(version) == parsed


def test_running_torch_is_in_range():
    assert tv.TORCH_VERSION >= tv.MIN_TORCH
    assert tv.TORCH_VERSION == tv._parse(torch.__version__)


def test_capability_flags_match_torch():
    assert tv.HAS_REGISTER_FAKE == hasattr(torch.library, "register_fake")
    assert tv.HAS_REGISTER_AUTOGRAD == hasattr(torch.library, "register_autograd")
    assert tv.HAS_OPCHECK == hasattr(torch.library, "opcheck")
    # torch 2.4 brought all three together; the shims cover the releases before it.
    assert tv.HAS_REGISTER_FAKE == tv.HAS_REGISTER_AUTOGRAD == tv.HAS_OPCHECK


def test_register_autograd_shim_on_a_python_op():
    """The op-level autograd registration (torch.library or the pre-2.4 Function kernel)."""
    lib = torch.library.Library("pac_tv_test", "DEF")
    lib.define("scale(Tensor x, Tensor w, int[] geo) -> Tensor")
    lib.impl("scale", lambda x, w, geo: x * w * geo[0], "CPU")

    @tv.register_fake("pac_tv_test::scale")
    def _fake(x, w, geo):
        return x.new_empty(x.shape)

    def setup(ctx, inputs, output):
        x, w, geo = inputs
        ctx.save_for_backward(x, w)
        ctx.factor = geo[0]

    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        n = ctx.needs_input_grad
        return (grad * w * ctx.factor if n[0] else None,
                (grad * x).sum().reshape(w.shape) * ctx.factor if n[1] else None, None)

    tv.register_autograd("pac_tv_test::scale", backward, setup_context=setup)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: torch.ops.pac_tv_test.scale(a, b, [2]), (x, w))
    with torch.no_grad():
        assert not torch.ops.pac_tv_test.scale(x, w, [2]).requires_grad


def test_load_weights_only(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"w": torch.ones(2)}, path)
    assert torch.equal(tv.load_weights_only(path)["w"], torch.ones(2))
