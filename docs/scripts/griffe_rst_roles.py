"""Griffe extension of the docs build: Sphinx roles in docstrings become inline code.

Docstrings in this repository are Google style, rendered as Markdown, but some use Sphinx
cross-reference roles (``:class:`PacConv2d```, ``:func:`~pac_core.backends.use```), which Markdown
would show verbatim. This turns each into inline code of the target's last-dotted-name form as
Sphinx would display it (the ``~`` prefix shortens to the last component).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|data|exc|const):`(~?)\.?([^`]+)`")


def _display(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class RstRoles(griffe.Extension):
    """Rewrite ``:role:`target``` to ```target``` in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(_display, obj.docstring.value)
