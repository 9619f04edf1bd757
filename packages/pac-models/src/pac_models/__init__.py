"""pac_models: models, data readers and the joint-upsampling demo built on pac-core."""

from .registry import create_model, is_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "is_model", "list_models", "register_model"]
