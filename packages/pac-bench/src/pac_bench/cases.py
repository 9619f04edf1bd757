"""Named benchmark shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

OPS: tuple[str, ...] = ("conv2d", "conv_transpose2d", "pool2d", "bilateral")
"""The PAC layers a :class:`Case` can time: ``PacConv2d``, ``PacConvTranspose2d``, ``PacPool2d``
and the joint bilateral filter (a normalised ``PacPool2d``, see :class:`JointBilateralPac`)."""

PEER_NAMES: dict[str, tuple[str, str]] = {
    "conv2d": ("PacConv2d", "nn.Conv2d"),
    "conv_transpose2d": ("PacConvTranspose2d", "nn.ConvTranspose2d"),
    "pool2d": ("PacPool2d", "F.avg_pool2d"),
    "bilateral": ("joint bilateral (PacPool2d)", "Gaussian blur"),
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


def _reflect_pad(t: torch.Tensor, pad: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (pad, pad, pad, pad), mode="reflect")


class GaussianBlur(torch.nn.Module):
    """Depthwise Gaussian blur with reflect padding: the torch op of a joint bilateral case.

    It is the bilateral filter without its range (colour) term, i.e. what the filter reduces to for
    an infinite colour sigma, computed by ``F.conv2d`` with ``groups=channels``.

    Args:
        channels: Channels of the input (one filter each).
        kernel: Odd window size.
        sigma_space: Standard deviation of the spatial Gaussian, in pixels.
    """

    def __init__(self, channels: int, kernel: int, sigma_space: float) -> None:
        super().__init__()
        r = torch.arange(kernel, dtype=torch.float32) - kernel // 2
        g1 = torch.exp(-0.5 * (r / sigma_space) ** 2)
        g2 = torch.outer(g1, g1)
        self.register_buffer("weight", (g2 / g2.sum()).expand(channels, 1, kernel, kernel).clone())
        self.pad = kernel // 2
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blur ``x`` ``[B, C, H, W]`` (reflect padding, same size)."""
        return torch.nn.functional.conv2d(_reflect_pad(x, self.pad), self.weight.to(x.dtype),
                                          groups=self.channels)


class JointBilateralPac(torch.nn.Module):
    r"""The joint bilateral filter as a ``PacPool2d`` (gaussian kernel, ``normalize_kernel=True``).

    ``Y[i] = Σ_j w_ij X[j] / Σ_j w_ij`` over the ``k×k`` window, with
    ``w_ij = exp(-|p_i - p_j|² / 2σ_s² - |G_i - G_j|² / 2σ_c²)``: the PAC gaussian kernel of the
    guidance feature ``[G / σ_c, y / σ_s, x / σ_s]`` (the planes of ``create_position_feats``).
    Input and guidance are reflect-padded first and the pooling runs unpadded, so this computes
    what ``kornia.filters.joint_bilateral_blur(x, g, k, σ_c, (σ_s, σ_s), border_type='reflect',
    color_distance_type='l2')`` computes (``tests/test_peers.py`` checks it numerically).

    Args:
        kernel: Odd window size.
        sigma_color: Range (guidance) standard deviation.
        sigma_space: Spatial standard deviation, in pixels.
    """

    def __init__(self, kernel: int, sigma_color: float, sigma_space: float) -> None:
        super().__init__()
        from pac_core import PacPool2d

        self.pad = kernel // 2
        self.sigma_color, self.sigma_space = float(sigma_color), float(sigma_space)
        self.pool = PacPool2d(kernel, normalize_kernel=True)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Filter ``x`` ``[B, C, H, W]`` guided by ``guide`` ``[B, C_g, H, W]``."""
        xp, gp = _reflect_pad(x, self.pad), _reflect_pad(guide, self.pad)
        b, _, h, w = gp.shape
        # create_position_feats' planes, in the guidance's dtype (it computes them in float32)
        ys = torch.arange(h, dtype=gp.dtype, device=gp.device) / self.sigma_space
        xs = torch.arange(w, dtype=gp.dtype, device=gp.device) / self.sigma_space
        pos = torch.stack([ys.view(h, 1).expand(h, w), xs.view(1, w).expand(h, w)])
        pos = pos.expand(b, 2, h, w)
        return self.pool(xp, torch.cat([gp / self.sigma_color, pos], 1))


@dataclass(frozen=True)
class Case:
    """One benchmark shape: a PAC layer and the torch op of the same geometry.

    ``op`` picks the pair: ``'conv2d'`` (``PacConv2d`` / ``nn.Conv2d``), ``'conv_transpose2d'``
    (``PacConvTranspose2d`` / ``nn.ConvTranspose2d``; ``size`` is the *output* size, the input is
    ``size // stride``, ``output_padding = stride - 1`` and the guidance is at the output size) or
    ``'pool2d'`` (``PacPool2d`` / ``F.avg_pool2d``; ``out_channels`` must equal ``channels``) or
    ``'bilateral'`` (the joint bilateral filter :class:`JointBilateralPac` / a depthwise
    :class:`GaussianBlur`; same channel rule, stride and dilation 1, reflect borders, and the
    ``kornia.filters.joint_bilateral_blur`` peer; inputs are uniform in ``[0, 1)``).

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
        op: ``'conv2d'``, ``'conv_transpose2d'``, ``'pool2d'`` or ``'bilateral'``.
        sigma_color: Range sigma of a ``'bilateral'`` case (ignored otherwise).
        sigma_space: Spatial sigma of a ``'bilateral'`` case, in pixels (ignored otherwise).
        threads: torch intra-op threads the case is timed with (None: whatever is set).
        peers: The peers timed by default (None: every one that applies), see
            :func:`pac_bench.peers.applicable_peers`.
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
    sigma_color: float = 0.1
    sigma_space: float = 1.5
    threads: int | None = None
    peers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.op == "pool2d" and (self.out_channels != self.channels or self.dilation != 1):
            raise ValueError("a pool2d case needs out_channels == channels and dilation 1")
        if self.op == "conv_transpose2d" and self.size % self.stride:
            raise ValueError("a conv_transpose2d case needs size divisible by stride")
        if self.op == "bilateral" and (self.out_channels != self.channels or self.dilation != 1
                                       or self.stride != 1):
            raise ValueError("a bilateral case needs out_channels == channels, stride and "
                             "dilation 1")

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
    def family(self) -> str:
        """The shape without the image size, e.g. ``'B=1 C=16→16 guide 8 k=5'``: cases of one
        family differ only in ``size`` (one line of a plot)."""
        out = f"B={self.batch} C={self.channels}→{self.out_channels} guide {self.guide_channels} "
        out += f"k={self.kernel}"
        if self.dilation != 1:
            out += f" d={self.dilation}"
        if self.stride != 1:
            out += f" s={self.stride}"
        if self.op == "bilateral":
            out += f" σc={self.sigma_color:g} σs={self.sigma_space:g}"
        if self.threads is not None:
            out += f", {self.threads} thread{'s' if self.threads > 1 else ''}"
        return out

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
        if self.op == "bilateral":
            x = torch.rand(self.batch, self.channels, n, n, generator=gen, dtype=dtype)
            g = torch.rand(self.batch, self.guide_channels, n, n, generator=gen, dtype=dtype)
            return x.to(device), g.to(device)
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
        if self.op == "bilateral":
            return JointBilateralPac(self.kernel, self.sigma_color, self.sigma_space)
        return PacConv2d(self.channels, self.out_channels, self.kernel, stride=self.stride,
                         padding=self.padding, dilation=self.dilation)

    def conv_layer(self) -> torch.nn.Module:
        """The torch op of the same geometry (the floor): ``nn.Conv2d``, ``nn.ConvTranspose2d``,
        ``F.avg_pool2d`` or :class:`GaussianBlur`."""
        if self.op == "conv_transpose2d":
            return torch.nn.ConvTranspose2d(self.channels, self.out_channels, self.kernel,
                                            stride=self.stride, padding=self.padding,
                                            output_padding=self.output_padding,
                                            dilation=self.dilation)
        if self.op == "pool2d":
            return _AvgPool(self.kernel, self.stride, self.padding)
        if self.op == "bilateral":
            return GaussianBlur(self.channels, self.kernel, self.sigma_space)
        return torch.nn.Conv2d(self.channels, self.out_channels, self.kernel, stride=self.stride,
                               padding=self.padding, dilation=self.dilation)


_GOAL_CONV = ("torch", "native")
_GOAL_JBF = ("torch", "reference+compile", "native", "kornia")

CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("conv_b1_c8_32_k3", 1, 8, 8, 4, 32, 3),
        Case("conv_b2_c32_128_k5", 2, 32, 32, 16, 128, 5),
        Case("conv_b2_c32_128_k3_d2", 2, 32, 32, 16, 128, 3, dilation=2),
        Case("conv_b2_c32_128_k5_s2", 2, 32, 32, 16, 128, 5, stride=2),
        Case("mem_b1_c64_512_k5", 1, 64, 64, 16, 512, 5),
        Case("convt_b2_c32_64to128_k5_s2", 2, 32, 32, 16, 128, 5, stride=2,
             op="conv_transpose2d"),
        Case("pool_b2_c32_128_k5", 2, 32, 32, 16, 128, 5, op="pool2d"),
        Case("convt_b1_c8_16to32_k3_s2", 1, 8, 8, 4, 32, 3, stride=2, op="conv_transpose2d"),
        Case("pool_b1_c8_32_k3", 1, 8, 8, 4, 32, 3, op="pool2d"),
        Case("jbf_b1_c3_16_k5", 1, 3, 3, 3, 16, 5, op="bilateral"),
        # image-size sweeps (the plots): PacConv2d and the joint bilateral filter
        *(Case(f"conv_b1_c16_{n}_k5", 1, 16, 16, 8, n, 5) for n in (32, 64, 128, 256, 512)),
        *(Case(f"jbf_b1_c3_{n}_k5", 1, 3, 3, 3, n, 5, op="bilateral")
          for n in (64, 128, 256, 512)),
        # the CPU target cases (thread count fixed; the peers that the targets compare with)
        Case("conv_b2_c32g16_128_k5_t2", 2, 32, 32, 16, 128, 5, threads=2, peers=_GOAL_CONV),
        *(Case(f"conv_b1_c16g16_{n}_k5_t1", 1, 16, 16, 16, n, 5, threads=1, peers=_GOAL_CONV)
          for n in (32, 128)),
        Case("convt_b2_c32g16_64to128_k5_s2_t2", 2, 32, 32, 16, 128, 5, stride=2,
             op="conv_transpose2d", threads=2, peers=_GOAL_CONV),
        *(Case(f"convt_b1_c16g16_{n // 2}to{n}_k5_s2_t1", 1, 16, 16, 16, n, 5, stride=2,
               op="conv_transpose2d", threads=1, peers=_GOAL_CONV) for n in (32, 128)),
        *(Case(f"jbf_b1_c3_{n}_k5_t1", 1, 3, 3, 3, n, 5, op="bilateral", threads=1,
               peers=_GOAL_JBF) for n in (64, 128, 256)),
    )
}
"""Every named case. ``conv_b1_c16_<n>_k5`` and ``jbf_b1_c3_<n>_k5`` sweep the image size (the
plots); ``jbf_*`` are joint bilateral cases (σ_c = 0.1, σ_s = 1.5, RGB guidance)."""

QUICK_CASES: tuple[str, ...] = (
    "conv_b2_c32g16_128_k5_t2", "conv_b1_c16g16_32_k5_t1", "conv_b1_c16g16_128_k5_t1",
    "convt_b2_c32g16_64to128_k5_s2_t2", "convt_b1_c16g16_16to32_k5_s2_t1",
    "convt_b1_c16g16_64to128_k5_s2_t1",
    "jbf_b1_c3_64_k5_t1", "jbf_b1_c3_128_k5_t1", "jbf_b1_c3_256_k5_t1",
)
"""What ``pac-bench run`` (``nox -s bench``) times by default: the CPU target cases, each with its
thread count — ``PacConv2d`` / ``PacConvTranspose2d`` (guidance 16 channels, k = 5) against
``nn.Conv2d`` / ``nn.ConvTranspose2d``, and the joint bilateral filter (1 thread) against the
Gaussian blur floor, ``torch.compile`` of the reference backend and kornia."""

FULL_CASES: tuple[str, ...] = tuple(n for n in CASES if n not in ("conv_b1_c8_32_k3",
                                                                    "convt_b1_c8_16to32_k3_s2",
                                                                    "pool_b1_c8_32_k3",
                                                                    "jbf_b1_c3_16_k5"))
"""``pac-bench run --full``: every named case but the tiny test shapes."""

MATRIX_CASES: tuple[str, ...] = ("conv_b1_c16_64_k5", "conv_b1_c16_128_k5", "jbf_b1_c3_128_k5")
"""What ``nox -s bench_matrix`` times under each torch release (a minute or two each)."""

TINY_CASES: tuple[str, ...] = ("conv_b1_c8_32_k3", "convt_b1_c8_16to32_k3_s2", "pool_b1_c8_32_k3",
                               "jbf_b1_c3_16_k5")
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
        CrfCase("crf_b1_l21_512_k5", 1, 21, 512),
    )
}
"""Every named CRF case (``crf_b1_l4_16_k3`` is tiny, for tests; ``crf_b1_l21_512_k5`` is the
segmentation issue's 512×512×21 case, timed with pydensecrf by ``python -m pac_bench.densecrf``
and not part of the native suite)."""

REFINER_DILATIONS: tuple[int, ...] = (1, 4, 12, 32)
"""Dilations of the four pairwise kernels of ``pac_models``' default refiner CRF."""

REFINER_MEAN_RGB: tuple[float, float, float] = (122.675, 116.669, 104.008)
"""Per-channel mean (R, G, B) that the refiner's edge features subtract (0–255 scale)."""

REFINER_FEAT_SCALE = 30.0
"""The refiner's initial edge-feature scale (every edge, every channel)."""


@dataclass(frozen=True)
class RefinerCrfCase:
    """One mean-field step of the CRF of ``paccrf_refiner`` (``pac_models``), default config.

    The CRF is the one ``pac_models.segmentation.refine`` uses by default
    (``crfi8lp0ds511p0ds541p0ds5121p0ds5321``): a :class:`~pac_core.PacCRFLoose` whose every
    step has four ``'potts'`` kernels with learnable ``5×5`` spatial filters (``shared_filters``:
    one ``[1, 1, 5, 5]`` filter for all labels) at dilations 1, 4, 12 and 32, full resolution,
    each on its own edge features: the mean-subtracted BGR image on the 0–255 scale divided by
    30. One step is ``softmax``, four ``pac::pool2d_kernel`` calls on the precomputed kernels and
    their accumulation; the kernels are computed once per image (:meth:`kernels`).

    Attributes:
        name: Unique name used on the command line and in result files.
        labels: Number of labels ``L``.
        size: Height and width (batch 1).
        threads: torch intra-op threads during the timings.
        kernel: Kernel size of the four pairwise kernels.
        dilations: Their dilations.
    """

    name: str
    labels: int
    size: int
    threads: int
    kernel: int = 5
    dilations: tuple[int, ...] = REFINER_DILATIONS

    def inputs(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``(unary [1, L, S, S], image [1, 3, S, S])``, the image RGB in [0, 1]."""
        gen = torch.Generator().manual_seed(seed)
        unary = torch.randn(1, self.labels, self.size, self.size, generator=gen)
        img = torch.rand(1, 3, self.size, self.size, generator=gen)
        return unary, img

    def crf(self) -> torch.nn.Module:
        """A one-step ``PacCRFLoose`` with the refiner's kernels (built as the refiner builds
        its CRF; the parameters are the initial ones, which do not change the work)."""
        from pac_core import PacCRFLoose

        torch.manual_seed(0)
        return PacCRFLoose(self.labels, 1, final_output="log_Q", perturbed_init=True,
                           fixed_weighting=False, unary_weight=1.0, pairwise_kernels=[
                               dict(kernel_size=self.kernel, dilation=d, blur=1,
                                    compat_type="potts", spatial_filter=True)
                               for d in self.dilations])

    def edge_features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The refiner's per-kernel edge features of an RGB image in [0, 1]."""
        mean = img.new_tensor(REFINER_MEAN_RGB).view(1, 3, 1, 1)
        bgr = (img * 255.0 - mean).flip(1)
        return [bgr * (1.0 / REFINER_FEAT_SCALE) for _ in self.dilations]


REFINER_CRF_CASES: dict[str, RefinerCrfCase] = {
    c.name: c
    for c in (
        RefinerCrfCase("crf_refiner_l21_512_t1", 21, 512, threads=1),
        RefinerCrfCase("crf_refiner_l21_512_t2", 21, 512, threads=2),
        RefinerCrfCase("crf_refiner_l4_32_t1", 4, 32, threads=1),
    )
}
"""The refiner-CRF step cases timed against pydensecrf's step (``crf_refiner_l4_32_t1`` is
tiny, for tests)."""

QUICK_REFINER_CRF_CASES: tuple[str, ...] = ("crf_refiner_l21_512_t1", "crf_refiner_l21_512_t2")
"""The refiner-CRF cases of the default ``pac-bench run``: 21 labels, 512×512, 1 and 2 threads."""

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


def get_refiner_crf_case(name: str) -> RefinerCrfCase:
    """The refiner-CRF case called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return REFINER_CRF_CASES[name]
    except KeyError:
        raise KeyError(f"unknown refiner CRF case {name!r}; known: "
                       f"{sorted(REFINER_CRF_CASES)}") from None


def get_crf_case(name: str) -> CrfCase:
    """The CRF case called ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return CRF_CASES[name]
    except KeyError:
        raise KeyError(f"unknown CRF case {name!r}; known: {sorted(CRF_CASES)}") from None
