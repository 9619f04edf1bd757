"""pac_models: models, data readers and the joint-upsampling demo built on pac-core."""

__version__ = "0.1.0"

__all__ = ["__version__"]
