"""Named benchmark shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Case:
    """One benchmark shape: a ``PacConv2d`` and the ``nn.Conv2d`` of the same geometry.

    Attributes:
        name: Unique name used on the command line and in result files.
        batch: Batch size.
        channels: Input channels.
        out_channels: Output channels.
        guide_channels: Guidance (kernel feature) channels.
        size: Height and width of the (square) input.
        kernel: Kernel size (odd).
        dilation: Dilation.
        stride: Stride.
    """

    name: str
    batch: int
    channels: int
    out_channels: int
    guide_channels: int
    size: int
    kernel: int
    dilation: int = 1
    stride: int = 1

    @property
    def padding(self) -> int:
        """'Same' padding for stride 1: ``dilation * (kernel - 1) // 2``."""
        return self.dilation * (self.kernel - 1) // 2

    def inputs(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``(input, guidance)`` tensors of this shape."""
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch, self.channels, self.size, self.size, generator=gen, dtype=dtype)
        g = torch.randn(self.batch, self.guide_channels, self.size, self.size, generator=gen,
                        dtype=dtype)
        return x.to(device), g.to(device)

    def pac_layer(self) -> torch.nn.Module:
        """The ``PacConv2d`` of this case (gaussian kernel, bias)."""
        from pac_core import PacConv2d

        return PacConv2d(self.channels, self.out_channels, self.kernel, stride=self.stride,
                         padding=self.padding, dilation=self.dilation)

    def conv_layer(self) -> torch.nn.Conv2d:
        """The ``nn.Conv2d`` of the same geometry (the floor)."""
        return torch.nn.Conv2d(self.channels, self.out_channels, self.kernel, stride=self.stride,
                               padding=self.padding, dilation=self.dilation)


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("conv_b1_c8_32_k3", 1, 8, 8, 4, 32, 3),
        Case("conv_b1_c16_64_k5", 1, 16, 16, 8, 64, 5),
        Case("conv_b2_c32_128_k5", 2, 32, 32, 16, 128, 5),
        Case("conv_b2_c32_128_k3_d2", 2, 32, 32, 16, 128, 3, dilation=2),
        Case("conv_b2_c32_128_k5_s2", 2, 32, 32, 16, 128, 5, stride=2),
        Case("mem_b1_c64_512_k5", 1, 64, 64, 16, 512, 5),
    )
}
"""Every named case."""

QUICK_CASES: tuple[str, ...] = ("conv_b1_c16_64_k5", "conv_b2_c32_128_k5")
"""What ``pac-bench run`` times by default (a couple of minutes at most on a CPU)."""

TINY_CASES: tuple[str, ...] = ("conv_b1_c8_32_k3",)
"""Shapes small enough for tests."""


def get_case(name: str) -> Case:
    """The case called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"unknown case {name!r}; known: {sorted(CASES)}") from None
