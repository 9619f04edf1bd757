"""Drop-in replacement for pacnet's ``paccrf`` module.

Exposes the public names of pacnet's ``paccrf`` module, implemented by pac-core::

    import pac_core.compat.paccrf as paccrf

    crf = paccrf.PacCRF(21, 5, pairwise_kernels=[dict(kernel_size=5, dilation=64)])
    feats = paccrf.create_YXRGB(img, yx_scale=80.0, rgb_scale=13.0)

``state_dict`` layouts are pacnet's, so pacnet checkpoints load with ``strict=True``. Differences:
``compat_type`` is validated, ``'na'`` kernels work in :class:`PacCRFLoose`, invalid arguments raise
``ValueError``.
"""

from __future__ import annotations

from ..crf import PacCRF, PacCRFLoose
from ..features import create_position_feats, create_YXRGB

__all__ = ["PacCRF", "PacCRFLoose", "create_YXRGB", "create_position_feats"]
