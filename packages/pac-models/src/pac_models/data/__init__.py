"""Data readers: the bundled Middlebury sample (more datasets to come)."""

from .middlebury import MiddleburySample, load_middlebury

__all__ = ["MiddleburySample", "load_middlebury"]
