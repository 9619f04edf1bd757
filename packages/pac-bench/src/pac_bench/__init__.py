"""pac_bench: timing and memory benchmarks of pac-core against ``nn.Conv2d``."""

from .cases import CASES, QUICK_CASES, Case, get_case

__version__ = "0.1.0"

__all__ = ["CASES", "QUICK_CASES", "Case", "__version__", "get_case"]
