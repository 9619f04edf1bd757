"""The backend registry: which implementation runs the PAC ops.

Selection, most specific first: :func:`use` (a context manager), :func:`set_default`, the
``PAC_BACKEND`` environment variable, then ``'auto'`` (the first registered backend, by priority,
that supports the tensor's device and dtype; ``reference`` supports everything).

Third-party backends register through the entry-point group ``pac_core.backends``; each entry point
names a zero-argument callable (or class) returning a :class:`Backend`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import torch

from ..compat.torch_version import assume_constant_result
from .base import Backend

ENTRY_POINT_GROUP = "pac_core.backends"
AUTO = "auto"

_factories: dict[str, Callable[[], Backend | None]] = {}
_instances: dict[str, Backend | None] = {}
_default: str | None = None
_local = threading.local()
_plugins_loaded = False
_lock = threading.RLock()


def register(name: str, factory: Callable[[], Backend | None], *, replace: bool = False) -> None:
    """Register a backend factory under ``name``.

    Args:
        name: The name users select it by.
        factory: Zero-argument callable returning the backend, or None when it is unusable here
            (the name is then not listed by :func:`available`).
        replace: Allow replacing an existing registration.

    Raises:
        ValueError: ``name`` is empty, ``'auto'``, or already registered without ``replace``.
    """
    if not name or name == AUTO:
        raise ValueError(f"invalid backend name {name!r}")
    with _lock:
        if name in _factories and not replace:
            raise ValueError(f"a backend named {name!r} is already registered")
        _factories[name] = factory
        _instances.pop(name, None)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python < 3.10
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, [])  # type: ignore[attr-defined]
    for ep in eps:
        if ep.name in _factories:
            continue
        register(ep.name, _lazy_entry_point(ep))


def _lazy_entry_point(ep: Any) -> Callable[[], Backend | None]:
    def factory() -> Backend | None:
        try:
            obj = ep.load()
        except Exception as exc:
            warnings.warn(
                f"pac_core: backend plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                RuntimeWarning, stacklevel=3,
            )
            return None
        return obj() if callable(obj) and not isinstance(obj, Backend) else obj

    return factory


def _instance(name: str) -> Backend | None:
    with _lock:
        if name not in _instances:
            _instances[name] = _factories[name]()
        return _instances[name]


def available() -> list[str]:
    """Names of the backends usable in this process, best first (``'reference'`` always)."""
    _load_plugins()
    names = [n for n in list(_factories) if _instance(n) is not None]
    return sorted(names, key=lambda n: -_instance(n).priority)  # type: ignore[union-attr]


def _check_name(name: str) -> str:
    if name == AUTO:
        return name
    _load_plugins()
    if name not in _factories or _instance(name) is None:
        raise ValueError(
            f"unknown or unavailable pac backend {name!r}; available: {[*available(), AUTO]}"
        )
    return name


def set_default(name: str | None) -> None:
    """Set the process-wide backend (``None`` restores ``PAC_BACKEND`` / ``'auto'``).

    Raises:
        ValueError: ``name`` is not an available backend.
    """
    global _default
    _default = None if name is None else _check_name(name)


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Run the enclosed block with backend ``name`` (thread-local, nests).

    Example:
        >>> with pac_core.backends.use("reference"):
        ...     y = layer(x, guide)

    Raises:
        ValueError: ``name`` is not an available backend.
    """
    _check_name(name)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def current() -> str:
    """The selected backend name (may be ``'auto'``), most specific setting first."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    if _default is not None:
        return _default
    env = os.environ.get("PAC_BACKEND")
    if env:
        return _check_name(env.strip())
    return AUTO


def get(name: str) -> Backend:
    """The backend object registered as ``name``.

    Raises:
        ValueError: ``name`` is unknown or unavailable.
    """
    _check_name(name)
    if name == AUTO:
        raise ValueError("'auto' is resolved per tensor; use resolve()")
    return _instance(name)  # type: ignore[return-value]


def resolve(*tensors: torch.Tensor | None) -> Backend:
    """The backend that should run an op on ``tensors`` under the current selection.

    With an explicit selection the backend must support the tensors' device and dtype (else
    RuntimeError); with ``'auto'`` the best available one that does is chosen. Under
    ``torch.compile`` the choice is made once, while tracing, and baked into the graph (no graph
    break): select the backend before compiling.
    """
    ref = next(t for t in tensors if t is not None)
    return _instances[_resolve_name(ref.device.type, ref.dtype)]  # type: ignore[return-value]


@assume_constant_result
def _resolve_name(device_type: str, dtype: torch.dtype) -> str:
    device = torch.device(device_type)
    name = current()
    if name != AUTO:
        backend = get(name)
        if not backend.supports(device, dtype):
            raise RuntimeError(
                f"pac backend {name!r} does not support device={device_type} dtype={dtype}; "
                f"select another with pac_core.backends.use(...) (available: {available()})"
            )
        return name
    for n in available():
        backend = _instance(n)
        if backend is not None and backend.supports(device, dtype):
            return n
    raise RuntimeError(f"no pac backend supports device={device_type} dtype={dtype}")
