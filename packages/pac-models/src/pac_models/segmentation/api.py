"""``refine(logits, rgb, crf=None)``: PAC-CRF refinement of any segmentation network's logits.

The image is the guidance: every pairwise kernel of the CRF compares the colours of neighbouring
pixels (the edge features of docs/semantics.md §B.2: the mean-subtracted BGR image on the 0–255
scale, divided per edge by learnable ``feat_scales``, initial value 30). The CRF runs its
mean-field steps on the logits and :func:`refine` returns log-probabilities.

The default CRF (``crf=None``) is :data:`DEFAULT_CRF` with parameters the project learned on
labelled synthetic scenes (the default weights of ``paccrf_refiner``, trained by
:mod:`pac_models.segmentation.crf_training`). Its kernels are Potts kernels with learnable
spatial filters (``[1, 1, k, k]`` each), so the learned parameters do not depend on the number of
labels: they apply to logits with any ``L ≥ 2`` (they were learned with ``L = 2``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pac_core import PacCRF, PacCRFLoose

from .. import weights
from ..registry import create_model, register_model
from . import grammar

__all__ = [
    "DEFAULT_CRF",
    "PacCrfRefiner",
    "build_refiner",
    "default_refiner",
    "image_tensor",
    "refine",
]

DEFAULT_CRF = "crfi8lp0ds511p0ds541p0ds5121p0ds5321"
"""The default CRF, in the model-name grammar (docs/semantics.md §B.3): 8 mean-field steps, each
with its own weights (``'i8l'``: a loose CRF, :class:`pac_core.PacCRFLoose`), of four Potts
kernels with learnable 5×5 spatial filters at dilations 1, 4, 12 and 32 (full resolution; the last
reaches 64 px, e.g. background seen through a wheel): the CRF of the default weights of
``paccrf_refiner``."""

MODEL_NAME = "paccrf_refiner"
"""Registered name of :class:`PacCrfRefiner` (``create_model("paccrf_refiner", ...)``)."""

MEAN_RGB = (122.675, 116.669, 104.008)
"""Per-channel mean (R, G, B) subtracted from the 0–255 image (docs/semantics.md §B.5)."""

FEAT_SCALE_INIT = 30.0
"""Initial edge-feature scale (docs/semantics.md §B.2/§B.3: ``feat_scales.i = [30, 30, 30]``)."""

RgbLike = Union[Tensor, np.ndarray]
CrfLike = Union[None, str, Sequence[str], nn.Module]


# ---------------------------------------------------------------------------------------------
# CRF names

def _parse_crf_text(crf: Union[str, Sequence[str]]) -> tuple[int, bool, list[dict[str, Any]]]:
    """``(num_steps, loose, [add_pairwise_kernel kwargs])`` of a CRF name or pairwise strings.

    Accepted: a whole segmentation model name (``'fcn8s_crfi5p4d5161'``: its CRF part is used),
    a CRF part (``'crfi5p4d5641p4d5161'``), or ``'<type>_<k>_<d>_<blur>'`` strings (one, several
    joined by ``','``, or a sequence), which get 5 shared-weight steps.
    """
    if isinstance(crf, str):
        text = crf.strip()
        if grammar.is_segmentation_name(text):  # a whole model name: backbone[frozen]_crf
            spec = grammar.parse_name(text).crf
            if spec is None:
                raise ValueError(f"model name {crf!r} has no CRF part")
        elif text.startswith(("crf", "convcrf")):
            spec = grammar.parse_crf(text)
        elif text.startswith("p"):  # edge fields of a name: 'p4d5641p4d5161'
            spec = grammar.CrfSpec("crf", grammar.DEFAULT_STEPS, False, grammar.parse_edges(text))
        else:
            edges = grammar.parse_edges([p.strip() for p in text.split(",")])
            spec = grammar.CrfSpec("crf", grammar.DEFAULT_STEPS, False, edges)
    else:
        spec = grammar.CrfSpec("crf", grammar.DEFAULT_STEPS, False, grammar.parse_edges(crf))
    if spec.is_convcrf:
        raise ValueError(
            f"crf={crf!r}: the ConvCRF head uses position features and is not supported by "
            "refine(); use a 'crf…' name (PacCRF) or pass a module"
        )
    return spec.num_steps, spec.loose, [e.kernel_kwargs() for e in spec.edges]


# ---------------------------------------------------------------------------------------------
# the module

class PacCrfRefiner(nn.Module):
    """A PacCRF plus its per-edge colour-feature scales: ``(logits, image) → log-probabilities``.

    The state_dict keys are those of ``ModelWithCrf`` (docs/semantics.md §B.2) without the backbone
    (``crf.*`` and ``feat_scales.<i>`` of shape ``[3]``), so CRF parameters move between the two.

    Args:
        num_classes: Number of labels ``L``.
        crf: A CRF name or pairwise strings (see :func:`refine`), or a ``PacCRF`` /
            ``PacCRFLoose`` instance to wrap (its ``channels`` must equal ``num_classes``).
        feat_scale: Initial value of every ``feat_scales`` entry.
        learn_scales: Whether ``feat_scales`` are Parameters (else buffers).

    Raises:
        ValueError: a malformed name or a CRF built for another number of labels.
    """

    def __init__(self, num_classes: int = 2,
                 crf: Union[str, Sequence[str], nn.Module] = DEFAULT_CRF,
                 feat_scale: float = FEAT_SCALE_INIT, learn_scales: bool = True) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
        self.num_classes = int(num_classes)
        if isinstance(crf, (PacCRF, PacCRFLoose)):
            module = crf
        elif isinstance(crf, nn.Module):
            raise TypeError(f"crf must be a PacCRF or PacCRFLoose, got {type(crf).__name__}")
        else:
            steps, loose, kernels = _parse_crf_text(crf)
            cls = PacCRFLoose if loose else PacCRF
            module = cls(self.num_classes, steps, final_output="log_Q", perturbed_init=True,
                         fixed_weighting=False, unary_weight=1.0, pairwise_kernels=kernels)
        channels = module.steps[0].channels if isinstance(module, PacCRFLoose) else module.channels
        if channels != self.num_classes:
            raise ValueError(f"the CRF has {channels} labels, the refiner {self.num_classes}")
        self.crf = module
        n = self.crf.num_pairwise_kernels()
        scales = [torch.full((3,), float(feat_scale)) for _ in range(n)]
        if learn_scales:
            self.feat_scales = nn.ParameterList([nn.Parameter(s) for s in scales])
        else:
            self.feat_scales = nn.ParameterList(
                [nn.Parameter(s, requires_grad=False) for s in scales])

    def edge_features(self, image: Tensor) -> list[Tensor]:
        """Per-edge features of a ``[B, 3, H, W]`` RGB image in [0, 1] (mean-subtracted BGR,
        0–255 scale, divided by each edge's ``feat_scales``)."""
        mean = image.new_tensor(MEAN_RGB).view(1, 3, 1, 1)
        bgr = (image * 255.0 - mean).flip(1)
        return [bgr * (1.0 / s.to(bgr.dtype).view(1, 3, 1, 1)) for s in self.feat_scales]

    def forward(self, logits: Tensor, image: Tensor) -> Tensor:
        """Refine ``logits [B, L, H, W]`` guided by ``image [B, 3, H, W]`` (RGB in [0, 1]).

        Returns:
            Log-probabilities ``[B, L, H, W]`` (``log_softmax`` of the CRF's output).
        """
        out = self.crf(logits, self.edge_features(image))
        final = getattr(self.crf, "final_output", "log_Q")
        if final == "softmax":
            return torch.log(out.clamp_min(torch.finfo(out.dtype).tiny))
        return F.log_softmax(out, dim=1)


@register_model(MODEL_NAME, tags=("segmentation", "crf"))
def paccrf_refiner(num_classes: int = 2, crf: Union[str, Sequence[str]] = DEFAULT_CRF,
                   **kwargs: Any) -> PacCrfRefiner:
    """:class:`PacCrfRefiner` builder (``pretrained=True`` loads the learned default CRF)."""
    return PacCrfRefiner(num_classes, crf, **kwargs)


def build_refiner(crf: CrfLike, num_classes: int) -> PacCrfRefiner:
    """The refiner :func:`refine` uses for ``crf`` (see there) and ``num_classes`` labels."""
    if crf is None:
        return default_refiner(num_classes)
    if isinstance(crf, PacCrfRefiner):
        if crf.num_classes != num_classes:
            raise ValueError(f"the CRF refiner has {crf.num_classes} labels, the logits "
                             f"{num_classes}")
        return crf
    if isinstance(crf, nn.Module):
        return PacCrfRefiner(num_classes, crf, learn_scales=False)
    if isinstance(crf, str) or (isinstance(crf, Sequence)
                                and all(isinstance(c, str) for c in crf)):
        return PacCrfRefiner(num_classes, crf)
    raise TypeError("crf must be None, a CRF name string, a sequence of pairwise strings, a "
                    f"PacCRF/PacCRFLoose or a PacCrfRefiner; got {type(crf).__name__}")


@functools.lru_cache(maxsize=1)
def _default_state() -> dict[str, Tensor]:
    """The learned parameters of the default weights of :data:`MODEL_NAME`."""
    return dict(create_model(MODEL_NAME, pretrained=True).state_dict())


def default_refiner(num_classes: int = 2) -> PacCrfRefiner:
    """The project's learned default CRF for ``num_classes`` labels (parameters frozen): the
    default weights of :data:`MODEL_NAME` (``create_model("paccrf_refiner", pretrained=True)``).

    The learned parameters do not depend on the number of labels (Potts kernels), so one file
    serves every ``L``.
    """
    record = weights.default_weights(MODEL_NAME)
    if record is None:
        raise ValueError(f"no default weights for {MODEL_NAME!r}; pass crf= explicitly")
    model = PacCrfRefiner(num_classes, record.model_kwargs.get("crf", DEFAULT_CRF))
    model.load_state_dict(_default_state(), strict=True)
    model.requires_grad_(False)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# inputs

def image_tensor(rgb: RgbLike, batch: Optional[int] = None) -> Tensor:
    """Convert ``rgb`` to a float ``[B, 3, H, W]`` RGB tensor in [0, 1].

    Args:
        rgb: ``uint8`` ``(H, W, 3)`` or ``(B, H, W, 3)`` (tensor or array; divided by 255), or
            a floating ``[B, 3, H, W]`` / ``[3, H, W]`` tensor or array already in [0, 1]
            (RGB order, not mean-subtracted nor normalised).
        batch: Expected batch size (an image with batch 1 is broadcast to it).

    Raises:
        TypeError: not a tensor/array, or a dtype other than uint8 or floating.
        ValueError: wrong layout, a float image with NaN/inf or outside [0, 1] (e.g. 0–255 or
            normalised), or a batch size that does not match.
    """
    if isinstance(rgb, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(rgb))
    elif isinstance(rgb, Tensor):
        t = rgb
    else:
        raise TypeError(f"rgb must be a torch.Tensor or numpy array, got {type(rgb).__name__}")
    if t.dtype == torch.uint8:
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[-1] != 3:
            raise ValueError(f"a uint8 rgb must be (H, W, 3) or (B, H, W, 3) (channels last), "
                             f"got shape {tuple(t.shape)}")
        t = t.permute(0, 3, 1, 2).float() / 255.0
    elif t.is_floating_point():
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4 or t.shape[1] != 3:
            hint = " (a channels-last float image? permute it to [B, 3, H, W])" \
                if t.dim() == 4 and t.shape[-1] == 3 else ""
            raise ValueError(f"a float rgb must be [B, 3, H, W] or [3, H, W], got shape "
                             f"{tuple(t.shape)}{hint}")
        if t.numel() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise ValueError(f"rgb has {n} non-finite value(s) (NaN/inf)")
        if t.numel():
            lo, hi = float(t.min()), float(t.max())
            if lo < -1e-3 or hi > 1.0 + 1e-3:
                raise ValueError(
                    f"a float rgb must hold RGB values in [0, 1], got range [{lo:.3g}, {hi:.3g}]"
                    " (pass the uint8 image, or divide a 0–255 image by 255; do not pass a "
                    "mean-subtracted or normalised network input)")
    else:
        raise TypeError(f"rgb must be uint8 or floating, got {t.dtype}")
    if batch is not None and t.shape[0] not in (1, batch):
        raise ValueError(f"rgb has batch {t.shape[0]}, the logits {batch}")
    if batch is not None and t.shape[0] == 1 and batch > 1:
        t = t.expand(batch, -1, -1, -1)
    return t


def refine(logits: Tensor, rgb: RgbLike, crf: CrfLike = None) -> Tensor:
    """Refine segmentation logits with a PAC-CRF guided by the image.

    Args:
        logits: ``[B, L, H, W]`` floating logits (or log-probabilities) of any network, ``L ≥ 2``.
        rgb: The image: ``uint8`` ``(H, W, 3)`` (or ``(B, H, W, 3)``), tensor or array, on the
            0–255 scale; or a floating ``[B, 3, H, W]`` tensor with RGB values in [0, 1] (as
            ``torchvision``'s ``ToTensor`` gives; not normalised). Both are converted to the same
            features, so ``refine(x, img)`` and ``refine(x, img_float / 255)`` agree. An image with
            batch 1 is used for every batch entry.
        crf: None: the project's default learned CRF (:data:`DEFAULT_CRF` with the default
            weights of ``paccrf_refiner``). A string: a CRF model name (docs/semantics.md
            §B.3; the CRF part ``'crfi5p4d5641p4d5161'`` or a whole name
            ``'fcn8s_crfi5p4d5161'``) or pairwise specs ``'4d_5_16_1'`` (several joined by
            ``','``); a sequence of such specs. Named CRFs are built freshly (untrained, the
            initialisation of docs/semantics.md §B.2). Or a module: a :class:`pac_core.PacCRF` /
            :class:`pac_core.PacCRFLoose` (used with the edge features of docs/semantics.md §B.2
            at scale 30) or a :class:`PacCrfRefiner`.

    Returns:
        Log-probabilities ``[B, L, H, W]`` in the logits' dtype, on their device (empty for
        empty logits, e.g. batch 0).

    Raises:
        TypeError: logits not a floating tensor, a bad ``rgb`` type/dtype or ``crf`` type.
        ValueError: shape mismatches (names the shapes), fewer than 2 labels, non-finite
            (NaN/inf) logits or ``rgb`` values, a float ``rgb`` outside [0, 1], a malformed CRF
            name, a CRF for another number of labels.

    Example:
        >>> logp = refine(net(x), image_uint8_hwc)          # learned default CRF
        >>> pred = logp.argmax(1)
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        got = (f"a tensor of {logits.dtype}" if isinstance(logits, Tensor)
               else type(logits).__name__)
        raise TypeError(f"logits must be a floating torch.Tensor [B, L, H, W], got {got}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, L, H, W], got shape {tuple(logits.shape)}")
    b, n_labels, h, w = logits.shape
    if n_labels < 2:
        raise ValueError(f"logits need at least 2 labels, got L={n_labels}")
    if not bool(torch.isfinite(logits).all()):
        n = int((~torch.isfinite(logits)).sum())
        raise ValueError(f"logits have {n} non-finite value(s) (NaN/inf); refine needs finite "
                         "logits")
    image = image_tensor(rgb, batch=b)
    if tuple(image.shape[-2:]) != (h, w):
        raise ValueError(f"rgb is {tuple(image.shape[-2:])} (H, W) but the logits are {(h, w)}")
    model = build_refiner(crf, n_labels)
    if logits.numel() == 0:  # batch 0 (or an empty image): nothing to refine
        return logits.new_empty(logits.shape)
    device = logits.device
    param = next(model.parameters(), None)
    if crf is None:
        model = model.to(device)
    elif param is not None and param.device != device:
        raise ValueError(f"the CRF is on {param.device}, the logits on {device}")
    image = image.to(device=device, dtype=torch.float32)
    out = model(logits.float(), image)
    return out.to(logits.dtype)
