"""The install's safety nets: the build backend's checks and the extension's compatibility check."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from pac_core import _ext, backends

BACKEND_FILE = Path(__file__).resolve().parents[1] / "build_backend" / "pac_build.py"


def _installed_build_config() -> types.ModuleType | None:
    try:
        return importlib.import_module("pac_core._build_config")
    except ImportError:
        return None


_STABLE_BUILD = bool(getattr(_installed_build_config(), "STABLE_ABI", False))


@pytest.fixture
def pac_build():
    """The build backend module, loaded from the source tree."""
    spec = importlib.util.spec_from_file_location("pac_build_under_test", BACKEND_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def quick_torch(pac_build, monkeypatch):
    """The backend's torch check without the torch import in a subprocess (checked once below)."""
    monkeypatch.setattr(pac_build, "_torch_version", lambda site: torch.__version__)


@pytest.fixture
def fresh_ext(monkeypatch):
    """``_ext`` as before its first load; the loaded state comes back after the test."""
    monkeypatch.setattr(_ext, "_loaded", False)
    monkeypatch.setattr(_ext, "_module", None)
    monkeypatch.setattr(_ext, "_error", None)


def _fake_config(monkeypatch, **fields) -> None:
    config = types.ModuleType("pac_core._build_config")
    values = {"NATIVE": True, "REASON": "", "TORCH_VERSION": torch.__version__,
              "CXX11_ABI": int(torch._C._GLIBCXX_USE_CXX11_ABI), "CUDA": False}
    values.update(fields)
    for name, value in values.items():
        setattr(config, name, value)
    monkeypatch.setitem(sys.modules, "pac_core._build_config", config)


# -- the compatibility rule ----------------------------------------------------------------------
@pytest.mark.parametrize(("built", "running", "ok"), [
    ("2.13.0+cpu", "2.13.0+cpu", True),
    ("2.13.0+cpu", "2.13.0+cu130", True),  # same release, other local build
    ("2.13.0", "2.13.0+cpu", True),
    ("2.14.1+cu130", "2.13.0+cpu", False),
    ("2.13.0", "2.13.1", False),
    ("2.13.0a0+git1234", "2.13.0", False),
])
def test_incompatibility_release(built, running, ok):
    why = _ext.incompatibility(built, 1, running, 1)
    assert (why is None) == ok
    if not ok:
        assert built in why and running in why


def test_incompatibility_cxx11_abi():
    assert "_GLIBCXX_USE_CXX11_ABI=0" in _ext.incompatibility("2.1.2", 0, "2.1.2", 1)
    assert _ext.incompatibility("2.1.2", None, "2.1.2", 1) is None  # unknown: not checked


@pytest.mark.parametrize(("built", "running", "target", "ok"), [
    ("2.13.0+cpu", "2.13.0+cpu", "2.10", True),
    ("2.13.0+cpu", "2.15.0+cu132", "2.10", True),  # one stable-ABI build, later releases
    ("2.13.0+cpu", "2.10.0", "2.10", True),
    ("2.13.0+cpu", "2.9.1", "2.10", False),  # before the target
    ("2.13.0+cpu", "2.11.0", "2.12", False),
    ("2.13.0+cpu", "2.9.1", "2.8", False),  # never before the first stable ABI used (2.10)
])
def test_incompatibility_stable_abi(built, running, target, ok):
    why = _ext.incompatibility(built, 1, running, 0, stable_target=target)  # C++ ABI flag: moot
    assert (why is None) == ok
    if not ok:
        assert "stable ABI" in why and running in why


# -- what pac_core does with each build record -------------------------------------------------
def test_extension_for_another_torch_is_not_loaded(monkeypatch, fresh_ext):
    _fake_config(monkeypatch, TORCH_VERSION="1.99.0+cu999")
    imported = []
    real_import = _ext.importlib.import_module
    monkeypatch.setattr(_ext.importlib, "import_module",
                        lambda name: imported.append(name) or real_import(name))
    with pytest.warns(RuntimeWarning, match=r"built for torch 1\.99\.0\+cu999 .* pip install "
                                            r"--no-build-isolation"):
        assert _ext.load() is None
    assert "pac_core._C" not in imported  # never imported, so never registered
    assert "1.99.0" in _ext.error()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.load() is None  # one warning, then quiet


@pytest.mark.skipif(not _STABLE_BUILD, reason="the installed extension is not a stable-ABI build")
def test_stable_abi_build_loads_into_a_later_torch(monkeypatch, fresh_ext):
    # recorded as built with an older torch than the running one: a stable-ABI build still loads
    _fake_config(monkeypatch, TORCH_VERSION="2.10.0+cpu", STABLE_ABI=True, TORCH_TARGET="2.10",
                 CUDA_LIBRARY="")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.load() is not None
    assert _ext.error() is None
    assert "cpu" in _ext.devices()


def test_pure_install_without_compiler_warns_with_the_fix(monkeypatch, fresh_ext):
    _fake_config(monkeypatch, NATIVE=False, REASON="no working C++ compiler: none on PATH",
                 TORCH_VERSION="", CXX11_ABI=None)
    with pytest.warns(RuntimeWarning,
                      match=r"no working C\+\+ compiler.*install a C\+\+17 compiler"):
        assert _ext.load() is None
    assert "without its native extension" in _ext.error()


def test_pure_install_by_request_is_quiet(monkeypatch, fresh_ext):
    _fake_config(monkeypatch, NATIVE=False, REASON=_ext.PURE_BY_REQUEST, TORCH_VERSION="",
                 CXX11_ABI=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _ext.load() is None
    assert _ext.PURE_BY_REQUEST in _ext.error()


def test_reference_backend_serves_without_the_extension(monkeypatch, fresh_ext):
    _fake_config(monkeypatch, TORCH_VERSION="1.99.0")
    monkeypatch.setattr(backends.registry, "_instances", {})
    with pytest.warns(RuntimeWarning, match="was not loaded"):
        assert backends.available() == ["reference"]


# -- the build backend's checks ------------------------------------------------------------------
def test_backend_broken_compiler_gives_pure_python(pac_build, quick_torch, monkeypatch):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.delenv("PAC_NATIVE", raising=False)
    assert "CXX=/bin/false" in pac_build._cxx_problem()
    settings = pac_build._plan({"cmake.define.X": "1"})
    assert settings["cmake.define.PAC_NATIVE"] == "OFF"
    assert "no working C++ compiler" in settings["cmake.define.PAC_NATIVE_REASON"]
    assert settings["wheel.platlib"] == "false"
    assert settings["cmake.define.X"] == "1"  # the caller's settings are kept


def test_backend_no_compiler_on_path(pac_build, monkeypatch, tmp_path):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "no C++ compiler on PATH" in pac_build._cxx_problem()


def test_backend_native_on_without_compiler_stops(pac_build, quick_torch, monkeypatch):
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("PAC_NATIVE", "on")
    with pytest.raises(SystemExit, match=r"PAC_NATIVE=on, but the C\+\+ compiler"):
        pac_build._plan(None)


def test_backend_native_off_and_bad_mode(pac_build, monkeypatch):
    monkeypatch.setenv("PAC_NATIVE", "off")
    assert pac_build._plan(None)["cmake.define.PAC_NATIVE_REASON"] == _ext.PURE_BY_REQUEST
    monkeypatch.setenv("PAC_NATIVE", "maybe")
    with pytest.raises(SystemExit, match="PAC_NATIVE must be auto, on or off, got 'maybe'"):
        pac_build._plan(None)


def test_backend_stable_abi_choice(pac_build, monkeypatch):
    monkeypatch.delenv("PAC_STABLE_ABI", raising=False)
    assert pac_build._stable_abi((2, 10), "2.10.0")
    assert not pac_build._stable_abi((2, 9), "2.9.1")
    monkeypatch.setenv("PAC_STABLE_ABI", "off")
    assert not pac_build._stable_abi((2, 15), "2.15.0")
    monkeypatch.setenv("PAC_STABLE_ABI", "on")
    with pytest.raises(SystemExit, match=r"PAC_STABLE_ABI=on, but torch 2\.9\.1 predates"):
        pac_build._stable_abi((2, 9), "2.9.1")
    monkeypatch.setenv("PAC_STABLE_ABI", "always")
    with pytest.raises(SystemExit, match="PAC_STABLE_ABI must be auto, on or off"):
        pac_build._stable_abi((2, 15), "2.15.0")


@pytest.mark.skipif(importlib.util.find_spec("pybind11") is None
                    or (shutil.which("cmake") is None and importlib.util.find_spec("cmake") is None),
                    reason="the build tools are not installed here")
def test_backend_stable_abi_build_is_abi3(pac_build, quick_torch, monkeypatch):
    monkeypatch.delenv("PAC_STABLE_ABI", raising=False)
    monkeypatch.delenv("PAC_NATIVE", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    settings = pac_build._plan(None)
    stable = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 10)
    assert settings["cmake.define.PAC_STABLE_ABI"] == ("ON" if stable else "OFF")
    assert settings.get("wheel.py-api") == ("cp39" if stable else None)


def test_backend_finds_torch(pac_build):
    assert pac_build._torch_site() == ""  # importable as is in this environment
    assert pac_build._torch_version("") == torch.__version__


def test_backend_missing_scikit_build_core_names_the_fix(pac_build, monkeypatch):
    monkeypatch.setitem(sys.modules, "scikit_build_core.build", None)
    with pytest.raises(SystemExit) as info:
        pac_build.build_wheel("unused")
    message = str(info.value)
    assert "needs scikit-build-core" in message
    assert "pip install 'scikit-build-core>=0.10'" in message
    assert "pip install --no-build-isolation" in message


def test_backend_safe_reason(pac_build):
    assert pac_build._safe('a "quoted"; path\\x\nnext') == "a ?quoted?? path?x?next"
