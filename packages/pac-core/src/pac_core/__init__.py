"""pac_core: pixel-adaptive convolution (PAC) for modern PyTorch.

The public API follows NVlabs' pacnet name for name (see the migration guide); ``backends`` selects
the implementation (``reference`` pure torch, ``native`` fused C++/CUDA through ``torch.ops.pac``).
"""

# First: fails with a clear ImportError on an unsupported Python or torch (below torch 2.1).
from .compat import torch_version as _torch_version  # noqa: F401  # isort: skip
from . import backends
from .crf import PacCRF, PacCRFLoose
from .features import create_position_feats, create_YXRGB
from .functional import pacconv2d, pacconv_transpose2d, packernel2d, pacpool2d
from .helpers import nd2col, np_gaussian_2d
from .modules import PacConv2d, PacConvTranspose2d, PacPool2d

__version__ = "0.1.0"

__all__ = [
    "PacCRF",
    "PacCRFLoose",
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
    "backends",
    "create_YXRGB",
    "create_position_feats",
    "nd2col",
    "np_gaussian_2d",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
]
