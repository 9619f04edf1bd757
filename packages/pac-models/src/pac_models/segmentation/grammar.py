"""pacnet's segmentation model-name grammar (docs/semantics.md §B.3), parsed and validated field
by field.

::

    name      = backbone                      (no '_'; fcn8s | fcn8saltpad | fcn8spac)
              | backbone ['frozen'] '_' crf   (exactly one '_')
    crf       = 'convcrf' | 'convcrfv1'
              | kind ['i' STEPS ['l']] {edge}
    kind      = 'crf' | 'crfv7'
    edge      = 'p' TYPE K D B
    TYPE      = '4d' | '2d' | '0d' | 'na', optionally followed by 's' (spatial filter)
    K         = one digit (odd kernel size);  D = digits (dilation);  B = one digit (blur)

Without an ``'i'`` the CRF runs 5 shared-weight steps; ``'l'`` (only right after STEPS) makes it
loose (:class:`~pac_core.PacCRFLoose`); a CRF part without edges gets the default edge
``p4d5161``. ``'0d'`` means the ``'potts'`` compatibility.

Unlike pacnet, every field is validated: a malformed name raises :class:`ValueError` that names
the field, what was expected and what was seen (pacnet passes unknown edge types through and fails
later, or asserts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

__all__ = [
    "BACKBONES",
    "CrfSpec",
    "EdgeSpec",
    "ModelName",
    "format_name",
    "is_segmentation_name",
    "parse_crf",
    "parse_edge",
    "parse_edges",
    "parse_name",
]

BACKBONES = ("fcn8s", "fcn8saltpad", "fcn8spac")
"""Backbone names of the grammar (docs/semantics.md §B.1)."""

_EDGE_TYPES = ("4d", "2d", "0d", "na")
_COMPAT = {"4d": "4d", "2d": "2d", "0d": "potts", "na": "na"}
DEFAULT_EDGE = "4d5161"
DEFAULT_STEPS = 5


@dataclass(frozen=True)
class EdgeSpec:
    """One pairwise kernel of a CRF (one ``'p'`` field of a name).

    Attributes:
        type: ``'4d'``, ``'2d'``, ``'0d'`` or ``'na'`` as written in the name.
        kernel_size: Odd kernel size ``K``.
        dilation: Dilation ``D`` (≥ 1).
        blur: Blur factor ``B`` (≥ 1).
        spatial_filter: The ``'s'`` suffix of the type.
    """

    type: str
    kernel_size: int
    dilation: int
    blur: int
    spatial_filter: bool = False

    @property
    def compat_type(self) -> str:
        """The ``compat_type`` of :meth:`pac_core.PacCRF.add_pairwise_kernel` (``'0d'`` →
        ``'potts'``)."""
        return _COMPAT[self.type]

    def kernel_kwargs(self, pairwise_weight: float = 1.0) -> dict[str, object]:
        """Arguments of :meth:`pac_core.PacCRF.add_pairwise_kernel` for this edge."""
        return {"kernel_size": self.kernel_size, "dilation": self.dilation, "blur": self.blur,
                "compat_type": self.compat_type, "spatial_filter": self.spatial_filter,
                "pairwise_weight": pairwise_weight}

    @property
    def receptive_field(self) -> int:
        """``(K − 1)·D + 1`` pixels at the blurred resolution."""
        return (self.kernel_size - 1) * self.dilation + 1

    def to_name(self) -> str:
        """The edge as written in a model name, without the leading ``'p'`` (``'4d5641'``)."""
        return (f"{self.type}{'s' if self.spatial_filter else ''}{self.kernel_size}"
                f"{self.dilation}{self.blur}")

    def to_string(self) -> str:
        """The ``'<type>_<k>_<d>_<blur>'`` form of :class:`ModelWithCrf`'s ``pairwise``."""
        return (f"{self.type}{'s' if self.spatial_filter else ''}_{self.kernel_size}_"
                f"{self.dilation}_{self.blur}")


@dataclass(frozen=True)
class CrfSpec:
    """The CRF part of a model name.

    Attributes:
        kind: ``'crf'``, ``'crfv7'``, ``'convcrf'`` or ``'convcrfv1'``.
        num_steps: Mean-field steps.
        loose: One parameter set per step (``'l'``).
        edges: The pairwise kernels, in order (empty for the ConvCRF kinds).
    """

    kind: str
    num_steps: int = DEFAULT_STEPS
    loose: bool = False
    edges: tuple[EdgeSpec, ...] = ()

    @property
    def is_convcrf(self) -> bool:
        """Whether this is the ConvCRF head (``ModelWithConvCrf``)."""
        return self.kind in ("convcrf", "convcrfv1")

    def to_name(self) -> str:
        """Canonical spelling (explicit steps, explicit edges), e.g. ``'crfi5p4d5161'``."""
        if self.is_convcrf:
            return self.kind
        return (f"{self.kind}i{self.num_steps}{'l' if self.loose else ''}"
                + "".join("p" + e.to_name() for e in self.edges))


@dataclass(frozen=True)
class ModelName:
    """A parsed segmentation model name.

    Attributes:
        backbone: ``'fcn8s'``, ``'fcn8saltpad'`` or ``'fcn8spac'``.
        frozen: Backbone parameters get ``requires_grad = False``.
        crf: The CRF head, or None for a bare backbone.
    """

    backbone: str
    frozen: bool = False
    crf: Optional[CrfSpec] = None


def _err(name: str, field: str, expected: str, seen: str) -> ValueError:
    return ValueError(f"model name {name!r}: {field} must be {expected}, got {seen!r}")


def parse_edge(text: str, *, name: Optional[str] = None, index: int = 0) -> EdgeSpec:
    """Parse one edge (the text after a ``'p'``), e.g. ``'4d5641'`` or ``'2ds312'``.

    Args:
        text: The edge without its ``'p'``.
        name: The whole model name, for error messages.
        index: 0-based position of the edge, for error messages.

    Returns:
        The edge.

    Raises:
        ValueError: a malformed field (TYPE, K, D or B); the message names it.
    """
    full = name if name is not None else text
    where = f"edge {index} ('p{text}')"
    if len(text) < 4:
        raise _err(full, f"{where}", "TYPE K D B (at least 4 characters, e.g. '4d5161')", text)
    n = 3 if text[2] == "s" else 2
    typ, spatial = text[:2], n == 3
    if typ not in _EDGE_TYPES:
        raise _err(full, f"TYPE of {where}", f"one of {', '.join(_EDGE_TYPES)} "
                   "(optionally followed by 's')", text[:n])
    rest = text[n:]
    if len(rest) < 3:
        raise _err(full, f"{where}", "TYPE followed by K (one digit), D (digits) and B "
                   "(one digit)", text)
    k, d, b = rest[0], rest[1:-1], rest[-1]
    if not k.isdigit() or int(k) % 2 == 0:
        raise _err(full, f"K (kernel size) of {where}", "one odd digit", k)
    if not (d.isascii() and d.isdigit()) or int(d) < 1:
        raise _err(full, f"D (dilation) of {where}", "a positive decimal integer", d)
    if not b.isdigit() or int(b) < 1:
        raise _err(full, f"B (blur) of {where}", "one digit from 1 to 9", b)
    return EdgeSpec(typ, int(k), int(d), int(b), spatial)


def parse_edges(pairwise: Union[str, Sequence[str]]) -> tuple[EdgeSpec, ...]:
    """Edges from a name's edge string (``'p4d5641p4d5161'``, split on ``'p'``) or from a sequence
    of ``'<type>_<k>_<d>_<blur>'`` strings (``('4d_5_16_1',)``, :class:`ModelWithCrf`'s form).

    Raises:
        ValueError: a malformed edge.
        TypeError: ``pairwise`` is neither a str nor a sequence of str.
    """
    if isinstance(pairwise, str):
        parts = pairwise.split("p")
        if parts and parts[0] == "":
            parts = parts[1:]
        if not parts or any(p == "" for p in parts):
            raise ValueError(f"pairwise {pairwise!r}: expected 'p<edge>' fields such as "
                             "'p4d5641p4d5161'")
        return tuple(parse_edge(p, name=pairwise, index=i) for i, p in enumerate(parts))
    if not isinstance(pairwise, Sequence) or not all(isinstance(p, str) for p in pairwise):
        raise TypeError(f"pairwise must be a str or a sequence of str, got {pairwise!r}")
    edges = []
    for i, p in enumerate(pairwise):
        fields = p.split("_")
        if len(fields) != 4:
            raise ValueError(f"pairwise[{i}] must look like '<type>_<k>_<d>_<blur>' "
                             f"(e.g. '4d_5_16_1'), got {p!r}")
        typ, k, d, b = fields
        if len(typ) not in (2, 3) or (len(typ) == 3 and typ[2] != "s"):
            raise ValueError(f"pairwise[{i}] {p!r}: TYPE must be one of "
                             f"{', '.join(_EDGE_TYPES)} optionally followed by 's', got {typ!r}")
        if len(k) != 1 or len(b) != 1:
            raise ValueError(f"pairwise[{i}] {p!r}: kernel size and blur must be one digit each "
                             f"(the model-name grammar), got {k!r} and {b!r}")
        edges.append(parse_edge(f"{typ}{k}{d}{b}", name=p, index=i))
    return tuple(edges)


def parse_crf(text: str, *, name: Optional[str] = None) -> CrfSpec:
    """Parse the CRF part of a name (after the ``'_'``), e.g. ``'crfi5lp4d5641p4d5161'``.

    Raises:
        ValueError: unknown kind, malformed STEPS, a misplaced ``'l'`` or a malformed edge.
    """
    full = name if name is not None else text
    if text in ("convcrf", "convcrfv1"):
        return CrfSpec(text, 5, False, ())
    head, sep, edge_text = text.partition("p")
    if head.startswith("crfv7"):
        kind, rest = "crfv7", head[5:]
    elif head.startswith("crf"):
        kind, rest = "crf", head[3:]
    else:
        raise _err(full, "the CRF kind (after '_')", "'crf', 'crfv7', 'convcrf' or 'convcrfv1'",
                   head)
    steps, loose = DEFAULT_STEPS, False
    if rest:
        m = re.fullmatch(r"i([0-9]*)(l?)(.*)", rest)
        if m is None:
            raise _err(full, f"the text after {kind!r}", "empty or 'i' STEPS ['l']", rest)
        if not m.group(1):
            raise _err(full, "STEPS (after 'i')", "a positive decimal integer",
                       m.group(2) + m.group(3))
        if m.group(3):
            raise _err(full, "the text after STEPS", "empty or 'l' (loose), then 'p' edges",
                       m.group(2) + m.group(3))
        steps, loose = int(m.group(1)), bool(m.group(2))
        if steps < 1:
            raise _err(full, "STEPS (after 'i')", "a positive decimal integer", m.group(1))
    if sep:
        edges = tuple(parse_edge(p, name=full, index=i)
                      for i, p in enumerate(edge_text.split("p")))
    else:
        edges = (parse_edge(DEFAULT_EDGE),)
    return CrfSpec(kind, steps, loose, edges)


def parse_name(name: str) -> ModelName:
    """Parse a segmentation model name (``'fcn8sfrozen_crfi5p4d5641p4d5161'``).

    Returns:
        The parsed name.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: a malformed field; the message names the field and quotes what was seen.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    if name.count("_") > 1:
        raise _err(name, "the name", "'<backbone>' or '<backbone>[frozen]_<crf>' (at most one "
                   "'_')", name)
    backbone, sep, crf = name.partition("_")
    frozen = False
    if sep and backbone.endswith("frozen"):
        backbone, frozen = backbone[: -len("frozen")], True
    if backbone not in BACKBONES:
        allowed = " | ".join(BACKBONES)
        expected = f"one of {allowed}" + (" (optionally + 'frozen')" if sep else "")
        raise _err(name, "the backbone", expected, backbone + ("frozen" if frozen else ""))
    if not sep:
        return ModelName(backbone)
    if not crf:
        raise _err(name, "the CRF part (after '_')", "'crf…', 'crfv7…', 'convcrf' or "
                   "'convcrfv1'", crf)
    return ModelName(backbone, frozen, parse_crf(crf, name=name))


def is_segmentation_name(name: object) -> bool:
    """Whether ``name`` looks like a segmentation name (starts with ``'fcn'``) — well-formed or
    not; :func:`parse_name` decides which."""
    return isinstance(name, str) and name.startswith("fcn")


def format_name(parsed: ModelName) -> str:
    """The canonical name of a parsed name (explicit steps and edges)."""
    out = parsed.backbone
    if parsed.crf is not None:
        out += ("frozen" if parsed.frozen else "") + "_" + parsed.crf.to_name()
    return out
