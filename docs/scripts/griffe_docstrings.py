"""Griffe extension of the docs build: Sphinx-isms in Google-style docstrings.

Docstrings in this repository are Google style, rendered as Markdown. Two habits from Sphinx
(Napoleon) would otherwise render badly or fail the strict build:

* cross-reference roles (``:class:`PacConv2d```, ``:func:`~pac_core.backends.use```), which Markdown
  shows verbatim, become inline code of the target (``~`` shortens it to the last component, as
  Sphinx displays it);
* one ``Args:`` entry for several parameters (``a, b, c: shared description``), which griffe reads
  as one unknown parameter, becomes one entry per parameter with the shared description.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|data|exc|const):`(~?)\.?([^`]+)`")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Other Parameters):\s*$")
_MULTI = re.compile(r"^(\s+)(\w+(?:\s*,\s*\w+)+)(\s*\([^)]*\))?:(\s.*)?$")


def _display(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


def _split_shared_params(text: str) -> str:
    out: list[str] = []
    section: int | None = None  # indentation of the current parameter section's header
    item: int | None = None  # indentation of its entries (continuation lines are deeper)
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip())
        header = _SECTION.match(line)
        if header:
            section, item = indent, None
        elif line.strip() and section is not None:
            if indent <= section:
                section = None  # the section ended
            else:
                item = indent if item is None else item
                multi = _MULTI.match(line) if indent == item else None
                if multi:
                    lead, names, kind, desc = multi.groups()
                    out.extend(f"{lead}{name.strip()}{kind or ''}:{desc or ''}"
                               for name in names.split(","))
                    continue
        out.append(line)
    return "\n".join(out)


class SphinxHabits(griffe.Extension):
    """Rewrite Sphinx roles and shared ``Args`` entries in every docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is None:
            return
        if ":" in doc.value:
            doc.value = _ROLE.sub(_display, doc.value)
        if "," in doc.value:
            doc.value = _split_shared_params(doc.value)
