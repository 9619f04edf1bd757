"""The ``pac_triton::guided`` operator: fused guided PAC forward (Triton) and its backward.

The forward launches one of the kernels of :mod:`.triton_kernels` through
``torch.library.triton_op`` + ``wrap_triton`` (torch >= 2.6), so ``torch.compile`` traces through
it without a graph break; older releases with ``torch.library.custom_op`` get an opaque op.

The backward recomputes ``K``; gradients flow to the input, the guidance, ``φ``, the weight,
the bias and ``inv_alpha``/``inv_lambda``. Three implementations, chosen by :data:`BACKWARD`:

* ``"triton"`` (the default): the fused backward kernels of :mod:`.triton_bwd_kernels`, launched
  by the ``pac_triton::guided_backward`` operator (also a ``triton_op``), with ``K`` recomputed on
  chip and deterministic reductions;
* ``"native"``: the ``native`` backend's fused backward operators
  (``pac::conv2d_guided_backward``, ``pac::pool2d_guided_backward``; the normaliser's share through
  the pool operator applied to ones), which never materialise the column tensors;
* ``"torch"``: a recomputation in plain torch of the formulas of docs/semantics.md §2.3–§3.3 (``K``
  and the windows rebuilt with ``unfold``): exact, but as memory-hungry as the reference backend.

"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..compat import torch_version as tv
from ..helpers import transposed_grid
from .triton_bwd_kernels import (
    pac_bwd_centre_kernel,
    pac_bwd_guidance_kernel,
    pac_bwd_input_kernel,
    pac_bwd_kernel_grad_kernel,
    pac_bwd_weight_kernel,
)
from .triton_kernels import INV_EPS, pac_conv_fwd_kernel, pac_pool_fwd_kernel

__all__ = ["BACKWARD", "GEOMETRY_FIELDS", "guided", "guided_backward"]

#: The backward implementation: ``"triton"`` (fused kernels), ``"native"`` or ``"torch"``.
BACKWARD: str = "triton"

#: The entries of the ``geometry`` list argument, in order (see :mod:`.triton_kernels`).
GEOMETRY_FIELDS = ("KH", "KW", "GS_H", "GS_W", "GP_H", "GP_W", "XS_H", "XS_W", "XP_H", "XP_W",
                   "U_H", "U_W", "D_H", "D_W")
_GAUSSIAN = 0
#: Up to this many input channels, the input-gradient kernel also forms the kernel's gradient.
_FUSE_MAX_CHANNELS = 128


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _guided_impl(
    x: Tensor, guidance: Tensor, phi: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
    alpha: Optional[Tensor], lam: Optional[Tensor], geometry: list[int], kind: int, asym: bool,
    pool: bool, normalize: bool, tf32: bool,
) -> tuple[Tensor, Tensor]:
    kh, kw, gs_h, gs_w, gp_h, gp_w, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w = geometry
    _check_dtype(x)
    x = x.contiguous()
    guidance = guidance.contiguous()
    phi = phi.contiguous()
    b, c_in, h, w = x.shape
    c_f, hg, wg = guidance.shape[1], guidance.shape[2], guidance.shape[3]
    ho, wo = phi.shape[2], phi.shape[3]
    # Pixels per sub-pixel class (rounded up) x the number of classes (see triton_kernels).
    m = b * triton_cdiv(ho, u_h) * triton_cdiv(wo, u_w)
    classes = u_h * u_w
    norm = (x.new_empty((b, 1, ho, wo), dtype=torch.float32) if normalize
            else x.new_empty((0,), dtype=torch.float32))
    # Unused pointer arguments get a valid, non-empty tensor that is never read or written.
    dummy = x
    alpha_t = alpha.contiguous() if alpha is not None else dummy
    lam_t = lam.contiguous() if lam is not None else dummy
    bias_t = bias.contiguous() if bias is not None else dummy
    block_cf = max(2, _next_pow2(c_f))
    geo = (gs_h, gs_w, gp_h, gp_w, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w)
    block_m = 64
    if pool:
        block_c = min(64, max(2, _next_pow2(c_in)))
        out = x.new_empty((b, c_in, ho, wo))
        norm_arg = norm if normalize else out  # written only with NORMALIZE
        w_t = weight.contiguous() if weight is not None else dummy
        grid = (triton_cdiv(m, block_m), triton_cdiv(c_in, block_c), classes)
        tv.wrap_triton(pac_pool_fwd_kernel)[grid](
            x, guidance, phi, w_t, bias_t, alpha_t, lam_t, out, norm_arg,
            b, c_in, h, w, ho, wo, c_f, hg, wg, kh, kw, *geo,
            KIND=kind, ASYM=asym, HAS_W=weight is not None, HAS_BIAS=bias is not None,
            NORMALIZE=normalize, BLOCK_M=block_m, BLOCK_C=block_c, BLOCK_CF=block_cf,
        )
        return out, norm
    assert weight is not None
    c_out = weight.shape[0]
    # [C_out, C_in, kh, kw] -> [kh·kw, C_in, C_out]: the B operand of every tap's GEMM.
    w_t = weight.permute(2, 3, 1, 0).reshape(kh * kw, c_in, c_out).contiguous()
    out = x.new_empty((b, c_out, ho, wo))
    norm_arg = norm if normalize else out  # written only with NORMALIZE
    block_n = min(128, max(16, _next_pow2(c_out)))
    block_k = 32 if c_in >= 32 else 16
    grid = (triton_cdiv(m, block_m), triton_cdiv(c_out, block_n), classes)
    precision = "tf32" if (tf32 and x.dtype == torch.float32) else "ieee"
    tv.wrap_triton(pac_conv_fwd_kernel)[grid](
        x, guidance, phi, w_t, bias_t, alpha_t, lam_t, out, norm_arg,
        b, c_in, h, w, c_out, ho, wo, c_f, hg, wg, kh, kw, *geo,
        KIND=kind, ASYM=asym, HAS_BIAS=bias is not None, NORMALIZE=normalize,
        PRECISION=precision, DOT_F32=_dot_f32(x), BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_K=block_k, BLOCK_CF=block_cf,
    )
    return out, norm


_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_dtype(x: Tensor) -> None:
    """The kernels compute ``K`` and accumulate in float32: float64 is not theirs to run."""
    if x.dtype not in _DTYPES:
        raise TypeError(f"pac_triton ops take float32, float16 or bfloat16 tensors; input has "
                        f"dtype {x.dtype}")


def _dot_f32(x: Tensor) -> bool:
    """Whether the kernels widen 16-bit float ``tl.dot`` operands to float32 (the interpreter's
    dot mishandles them; on a GPU they are multiplied natively)."""
    return x.device.type == "cpu" and x.element_size() == 2


def triton_cdiv(a: int, b: int) -> int:
    """``⌈a / b⌉``."""
    return (a + b - 1) // b


# -- backward by recomputation --------------------------------------------------------------------
def _x_cols(t: Tensor, geometry: list[int], out_hw: tuple[int, int]) -> Tensor:
    """``[N, C, T, L]`` windows of ``t`` as the kernels read the input (zero outside)."""
    kh, kw, _, _, _, _, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w = geometry
    n, c = t.shape[:2]
    if u_h == 1 and u_w == 1:
        cols = F.unfold(t, (kh, kw), dilation=(d_h, d_w), padding=(xp_h, xp_w),
                        stride=(xs_h, xs_w))
    else:
        grid = _grid(t, geometry, out_hw)
        cols = F.unfold(grid, (kh, kw), dilation=(d_h, d_w))
    return cols.reshape(n, c, kh * kw, -1)


def _transposed_args(geometry: list[int], in_hw: tuple[int, int], out_hw: tuple[int, int]):
    kh, kw, _, _, _, _, _, _, xp_h, xp_w, u_h, u_w, d_h, d_w = geometry
    k, s, d = (kh, kw), (u_h, u_w), (d_h, d_w)
    p = tuple((k[i] - 1) * d[i] - (xp_h, xp_w)[i] for i in range(2))
    q = tuple(out_hw[i] - ((in_hw[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1)
              for i in range(2))
    return k, s, p, q, d


def _grid(t: Tensor, geometry: list[int], out_hw: tuple[int, int]) -> Tensor:
    k, s, p, q, d = _transposed_args(geometry, (t.shape[2], t.shape[3]), out_hw)
    return transposed_grid(t, k, s, p, q, d)  # type: ignore[arg-type]


def _x_cols_adjoint(dcols: Tensor, geometry: list[int], in_hw: tuple[int, int],
                    out_hw: tuple[int, int]) -> Tensor:
    """The adjoint of :func:`_x_cols`: ``[N, C, T, L]`` → ``[N, C, H, W]``."""
    kh, kw, _, _, _, _, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w = geometry
    n, c = dcols.shape[:2]
    flat = dcols.reshape(n, c * kh * kw, -1)
    if u_h == 1 and u_w == 1:
        return F.fold(flat, in_hw, (kh, kw), dilation=(d_h, d_w), padding=(xp_h, xp_w),
                      stride=(xs_h, xs_w))
    k, s, p, q, d = _transposed_args(geometry, in_hw, out_hw)
    grid_hw = (out_hw[0] + d[0] * (k[0] - 1), out_hw[1] + d[1] * (k[1] - 1))
    dgrid = F.fold(flat, grid_hw, (kh, kw), dilation=(d_h, d_w))
    ph, pw = (k[0] - 1) * d[0] - p[0], (k[1] - 1) * d[1] - p[1]
    dz = F.pad(dgrid, (-pw, -(pw + q[1]), -ph, -(ph + q[0])))  # adjoint of the zero padding
    return dz[:, :, :: s[0], :: s[1]]  # adjoint of the zero insertion


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, guidance, phi, weight, bias, alpha, lam, geometry, kind, asym, pool, normalize, tf32 = inputs
    out, norm = output
    ctx.save_for_backward(x, guidance, phi, weight, bias, alpha, lam, out, norm)
    ctx.params = (list(geometry), kind, asym, pool, normalize, bool(tf32))
    ctx.mark_non_differentiable(norm)


def _backward(ctx: Any, dout: Tensor, _dnorm: Optional[Tensor]) -> tuple[Any, ...]:
    x, guidance, phi, weight, bias, alpha, lam, out, norm = ctx.saved_tensors
    geometry, kind, asym, pool, normalize, tf32 = ctx.params
    args = (dout, x, guidance, phi, weight, bias, alpha, lam, out, norm, geometry, kind, asym,
            pool, normalize, ctx.needs_input_grad)
    if BACKWARD == "triton":
        grads = _fused_backward(*args, tf32=tf32)
    elif BACKWARD == "native":
        grads = _native_backward(*args)
    elif BACKWARD == "torch":
        grads = _guided_backward(*args)
    else:
        raise ValueError(f"triton_ops.BACKWARD must be 'triton', 'native' or 'torch', got "
                         f"{BACKWARD!r}")
    return (*grads, None, None, None, None, None, None)


def _fused_backward(
    dout: Tensor, x: Tensor, guidance: Tensor, phi: Tensor, weight: Optional[Tensor],
    bias: Optional[Tensor], alpha: Optional[Tensor], lam: Optional[Tensor], out: Tensor,
    norm: Tensor, geometry: list[int], kind: int, asym: bool, pool: bool, normalize: bool,
    needs: tuple[bool, ...], *, tf32: bool,
) -> tuple[Optional[Tensor], ...]:
    """The gradients through ``pac_triton::guided_backward`` (the fused Triton kernels).

    Only elementwise work and one channel sum run in torch here: the gradient reaching the
    unnormalised output and ``∂L/∂N`` (docs/semantics.md §2.4), and the bias gradient.
    """
    dnorm = x.new_empty((0,), dtype=torch.float32)
    grad = dout
    if normalize:
        dy = dout.to(torch.float32)
        g_raw = dy / (norm + (norm == 0).to(torch.float32))
        y_norm = out.to(torch.float32)
        if bias is not None:
            y_norm = y_norm - bias.to(torch.float32).reshape(1, -1, 1, 1)
        # G in the input dtype, and ∂L/∂N from the same rounded values: the two shares of ∂K
        # (Σ_o G·XW and ∂N) nearly cancel, and must see the same G.
        grad = g_raw.to(x.dtype)
        dnorm = -(grad.to(torch.float32) * y_norm).sum(1)  # [B, H', W']: d/dN of Yraw / N
    mask = [needs[0], needs[1], needs[2], needs[3] and weight is not None,
            needs[5] and alpha is not None, needs[6] and lam is not None]
    res = guided_backward(grad.contiguous(), dnorm, x, guidance, phi, weight, alpha, lam,
                          geometry, kind, asym, pool, normalize, tf32, mask)
    dx, dg, dphi, dw, da, dl = (t if m else None for t, m in zip(res, mask))
    dbias = None
    if bias is not None and needs[4]:
        dbias = dout.to(torch.float32).sum((0, 2, 3)).to(bias.dtype)
    return dx, dg, dphi, dw, dbias, da, dl


def _guided_backward_impl(
    grad: Tensor, dnorm: Tensor, x: Tensor, guidance: Tensor, phi: Tensor,
    weight: Optional[Tensor], alpha: Optional[Tensor], lam: Optional[Tensor], geometry: list[int],
    kind: int, asym: bool, pool: bool, normalize: bool, tf32: bool, needs: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    kh, kw, gs_h, gs_w, gp_h, gp_w, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w = geometry
    need_x, need_g, need_phi, need_w, need_a, need_l = needs
    _check_dtype(x)
    x = x.contiguous()
    guidance = guidance.contiguous()
    phi = phi.contiguous()
    grad = grad.contiguous()
    b, c_in, h, w = x.shape
    c_f, hg, wg = guidance.shape[1], guidance.shape[2], guidance.shape[3]
    ho, wo = phi.shape[2], phi.shape[3]
    c_out = grad.shape[1]
    taps = kh * kw
    geo = (gs_h, gs_w, gp_h, gp_w, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w)
    dummy = x
    alpha_t = alpha.contiguous() if alpha is not None else dummy
    lam_t = lam.contiguous() if lam is not None else dummy
    dnorm_t = dnorm.contiguous() if normalize else dummy
    block_cf = max(2, _next_pow2(c_f))
    block_m = 64
    precision = "tf32" if (tf32 and x.dtype == torch.float32) else "ieee"
    dot_f32 = _dot_f32(x)
    # Gradients not asked for are distinct empty tensors (outputs may not alias each other).
    dx, dg, dphi, dw, da, dl = (x.new_empty((0,)) for _ in range(6))
    if pool:
        w_t = weight.contiguous() if weight is not None else dummy
    else:
        assert weight is not None
        # [C_out, C_in, kh, kw] -> [kh·kw, C_in, C_out], the forward's layout, and its transpose.
        w_fwd = weight.permute(2, 3, 1, 0).reshape(taps, c_in, c_out).contiguous()

    need_chain = need_g or need_phi or need_a or need_l or (pool and need_w)
    # ∂K inside the input-gradient kernel when one channel block holds every input channel.
    fuse = need_x and need_chain and c_in <= _FUSE_MAX_CHANNELS
    if need_chain:
        ddist = (torch.zeros((b, taps, ho, wo), dtype=torch.float32, device=x.device)
                 if need_g or fuse else dummy)  # written only with STORE_DDIST or FUSE_DK
    if need_x:
        dx = torch.empty_like(x)
        if pool:
            block_n, block_k, w_arg = min(64, max(2, _next_pow2(c_in))), 16, w_t
        else:
            block_n = min(64, max(16, _next_pow2(c_in)))
            block_k = 32 if c_out >= 32 else 16
            w_arg = w_fwd.transpose(1, 2).contiguous()  # [kh·kw, C_out, C_in]
        block_m_x = block_m
        if fuse:
            block_n = max(block_n, _next_pow2(c_in))
            block_m_x = 64 if block_n <= 64 else 32  # three [pixels, C_in] tiles in registers
        m_blocks_x = triton_cdiv(b * triton_cdiv(h, xs_h) * triton_cdiv(w, xs_w), block_m_x)
        grid = (m_blocks_x, triton_cdiv(c_in, block_n), xs_h * xs_w)
        part = (torch.zeros((m_blocks_x * xs_h * xs_w, taps + 2), dtype=torch.float32,
                            device=x.device) if fuse else dummy)
        tv.wrap_triton(pac_bwd_input_kernel)[grid](
            grad, dnorm_t, x, guidance, phi, w_arg, alpha_t, lam_t, dx,
            ddist if fuse else dummy, part,
            b, c_in, h, w, c_out, ho, wo, c_f, hg, wg, kh, kw, *geo,
            KIND=kind, ASYM=asym, POOL=pool, HAS_W=weight is not None, NORMALIZE=normalize,
            FUSE_DK=fuse, PRECISION=precision, DOT_F32=dot_f32, BLOCK_M=block_m_x,
            BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_CF=block_cf,
        )

    if need_chain:
        dphi_t = torch.empty_like(phi)
        if fuse:
            if need_phi:
                tv.wrap_triton(pac_bwd_centre_kernel)[(triton_cdiv(b * ho * wo, block_m),)](
                    ddist, guidance, phi, dphi_t, b, ho, wo, c_f, hg, wg, kh, kw, gs_h, gs_w,
                    gp_h, gp_w, d_h, d_w, ASYM=asym, BLOCK_M=block_m, BLOCK_CF=block_cf,
                )
        else:
            m_blocks = triton_cdiv(b * triton_cdiv(ho, u_h) * triton_cdiv(wo, u_w), block_m)
            part = torch.zeros((m_blocks * u_h * u_w, taps + 2), dtype=torch.float32,
                               device=x.device)
            if pool:
                block_n, block_k = 16, min(64, max(2, _next_pow2(c_in)))
            else:
                block_n = min(64, max(16, _next_pow2(c_out)))
                block_k = 32 if c_in >= 32 else 16
            tv.wrap_triton(pac_bwd_kernel_grad_kernel)[(m_blocks, u_h * u_w)](
                grad, dnorm_t, x, guidance, phi, w_t if pool else w_fwd, alpha_t, lam_t,
                ddist, dphi_t, part,
                b, c_in, h, w, c_out, ho, wo, c_f, hg, wg, kh, kw, *geo,
                KIND=kind, ASYM=asym, POOL=pool, HAS_W=weight is not None, NORMALIZE=normalize,
                STORE_DDIST=need_g, PRECISION=precision, DOT_F32=dot_f32, BLOCK_M=block_m,
                BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_CF=block_cf,
            )
        sums = part.sum(0)  # a fixed-order reduction of the per-program partials
        if need_phi:
            dphi = dphi_t
        if pool and need_w:
            assert weight is not None
            dw = sums[:taps].reshape(weight.shape).to(weight.dtype, copy=True)
        if need_a:
            assert alpha is not None
            da = sums[taps].reshape(alpha.shape).to(alpha.dtype, copy=True)
        if need_l:
            assert lam is not None
            dl = sums[taps + 1].reshape(lam.shape).to(lam.dtype, copy=True)
        if need_g:
            dg = torch.empty_like(guidance)
            tv.wrap_triton(pac_bwd_guidance_kernel)[(triton_cdiv(b * hg * wg, block_m),)](
                ddist, guidance, phi, dg, b, ho, wo, c_f, hg, wg, kh, kw, gs_h, gs_w, gp_h, gp_w,
                d_h, d_w, ASYM=asym, BLOCK_M=block_m, BLOCK_CF=block_cf,
            )

    if need_w and not pool:
        assert weight is not None
        block_n = min(64, max(16, _next_pow2(c_out)))
        block_k = min(64, max(16, _next_pow2(c_in)))
        # Pixel blocks of the largest sub-pixel class, shared out over at most 16 splits.
        split = max(1, min(16, triton_cdiv(b * triton_cdiv(ho, u_h) * triton_cdiv(wo, u_w),
                                           block_m)))
        part_w = torch.empty((split, taps, c_in, c_out), dtype=torch.float32, device=x.device)
        grid = (triton_cdiv(c_in, block_k) * triton_cdiv(c_out, block_n), taps, split)
        tv.wrap_triton(pac_bwd_weight_kernel)[grid](
            grad, x, guidance, phi, alpha_t, lam_t, part_w,
            b, c_in, h, w, c_out, ho, wo, c_f, hg, wg, kh, kw, *geo, split,
            KIND=kind, ASYM=asym, PRECISION=precision, DOT_F32=dot_f32, BLOCK_M=block_m,
            BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_CF=block_cf,
        )
        dw = part_w.sum(0).permute(2, 1, 0).reshape(weight.shape).to(weight.dtype)
    return dx, dg, dphi, dw, da, dl


def _guided_backward(
    dout: Tensor, x: Tensor, guidance: Tensor, phi: Tensor, weight: Optional[Tensor],
    bias: Optional[Tensor], alpha: Optional[Tensor], lam: Optional[Tensor], out: Tensor,
    norm: Tensor, geometry: list[int], kind: int, asym: bool, pool: bool, normalize: bool,
    needs: tuple[bool, ...],
) -> tuple[Optional[Tensor], ...]:
    """Gradients of the guided op w.r.t. (x, guidance, φ, weight, bias, α, λ), in float32+."""
    cdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    kh, kw, gs_h, gs_w, gp_h, gp_w = geometry[:6]
    d_h, d_w = geometry[12], geometry[13]
    b, c_in, h, w = x.shape
    ho, wo = phi.shape[2], phi.shape[3]
    c_f = guidance.shape[1]
    xf, gf, phif = x.to(cdtype), guidance.to(cdtype), phi.to(cdtype)
    dy = dout.to(cdtype).reshape(b, dout.shape[1], ho * wo)

    # K (docs/semantics.md §2.3), rebuilt on the kernel windows.
    gcols = F.unfold(gf, (kh, kw), dilation=(d_h, d_w), padding=(gp_h, gp_w),
                     stride=(gs_h, gs_w)).reshape(b, c_f, kh * kw, ho * wo)
    delta_raw = gcols - phif.reshape(b, c_f, 1, ho * wo)
    delta = torch.relu(delta_raw) if asym else delta_raw
    dist = (delta * delta).sum(1)  # [B, T, L]
    if kind == _GAUSSIAN:
        kval = torch.exp(-0.5 * dist)
    else:
        assert alpha is not None and lam is not None
        a_, l_ = alpha.to(cdtype).reshape(()), lam.to(cdtype).reshape(())
        r = dist + INV_EPS
        powr = r ** (l_ / 2)
        kval = a_ + powr
    xc = _x_cols(xf, geometry, (ho, wo))  # [B, C, T, L]

    g_raw = dy
    if normalize:
        nf = norm.to(cdtype).reshape(b, 1, ho * wo)
        nz = nf + (nf == 0).to(cdtype)
        g_raw = dy / nz
        y_norm = out.to(cdtype).reshape(b, -1, ho * wo)
        if bias is not None:
            y_norm = y_norm - bias.to(cdtype).reshape(1, -1, 1)
        dnorm = -(g_raw * y_norm).sum(1)  # [B, L]: d/dN of Yraw / (N + [N = 0])

    dweight = dbias = None
    if pool:
        tap_w = (weight.to(cdtype).reshape(1, 1, kh * kw, 1) if weight is not None else None)
        p_cols = g_raw.reshape(b, c_in, 1, ho * wo)
        if tap_w is not None:
            p_cols = p_cols * tap_w
        if weight is not None and needs[3]:
            dweight = (g_raw.reshape(b, c_in, 1, -1) * kval[:, None] * xc).sum((0, 1, 3))
            dweight = dweight.reshape(weight.shape)
    else:
        assert weight is not None
        wf = weight.to(cdtype).reshape(weight.shape[0], c_in, kh * kw)
        p_cols = torch.einsum("oct,bol->bctl", wf, g_raw)
        if needs[3]:
            dweight = torch.einsum("bol,bctl->oct", g_raw, kval[:, None] * xc)
            dweight = dweight.reshape(weight.shape)
    if bias is not None and needs[4]:
        dbias = dy.sum((0, 2))

    dx = None
    if needs[0]:
        dx = _x_cols_adjoint(p_cols * kval[:, None], geometry, (h, w), (ho, wo))
    dk = (p_cols * xc).sum(1)  # [B, T, L]
    if normalize:
        ones = xf.new_ones((1, 1, h, w))
        valid = _x_cols(ones, geometry, (ho, wo))[:, 0]  # [1, T, L]
        dk = dk + dnorm[:, None] * valid

    dalpha = dlam = None
    if kind == _GAUSSIAN:
        ddist = -0.5 * kval * dk
    else:
        ddist = dk * (l_ / 2) * powr / r
        if needs[5]:
            dalpha = dk.sum().reshape(alpha.shape)
        if needs[6]:
            dlam = (dk * powr * 0.5 * torch.log(r)).sum().reshape(lam.shape)
    ddelta = 2.0 * delta * ddist[:, None]
    if asym:
        ddelta = ddelta * (delta_raw > 0).to(cdtype)
    dguidance = dphi = None
    if needs[1]:
        dguidance = F.fold(ddelta.reshape(b, c_f * kh * kw, ho * wo), guidance.shape[-2:],
                           (kh, kw), dilation=(d_h, d_w), padding=(gp_h, gp_w),
                           stride=(gs_h, gs_w))
    if needs[2]:
        dphi = -ddelta.sum(2).reshape(phi.shape)

    def cast(g: Optional[Tensor], ref: Optional[Tensor]) -> Optional[Tensor]:
        return None if g is None or ref is None else g.to(ref.dtype)

    return (cast(dx, x), cast(dguidance, guidance), cast(dphi, phi), cast(dweight, weight),
            cast(dbias, bias), cast(dalpha, alpha), cast(dlam, lam))


def _native_backward(
    dout: Tensor, x: Tensor, guidance: Tensor, phi: Tensor, weight: Optional[Tensor],
    bias: Optional[Tensor], alpha: Optional[Tensor], lam: Optional[Tensor], out: Tensor,
    norm: Tensor, geometry: list[int], kind: int, asym: bool, pool: bool, normalize: bool,
    needs: tuple[bool, ...],
) -> tuple[Optional[Tensor], ...]:
    """The gradients through the native fused backward operators (float32 for low precision)."""
    ops = torch.ops.pac
    kh, kw, gs_h, gs_w, gp_h, gp_w, xs_h, xs_w, xp_h, xp_w, u_h, u_w, d_h, d_w = geometry
    k = [kh, kw]
    geo = ([xs_h, xs_w], [xp_h, xp_w], [d_h, d_w], [u_h, u_w], [gs_h, gs_w], [gp_h, gp_w])
    cdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf, gf, phif = x.to(cdtype), guidance.to(cdtype), phi.to(cdtype)
    wf = None if weight is None else weight.to(cdtype)
    af = None if alpha is None else alpha.to(cdtype)
    lf = None if lam is None else lam.to(cdtype)
    dy = dout.to(cdtype)
    n_a, n_l = needs[5] and alpha is not None, needs[6] and lam is not None

    g_raw = dy
    if normalize:
        nf = norm.to(cdtype)
        g_raw = dy / (nf + (nf == 0).to(cdtype))
        y_norm = out.to(cdtype)
        if bias is not None:
            y_norm = y_norm - bias.to(cdtype).reshape(1, -1, 1, 1)
        dnorm = -(g_raw * y_norm).sum(1, keepdim=True)  # d/dN of Yraw / (N + [N = 0])

    mask = [needs[0], needs[1], needs[2], needs[3] and weight is not None, n_a, n_l]
    if pool:
        dx, dg, dphi, dw, da, dl = ops.pool2d_guided_backward(
            g_raw, xf, gf, phif, wf, af, lf, k, *geo, kind, asym, False, mask)
    else:
        dx, dg, dphi, dw, da, dl = ops.conv2d_guided_backward(
            g_raw, xf, gf, phif, wf, af, lf, *geo, 1, kind, asym, mask)
    grads = [t if m else None for t, m in zip((dx, dg, dphi, dw, da, dl), mask)]
    if normalize and any(mask[i] for i in (1, 2, 4, 5)):
        ones = xf.new_ones((x.shape[0], 1, x.shape[2], x.shape[3]))
        nmask = [False, mask[1], mask[2], False, n_a, n_l]
        extra = ops.pool2d_guided_backward(dnorm, ones, gf, phif, None, af, lf, k, *geo, kind,
                                           asym, False, nmask)
        for i in (1, 2, 4, 5):
            if nmask[i]:
                grads[i] = grads[i] + extra[i]
    dbias = dy.sum((0, 2, 3)) if bias is not None and needs[4] else None

    def cast(g: Optional[Tensor], ref: Optional[Tensor]) -> Optional[Tensor]:
        return None if g is None or ref is None else g.to(ref.dtype).reshape(ref.shape)

    dx, dg, dphi, dw, da, dl = grads
    return (cast(dx, x), cast(dg, guidance), cast(dphi, phi), cast(dw, weight),
            cast(dbias, bias), cast(da, alpha), cast(dl, lam))


# -- registration ---------------------------------------------------------------------------------
def _register() -> Any:
    op = tv.triton_op("pac_triton::guided", mutates_args=())(_guided_impl)
    if not tv.HAS_TRITON_OP:  # a plain custom op: torch.compile needs its fake implementation

        @op.register_fake
        def _fake(x, guidance, phi, weight, bias, alpha, lam, geometry, kind, asym, pool,
                  normalize, tf32):
            c_out = x.shape[1] if pool else weight.shape[0]
            b, ho, wo = x.shape[0], phi.shape[2], phi.shape[3]
            norm_shape = (b, 1, ho, wo) if normalize else (0,)
            return (x.new_empty((b, c_out, ho, wo)),
                    x.new_empty(norm_shape, dtype=torch.float32))

    op.register_autograd(_backward, setup_context=_setup_context)
    return op


def _register_backward() -> Any:
    op = tv.triton_op("pac_triton::guided_backward", mutates_args=())(_guided_backward_impl)
    if not tv.HAS_TRITON_OP:

        @op.register_fake
        def _fake(grad, dnorm, x, guidance, phi, weight, alpha, lam, geometry, kind, asym, pool,
                  normalize, tf32, needs):
            refs = (x, guidance, phi, weight, alpha, lam)
            return tuple(r.new_empty(r.shape) if m and r is not None else x.new_empty((0,))
                         for r, m in zip(refs, needs))

    return op


#: ``guided(x, guidance, φ, weight, bias, α, λ, geometry, kind, asym, pool, normalize, tf32)``
#: → ``(output, N)``; ``N`` (float32, ``[B, 1, H', W']``) only with ``normalize``, else empty.
guided = _register()
#: ``guided_backward(G, ∂L/∂N, x, guidance, φ, weight, α, λ, geometry, kind, asym, pool,
#: normalize, tf32, needs)`` → ``(∂x, ∂guidance, ∂φ, ∂weight, ∂α, ∂λ)``; ``needs`` (six flags)
#: picks the gradients computed, the others are empty tensors.
guided_backward = _register_backward()
