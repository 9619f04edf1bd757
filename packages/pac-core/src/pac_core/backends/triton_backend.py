"""The ``triton`` backend: fused guided PAC forward and backward passes as Triton kernels (CUDA).

PacConv2d, PacConvTranspose2d and PacPool2d from raw guidance run on the ``pac_triton::guided``
operator (:mod:`.triton_ops`) when :func:`fused_supports` accepts the configuration; everything
else (precomputed-kernel ops, ``packernel2d``, masks, ``channel_wise``, ``groups > 1``, more than
:data:`MAX_GUIDANCE_CHANNELS` guidance channels) is delegated to the fallback: the ``native``
backend where it runs the device, else ``reference``. float64 is not claimed at all (``'auto'``
picks ``native`` for it).

float16/bfloat16 run natively (tensor-core MMA on the input dtype, float32 accumulation); float32
uses TF32 when ``torch.backends.cudnn.allow_tf32`` is set, as ``nn.Conv2d`` does, and IEEE float32
otherwise.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ..compat.torch_version import assume_constant_result
from . import registry
from .base import Backend, Pair
from .native import _centre_feature, _transposed_weight

__all__ = ["MAX_GUIDANCE_CHANNELS", "TritonBackend", "fused_supports", "make_backend"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: The guidance tile of a block of pixels is held in registers: at most this many channels.
MAX_GUIDANCE_CHANNELS = 64


def fused_supports(
    input: Tensor,
    guidance: Tensor,
    mask: Optional[Tensor],
    weight: Optional[Tensor],
    *,
    groups: int = 1,
    kernel_type: str,
    inv_alpha: Optional[Tensor],
    inv_lambda: Optional[Tensor],
    channel_wise: bool = False,
) -> bool:
    """Whether the fused Triton kernels cover this guided call (else the fallback runs it).

    Covered: gaussian and ``inv_*`` kernels (one ``α``/``λ`` value), any stride, padding,
    dilation, output padding and kernel size, smoothing of ``φ``, ``normalize_kernel``, bias,
    ``shared_filters``, float32/float16/bfloat16 with every tensor in the input's dtype, on one
    device. Not covered: a mask, ``channel_wise``, ``groups > 1``, guidance with more than
    :data:`MAX_GUIDANCE_CHANNELS` channels.
    """
    if mask is not None or channel_wise or groups != 1:
        return False
    if input.dtype not in _DTYPES or guidance.dtype != input.dtype:
        return False
    if weight is not None and weight.dtype != input.dtype:
        return False
    if guidance.shape[1] > MAX_GUIDANCE_CHANNELS or input.numel() == 0:
        return False
    if kernel_type != "gaussian":
        if not kernel_type.startswith("inv_") or inv_alpha is None or inv_lambda is None:
            return False
        if inv_alpha.numel() != 1 or inv_lambda.numel() != 1:
            return False
    return True


@assume_constant_result
def _fallback_name(device_type: str, dtype: torch.dtype) -> str:
    if "native" in registry.available():
        if registry.get("native").supports(torch.device(device_type), dtype):
            return "native"
    return "reference"


def _kind(kernel_type: str) -> tuple[int, bool]:
    return (0, False) if kernel_type == "gaussian" else (1, "_asym" in kernel_type)


class TritonBackend(Backend):
    """Fused Triton PAC kernels; other configurations run on the fallback backend.

    Args:
        devices: Device types this instance claims. ``('cuda',)`` for the registered backend; the
            tests add ``'cpu'`` to run the kernels in Triton's interpreter (``TRITON_INTERPRET=1``).
    """

    name = "triton"
    #: Below ``reference``: ``"auto"`` never picks it; select it with ``use("triton")`` or
    #: ``PAC_BACKEND=triton``. Its kernels are verified in Triton's interpreter, not yet timed on a
    #: GPU.
    priority = -1

    def __init__(self, devices: tuple[str, ...] = ("cuda",)) -> None:
        from . import triton_ops  # imports Triton and registers the operator

        self._devices = frozenset(devices)
        self._ops = triton_ops

    def supports(self, device: torch.device, dtype: torch.dtype) -> bool:
        """CUDA; float32, float16, bfloat16 (float64 goes to ``native``/``reference``)."""
        return torch.device(device).type in self._devices and dtype in _DTYPES

    def fallback(self, device: torch.device, dtype: torch.dtype) -> Backend:
        """The backend running what the fused kernels do not cover: native, else reference."""
        # Looked up like registry.resolve does: a trace-time constant under torch.compile.
        return registry._instances[_fallback_name(torch.device(device).type, dtype)]

    def _fb(self, t: Tensor) -> Backend:
        return self.fallback(t.device, t.dtype)

    # -- delegated ops --------------------------------------------------------------------------
    def packernel2d(self, guidance: Tensor, mask: Optional[Tensor], **kwargs: Any):
        """The materialised kernel: delegated."""
        return self._fb(guidance).packernel2d(guidance, mask, **kwargs)

    def pacconv2d(self, input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor],
                  **kwargs: Any) -> Tensor:
        """Precomputed-kernel convolution: delegated."""
        return self._fb(input).pacconv2d(input, kernel, weight, bias, **kwargs)

    def pacconv_transpose2d(self, input: Tensor, kernel: Tensor, weight: Tensor,
                            bias: Optional[Tensor], **kwargs: Any) -> Tensor:
        """Precomputed-kernel transposed convolution: delegated."""
        return self._fb(input).pacconv_transpose2d(input, kernel, weight, bias, **kwargs)

    def pacpool2d(self, input: Tensor, kernel: Tensor, **kwargs: Any) -> Tensor:
        """Precomputed-kernel pooling: delegated."""
        return self._fb(input).pacpool2d(input, kernel, **kwargs)

    # -- fused guided ops -----------------------------------------------------------------------
    def _run(
        self, input: Tensor, guidance: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
        *, pool: bool, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair,
        transposed: bool, kernel_type: str, smooth_kernel: Optional[Tensor],
        inv_alpha: Optional[Tensor], inv_lambda: Optional[Tensor], normalize_kernel: bool,
    ) -> Tensor:
        k, s, p, d = kernel_size, stride, padding, dilation
        if transposed:  # docs/semantics.md §1.1, §2.1
            g_stride: Pair = (1, 1)
            g_pad: Pair = ((k[0] - 1) * d[0] // 2, (k[1] - 1) * d[1] // 2)
            x_stride: Pair = (1, 1)
            x_pad: Pair = ((k[0] - 1) * d[0] - p[0], (k[1] - 1) * d[1] - p[1])
            up: Pair = s
        else:
            g_stride, g_pad, x_stride, x_pad, up = s, p, s, p, (1, 1)
        phi = _centre_feature(guidance, k, g_stride, g_pad, d, smooth_kernel)  # §2.2
        kind, asym = _kind(kernel_type)
        alpha = lam = None
        if kind == 1:
            assert inv_alpha is not None and inv_lambda is not None
            alpha = inv_alpha.to(torch.float32).reshape(1)
            lam = inv_lambda.to(torch.float32).reshape(1)
        geometry = [k[0], k[1], g_stride[0], g_stride[1], g_pad[0], g_pad[1], x_stride[0],
                    x_stride[1], x_pad[0], x_pad[1], up[0], up[1], d[0], d[1]]
        tf32 = bool(torch.backends.cudnn.allow_tf32)
        out, _ = self._ops.guided(input, guidance, phi, weight, bias, alpha, lam, geometry, kind,
                                  asym, pool, normalize_kernel, tf32)
        return out

    def pacconv2d_guided(self, input, guidance, mask, weight, bias, *, stride, padding, dilation,
                         shared_filters, groups, kernel_type, smooth_kernel_type, smooth_kernel,
                         inv_alpha, inv_lambda, normalize_kernel):
        """PacConv2d from raw guidance: fused when :func:`fused_supports`, else the fallback."""
        if not fused_supports(input, guidance, mask, weight, groups=groups,
                              kernel_type=kernel_type, inv_alpha=inv_alpha,
                              inv_lambda=inv_lambda):
            return self._fb(input).pacconv2d_guided(
                input, guidance, mask, weight, bias, stride=stride, padding=padding,
                dilation=dilation, shared_filters=shared_filters, groups=groups,
                kernel_type=kernel_type, smooth_kernel_type=smooth_kernel_type,
                smooth_kernel=smooth_kernel, inv_alpha=inv_alpha, inv_lambda=inv_lambda,
                normalize_kernel=normalize_kernel)
        out = self._run(
            input, guidance, weight, bias, pool=bool(shared_filters),
            kernel_size=(weight.shape[-2], weight.shape[-1]), stride=stride, padding=padding,
            dilation=dilation, transposed=False, kernel_type=kernel_type,
            smooth_kernel=smooth_kernel if smooth_kernel_type != "none" else None,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, normalize_kernel=normalize_kernel)
        return out, None

    def pacconv_transpose2d_guided(self, input, guidance, mask, weight, bias, *, stride, padding,
                                   output_padding, dilation, shared_filters, groups, kernel_type,
                                   smooth_kernel_type, smooth_kernel, inv_alpha, inv_lambda,
                                   normalize_kernel):
        """PacConvTranspose2d from raw guidance: fused (per sub-pixel class) or the fallback."""
        if not fused_supports(input, guidance, mask, weight, groups=groups,
                              kernel_type=kernel_type, inv_alpha=inv_alpha,
                              inv_lambda=inv_lambda):
            return self._fb(input).pacconv_transpose2d_guided(
                input, guidance, mask, weight, bias, stride=stride, padding=padding,
                output_padding=output_padding, dilation=dilation, shared_filters=shared_filters,
                groups=groups, kernel_type=kernel_type, smooth_kernel_type=smooth_kernel_type,
                smooth_kernel=smooth_kernel, inv_alpha=inv_alpha, inv_lambda=inv_lambda,
                normalize_kernel=normalize_kernel)
        w = weight if shared_filters else _transposed_weight(weight, groups)
        out = self._run(
            input, guidance, w, bias, pool=bool(shared_filters),
            kernel_size=(weight.shape[-2], weight.shape[-1]), stride=stride, padding=padding,
            dilation=dilation, transposed=True, kernel_type=kernel_type,
            smooth_kernel=smooth_kernel if smooth_kernel_type != "none" else None,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, normalize_kernel=normalize_kernel)
        return out, None

    def pacpool2d_guided(self, input, guidance, mask, *, kernel_size, stride, padding, dilation,
                         kernel_type, smooth_kernel_type, smooth_kernel, inv_alpha, inv_lambda,
                         channel_wise, normalize_kernel):
        """PacPool2d from raw guidance: fused when :func:`fused_supports`, else the fallback."""
        if not fused_supports(input, guidance, mask, None, kernel_type=kernel_type,
                              inv_alpha=inv_alpha, inv_lambda=inv_lambda,
                              channel_wise=channel_wise):
            return self._fb(input).pacpool2d_guided(
                input, guidance, mask, kernel_size=kernel_size, stride=stride, padding=padding,
                dilation=dilation, kernel_type=kernel_type,
                smooth_kernel_type=smooth_kernel_type, smooth_kernel=smooth_kernel,
                inv_alpha=inv_alpha, inv_lambda=inv_lambda, channel_wise=channel_wise,
                normalize_kernel=normalize_kernel)
        out = self._run(
            input, guidance, None, None, pool=True, kernel_size=kernel_size, stride=stride,
            padding=padding, dilation=dilation, transposed=False, kernel_type=kernel_type,
            smooth_kernel=smooth_kernel if smooth_kernel_type != "none" else None,
            inv_alpha=inv_alpha, inv_lambda=inv_lambda, normalize_kernel=normalize_kernel)
        return out, None


def make_backend() -> Optional[TritonBackend]:
    """The triton backend, or None without CUDA, Triton, or a torch able to define the op."""
    from ..compat.torch_version import HAS_CUSTOM_OP

    if not HAS_CUSTOM_OP or not torch.cuda.is_available():
        return None
    try:
        return TritonBackend()
    except ImportError:  # no Triton
        return None
