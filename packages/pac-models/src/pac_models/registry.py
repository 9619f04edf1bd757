"""The model registry: :func:`register_model`, :func:`create_model`, :func:`list_models`.

A model is registered under a name by decorating a builder function (any callable returning an
``nn.Module``)::

    @register_model
    def my_net(factor: int = 8, **kwargs) -> nn.Module: ...

    @register_model("my_net_wide", aliases=("MyNetWide",))
    def _build(**kwargs) -> nn.Module: ...

Third-party packages add models through the entry-point group ``pac_models.models``: each entry
point names either a module (importing it runs its ``@register_model`` decorators) or a builder
callable (registered under the entry point's name). Entry points are loaded lazily, once, the first
time the registry is queried; a plugin that fails to import is skipped with a warning that names it
(a broken plugin must not make the built-in models unusable).
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, Union

from torch import nn

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelEntry",
    "create_model",
    "get_model_entry",
    "is_model",
    "list_models",
    "register_model",
]

ENTRY_POINT_GROUP = "pac_models.models"
"""Entry-point group through which third-party packages register models."""

Builder = Callable[..., nn.Module]


@dataclass
class ModelEntry:
    """One registered model.

    Attributes:
        name: The registered name.
        builder: Callable returning the ``nn.Module`` (keyword arguments are forwarded).
        module: Where the builder was defined (``__module__``), for messages.
        aliases: Other names accepted by :func:`create_model` (e.g. pacnet's class names).
        tags: Free-form labels (``"depth"``, ``"learned"``...) usable as filters.
    """

    name: str
    builder: Builder
    module: str = ""
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}
_RESOLVERS: list[Callable[[str], Optional[tuple[str, dict[str, Any]]]]] = []
_PLUGINS_LOADED = False
_BUILTINS_LOADED = False


def register_model(
    fn: Union[Builder, str, None] = None,
    *,
    name: Optional[str] = None,
    aliases: Iterable[str] = (),
    tags: Iterable[str] = (),
    replace: bool = False,
) -> Any:
    """Register a model builder (decorator, with or without arguments).

    Args:
        fn: The builder when used as ``@register_model``; a string is taken as ``name``
            (``@register_model("name")``).
        name: Registered name (default: the builder's ``__name__``).
        aliases: Extra names resolving to this model.
        tags: Labels for :func:`list_models` filtering.
        replace: Allow re-registering an existing name (otherwise a ``ValueError``).

    Returns:
        The builder unchanged (or a decorator when called with arguments).

    Raises:
        ValueError: the name or an alias is already registered (and ``replace`` is False), or the
            name is empty.
    """
    if isinstance(fn, str):
        name, fn = fn, None

    def decorator(builder: Builder) -> Builder:
        if not callable(builder):
            raise TypeError(f"register_model needs a callable, got {builder!r}")
        reg_name = name or builder.__name__
        if not reg_name or not isinstance(reg_name, str):
            raise ValueError(f"invalid model name {reg_name!r}")
        names = (reg_name, *aliases)
        if not replace:
            for n in names:
                if n in _REGISTRY or n in _ALIASES:
                    raise ValueError(f"model name {n!r} is already registered")
        entry = ModelEntry(reg_name, builder, getattr(builder, "__module__", "") or "",
                           tuple(aliases), tuple(tags))
        _REGISTRY[reg_name] = entry
        for a in entry.aliases:
            _ALIASES[a] = reg_name
        return builder

    if fn is None:
        return decorator
    return decorator(fn)


def register_name_resolver(
    resolver: Callable[[str], Optional[tuple[str, dict[str, Any]]]],
) -> Callable[[str], Optional[tuple[str, dict[str, Any]]]]:
    """Register a parser for parametrised names (e.g. pacnet's ``JBU_<k>_<color>_<space>``).

    Args:
        resolver: Maps a name to ``(registered_name, kwargs)``, or None when it does not apply.

    Returns:
        The resolver unchanged (usable as a decorator).
    """
    _RESOLVERS.append(resolver)
    return resolver


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("pac_models.depth")
        importlib.import_module("pac_models.segmentation")


def _entry_points() -> list[Any]:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # pragma: no cover - Python < 3.10


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    seen: set[str] = set()
    for ep in _entry_points():
        if ep.value in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.value)
        try:
            obj = ep.load()
        except Exception as exc:
            warnings.warn(
                f"pac_models: skipping the model plugin {ep.name!r} ({ep.value}): it failed to "
                f"load: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if inspect.ismodule(obj):
            continue  # importing it ran its @register_model decorators
        if callable(obj) and ep.name not in _REGISTRY:
            register_model(obj, name=ep.name, tags=("plugin",))


def _ensure_loaded() -> None:
    _load_builtins()
    _load_plugins()


def list_models(pattern: Optional[str] = None, *, tag: Optional[str] = None) -> list[str]:
    """Registered model names, sorted.

    Args:
        pattern: Optional ``fnmatch`` pattern (``"pac_*"``).
        tag: Only models carrying this tag.

    Returns:
        The matching names (aliases are not listed).
    """
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if tag is not None:
        names = [n for n in names if tag in _REGISTRY[n].tags]
    return names


def _resolve(name: str) -> tuple[ModelEntry, dict[str, Any]]:
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name], {}
    if name in _ALIASES:
        return _REGISTRY[_ALIASES[name]], {}
    for resolver in _RESOLVERS:
        hit = resolver(name)
        if hit is not None:
            target, kwargs = hit
            return _REGISTRY[target], dict(kwargs)
    raise ValueError(
        f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}"
    )


def get_model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` for a name or alias.

    Raises:
        ValueError: unknown name (the message lists the registered names).
    """
    return _resolve(name)[0]


def is_model(name: str) -> bool:
    """Whether ``name`` (or an alias / parametrised name) resolves to a registered model."""
    try:
        _resolve(name)
    except (ValueError, TypeError):
        return False
    return True


def create_model(
    name: str,
    pretrained: Union[bool, str, Path] = False,
    *,
    check_hash: bool = True,
    progress: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    Args:
        name: A registered name (see :func:`list_models`), an alias (pacnet's class names such as
            ``"PacJointUpsample"``) or a parametrised name (``"JBU_9_10_0.5"``).
        pretrained: ``False`` (random init), ``True`` (the default weights record of this model
            and these arguments, see :func:`pac_models.weights.default_weights`), the tag of a
            weights record, a local file path, or a URL (``http(s)://``, ``file://``).
        check_hash: Verify the record's sha256 (records only; a path or URL has no reference hash
            unless the URL names a record's file).
        progress: Show a download progress bar.
        **kwargs: Forwarded to the builder (e.g. ``factor=8``).

    Returns:
        The model, in eval mode when weights were loaded.

    Raises:
        ValueError: unknown name (the message lists the registered names), no weights record for
            ``pretrained=True``, or a checkpoint whose keys do not match.
    """
    entry, extra = _resolve(name)
    model = entry.builder(**{**extra, **kwargs})
    if pretrained is False or pretrained is None:
        return model
    from . import weights as _w

    _w.load_pretrained(model, entry.name, pretrained, {**extra, **kwargs},
                       check_hash=check_hash, progress=progress)
    model.eval()
    return model
