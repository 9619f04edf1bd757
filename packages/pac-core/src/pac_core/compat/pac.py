"""Drop-in replacement for pacnet's ``pac`` module.

Exposes the public names of pacnet's ``pac`` module, implemented by pac-core, so pacnet-era code
runs unchanged after changing one import::

    import pac_core.compat.pac as pac

    conv = pac.PacConv2d(3, 16, 5, padding=2)
    k, _ = pac.packernel2d(guide, kernel_size=5, padding=2)

Constructor arguments, attributes and ``state_dict`` layouts are pacnet's, so pacnet checkpoints
load with ``strict=True``. Behavioural differences (bug fixes, ``ValueError`` instead of
``AssertionError``, bool out-masks) are listed in the documentation of each name.
"""

from __future__ import annotations

from ..functional import pacconv2d, pacconv_transpose2d, packernel2d, pacpool2d
from ..helpers import nd2col, np_gaussian_2d
from ..modules import PacConv2d, PacConvTranspose2d, PacPool2d

__all__ = [
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
    "nd2col",
    "np_gaussian_2d",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
]
