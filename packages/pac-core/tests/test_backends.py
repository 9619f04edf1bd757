"""The backend registry: selection order, plugins, errors (``pac_core.backends``)."""

from __future__ import annotations

import threading

import pytest
import torch
from _utils import randn

import pac_core
from pac_core import backends
from pac_core.backends import registry
from pac_core.backends.reference import ReferenceBackend


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Each test gets its own copy of the registry state and no PAC_BACKEND."""
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    monkeypatch.setattr(registry, "_instances", dict(registry._instances))
    monkeypatch.setattr(registry, "_default", None)
    monkeypatch.setattr(registry, "_local", threading.local())
    monkeypatch.delenv("PAC_BACKEND", raising=False)


class RecordingBackend(ReferenceBackend):
    """A third-party backend: the reference maths, float64 only, and a call log."""

    name = "recording"
    priority = 100

    def __init__(self):
        self.calls = []

    def supports(self, device, dtype):
        return dtype == torch.float64

    def pacpool2d(self, input, kernel, **kw):
        self.calls.append("pacpool2d")
        return super().pacpool2d(input, kernel, **kw)

    def packernel2d(self, guidance, mask, **kw):
        self.calls.append("packernel2d")
        return super().packernel2d(guidance, mask, **kw)


class FakeEntryPoint:
    def __init__(self, name, obj=None, error=None):
        self.name, self.value, self._obj, self._error = name, f"fake_pkg:{name}", obj, error

    def load(self):
        if self._error is not None:
            raise self._error
        return self._obj


def test_reference_always_available():
    names = backends.available()
    assert "reference" in names
    assert backends.get("reference").name == "reference"
    assert isinstance(backends.get("reference"), backends.Backend)
    assert "auto" not in names


def test_default_is_auto_and_resolves():
    assert backends.current() == "auto"
    backend = backends.resolve(torch.zeros(1))
    assert backend.supports(torch.device("cpu"), torch.float32)


def test_use_nests_and_restores():
    backends.register("recording", RecordingBackend)
    with backends.use("reference"):
        assert backends.current() == "reference"
        with backends.use("recording"):
            assert backends.current() == "recording"
            with backends.use("auto"):
                assert backends.current() == "auto"
            assert backends.current() == "recording"
        assert backends.current() == "reference"
    assert backends.current() == "auto"


def test_use_restores_after_exception():
    with pytest.raises(RuntimeError), backends.use("reference"):
        raise RuntimeError("boom")
    assert backends.current() == "auto"


def test_use_is_thread_local():
    seen = []
    with backends.use("reference"):
        t = threading.Thread(target=lambda: seen.append(backends.current()))
        t.start()
        t.join()
    assert seen == ["auto"]


def test_set_default_and_precedence(monkeypatch):
    backends.register("recording", RecordingBackend)
    monkeypatch.setenv("PAC_BACKEND", "recording")
    assert backends.current() == "recording"
    backends.set_default("reference")
    assert backends.current() == "reference"  # set_default beats the environment
    with backends.use("recording"):
        assert backends.current() == "recording"  # use() beats set_default
    backends.set_default(None)
    assert backends.current() == "recording"
    monkeypatch.delenv("PAC_BACKEND")
    assert backends.current() == "auto"


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("PAC_BACKEND", " reference ")
    assert backends.current() == "reference"
    assert backends.resolve(torch.zeros(1)).name == "reference"


def test_env_var_unknown(monkeypatch):
    monkeypatch.setenv("PAC_BACKEND", "cudnn")
    with pytest.raises(ValueError, match="available"):
        backends.current()


@pytest.mark.parametrize("call", [
    lambda: backends.use("nope").__enter__(),
    lambda: backends.set_default("nope"),
    lambda: backends.get("nope"),
])
def test_unknown_name_lists_available(call):
    with pytest.raises(ValueError) as info:
        call()
    assert "nope" in str(info.value) and "reference" in str(info.value)


def test_get_auto_is_an_error():
    with pytest.raises(ValueError, match="resolve"):
        backends.get("auto")


def test_register_errors():
    with pytest.raises(ValueError):
        backends.register("reference", RecordingBackend)
    with pytest.raises(ValueError):
        backends.register("auto", RecordingBackend)
    with pytest.raises(ValueError):
        backends.register("", RecordingBackend)
    backends.register("reference", ReferenceBackend, replace=True)
    assert "reference" in backends.available()


def test_factory_returning_none_is_unavailable():
    backends.register("broken", lambda: None)
    assert "broken" not in backends.available()
    with pytest.raises(ValueError):
        backends.set_default("broken")


def test_third_party_backend_via_register():
    backends.register("recording", RecordingBackend)
    assert backends.available()[0] == "recording"  # highest priority first
    rec = backends.get("recording")
    g, x = randn(1, 2, 5, 6), randn(1, 3, 5, 6)
    # 'auto' picks the best backend supporting the device/dtype
    assert backends.resolve(g) is rec
    assert backends.resolve(g.float()) is not rec
    K, _ = pac_core.packernel2d(g, kernel_size=3, padding=1)
    y = pac_core.pacpool2d(x, K, 3, 1, 1)
    assert rec.calls == ["packernel2d", "pacpool2d"]
    with backends.use("reference"):
        K2, _ = pac_core.packernel2d(g, kernel_size=3, padding=1)
        torch.testing.assert_close(pac_core.pacpool2d(x, K2, 3, 1, 1), y)
    assert rec.calls == ["packernel2d", "pacpool2d"]


def test_explicit_backend_that_does_not_support_dtype():
    backends.register("recording", RecordingBackend)
    with backends.use("recording"), pytest.raises(RuntimeError, match="does not support"):
        pac_core.packernel2d(randn(1, 2, 5, 6).float(), kernel_size=3)


def test_guided_entry_points_dispatch_to_backend():
    backends.register("recording", RecordingBackend)
    rec = backends.get("recording")
    x, g = randn(1, 3, 5, 6), randn(1, 2, 5, 6)
    pac_core.functional._pacpool2d_guided(
        x, g, None, kernel_size=3, stride=1, padding=1, dilation=1, padding_mode="zeros",
        kernel_type="gaussian", smooth_kernel_type="none", smooth_kernel=None, inv_alpha=None,
        inv_lambda=None, channel_wise=False, normalize_kernel=False)
    assert rec.calls == ["packernel2d", "pacpool2d"]  # via Backend.pacpool2d_guided


def test_entry_point_plugins(monkeypatch):
    eps = [
        FakeEntryPoint("ep_class", RecordingBackend),
        FakeEntryPoint("ep_instance", RecordingBackend()),
        FakeEntryPoint("ep_fails", error=ImportError("no such module")),
        FakeEntryPoint("reference", RecordingBackend),  # cannot shadow a built-in
    ]

    def entry_points(group=None, **kw):
        assert group == registry.ENTRY_POINT_GROUP
        return eps

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    with pytest.warns(RuntimeWarning, match="ep_fails"):
        names = backends.available()
    assert "ep_class" in names and "ep_instance" in names and "ep_fails" not in names
    assert isinstance(backends.get("ep_class"), RecordingBackend)
    assert isinstance(backends.get("reference"), ReferenceBackend)
    assert not isinstance(backends.get("reference"), RecordingBackend)
    with backends.use("ep_instance"):
        K, _ = pac_core.packernel2d(randn(1, 1, 4, 4), kernel_size=3)
    assert backends.get("ep_instance").calls == ["packernel2d"]
    assert K.shape == (1, 1, 3, 3, 2, 2)


def test_reference_backend_supports_every_floating_dtype():
    ref = backends.get("reference")
    assert ref.priority == 0
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert ref.supports(torch.device("cpu"), dt)
        assert ref.supports(torch.device("meta"), dt)
    assert not ref.supports(torch.device("cpu"), torch.int64)
    assert repr(ref) == "<pac backend 'reference'>"
