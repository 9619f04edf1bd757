"""``KEY=VALUE`` command-line pairs (``--model-arg``, ``--scene-arg``) as keyword arguments."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from typing import Any, Optional

from .data.synthetic import SceneConfig

__all__ = ["parse_key_values", "scene_config"]


def parse_key_values(pairs: Optional[Sequence[str]], flag: str = "--model-arg") -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}`` (values are Python literals, else strings).

    Raises:
        SystemExit: an item that is not ``KEY=VALUE`` with an identifier key (names ``flag``).
    """
    out: dict[str, Any] = {}
    for item in pairs or ():
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"{flag} must be KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def scene_config(pairs: Optional[Sequence[str]],
                 flag: str = "--scene-arg") -> Optional[SceneConfig]:
    """``--scene-arg`` pairs as a :class:`~pac_models.data.SceneConfig` (None when there are none).

    Raises:
        SystemExit: a malformed pair, a name that is not a ``SceneConfig`` field or a value it
            rejects.
    """
    kwargs = parse_key_values(pairs, flag)
    if not kwargs:
        return None
    fields = {f.name for f in dataclasses.fields(SceneConfig)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise SystemExit(f"{flag}: unknown SceneConfig field(s) {unknown}; known: "
                         f"{sorted(fields)}")
    try:
        return SceneConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in kwargs.items()})
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"{flag}: {exc}") from None
