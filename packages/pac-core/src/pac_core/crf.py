"""Mean-field CRF layers whose pairwise messages are pixel-adaptive convolutions.

:class:`PacCRF` (parameters shared by all unrolled steps) and :class:`PacCRFLoose` (one set of
parameters per step) follow pacnet's ``paccrf`` module: same constructor arguments, containers,
``state_dict`` keys and mean-field update. Messages go through :class:`~pac_core.PacConv2d` layers
with precomputed kernels, so they run on whichever backend :mod:`pac_core.backends` selects.

Differences from pacnet (each intentional):

* ``compat_type`` is validated (pacnet treats unknown strings like ``'potts'`` without the sign
  flip); even kernel sizes raise ``ValueError`` (pacnet: ``AssertionError``);
* :class:`PacCRFLoose` supports ``'na'`` (plain convolution) kernels (pacnet raises
  ``AttributeError``);
* the ``pairwise_weights`` parameters of non-learnable kernels are kept for ``state_dict`` parity
  but, as in pacnet, are not used: they get no gradient and loaded values have no effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .modules import PacConv2d

__all__ = ["PacCRF", "PacCRFLoose"]

_COMPAT_TYPES = ("na", "4d", "2d", "potts")
_FINAL_OUTPUTS = ("log_Q", "softmax", "log_softmax")

EdgeFeat = Union[Tensor, Sequence[Optional[Tensor]], Mapping[int, Tensor], None]
EdgeKernel = Union[Tensor, Sequence[Optional[Tensor]], None]


def _blur_pad(n: int, b: int) -> int:
    """Padding that centres the ``b``-blocks of a size-``n`` axis (0 when ``b`` divides ``n``)."""
    return ((b - n % b) % b + 1) // 2


def _blur_pool(t: Tensor, b: int) -> Tensor:
    """``Pool_b``: ``b×b`` average pooling, stride ``b``, centred padding not counted."""
    if b == 1:
        return t
    h, w = t.shape[-2:]
    return F.avg_pool2d(
        t, kernel_size=b, stride=b, padding=(_blur_pad(h, b), _blur_pad(w, b)),
        count_include_pad=False,
    )


def _blur_upsample(t: Tensor, b: int, size: tuple[int, int]) -> Tensor:
    """``Up_b``: bilinear ×``b`` (half-pixel centres), cropped back to ``size``."""
    if b == 1:
        return t
    h, w = size
    ph, pw = _blur_pad(h, b), _blur_pad(w, b)
    up = F.interpolate(t, scale_factor=float(b), mode="bilinear", align_corners=False)
    return up[:, :, ph:ph + h, pw:pw + w]


def _subtract_weighted(acc: Tensor, weight: Union[Tensor, float], msg: Tensor) -> Tensor:
    """``acc − weight·msg``, bit for bit. A constant weight of ±1 (the default, and −1 for a
    negated Potts weight) makes the product exact, so ``acc ∓ msg`` is the same value in one
    pass over the data instead of two, without the product's temporary."""
    if isinstance(weight, float) and weight in (1.0, -1.0):
        return acc - msg if weight == 1.0 else acc + msg
    return acc - weight * msg


def _check_final_output(final_output: str) -> None:
    if final_output not in _FINAL_OUTPUTS:
        raise ValueError(f"final_output must be one of {_FINAL_OUTPUTS}, got {final_output!r}")


def _final(logQ: Tensor, final_output: str) -> Tensor:
    _check_final_output(final_output)
    if final_output == "softmax":
        return F.softmax(logQ, dim=1)
    if final_output == "log_softmax":
        return F.log_softmax(logQ, dim=1)
    return logQ


class PacCRF(nn.Module):
    """Mean-field CRF with pixel-adaptive pairwise kernels, unrolled ``num_steps`` times.

    Each step computes ``Q = softmax(logQ)`` and
    ``logQ ← w_u·unary − Σ_i pw_i · Up_b(C_i(Msg_i(Pool_b(Q), K_i)))`` where ``K_i`` is the
    Gaussian PAC kernel of the edge features of pairwise kernel ``i`` (at the blurred
    resolution), ``Msg_i`` its messenger convolution and ``C_i`` its optional 1×1 label
    compatibility transform.

    Args:
        channels: Number of labels ``L``.
        num_steps: Mean-field iterations (0: the output is the unary, transformed).
        final_output: ``'log_Q'``, ``'softmax'`` or ``'log_softmax'`` (checked in ``forward``).
        perturbed_init: Add ``U(−5e-4, 5e-4)`` noise to the initial messenger/compat weights.
        native_impl: Passed to the messengers; selects nothing (see :mod:`pac_core.backends`).
        fixed_weighting: Keep the unary weight and the Potts weights fixed (no parameters used).
        unary_weight: Initial (or fixed) unary weight ``w_u``.
        pairwise_kernels: None, one dict of :meth:`add_pairwise_kernel` arguments, or a list of
            such dicts.

    Attributes:
        messengers: ``nn.ModuleList`` of the per-kernel messengers (``PacConv2d``, or
            ``nn.Conv2d`` for ``'na'`` kernels).
        compat: ``nn.ModuleList`` of 1×1 ``nn.Conv2d`` compatibility transforms, ``None`` where a
            kernel has none.
        pairwise_weights: ``nn.ParameterList`` of 0-dim weights; only those of learnable Potts
            kernels are used (the others are kept for checkpoint parity).
        unary_weight: 0-dim Parameter, or a float with ``fixed_weighting``.

    Example:
        >>> crf = PacCRF(21, 5, pairwise_kernels=[
        ...     dict(kernel_size=5, dilation=64, compat_type='4d'),
        ...     dict(kernel_size=5, dilation=16, compat_type='4d')])
        >>> log_q = crf(unary_logits, create_YXRGB(img, yx_scale=80.0, rgb_scale=13.0))
    """

    def __init__(
        self,
        channels: int,
        num_steps: int,
        final_output: str = "log_Q",
        perturbed_init: bool = True,
        native_impl: bool = False,
        fixed_weighting: bool = False,
        unary_weight: float = 1.0,
        pairwise_kernels: Union[Mapping[str, Any], Sequence[Mapping[str, Any]], None] = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.num_steps = num_steps
        self.final_output = final_output
        self.perturbed_init = perturbed_init
        self.native_impl = native_impl
        self.fixed_weighting = fixed_weighting
        self._unary_weight_init = float(unary_weight)
        if fixed_weighting:
            self.unary_weight: Union[float, nn.Parameter] = float(unary_weight)
        else:
            self.unary_weight = nn.Parameter(torch.tensor(float(unary_weight)))
        self.messengers = nn.ModuleList()
        self.compat = nn.ModuleList()
        self.pairwise_weights = nn.ParameterList()
        self.blur: list[int] = []
        self.pairwise_repr: list[str] = []
        self._compat_types: list[str] = []
        self._pairwise_consts: list[float] = []
        self._pairwise_learnable: list[bool] = []
        if pairwise_kernels is not None:
            if isinstance(pairwise_kernels, Mapping):
                self.add_pairwise_kernel(**pairwise_kernels)
            else:
                for kw in pairwise_kernels:
                    self.add_pairwise_kernel(**kw)

    def num_pairwise_kernels(self) -> int:
        """Number of pairwise kernels added so far."""
        return len(self.messengers)

    def add_pairwise_kernel(
        self,
        kernel_size: int = 3,
        dilation: int = 1,
        blur: int = 1,
        compat_type: str = "4d",
        spatial_filter: bool = True,
        pairwise_weight: float = 1.0,
    ) -> None:
        """Append a pairwise kernel.

        Args:
            kernel_size: Odd spatial size ``k`` of the messenger.
            dilation: Its dilation ``d`` (padding ``(k//2)·d`` keeps the size).
            blur: Work at ``1/blur`` resolution (average-pool ``Q`` and the features, upsample the
                message bilinearly); 1 = full resolution. Sizes need not be divisible by it.
            compat_type: ``'na'`` (plain learnable convolution, no guidance), ``'4d'`` (full
                ``[L, L, k, k]`` PAC filter), ``'2d'`` (shared spatial PAC filter then a learnable
                1×1 label-compatibility matrix, init ``1 − I``) or ``'potts'`` (shared spatial
                filter, rewarding agreement; its weight is negated).
            spatial_filter: For ``'2d'``/``'potts'``: learnable spatial filter (Gaussian init)
                if True, else the fixed ``crf_pool`` filter (ones, centre 0). A fixed-filter,
                non-``fixed_weighting`` Potts kernel has a learnable weight instead.
            pairwise_weight: The kernel's weight ``w``.

        Raises:
            ValueError: even ``kernel_size`` (pacnet: ``AssertionError``) or unknown
                ``compat_type`` (pacnet accepts it silently).
        """
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if compat_type not in _COMPAT_TYPES:
            raise ValueError(f"compat_type must be one of {_COMPAT_TYPES}, got {compat_type!r}")
        if blur < 1:
            raise ValueError(f"blur must be a positive int, got {blur}")
        L = self.channels
        k, d = kernel_size, dilation
        pad = (k // 2) * d
        w = -pairwise_weight if compat_type == "potts" else pairwise_weight
        crf_filler = "crf_perturbed" if self.perturbed_init else "crf"
        compat: Optional[nn.Module] = None
        if compat_type == "na":
            messenger: nn.Module = nn.Conv2d(L, L, k, padding=pad, dilation=d, bias=False)
        elif compat_type == "4d":
            messenger = PacConv2d(
                L, L, k, padding=pad, dilation=d, bias=False, kernel_type="gaussian",
                filler=crf_filler, native_impl=self.native_impl,
            )
        else:
            messenger = PacConv2d(
                L, L, k, padding=pad, dilation=d, bias=False, kernel_type="gaussian",
                shared_filters=True, filler=crf_filler if spatial_filter else "crf_pool",
                native_impl=self.native_impl,
            )
            if compat_type == "2d":
                compat = nn.Conv2d(L, L, 1, bias=False)
        self.messengers.append(messenger)
        self.compat.append(compat)
        self.pairwise_weights.append(nn.Parameter(torch.tensor(float(w), dtype=torch.float32)))
        self._compat_types.append(compat_type)
        self._pairwise_consts.append(float(w))
        self._pairwise_learnable.append(
            compat_type == "potts" and not spatial_filter and not self.fixed_weighting
        )
        self.blur.append(int(blur))
        self.pairwise_repr.append(
            f"{compat_type}{'_s' if spatial_filter else ''}_{k}x{k}_d{d}_b{blur}_w{w}"
        )
        self.reset_parameters(-1)

    def reset_parameters(self, pairwise_idx: Optional[int] = None) -> None:
        """Re-initialise the parameters.

        Args:
            pairwise_idx: None: every kernel and the unary weight; an index (``-1`` = last): only
                that kernel's messenger, compatibility transform (``1 − I``, perturbed if
                ``perturbed_init``) and pairwise weight.
        """
        n = self.num_pairwise_kernels()
        if pairwise_idx is None:
            indices = list(range(n))
            if isinstance(self.unary_weight, nn.Parameter):
                with torch.no_grad():
                    self.unary_weight.fill_(self._unary_weight_init)
        else:
            indices = [pairwise_idx % n] if n else []
        with torch.no_grad():
            for i in indices:
                self.messengers[i].reset_parameters()
                compat = self.compat[i]
                if compat is not None:
                    cw = compat.weight
                    eye = torch.eye(self.channels, dtype=cw.dtype, device=cw.device)
                    cw[:, :, 0, 0] = 1.0 - eye
                    if self.perturbed_init:
                        cw.add_((torch.rand_like(cw) - 0.5) * 1e-3)
                self.pairwise_weights[i].fill_(self._pairwise_consts[i])

    def extra_repr(self) -> str:
        s = (
            f"channels={self.channels}, num_steps={self.num_steps}, "
            f"final_output={self.final_output}"
        )
        if self.fixed_weighting:
            s += f", fixed_weighting=True, unary_weight={self.unary_weight}"
        if self.pairwise_repr:
            s += f", pairwise_kernels=[{', '.join(self.pairwise_repr)}]"
        return s

    # ------------------------------------------------------------------------------------------
    def compute_kernels(self, edge_feat: EdgeFeat) -> list[Optional[Tensor]]:
        """The per-kernel PAC kernels of the edge features (None for ``'na'`` kernels).

        Args:
            edge_feat: One tensor ``[B, C_f, H, W]`` shared by every kernel, or a list / int-keyed
                dict whose entry ``i`` is kernel ``i``'s features (``'na'`` entries are not read).

        Returns:
            A list indexed by kernel number: ``[B, 1, k_i, k_i, h_i, w_i]`` tensors at the
            resolution of the blurred features (``Pool_{b_i}``), or None for ``'na'`` kernels.
        """
        kernels: list[Optional[Tensor]] = []
        shared = isinstance(edge_feat, Tensor)
        pooled: dict[int, Tensor] = {}
        for i, messenger in enumerate(self.messengers):
            if self._compat_types[i] == "na":
                kernels.append(None)
                continue
            b = self.blur[i]
            if shared:
                if b not in pooled:
                    pooled[b] = _blur_pool(edge_feat, b)  # type: ignore[arg-type]
                f = pooled[b]
            else:
                if edge_feat is None:
                    raise ValueError("PacCRF needs edge_feat (or edge_kernel)")
                f = _blur_pool(edge_feat[i], b)  # type: ignore[index]
            kernels.append(messenger.compute_kernel(f)[0])
        return kernels

    def _kernel_list(self, edge_feat: EdgeFeat, edge_kernel: EdgeKernel) -> list[Optional[Tensor]]:
        n = self.num_pairwise_kernels()
        if edge_kernel is None:
            return self.compute_kernels(edge_feat)
        if isinstance(edge_kernel, Tensor):
            return [edge_kernel] * n
        return [
            None if self._compat_types[i] == "na" else edge_kernel[i] for i in range(n)
        ]

    def _pairwise_weight(self, i: int) -> Union[Tensor, float]:
        if self._pairwise_learnable[i]:
            return self.pairwise_weights[i]
        return self._pairwise_consts[i]

    def _step(self, unary: Tensor, logQ: Tensor, kernels: list[Optional[Tensor]]) -> Tensor:
        """One mean-field update ``logQ ← w_u·unary − Σ_i pw_i·M_i`` (docs/semantics.md §6.1)."""
        size = (unary.shape[-2], unary.shape[-1])
        Q = F.softmax(logQ, dim=1)
        pooled: dict[int, Tensor] = {}
        new_logQ = self.unary_weight * unary
        for i, messenger in enumerate(self.messengers):
            b = self.blur[i]
            if b not in pooled:
                pooled[b] = _blur_pool(Q, b)
            Qb = pooled[b]
            if self._compat_types[i] == "na":
                msg = messenger(Qb)
            else:
                msg = messenger(Qb, None, kernels[i])
            compat = self.compat[i]
            if compat is not None:
                msg = compat(msg)
            msg = _blur_upsample(msg, b, size)
            new_logQ = _subtract_weighted(new_logQ, self._pairwise_weight(i), msg)
        return new_logQ

    def forward(
        self,
        unary: Tensor,
        edge_feat: EdgeFeat,
        edge_kernel: EdgeKernel = None,
        logQ: Optional[Tensor] = None,
    ) -> Tensor:
        """Run ``num_steps`` mean-field steps.

        Args:
            unary: Unary logits ``[B, L, H, W]``.
            edge_feat: Edge features: one tensor ``[B, C_f, H, W]`` for every kernel, or a list /
                int-keyed dict with one entry per kernel (``'na'`` entries are never read).
                Ignored when ``edge_kernel`` is given. Gradients flow into it.
            edge_kernel: Optional precomputed kernels: one tensor for every kernel, or a list
                indexed by kernel number (``'na'`` positions included, never read).
            logQ: Optional initial state (default: ``unary``).

        Returns:
            ``[B, L, H, W]``: ``logQ``, ``softmax(logQ)`` or ``log_softmax(logQ)`` according to
            ``final_output``.

        Raises:
            ValueError: invalid ``final_output``.
        """
        _check_final_output(self.final_output)
        if logQ is None:
            logQ = unary
        if self.num_steps > 0:
            kernels = self._kernel_list(edge_feat, edge_kernel)
            for _ in range(self.num_steps):
                logQ = self._step(unary, logQ, kernels)
        return _final(logQ, self.final_output)


class PacCRFLoose(nn.Module):
    """Mean-field PAC-CRF whose unrolled steps do **not** share parameters.

    ``steps`` holds ``num_steps`` one-step :class:`PacCRF` layers built with the same
    arguments. The kernels are computed once from the edge features with step 0's messengers and
    blur factors and used by every step.

    Args:
        channels: Number of labels ``L``.
        num_steps: Number of steps (each with its own parameters).
        final_output: ``'log_Q'``, ``'softmax'`` or ``'log_softmax'`` (checked in ``forward``).
        perturbed_init: See :class:`PacCRF`.
        native_impl: See :class:`PacCRF`.
        fixed_weighting: See :class:`PacCRF`.
        unary_weight: See :class:`PacCRF`.
        pairwise_kernels: See :class:`PacCRF`.

    Note:
        Unlike pacnet, ``'na'`` kernels work (they are skipped when computing kernels). With
        ``num_steps=0`` there is no step to hold kernels: :meth:`add_pairwise_kernel` does
        nothing, :meth:`num_pairwise_kernels` returns 0 and the output is the transformed unary.
    """

    def __init__(
        self,
        channels: int,
        num_steps: int,
        final_output: str = "log_Q",
        perturbed_init: bool = True,
        native_impl: bool = False,
        fixed_weighting: bool = False,
        unary_weight: float = 1.0,
        pairwise_kernels: Union[Mapping[str, Any], Sequence[Mapping[str, Any]], None] = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.num_steps = num_steps
        self.final_output = final_output
        self.steps = nn.ModuleList(
            PacCRF(channels, 1, "log_Q", perturbed_init, native_impl, fixed_weighting,
                   unary_weight, pairwise_kernels)
            for _ in range(num_steps)
        )
        self.reset_parameters()

    def num_pairwise_kernels(self) -> int:
        """Number of pairwise kernels (read from step 0; 0 without steps)."""
        return self.steps[0].num_pairwise_kernels() if len(self.steps) else 0

    def add_pairwise_kernel(
        self,
        kernel_size: int = 3,
        dilation: int = 1,
        blur: int = 1,
        compat_type: str = "4d",
        spatial_filter: bool = True,
        pairwise_weight: float = 1.0,
    ) -> None:
        """Add the same pairwise kernel to every step; see :meth:`PacCRF.add_pairwise_kernel`."""
        for step in self.steps:
            step.add_pairwise_kernel(kernel_size, dilation, blur, compat_type, spatial_filter,
                                     pairwise_weight)

    def reset_parameters(self) -> None:
        """Re-initialise every step's parameters."""
        for step in self.steps:
            step.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_steps={self.num_steps}, "
            f"final_output={self.final_output}"
        )

    def forward(
        self, unary: Tensor, edge_feat: EdgeFeat, edge_kernel: EdgeKernel = None
    ) -> Tensor:
        """Run the steps, each with its own parameters.

        Args:
            unary: Unary logits ``[B, L, H, W]``.
            edge_feat: Edge features, as in :meth:`PacCRF.forward`.
            edge_kernel: Optional precomputed kernels, as in :meth:`PacCRF.forward`.

        Returns:
            ``[B, L, H, W]`` transformed according to ``final_output``.

        Raises:
            ValueError: invalid ``final_output``.
        """
        _check_final_output(self.final_output)
        logQ = unary
        if len(self.steps):
            kernels = self.steps[0]._kernel_list(edge_feat, edge_kernel)
            for step in self.steps:
                logQ = step(unary, None, kernels, logQ)
        return _final(logQ, self.final_output)
