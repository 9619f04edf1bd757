"""Joint depth (and flow) upsampling: models, the evaluation protocol and :func:`upsample`.

Registered models (all take ``factor=4, 8 or 16``; default 8, pacnet's default):

==============================  =====================================================
``pac_joint_upsample``          :class:`PacJointUpsample` (PAC paper, docs/semantics.md §A.2)
``pac_joint_upsample_lite``     :class:`PacJointUpsampleLite` (~56 k parameters)
``djif``                        :class:`DJIF` baseline (Li et al.)
``djif_wide``                   :class:`DJIFWide`
``joint_bilateral``             :class:`JointBilateral` (non-learned by default); pacnet's
                                ``JBU_<k>_<color>_<space>`` names resolve to it
``bilinear``                    :class:`Bilinear` (no parameters)
``pac_refine``                  :class:`PacRefine`: bilinear + fixed PAC trilateral filter
                                (no parameters; the fallback of :func:`upsample`)
``pac_jbu_refine``              :class:`PacJBURefine`: learned joint bilateral upsampling and
                                a residual refinement (its default weights are what
                                :func:`upsample` uses)
==============================  =====================================================
"""

from __future__ import annotations

import re
from typing import Any, Optional

from torch import nn

from ..registry import register_model, register_name_resolver
from .api import (
    AREA_CONSISTENCY,
    CONSISTENCIES,
    DEFAULT_ENSEMBLE,
    DEFAULT_FALLBACK,
    DEFAULT_MODEL,
    ENSEMBLES,
    upsample,
)
from .models import (
    DJIF,
    LITE_CONFIGS,
    Bilinear,
    DJIFWide,
    JointBilateral,
    PacJBURefine,
    PacJointUpsample,
    PacJointUpsampleLite,
    PacRefine,
    fold,
    unfold,
)
from .protocol import apply_model, denormalize, epe, normalize_lowres, rmse

__all__ = [
    "AREA_CONSISTENCY",
    "CONSISTENCIES",
    "DEFAULT_ENSEMBLE",
    "DEFAULT_FALLBACK",
    "DEFAULT_MODEL",
    "DJIF",
    "ENSEMBLES",
    "LITE_CONFIGS",
    "Bilinear",
    "DJIFWide",
    "JointBilateral",
    "PacJBURefine",
    "PacJointUpsample",
    "PacJointUpsampleLite",
    "PacRefine",
    "apply_model",
    "default_jbu_params",
    "denormalize",
    "epe",
    "fold",
    "normalize_lowres",
    "rmse",
    "unfold",
    "upsample",
]

DEFAULT_FACTOR = 8


@register_model("pac_joint_upsample", aliases=("PacJointUpsample",), tags=("depth", "learned"))
def pac_joint_upsample(factor: int = DEFAULT_FACTOR, channels: int = 1, guide_channels: int = 3,
                       **kwargs: Any) -> nn.Module:
    """:class:`PacJointUpsample` (183 k / 222 k / 260 k parameters at 4× / 8× / 16×)."""
    return PacJointUpsample(factor, channels, guide_channels, **kwargs)


@register_model("pac_joint_upsample_lite", aliases=("PacJointUpsampleLite",),
                tags=("depth", "learned"))
def pac_joint_upsample_lite(factor: int = DEFAULT_FACTOR, channels: int = 1,
                            guide_channels: int = 3) -> nn.Module:
    """:class:`PacJointUpsampleLite` (about 56 k parameters at every factor)."""
    return PacJointUpsampleLite(factor, channels, guide_channels)


@register_model("djif", aliases=("DJIF",), tags=("depth", "learned", "baseline"))
def djif(factor: int = DEFAULT_FACTOR, channels: int = 1, guide_channels: int = 3,
         **kwargs: Any) -> nn.Module:
    """:class:`DJIF` baseline (56 323 parameters)."""
    return DJIF(factor, channels, guide_channels, **kwargs)


@register_model("djif_wide", aliases=("DJIFWide",), tags=("depth", "learned", "baseline"))
def djif_wide(factor: int = DEFAULT_FACTOR, channels: int = 1,
              guide_channels: int = 3) -> nn.Module:
    """:class:`DJIFWide` baseline (233 475 parameters)."""
    return DJIFWide(factor, channels, guide_channels)


def default_jbu_params(factor: int) -> dict[str, float]:
    """Default joint-bilateral parameters for a factor.

    ``kernel_size = 2·factor + 1`` (the window reaches the two nearest low-resolution samples per
    side), ``scale_space = 2/factor`` (σ_s = factor/2 full-resolution pixels) and
    ``scale_color = 10`` (σ_c = 0.1 for RGB in [0, 1]).
    """
    return {"kernel_size": 2 * factor + 1, "scale_space": 2.0 / factor, "scale_color": 10.0}


@register_model("joint_bilateral", aliases=("JointBilateral",), tags=("depth", "baseline"))
def joint_bilateral(factor: int = DEFAULT_FACTOR, channels: int = 1,
                    kernel_size: Optional[int] = None, scale_space: Optional[float] = None,
                    scale_color: Optional[float] = None, guide_channels: int = 3) -> nn.Module:
    """:class:`JointBilateral`; unset parameters come from :func:`default_jbu_params`."""
    p = default_jbu_params(factor)
    return JointBilateral(
        factor, channels,
        int(kernel_size if kernel_size is not None else p["kernel_size"]),
        float(scale_space if scale_space is not None else p["scale_space"]),
        float(scale_color if scale_color is not None else p["scale_color"]),
    )


@register_model("bilinear", aliases=("Bilinear",), tags=("depth", "baseline"))
def bilinear(factor: int = DEFAULT_FACTOR, channels: int = 1,
             guide_channels: int = 3) -> nn.Module:
    """:class:`Bilinear` (no parameters)."""
    return Bilinear(factor, channels, guide_channels)


@register_model("pac_jbu_refine", aliases=("PacJBURefine",), tags=("depth", "learned"))
def pac_jbu_refine(factor: int = DEFAULT_FACTOR, channels: int = 1, guide_channels: int = 3,
                   **kwargs: Any) -> nn.Module:
    """:class:`PacJBURefine`: learned multi-scale joint bilateral upsampling and a residual
    refinement (about 4.2 k parameters); the project's shipped depth weights use it."""
    return PacJBURefine(factor, channels, guide_channels, **kwargs)


@register_model("pac_refine", aliases=("PacRefine",), tags=("depth", "baseline"))
def pac_refine(factor: int = DEFAULT_FACTOR, channels: int = 1, guide_channels: int = 3,
               **kwargs: Any) -> nn.Module:
    """:class:`PacRefine`: bilinear, then a fixed PAC trilateral filter (no parameters)."""
    return PacRefine(factor, channels, guide_channels, **kwargs)


_JBU = re.compile(r"^JBU_(\d+)_([0-9.eE+-]+)_([0-9.eE+-]+)$")


@register_name_resolver
def _resolve_jbu(name: str) -> Optional[tuple[str, dict[str, Any]]]:
    """pacnet's ``JBU_<kernel_size>_<scale_color>_<scale_space>`` (colour before space)."""
    m = _JBU.match(name)
    if m is None:
        return None
    try:
        return "joint_bilateral", {"kernel_size": int(m.group(1)),
                                   "scale_color": float(m.group(2)),
                                   "scale_space": float(m.group(3))}
    except ValueError:
        return None
