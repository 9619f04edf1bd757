"""Building segmentation models from their names, and their registry entries.

``create_model(name, num_classes=21, ...)`` accepts every name of the B.3 grammar: the three
backbones are registered (``fcn8s``, ``fcn8saltpad``, ``fcn8spac``) together with the README's
models (B.8); any other well-formed name (``fcn8sfrozen_crfi5lp4d5641p4d5161``) resolves to its
backbone's entry with ``crf=`` and ``frozen=`` arguments; a malformed one raises a ``ValueError``
naming the wrong field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from ..registry import register_model, register_name_resolver
from .crf_head import ModelWithConvCrf, ModelWithCrf, freeze_backbone
from .grammar import (
    BACKBONES,
    CrfSpec,
    ModelName,
    format_name,
    is_segmentation_name,
    parse_crf,
    parse_name,
)
from .models import FCN8s, FCN8sAltPad, FCN8sBase, FCN8sPac, load_backbone_weights

__all__ = ["README_MODELS", "build_model"]

_BACKBONE_CLASSES: dict[str, type[FCN8sBase]] = {
    "fcn8s": FCN8s, "fcn8saltpad": FCN8sAltPad, "fcn8spac": FCN8sPac,
}

README_MODELS = (
    "fcn8s_crfi5p4d5641p4d5161",
    "fcn8s_crfi5p4d5321",
    "fcn8spac_crfi5p4d5641p4d5161",
)
"""The CRF models of pacnet's README (B.8), registered under their names."""


def build_model(name: str, num_classes: int = 21, *, crf: Union[str, CrfSpec, None] = None,
                frozen: bool = False, backbone_weights: Union[str, Path, None] = None,
                backbone_sha256: Optional[str] = None, width: int = 64,
                fc_channels: int = 4096, init: str = "pacnet", progress: bool = True
                ) -> nn.Module:
    """Build a segmentation model from a CRF model name (docs/semantics.md §B.3) (or a backbone
    name plus ``crf``).

    Args:
        name: ``'fcn8s'``, ``'fcn8spac_crfi5p4d5641p4d5161'``, … (see
            :mod:`pac_models.segmentation.grammar`).
        num_classes: Output classes (21 for VOC).
        crf: The CRF part (``'crfi5p4d5161'`` or a :class:`CrfSpec`) when ``name`` is a bare
            backbone.
        frozen: Freeze the backbone (as the ``'frozen'`` suffix).
        backbone_weights: Local path or URL of VGG-16 (torchvision layout) or FCN-8s weights for
            the backbone (see :func:`~pac_models.segmentation.load_backbone_weights`); None: the
            backbone keeps its initialisation.
        backbone_sha256: Optional expected sha256 of that file.
        width: Channels of the first VGG block (64; smaller for tests).
        fc_channels: Channels of ``fc6``/``fc7`` (4096; smaller for tests).
        init: ``'pacnet'`` or ``'default'`` (see :class:`FCN8sBase`).
        progress: Download progress bar for a URL.

    Returns:
        The backbone, :class:`ModelWithCrf` or :class:`ModelWithConvCrf`.

    Raises:
        ValueError: a malformed name, or a name that has a CRF part and ``crf`` too.
    """
    parsed = parse_name(name)
    spec = parsed.crf
    if crf is not None:
        if spec is not None:
            raise ValueError(f"model name {name!r} already has a CRF part; do not pass crf=")
        spec = crf if isinstance(crf, CrfSpec) else parse_crf(crf, name=f"{name}_{crf}")
    frozen = frozen or parsed.frozen
    if frozen and spec is None:
        raise ValueError(f"model {name!r}: frozen=True needs a CRF head (a frozen bare backbone "
                         "has nothing to train)")
    backbone = _BACKBONE_CLASSES[parsed.backbone](num_classes, width=width,
                                                  fc_channels=fc_channels, init=init)
    if backbone_weights is not None:
        load_backbone_weights(backbone, backbone_weights, sha256=backbone_sha256,
                              progress=progress)
    if spec is None:
        return backbone
    model: nn.Module
    if spec.is_convcrf:
        model = ModelWithConvCrf(backbone, compat="2d")
    else:
        # B.3: names always build with use_yx=False, shared_scales=False
        model = ModelWithCrf(backbone, num_steps=spec.num_steps,
                             pairwise=[e.to_string() for e in spec.edges], loose=spec.loose,
                             use_yx=False, shared_scales=False)
    if frozen:
        freeze_backbone(model)
    model.model_name = format_name(ModelName(parsed.backbone, frozen, spec))  # type: ignore[assignment]
    return model


def _backbone_builder(backbone: str) -> Any:
    def builder(num_classes: int = 21, **kwargs: Any) -> nn.Module:
        return build_model(backbone, num_classes, **kwargs)

    cls = _BACKBONE_CLASSES[backbone]
    builder.__doc__ = (f":class:`{cls.__name__}` segmentation backbone; with ``crf='crf…'`` a "
                       "PAC-CRF head (any CRF model name resolves here).")
    builder.__name__ = backbone
    return builder


def _named_builder(name: str) -> Any:
    def builder(num_classes: int = 21, **kwargs: Any) -> nn.Module:
        return build_model(name, num_classes, **kwargs)

    p = parse_name(name)
    assert p.crf is not None
    e = ", ".join(f"({x.type}, k{x.kernel_size}, d{x.dilation}, blur{x.blur})"
                  for x in p.crf.edges)
    builder.__doc__ = (f"{_BACKBONE_CLASSES[p.backbone].__name__} + PacCRF ({p.crf.num_steps} "
                       f"steps; edges {e}).")
    builder.__name__ = name
    return builder


for _bb, _alias in zip(BACKBONES, ("FCN8s", "FCN8sAltPad", "FCN8sPac")):
    register_model(_bb, aliases=(_alias,), tags=("segmentation",))(_backbone_builder(_bb))
for _name in README_MODELS:
    register_model(_name, tags=("segmentation", "crf"))(_named_builder(_name))


@register_name_resolver
def _resolve_segmentation(name: str) -> Optional[tuple[str, dict[str, Any]]]:
    """Any CRF model name (docs/semantics.md §B.3) → its backbone's entry with ``crf``/``frozen``;
    malformed → ValueError."""
    if not is_segmentation_name(name):
        return None
    parsed = parse_name(name)  # raises ValueError naming the wrong field
    kwargs: dict[str, Any] = {}
    if parsed.crf is not None:
        kwargs["crf"] = parsed.crf
    if parsed.frozen:
        kwargs["frozen"] = True
    return parsed.backbone, kwargs
