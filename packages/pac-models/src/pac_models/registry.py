"""The model registry: :func:`register_model`, :func:`create_model`, :func:`list_models`,
:func:`list_pretrained`.

The registry imports no model module: the built-in models register themselves when
``pac_models`` is imported (its ``__init__`` imports :mod:`pac_models.depth` and
:mod:`pac_models.segmentation`), and weights come from :mod:`pac_models.weights` (records named
``"model.tag"``, as in timm).

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
import inspect
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional, Union

from torch import nn

from . import weights as _weights

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelEntry",
    "create_model",
    "get_model_entry",
    "is_model",
    "list_models",
    "list_pretrained",
    "register_model",
    "register_name_resolver",
    "split_model_name_tag",
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
    _load_plugins()



def list_models(pattern: Optional[str] = None, *, tag: Optional[str] = None,
                pretrained: bool = False, include_tags: Optional[bool] = None) -> list[str]:
    """Registered model names, sorted (timm's contract).

    Args:
        pattern: Optional ``fnmatch`` pattern (``"pac_*"``), matched against the model name and,
            with ``include_tags``, against the whole ``"model.tag"`` name (``"*x16*"``).
        tag: Only models carrying this label (``"depth"``, ``"segmentation"``, ...).
        pretrained: Only models with weights records.
        include_tags: List one ``"model.tag"`` name per weights record instead of the model
            name (models without records stay bare). Default: the value of ``pretrained``.

    Returns:
        The matching names (aliases are not listed).
    """
    _ensure_loaded()
    if include_tags is None:
        include_tags = pretrained
    by_model: dict[str, list[str]] = {}
    for w in _weights.list_weights():
        by_model.setdefault(w.model, []).append(w.name)
    names = sorted(n for n in _REGISTRY if tag is None or tag in _REGISTRY[n].tags)
    if pretrained:
        names = [n for n in names if n in by_model]
    out = []
    for n in names:
        full = by_model.get(n, []) if include_tags else []
        for item in full or [n]:
            if pattern is None or fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(
                    item, pattern):
                out.append(item)
    return out


def list_pretrained(pattern: Optional[str] = None) -> list[str]:
    """``"model.tag"`` names of every weights record (``create_model`` takes them), sorted.

    Args:
        pattern: Optional ``fnmatch`` pattern, matched against the model name and the whole
            name (``"pac_jbu_refine.*"``, ``"*x16*"``).
    """
    return list_models(pattern, pretrained=True, include_tags=True)


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


def split_model_name_tag(name: str) -> tuple[str, str]:
    """``"model.tag"`` → ``("model", "tag")``; a name without a weights tag → ``(name, "")``.

    A name that resolves as a whole (pacnet's ``"JBU_9_10_0.5"``) has no tag.
    """
    if "." not in name or is_model(name):
        return name, ""
    model, _, tag = name.rpartition(".")
    return model, tag


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


def builder_default(entry: ModelEntry, key: str) -> Any:
    """The value a builder argument takes when the caller leaves it out (None if unknown)."""
    try:
        param = inspect.signature(entry.builder).parameters.get(key)
    except (ValueError, TypeError):
        return None
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def _record_for(entry: ModelEntry, name: str, tag: str, pretrained: Any,
                kwargs: dict[str, Any], sampling: str = "center") -> Optional[_weights.Weights]:
    """The weights record ``create_model`` uses, or None (no weights, or a user's file)."""
    if tag:
        if pretrained not in (False, True, None):
            raise ValueError(f"{name!r} names weights already; do not pass pretrained="
                             f"{pretrained!r} too")
        return _weights.get_weights(f"{entry.name}.{tag}", model=entry.name)
    if pretrained is True:
        factor = kwargs.get("factor", builder_default(entry, "factor"))
        record = _weights.default_weights(entry.name, factor, sampling)
        if record is None:
            at = f" at factor {factor}" if factor is not None else ""
            mine = [w.name for w in _weights.list_weights(entry.name)]
            raise ValueError(
                f"no default weights for {entry.name!r}{at}; weights of this model: "
                f"{', '.join(mine) or 'none'} (pass pretrained=<weights name, path or URL>)"
            )
        return record
    if isinstance(pretrained, str) and not _weights.is_url(pretrained):
        known = {w.name: w for w in _weights.list_weights()}
        for candidate in (pretrained, f"{entry.name}.{pretrained}"):
            if candidate in known:
                return known[candidate]
        if not Path(pretrained).expanduser().exists():
            mine = [w.name for w in _weights.list_weights(entry.name)]
            raise FileNotFoundError(
                f"pretrained={pretrained!r} is neither a weights name (weights of "
                f"{entry.name}: {', '.join(mine) or 'none'}), a URL nor an existing file"
            )
    return None


def create_model(
    name: str,
    pretrained: Union[bool, str, Path] = False,
    *,
    check_hash: bool = True,
    progress: bool = True,
    sampling: Optional[str] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    The builder gets the arguments the weights need: ``create_model("pac_jbu_refine", factor=16,
    pretrained=True)`` builds the architecture of the default ×16 weights (their record's
    ``model_kwargs``) and loads them. An argument you pass that contradicts the weights is an
    error.

    Args:
        name: A registered name (see :func:`list_models`), an alias (pacnet's class names such as
            ``"PacJointUpsample"``), a parametrised name (``"JBU_9_10_0.5"``), or
            ``"model.tag"`` (see :func:`list_pretrained`): that model with the architecture of
            those weights, loaded when ``pretrained=True``.
        pretrained: ``False`` (random init), ``True`` (the default weights of this model and
            factor, or the tag in ``name``), a weights name (``"model.tag"`` or this model's
            tag), a local file path, or a URL (``http(s)://``, ``file://``).
        check_hash: Verify the record's sha256 (records only; a path or URL has no reference hash
            unless the URL is a record's).
        progress: Show a download progress bar.
        sampling: The low-resolution sampling the weights are for (``"center"`` or ``"area"``,
            see :func:`pac_models.depth.upsample`): with ``pretrained=True`` the default weights
            for it (the ``"center"`` default where it has none; None means ``"center"``); with
            named weights, an error if they were trained for another sampling than it or
            ``"center"``.
        **kwargs: Forwarded to the builder (e.g. ``factor=8``).

    Returns:
        The model, in eval mode when weights were loaded.

    Raises:
        ValueError: unknown model or weights name (the message lists the known ones), no
            default weights, an argument (``sampling`` included) that contradicts the weights,
            an unknown sampling, or a checkpoint that is unreadable or whose keys do not match.
        FileNotFoundError: ``pretrained`` is a path that does not exist.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    model_name, tag = split_model_name_tag(name)
    entry, extra = _resolve(model_name)
    given = {**extra, **kwargs}
    if sampling is not None and sampling not in _weights.SAMPLINGS:
        raise ValueError(f"sampling must be None or one of {_weights.SAMPLINGS}, got "
                         f"{sampling!r}")
    record = _record_for(entry, name, tag, pretrained, given, sampling or "center")
    if record is not None:
        if record.model != entry.name:
            raise ValueError(f"weights {record.name!r} belong to {record.model!r}, not "
                             f"{entry.name!r}")
        if sampling is not None and record.sampling not in (sampling, "center"):
            raise ValueError(f"weights {record.name!r} are for sampling={record.sampling!r}, "
                             f"got sampling={sampling!r}")
        for k, v in record.model_kwargs.items():
            if k in given and not _weights.same_kwarg(given[k], v):
                raise ValueError(f"weights {record.name!r} need {k}={v!r}, got {k}={given[k]!r}")
        given = {**dict(record.model_kwargs), **given}
    model = entry.builder(**given)
    if record is not None and (pretrained is not False and pretrained is not None):
        _weights.load_record(model, record, check_hash=check_hash, progress=progress)
    elif record is None and pretrained is not False and pretrained is not None:
        _weights.load_file(model, pretrained, check_hash=check_hash, progress=progress)
    else:
        return model
    return model.eval()
