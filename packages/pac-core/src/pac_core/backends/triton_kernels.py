"""Triton kernels of the ``triton`` backend: fused guided PAC forward passes.

Both kernels compute the adapting kernel ``K`` (docs/semantics.md §2.3) on chip, once per
(output pixel, tap) and program, from the guidance tile at the tap and the centre feature ``φ``;
``K`` never reaches global memory.

* :func:`pac_conv_fwd_kernel` is an implicit GEMM: for every tap, the input tile
  ``[BLOCK_M pixels, BLOCK_K channels]`` is scaled by ``K`` per pixel and multiplied with the
  weight tile ``[BLOCK_K, BLOCK_N]`` by ``tl.dot`` (tensor cores: TF32 or IEEE fp32 as asked,
  bf16/fp16 natively), accumulating in fp32. The normaliser ``N = Σ_taps K·V`` is accumulated in
  the same pass; bias and ``1/(N + [N=0])`` are applied in the epilogue (docs/semantics.md §2.4,
  §3.1).
* :func:`pac_pool_fwd_kernel` is the weighted window sum of docs/semantics.md §3.3, optionally
  with a per-tap weight (``shared_filters``) and bias, with the same in-pass normaliser.

One geometry serves ordinary and transposed operations. Tap ``a`` of output row ``y`` reads the
guidance at ``y·GS − GP + a·D`` and the input at ``u = y·XS − XP + a·D``, which must be a multiple
of ``U``; the input row is then ``u / U``. Ordinary ops use ``XS = s, XP = p, U = 1``; transposed
ops read the zero-inserted grid of docs/semantics.md §1.1 with ``XS = 1, XP = (k−1)d − p, U = s``
and the guidance with ``GS = 1, GP = (k−1)d/2`` (§2.1). The validity pattern ``V`` of §2.4 is "the
tap lands on an input sample".

Sub-pixel classes: the third grid axis enumerates the ``U_H·U_W`` classes of output pixels with
equal ``(y mod U_H, x mod U_W)``. All pixels of a class read real input samples through the same
taps, so a program skips the other taps entirely (about ``s²`` fewer products for a transposed
convolution of stride ``s``); ordinary ops have one class.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["pac_conv_fwd_kernel", "pac_pool_fwd_kernel"]

#: ε of the inverse kernel (docs/semantics.md §2.3); kernels read globals only as constexpr.
INV_EPS = 1e-4
_INV_EPS = tl.constexpr(INV_EPS)


@triton.jit
def _kernel_value(g_ptr, phi, alpha, lam, b, gy, gx, g_in, cf, cf_mask, C_F, HG, WG,
                  KIND: tl.constexpr, ASYM: tl.constexpr):
    """``(K, Δ, D)`` of docs/semantics.md §2.3 for a block of (pixel, tap) pairs whose tap reads
    the guidance at ``(gy, gx)`` (0 where ``g_in`` is false: the padding) and whose centre feature
    is ``phi`` (``[BLOCK, BLOCK_CF]``)."""
    g_off = ((b[:, None] * C_F + cf[None, :]) * HG + gy[:, None]) * WG + gx[:, None]
    g = tl.load(g_ptr + g_off, mask=g_in[:, None] & cf_mask[None, :], other=0.0).to(tl.float32)
    delta = g - phi
    if ASYM:
        delta = tl.maximum(delta, 0.0)
    dist = tl.sum(delta * delta, axis=1)
    if KIND == 0:
        kval = tl.exp(-0.5 * dist)
    else:
        kval = alpha + tl.exp2(0.5 * lam * tl.log2(dist + _INV_EPS))
    return kval, delta, dist


@triton.jit
def _tap_kernel(
    g_ptr, phi, alpha, lam, b, oy, ox, m_mask, a, e, cf, cf_mask,
    C_F, HG, WG, H, W,
    GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W, U_H, U_W, D_H, D_W,
    KIND: tl.constexpr, ASYM: tl.constexpr,
):
    """``(K, Δ, D, V, input row, input col)`` of tap ``(a, e)`` for a block of output pixels."""
    gy = oy * GS_H - GP_H + a * D_H
    gx = ox * GS_W - GP_W + e * D_W
    g_in = m_mask & (gy >= 0) & (gy < HG) & (gx >= 0) & (gx < WG)
    kval, delta, dist = _kernel_value(g_ptr, phi, alpha, lam, b, gy, gx, g_in, cf, cf_mask, C_F,
                                      HG, WG, KIND, ASYM)

    uy = oy * XS_H - XP_H + a * D_H
    ux = ox * XS_W - XP_W + e * D_W
    iy = tl.where(uy >= 0, uy, 0) // U_H
    ix = tl.where(ux >= 0, ux, 0) // U_W
    valid = (m_mask & (uy >= 0) & (ux >= 0) & (iy * U_H == uy) & (ix * U_W == ux)
             & (iy < H) & (ix < W))
    return kval, delta, dist, valid, iy, ix


@triton.jit
def _class_pixels(pid_m, cls, B, HO, WO, U_H, U_W, BLOCK_M: tl.constexpr):
    """The block of output pixels of sub-pixel class ``cls``: ``(b, y, x, in range, r_h, r_w)``.

    Class ``(r_h, r_w)`` holds the pixels with ``y mod U_H = r_h`` and ``x mod U_W = r_w``; all of
    them read real input samples through the same taps. Ordinary ops have one class.
    """
    ry = cls // U_W
    rx = cls % U_W
    hoc = (HO - ry + U_H - 1) // U_H
    woc = (WO - rx + U_W - 1) // U_W
    per_b = tl.maximum(hoc * woc, 1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < B * hoc * woc
    b = (offs_m // per_b).to(tl.int64)
    r = offs_m % per_b
    oy = ry + (r // tl.maximum(woc, 1)) * U_H
    ox = rx + (r % tl.maximum(woc, 1)) * U_W
    return b, oy, ox, m_mask, ry, rx


@triton.jit
def _tap_lands(r, XS, XP, D, U, a):
    """Whether tap ``a`` of the class with residue ``r`` reads real samples (not inserted zeros)."""
    v = r * XS - XP + a * D
    return ((v % U) + U) % U == 0


@triton.jit
def _load_phi(phi_ptr, b, oy, ox, m_mask, cf, cf_mask, C_F, HO, WO):
    off = ((b[:, None] * C_F + cf[None, :]) * HO + oy[:, None]) * WO + ox[:, None]
    return tl.load(phi_ptr + off, mask=m_mask[:, None] & cf_mask[None, :], other=0.0).to(
        tl.float32)


@triton.jit
def _guidance_setup(phi_ptr, alpha_ptr, lam_ptr, b, oy, ox, m_mask, C_F, HO, WO,
                    KIND: tl.constexpr, BLOCK_CF: tl.constexpr):
    """What every tap of a pixel block shares: the guidance channel range, the centre feature φ
    and, for the ``inv_*`` kernels (``KIND == 1``), α and λ (0 otherwise)."""
    cf = tl.arange(0, BLOCK_CF)
    cf_mask = cf < C_F
    phi = _load_phi(phi_ptr, b, oy, ox, m_mask, cf, cf_mask, C_F, HO, WO)
    alpha = 0.0
    lam = 0.0
    if KIND == 1:
        alpha = tl.load(alpha_ptr).to(tl.float32)
        lam = tl.load(lam_ptr).to(tl.float32)
    return cf, cf_mask, phi, alpha, lam


@triton.jit
def pac_conv_fwd_kernel(
    x_ptr, g_ptr, phi_ptr, w_ptr, bias_ptr, alpha_ptr, lam_ptr, out_ptr, norm_ptr,
    B, C_IN, H, W, C_OUT, HO, WO, C_F, HG, WG, KH, KW,
    GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W, U_H, U_W, D_H, D_W,
    KIND: tl.constexpr, ASYM: tl.constexpr, HAS_BIAS: tl.constexpr, NORMALIZE: tl.constexpr,
    PRECISION: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """Guided PAC convolution; ``w_ptr`` holds the weight as ``[KH·KW, C_IN, C_OUT]``.

    ``DOT_F32`` (interpreter only) widens the operands to float32 before the product, after the
    rounding of the scaled tile to the input dtype, so the numerics stay those of the GPU path.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    b, oy, ox, m_mask, ry, rx = _class_pixels(pid_m, tl.program_id(2), B, HO, WO, U_H, U_W,
                                              BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < C_OUT
    cf, cf_mask, phi, alpha, lam = _guidance_setup(phi_ptr, alpha_ptr, lam_ptr, b, oy, ox, m_mask,
                                                   C_F, HO, WO, KIND, BLOCK_CF)
    ck0 = tl.arange(0, BLOCK_K)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    nacc = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for a in range(0, KH):
        if _tap_lands(ry, XS_H, XP_H, D_H, U_H, a):  # skip taps that read inserted zeros only
            for e in range(0, KW):
                if _tap_lands(rx, XS_W, XP_W, D_W, U_W, e):
                    kval, _delta, _dist, valid, iy, ix = _tap_kernel(
                        g_ptr, phi, alpha, lam, b, oy, ox, m_mask, a, e, cf, cf_mask,
                        C_F, HG, WG, H, W, GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W,
                        U_H, U_W, D_H, D_W, KIND, ASYM)
                    if NORMALIZE:
                        nacc += tl.where(valid, kval, 0.0)
                    t = a * KW + e
                    x_base = b * C_IN * H * W + iy * W + ix
                    for c0 in range(0, C_IN, BLOCK_K):
                        ck = c0 + ck0
                        ck_mask = ck < C_IN
                        xt = tl.load(x_ptr + x_base[:, None] + ck[None, :] * H * W,
                                     mask=valid[:, None] & ck_mask[None, :], other=0.0)
                        at = (xt.to(tl.float32) * kval[:, None]).to(x_ptr.dtype.element_ty)
                        wt = tl.load(w_ptr + (t * C_IN + ck[:, None]) * C_OUT + offs_n[None, :],
                                     mask=ck_mask[:, None] & n_mask[None, :], other=0.0)
                        if DOT_F32:  # the interpreter's dot mishandles 16-bit float operands
                            at = at.to(tl.float32)
                            wt = wt.to(tl.float32)
                        acc = tl.dot(at, wt, acc, input_precision=PRECISION)

    out = acc
    if NORMALIZE:
        nz = nacc + tl.where(nacc == 0.0, 1.0, 0.0)
        out = out / nz[:, None]
        tl.store(norm_ptr + (b * HO + oy) * WO + ox, nacc, mask=m_mask)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        out = out + bias[None, :]
    o_off = ((b[:, None] * C_OUT + offs_n[None, :]) * HO + oy[:, None]) * WO + ox[:, None]
    tl.store(out_ptr + o_off, out.to(out_ptr.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def pac_pool_fwd_kernel(
    x_ptr, g_ptr, phi_ptr, w_ptr, bias_ptr, alpha_ptr, lam_ptr, out_ptr, norm_ptr,
    B, C, H, W, HO, WO, C_F, HG, WG, KH, KW,
    GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W, U_H, U_W, D_H, D_W,
    KIND: tl.constexpr, ASYM: tl.constexpr, HAS_W: tl.constexpr, HAS_BIAS: tl.constexpr,
    NORMALIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """Guided PAC pooling (per-channel weighted window sum), optional per-tap weight and bias."""
    pid_m = tl.program_id(0)
    pid_c = tl.program_id(1)
    b, oy, ox, m_mask, ry, rx = _class_pixels(pid_m, tl.program_id(2), B, HO, WO, U_H, U_W,
                                              BLOCK_M)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = offs_c < C
    cf, cf_mask, phi, alpha, lam = _guidance_setup(phi_ptr, alpha_ptr, lam_ptr, b, oy, ox, m_mask,
                                                   C_F, HO, WO, KIND, BLOCK_CF)

    acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    nacc = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for a in range(0, KH):
        if _tap_lands(ry, XS_H, XP_H, D_H, U_H, a):  # skip taps that read inserted zeros only
            for e in range(0, KW):
                if _tap_lands(rx, XS_W, XP_W, D_W, U_W, e):
                    kval, _delta, _dist, valid, iy, ix = _tap_kernel(
                        g_ptr, phi, alpha, lam, b, oy, ox, m_mask, a, e, cf, cf_mask,
                        C_F, HG, WG, H, W, GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W,
                        U_H, U_W, D_H, D_W, KIND, ASYM)
                    if NORMALIZE:
                        nacc += tl.where(valid, kval, 0.0)
                    kw = kval
                    if HAS_W:
                        kw = kw * tl.load(w_ptr + a * KW + e).to(tl.float32)
                    x_off = (b[:, None] * C + offs_c[None, :]) * H * W + (iy * W + ix)[:, None]
                    xt = tl.load(x_ptr + x_off, mask=valid[:, None] & c_mask[None, :], other=0.0)
                    acc += xt.to(tl.float32) * kw[:, None]

    out = acc
    if NORMALIZE:
        nz = nacc + tl.where(nacc == 0.0, 1.0, 0.0)
        out = out / nz[:, None]
        if pid_c == 0:
            tl.store(norm_ptr + (b * HO + oy) * WO + ox, nacc, mask=m_mask)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_c, mask=c_mask, other=0.0).to(tl.float32)
        out = out + bias[None, :]
    o_off = ((b[:, None] * C + offs_c[None, :]) * HO + oy[:, None]) * WO + ox[:, None]
    tl.store(out_ptr + o_off, out.to(out_ptr.dtype.element_ty),
             mask=m_mask[:, None] & c_mask[None, :])
