"""CRF heads on a segmentation backbone (docs/semantics.md §B.2): :class:`ModelWithCrf` (PAC-CRF,
the paper's) and :class:`ModelWithConvCrf` (the ConvCRF-style baseline).

Both are called like the backbone, ``model(x, out_crop=None)``, and return the CRF's ``log_Q``
(unnormalised log-beliefs ``[B, L, H, W]``, fed to cross-entropy). The edge features are the
backbone's input image itself (mean-subtracted BGR, 0–255 scale), divided by learnable per-edge
scales ``feat_scales.<i>`` (initially 30).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from pac_core import PacCRF, PacCRFLoose, create_position_feats, create_YXRGB

from .grammar import EdgeSpec, parse_edges

__all__ = ["ModelWithConvCrf", "ModelWithCrf", "freeze_backbone"]


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Set ``requires_grad = False`` on every parameter of ``model.backbone`` (the ``'frozen'``
    name suffix) and mark the model (``model.backbone_frozen = True``).

    The backbone still follows ``model.train()`` (its dropout stays active, as in pacnet).

    Returns:
        The model.
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"{type(model).__name__} has no .backbone to freeze")
    for p in backbone.parameters():
        p.requires_grad_(False)
    model.backbone_frozen = True
    return model


def _num_classes(backbone: nn.Module, num_classes: Optional[int]) -> int:
    n = num_classes if num_classes is not None else getattr(backbone, "num_classes", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError("num_classes must be given (a positive int) when the backbone has no "
                         f"num_classes attribute; got {n!r}")
    return n


def _crop_input(x: Tensor, out_crop: Optional[Sequence[int]]) -> Tensor:
    if out_crop is None:
        return x
    h, w = (int(v) for v in out_crop)
    return x[:, :, :h, :w]


class ModelWithCrf(nn.Module):
    """A backbone followed by a PAC-CRF (:class:`~pac_core.PacCRF` or
    :class:`~pac_core.PacCRFLoose`) whose edge features are the input image.

    Args:
        backbone: Module called as ``backbone(x, out_crop)`` → logits ``[B, L, h, w]``.
        num_steps: Mean-field steps.
        pairwise: The pairwise kernels: a model-name edge string (``'p4d5641p4d5161'``) or a
            sequence of ``'<type>_<k>_<d>_<blur>'`` strings (``('4d_5_16_1',)``); types ``4d``,
            ``2d``, ``0d`` (Potts), ``na`` (plain conv), an ``s`` suffix = spatial filter.
        loose: One parameter set per step (:class:`~pac_core.PacCRFLoose`).
        use_yx: Add the pixel coordinates to the edge features (:func:`~pac_core.create_YXRGB`).
        shared_scales: One scale for all colour channels (and one for y, x) instead of one each.
        adaptive_init: With ``use_yx``, start the position scale at a quarter of the edge's
            receptive field ``((k − 1)·d + 1)/4`` instead of 100.
        num_classes: Labels ``L`` (default: ``backbone.num_classes``).

    Attributes:
        backbone: The backbone.
        crf: The CRF (``final_output='log_Q'``).
        feat_scales: ``nn.ParameterList``, per edge: scalar 30, ``[30, 30, 30]``, ``[p, 30]`` or
            ``[p, p, 30, 30, 30]`` (float32).
        edges: The parsed :class:`~pac_models.segmentation.grammar.EdgeSpec` of each kernel.
        backbone_frozen: Whether :func:`freeze_backbone` was applied.

    Raises:
        ValueError: a malformed ``pairwise`` entry, or ``num_steps < 0``.
    """

    def __init__(self, backbone: nn.Module, num_steps: int = 5,
                 pairwise: Union[str, Sequence[str]] = ("4d_5_16_1",), loose: bool = False,
                 use_yx: bool = False, shared_scales: bool = True, adaptive_init: bool = True,
                 *, num_classes: Optional[int] = None) -> None:
        super().__init__()
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
            raise ValueError(f"num_steps must be an int ≥ 0, got {num_steps!r}")
        self.backbone = backbone
        self.num_classes = _num_classes(backbone, num_classes)
        self.edges: tuple[EdgeSpec, ...] = parse_edges(pairwise)
        if not self.edges:
            raise ValueError("pairwise must name at least one edge")
        self.loose = bool(loose)
        self.use_yx = bool(use_yx)
        self.shared_scales = bool(shared_scales)
        self.backbone_frozen = False
        crf_cls = PacCRFLoose if loose else PacCRF
        self.crf = crf_cls(self.num_classes, num_steps=num_steps, final_output="log_Q",
                           perturbed_init=True, fixed_weighting=False, unary_weight=1.0,
                           pairwise_kernels=[e.kernel_kwargs(1.0) for e in self.edges])
        scales = []
        for e in self.edges:
            p = e.receptive_field / 4.0 if adaptive_init else 100.0
            if use_yx:
                v = [p, 30.0] if shared_scales else [p, p, 30.0, 30.0, 30.0]
            else:
                v = 30.0 if shared_scales else [30.0, 30.0, 30.0]
            scales.append(nn.Parameter(torch.tensor(v, dtype=torch.float32)))
        self.feat_scales = nn.ParameterList(scales)

    def edge_features(self, x: Tensor) -> list[Tensor]:
        """The per-edge features of image ``x`` (``[B, 3, H, W]``)."""
        feats = []
        for sc in self.feat_scales:
            sc = sc.to(x.dtype)
            if self.use_yx:
                if self.shared_scales:
                    feats.append(create_YXRGB(x, yx_scale=sc[0], rgb_scale=sc[1]))
                else:
                    feats.append(create_YXRGB(x, scales=sc))
            elif sc.dim() == 0:
                feats.append(x * (1.0 / sc))
            else:
                if sc.numel() != x.shape[1]:
                    raise ValueError(f"feat_scales has {sc.numel()} channel scales but x has "
                                     f"{x.shape[1]} channels (shape {tuple(x.shape)})")
                feats.append(x * (1.0 / sc).view(1, -1, 1, 1))
        return feats

    def forward(self, x: Tensor, out_crop: Optional[tuple[int, int]] = None) -> Tensor:
        """``log_Q [B, L, h, w]`` of the CRF on the backbone's logits.

        Args:
            x: ``[B, 3, H, W]`` image (B.5 normalisation).
            out_crop: Optional ``(h, w)``: the backbone output and the image are cut to their
                top-left ``h×w`` before the CRF.
        """
        unary = self.backbone(x, out_crop)
        x = _crop_input(x, out_crop)
        return self.crf(unary, self.edge_features(x))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Load weights; a loose model also accepts a shared-weight CRF checkpoint.

        With ``strict=False``, a loose model, and a ``state_dict`` without ``crf.steps.*`` keys,
        every ``crf.<rest>`` entry is copied to ``crf.steps.<t>.<rest>`` for every step ``t``
        (docs/semantics.md §B.2: stage 2 of the PacCRF recipe starts from stage 1's shared CRF).
        With
        ``strict=True`` a CRF layout mismatch raises a ``ValueError`` that says which layout the
        dict has (rather than a list of missing keys).
        """
        sd = dict(state_dict)
        has_steps = any(k.startswith("crf.steps.") for k in sd)
        has_shared = any(k.startswith("crf.") and not k.startswith("crf.steps.") for k in sd)
        if self.loose and not has_steps and has_shared:
            if strict:
                raise ValueError(
                    "the state_dict holds a shared-weight CRF (crf.* keys) but this model's CRF "
                    "is loose (crf.steps.<t>.*); load with strict=False to copy the shared "
                    "weights into every step"
                )
            for k in [k for k in sd if k.startswith("crf.")]:
                rest = k[len("crf."):]
                for t in range(len(self.crf.steps)):
                    sd[f"crf.steps.{t}.{rest}"] = sd[k]
                del sd[k]
        elif not self.loose and has_steps and strict:
            raise ValueError("the state_dict holds a loose CRF (crf.steps.<t>.* keys) but this "
                             "model's CRF shares its weights across steps (crf.*); build the "
                             "loose model (an 'l' after the step count, e.g. 'crfi5l…')")
        return super().load_state_dict(sd, strict=strict, assign=assign)


class ModelWithConvCrf(nn.Module):
    """A backbone followed by a ConvCRF-style :class:`~pac_core.PacCRF` (names ending in
    ``_convcrf`` / ``_convcrfv1``).

    Five shared-weight steps, unary weight 0.8, two non-spatial kernels ``(k, d, blur,
    compat)`` with pairwise weights 2.0 and 0.6; their features are
    ``create_YXRGB(x, yx_scale=80, rgb_scale=13)`` and ``create_position_feats((H, W),
    scales=3)``. No learnable feature scales.

    Args:
        backbone: Module called as ``backbone(x, out_crop)``.
        compat: Compatibility type of both kernels (``'potts'``; the model names use ``'2d'``).
        kernel_size: Odd kernel size.
        blur: Blur factor.
        dilation: Dilation.
        num_classes: Labels (default: ``backbone.num_classes``).
    """

    def __init__(self, backbone: nn.Module, compat: str = "potts", kernel_size: int = 11,
                 blur: int = 4, dilation: int = 1, *, num_classes: Optional[int] = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = _num_classes(backbone, num_classes)
        self.backbone_frozen = False
        kw = {"kernel_size": kernel_size, "dilation": dilation, "blur": blur,
              "compat_type": compat, "spatial_filter": False}
        self.crf = PacCRF(self.num_classes, num_steps=5, perturbed_init=True,
                          fixed_weighting=False, unary_weight=0.8,
                          pairwise_kernels=[{**kw, "pairwise_weight": 2.0},
                                            {**kw, "pairwise_weight": 0.6}])

    def forward(self, x: Tensor, out_crop: Optional[tuple[int, int]] = None) -> Tensor:
        """``log_Q [B, L, h, w]``; see :meth:`ModelWithCrf.forward`."""
        unary = self.backbone(x, out_crop)
        x = _crop_input(x, out_crop)
        b, _, h, w = x.shape
        feats = [create_YXRGB(x, yx_scale=80.0, rgb_scale=13.0),
                 create_position_feats((h, w), scales=3.0, bs=b, device=x.device).to(x.dtype)]
        return self.crf(unary, feats)
