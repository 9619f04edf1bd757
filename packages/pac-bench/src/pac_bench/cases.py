"""Named benchmark shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPS: tuple[str, ...] = ("conv2d", "conv_transpose2d", "pool2d")
"""The PAC layers a :class:`Case` can time: ``PacConv2d``, ``PacConvTranspose2d``, ``PacPool2d``."""

PEER_NAMES: dict[str, tuple[str, str]] = {
    "conv2d": ("PacConv2d", "nn.Conv2d"),
    "conv_transpose2d": ("PacConvTranspose2d", "nn.ConvTranspose2d"),
    "pool2d": ("PacPool2d", "F.avg_pool2d"),
}
"""``op -> (PAC layer name, name of the torch op of the same shape)``."""


class _AvgPool(torch.nn.Module):
    """``F.avg_pool2d`` as a module (the peer of ``PacPool2d``)."""

    def __init__(self, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average pooling of ``x`` (zero padding counted, like ``PacPool2d``'s unguided sum)."""
        return torch.nn.functional.avg_pool2d(x, self.kernel, self.stride, self.padding)


@dataclass(frozen=True)
class Case:
    """One benchmark shape: a PAC layer and the torch op of the same geometry.

    ``op`` picks the pair: ``'conv2d'`` (``PacConv2d`` / ``nn.Conv2d``), ``'conv_transpose2d'``
    (``PacConvTranspose2d`` / ``nn.ConvTranspose2d``; ``size`` is the *output* size, the input is
    ``size // stride``, ``output_padding = stride - 1`` and the guidance is at the output size) or
    ``'pool2d'`` (``PacPool2d`` / ``F.avg_pool2d``; ``out_channels`` must equal ``channels``).

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
        op: ``'conv2d'``, ``'conv_transpose2d'`` or ``'pool2d'``.
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
    op: str = "conv2d"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.op == "pool2d" and (self.out_channels != self.channels or self.dilation != 1):
            raise ValueError("a pool2d case needs out_channels == channels and dilation 1")
        if self.op == "conv_transpose2d" and self.size % self.stride:
            raise ValueError("a conv_transpose2d case needs size divisible by stride")

    @property
    def padding(self) -> int:
        """'Same' padding for stride 1: ``dilation * (kernel - 1) // 2``."""
        return self.dilation * (self.kernel - 1) // 2

    @property
    def output_padding(self) -> int:
        """``stride - 1`` for ``conv_transpose2d`` (output ``size``), else 0."""
        return self.stride - 1 if self.op == "conv_transpose2d" else 0

    @property
    def input_size(self) -> int:
        """Height and width of the input: ``size // stride`` when transposed, else ``size``."""
        return self.size // self.stride if self.op == "conv_transpose2d" else self.size

    @property
    def names(self) -> tuple[str, str]:
        """``(PAC layer name, torch op name)``, e.g. ``('PacPool2d', 'F.avg_pool2d')``."""
        return PEER_NAMES[self.op]

    def inputs(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``(input, guidance)`` tensors of this shape (guidance at the output size when
        transposed)."""
        gen = torch.Generator().manual_seed(seed)
        n = self.input_size
        x = torch.randn(self.batch, self.channels, n, n, generator=gen, dtype=dtype)
        g = torch.randn(self.batch, self.guide_channels, self.size, self.size, generator=gen,
                        dtype=dtype)
        return x.to(device), g.to(device)

    def pac_layer(self) -> torch.nn.Module:
        """The PAC layer of this case (gaussian kernel; bias for the convolutions)."""
        from pac_core import PacConv2d, PacConvTranspose2d, PacPool2d

        if self.op == "conv_transpose2d":
            return PacConvTranspose2d(self.channels, self.out_channels, self.kernel,
                                      stride=self.stride, padding=self.padding,
                                      output_padding=self.output_padding, dilation=self.dilation)
        if self.op == "pool2d":
            return PacPool2d(self.kernel, stride=self.stride, padding=self.padding)
        return PacConv2d(self.channels, self.out_channels, self.kernel, stride=self.stride,
                         padding=self.padding, dilation=self.dilation)

    def conv_layer(self) -> torch.nn.Module:
        """The torch op of the same geometry (the floor): ``nn.Conv2d``, ``nn.ConvTranspose2d``
        or ``F.avg_pool2d``."""
        if self.op == "conv_transpose2d":
            return torch.nn.ConvTranspose2d(self.channels, self.out_channels, self.kernel,
                                            stride=self.stride, padding=self.padding,
                                            output_padding=self.output_padding,
                                            dilation=self.dilation)
        if self.op == "pool2d":
            return _AvgPool(self.kernel, self.stride, self.padding)
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
        Case("convt_b2_c32_64to128_k5_s2", 2, 32, 32, 16, 128, 5, stride=2,
             op="conv_transpose2d"),
        Case("pool_b2_c32_128_k5", 2, 32, 32, 16, 128, 5, op="pool2d"),
        Case("convt_b1_c8_16to32_k3_s2", 1, 8, 8, 4, 32, 3, stride=2, op="conv_transpose2d"),
        Case("pool_b1_c8_32_k3", 1, 8, 8, 4, 32, 3, op="pool2d"),
    )
}
"""Every named case."""

QUICK_CASES: tuple[str, ...] = ("conv_b1_c16_64_k5", "conv_b2_c32_128_k5")
"""What ``pac-bench run`` times by default (a couple of minutes at most on a CPU)."""

TINY_CASES: tuple[str, ...] = ("conv_b1_c8_32_k3", "convt_b1_c8_16to32_k3_s2", "pool_b1_c8_32_k3")
"""Shapes small enough for tests."""


@dataclass(frozen=True)
class CrfCase:
    """One ``PacCRF`` shape: mean-field steps on ``[batch, labels, size, size]`` unaries.

    The CRF has two pairwise kernels, a ``'4d'`` one (full ``[L, L, k, k]`` PAC filter) and a
    non-spatial ``'potts'`` one (fixed filter), both of size ``kernel``, on RGB+YX guidance
    (``create_YXRGB`` of a random image: 5 channels).

    Attributes:
        name: Unique name used on the command line and in result files.
        batch: Batch size.
        labels: Number of labels ``L``.
        size: Height and width.
        kernel: Kernel size of both pairwise kernels.
    """

    name: str
    batch: int
    labels: int
    size: int
    kernel: int = 5

    def inputs(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``(unary, guidance)``; the guidance is ``create_YXRGB(img, 80, 13)``."""
        from pac_core.features import create_YXRGB

        gen = torch.Generator().manual_seed(seed)
        unary = torch.randn(self.batch, self.labels, self.size, self.size, generator=gen)
        img = torch.rand(self.batch, 3, self.size, self.size, generator=gen) * 255.0
        return unary, create_YXRGB(img, yx_scale=80.0, rgb_scale=13.0)

    def crf(self, num_steps: int) -> torch.nn.Module:
        """The ``PacCRF`` of this case running ``num_steps`` mean-field steps."""
        from pac_core import PacCRF

        torch.manual_seed(0)
        return PacCRF(self.labels, num_steps, pairwise_kernels=[
            dict(kernel_size=self.kernel, compat_type="4d"),
            dict(kernel_size=self.kernel, compat_type="potts", spatial_filter=False),
        ])


CRF_CASES: dict[str, CrfCase] = {
    c.name: c
    for c in (
        CrfCase("crf_b1_l21_128_k5", 1, 21, 128),
        CrfCase("crf_b1_l21_256_k5", 1, 21, 256),
        CrfCase("crf_b1_l4_16_k3", 1, 4, 16, 3),
    )
}
"""Every named CRF case (``crf_b1_l4_16_k3`` is tiny, for tests)."""

NATIVE_SUITE: dict[str, tuple[str, ...]] = {
    "time": ("conv_b2_c32_128_k5", "convt_b2_c32_64to128_k5_s2", "pool_b2_c32_128_k5"),
    "memory": ("mem_b1_c64_512_k5",),
    "crf": ("crf_b1_l21_128_k5", "crf_b1_l21_256_k5"),
}
"""What ``pac-bench run --suite native`` measures (the native-backend issue's CPU numbers)."""

TARGETS: dict[tuple[str, str], float] = {
    ("conv2d", "forward"): 2.0,
    ("conv2d", "forward_backward"): 3.0,
    ("conv2d", "memory"): 2.0,
}
"""Issue targets: the largest acceptable ratio to the torch op, by ``(op, mode)``."""


def get_case(name: str) -> Case:
    """The case called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"unknown case {name!r}; known: {sorted(CASES)}") from None


def get_crf_case(name: str) -> CrfCase:
    """The CRF case called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return CRF_CASES[name]
    except KeyError:
        raise KeyError(f"unknown CRF case {name!r}; known: {sorted(CRF_CASES)}") from None
