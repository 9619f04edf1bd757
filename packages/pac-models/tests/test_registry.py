"""register_model, create_model, list_models, entry-point plugins."""

import importlib.metadata as md
import sys
import textwrap

import pytest
import torch
from torch import nn

from pac_models import create_model, is_model, list_models, register_model, registry


@pytest.fixture
def clean_registry(monkeypatch):
    """Work on copies of the registry tables and reload plugins from a patched entry-point list."""
    list_models()  # builtins loaded before the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    return monkeypatch


def test_unknown_name_lists_registered():
    with pytest.raises(ValueError) as info:
        create_model("no_such_model")
    msg = str(info.value)
    assert "no_such_model" in msg
    for name in list_models():
        assert name in msg


def test_register_decorator_forms(clean_registry):
    @register_model
    def tiny_net(factor: int = 8, width: int = 2) -> nn.Module:
        return nn.Conv2d(1, width, 1)

    @register_model("tiny_named", aliases=("TinyNamed",), tags=("test",))
    def _builder(**kwargs) -> nn.Module:
        return nn.Identity()

    assert "tiny_net" in list_models() and "tiny_named" in list_models("tiny_*")
    assert list_models(tag="test") == ["tiny_named"]
    assert "TinyNamed" not in list_models()  # aliases are not listed...
    assert isinstance(create_model("TinyNamed"), nn.Identity)  # ...but resolve
    assert create_model("tiny_net", width=3).out_channels == 3
    assert is_model("tiny_net") and not is_model("tiny_nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model(_builder, name="tiny_net")
    with pytest.raises(ValueError, match="already registered"):
        register_model(_builder, name="other", aliases=("TinyNamed",))


def test_entry_point_plugins(clean_registry, tmp_path):
    (tmp_path / "pacplug_mod.py").write_text(textwrap.dedent("""
        from torch import nn
        from pac_models import register_model

        @register_model("plugin_from_module")
        def build(**kwargs):
            return nn.Identity()

        def plugin_builder(**kwargs):
            return nn.Tanh()
    """))
    (tmp_path / "pacplug_broken.py").write_text("raise ImportError('boom')\n")
    clean_registry.syspath_prepend(str(tmp_path))
    eps = [md.EntryPoint("mod", "pacplug_mod", registry.ENTRY_POINT_GROUP),
           md.EntryPoint("plugin_callable", "pacplug_mod:plugin_builder", registry.ENTRY_POINT_GROUP),
           md.EntryPoint("broken", "pacplug_broken", registry.ENTRY_POINT_GROUP)]
    clean_registry.setattr(registry, "_entry_points", lambda: eps)
    with pytest.warns(RuntimeWarning, match="broken"):
        names = list_models()
    assert "plugin_from_module" in names and "plugin_callable" in names
    assert isinstance(create_model("plugin_callable"), nn.Tanh)
    assert "pac_joint_upsample" in names  # builtins unaffected by the broken plugin
    sys.modules.pop("pacplug_mod", None)


def test_real_entry_point_group_is_queried():
    assert isinstance(registry._entry_points(), list)


def test_pretrained_false_is_random_init():
    torch.manual_seed(0)
    a = create_model("djif", factor=4)
    torch.manual_seed(0)
    b = create_model("djif", factor=4, pretrained=False)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(x, y)
