"""pac_models: joint depth upsampling and segmentation models built on pac-core, their weights,
data readers and the demo.

Importing the package registers the built-in models (:mod:`pac_models.depth`,
:mod:`pac_models.segmentation`); :func:`create_model`, :func:`list_models` and
:func:`list_pretrained` follow timm's contract.
"""

from . import depth, segmentation  # noqa: F401  (importing them registers their models)
from .registry import create_model, is_model, list_models, list_pretrained, register_model

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "is_model", "list_models", "list_pretrained",
           "register_model"]
