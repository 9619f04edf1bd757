"""Triton kernels of the ``triton`` backend: the backward of the fused guided PAC operations.

Every kernel recomputes the adapting kernel ``K`` (docs/semantics.md §2.3) on chip, per
(output pixel, tap), from the guidance and the centre feature ``φ``; no ``K``, column or
column-gradient tensor reaches global memory. The one per-(pixel, tap) buffer is ``∂D``, the
gradient of the squared distance ``D`` of §2.3: one float32 per (output pixel, tap), written
once and gathered by the kernels of ``∂φ`` and of the guidance. None uses atomics: every output
element is written by exactly one program, and the split reductions write per-program partials
that the caller sums in a fixed order, so two runs give bit-identical gradients.

``G`` below is the gradient reaching the unnormalised output, in the input dtype: ``∂L/∂out``
divided by ``N + [N = 0]`` with ``normalize_kernel`` (docs/semantics.md §2.4), else
``∂L/∂out`` itself. GEMM operands are in the input dtype, as in the forward; products accumulate
in float32. With ``Wt[t, c, o]`` the weight of tap ``t``, ``X_t[m, c]`` the input sample read by
output pixel ``m`` through tap ``t`` (0 where it reads padding or an inserted zero) and ``V`` the
validity pattern:

* :func:`pac_bwd_input_kernel`, ``∂x``: for every input pixel, the sum over taps of
  ``K[m, t]·P[m, t, c]``, ``P = Σ_o G[m, o]·Wt[t, c, o]``, over the output pixels ``m`` that
  read it through ``t``. It is a gather (an implicit GEMM per tap of ``G`` with ``Wtᵀ``, scaled
  by ``K`` per row) over the adjoint geometry: the input grid read with the taps flipped, stride
  and zero insertion swapped, so that a strided convolution's gradient runs, like a transposed
  convolution, per sub-pixel class of input pixels and only through the taps that reach an output
  pixel. When one block holds every input channel it also forms ``∂K[m, t] = Σ_c P·X_t`` (plus
  ``∂N[m]·V[m, t]`` with the normaliser; pooling: ``w_t·Σ_c G·X_t``), its ``∂D`` and the
  partials of ``∂α``, ``∂λ`` and the pooling tap weights: the (pixel, tap) pairs that read an
  input pixel are exactly those this program visits, so no GEMM is spent on ``∂K`` alone.
* :func:`pac_bwd_centre_kernel`, ``∂φ = −Σ_t 2Δ·∂D`` per output pixel, after the fused path.
* :func:`pac_bwd_kernel_grad_kernel`, the same ``∂K`` per output pixel block as
  ``Σ_o G·(X_t Wt)``, with ``∂φ`` summed in registers: used when the input needs no gradient or
  has more channels than one block holds.
* :func:`pac_bwd_guidance_kernel`, ``∂F̄``: for every guidance pixel, the sum over taps of
  ``2Δ·∂D`` of the output pixels whose tap reads it (a gather, no scatter).
* :func:`pac_bwd_weight_kernel`, ``∂Wt[t, c, o] = Σ_m (K·X_t)[m, c]·G[m, o]``: one program per
  (tap, channel tiles, split); split ``s`` sums the pixel blocks ``s, s + S, …`` of every sub-pixel
  class in which the tap reads real samples, and writes its own partial.

The geometry arguments are those of :mod:`.triton_kernels`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_kernels import (
    _INV_EPS,
    _class_pixels,
    _guidance_setup,
    _kernel_value,
    _load_phi,
    _tap_kernel,
    _tap_lands,
)

__all__ = ["pac_bwd_centre_kernel", "pac_bwd_guidance_kernel", "pac_bwd_input_kernel",
           "pac_bwd_kernel_grad_kernel", "pac_bwd_weight_kernel"]


@triton.jit
def _ddist(dk, kval, dist, alpha, lam, KIND: tl.constexpr):
    """``∂D`` from ``∂K`` (docs/semantics.md §2.3), and the per-pair ``∂α``, ``∂λ`` terms."""
    if KIND == 0:
        ddist = -0.5 * kval * dk
        da = tl.zeros_like(dk)
        dl = tl.zeros_like(dk)
    else:
        r = dist + _INV_EPS
        powr = kval - alpha
        ddist = dk * (0.5 * lam) * powr / r
        da = dk
        dl = dk * powr * 0.5 * tl.log(r)
    return ddist, da, dl


@triton.jit
def pac_bwd_input_kernel(
    gr_ptr, dnorm_ptr, x_ptr, g_ptr, phi_ptr, w_ptr, alpha_ptr, lam_ptr, dx_ptr, ddist_ptr,
    part_ptr,
    B, C_IN, H, W, C_OUT, HO, WO, C_F, HG, WG, KH, KW,
    GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W, U_H, U_W, D_H, D_W,
    KIND: tl.constexpr, ASYM: tl.constexpr, POOL: tl.constexpr, HAS_W: tl.constexpr,
    NORMALIZE: tl.constexpr, FUSE_DK: tl.constexpr, PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """``∂x`` (``[B, C_IN, H, W]``) from ``G`` (``gr_ptr``, ``[B, C_OUT, HO, WO]``).

    Convolution: ``w_ptr`` holds the weight as ``[KH·KW, C_OUT, C_IN]``; pooling (``POOL``,
    ``C_OUT = C_IN``): the optional per-tap weight (``HAS_W``). Grid: (input pixel blocks,
    input channel blocks of ``BLOCK_N``, ``XS_H·XS_W`` sub-pixel classes of input pixels).

    ``FUSE_DK`` (one channel block holds all ``C_IN``): every (output pixel, tap) pair that reads
    a real input sample is visited here exactly once, by the program of that input pixel, and
    ``Σ_o G·Wt`` is at hand; its dot with the input pixel's channels is ``∂K`` of the pair. The
    kernel then also writes ``∂D`` per pair (``ddist_ptr``, ``[B, KH·KW, HO, WO]``, float32,
    zero-initialised: pairs reading padding or inserted zeros have ``∂K = 0``) and, per program
    (first grid axis + third · its size), the ``KH·KW + 2`` partials of
    :func:`pac_bwd_kernel_grad_kernel` (``∂L/∂N`` from ``dnorm_ptr`` with ``NORMALIZE``).
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_cls = tl.program_id(2)
    # Input pixels by residue modulo the forward's stride: the adjoint reads G with stride U and
    # zero insertion XS (docs/semantics.md §1.1), with the taps flipped.
    b, iy, ix, m_mask, ry, rx = _class_pixels(pid_m, pid_cls, B, H, W, XS_H, XS_W, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < C_IN
    cf = tl.arange(0, BLOCK_CF)
    cf_mask = cf < C_F
    alpha = 0.0
    lam = 0.0
    if KIND == 1:
        alpha = tl.load(alpha_ptr).to(tl.float32)
        lam = tl.load(lam_ptr).to(tl.float32)
    xa_h = (KH - 1) * D_H - XP_H
    xa_w = (KW - 1) * D_W - XP_W
    ok0 = tl.arange(0, BLOCK_K)
    x_off = ((b[:, None] * C_IN + offs_n[None, :]) * H + iy[:, None]) * W + ix[:, None]
    io_mask = m_mask[:, None] & n_mask[None, :]
    n_taps = KH * KW
    if FUSE_DK:
        xi = tl.load(x_ptr + x_off, mask=io_mask, other=0.0).to(tl.float32)
        part_row = part_ptr + (pid_m + pid_cls * tl.num_programs(0)) * (n_taps + 2)
        dalpha = tl.zeros((BLOCK_M,), dtype=tl.float32)
        dlam = tl.zeros((BLOCK_M,), dtype=tl.float32)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for a2 in range(0, KH):
        if _tap_lands(ry, U_H, xa_h, D_H, XS_H, a2):  # the flipped tap reaches output pixels
            for e2 in range(0, KW):
                if _tap_lands(rx, U_W, xa_w, D_W, XS_W, e2):
                    a = KH - 1 - a2
                    e = KW - 1 - e2
                    vy = iy * U_H - xa_h + a2 * D_H
                    vx = ix * U_W - xa_w + e2 * D_W
                    oy = tl.where(vy >= 0, vy, 0) // XS_H
                    ox = tl.where(vx >= 0, vx, 0) // XS_W
                    valid = m_mask & (vy >= 0) & (vx >= 0) & (oy < HO) & (ox < WO)
                    phi = _load_phi(phi_ptr, b, oy, ox, valid, cf, cf_mask, C_F, HO, WO)
                    gy = oy * GS_H - GP_H + a * D_H
                    gx = ox * GS_W - GP_W + e * D_W
                    g_in = valid & (gy >= 0) & (gy < HG) & (gx >= 0) & (gx < WG)
                    kval, _delta, dist = _kernel_value(g_ptr, phi, alpha, lam, b, gy, gx, g_in,
                                                       cf, cf_mask, C_F, HG, WG, KIND, ASYM)
                    kval = tl.where(valid, kval, 0.0)
                    t = a * KW + e
                    o_pix = b * C_OUT * HO * WO + oy * WO + ox
                    tap_w = 1.0
                    if POOL:
                        if HAS_W:
                            tap_w = tl.load(w_ptr + t).to(tl.float32)
                        p = tl.load(gr_ptr + o_pix[:, None] + offs_n[None, :] * HO * WO,
                                    mask=valid[:, None] & n_mask[None, :], other=0.0
                                    ).to(tl.float32)
                    else:
                        # P = Σ_o G·Wt (an implicit GEMM per tap), scaled by K per row after it.
                        p = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                        for o0 in range(0, C_OUT, BLOCK_K):
                            ok = o0 + ok0
                            ok_mask = ok < C_OUT
                            gt = tl.load(gr_ptr + o_pix[:, None] + ok[None, :] * HO * WO,
                                         mask=valid[:, None] & ok_mask[None, :], other=0.0)
                            gt = gt.to(dx_ptr.dtype.element_ty)
                            wt = tl.load(w_ptr + (t * C_OUT + ok[:, None]) * C_IN + offs_n[None, :],
                                         mask=ok_mask[:, None] & n_mask[None, :], other=0.0)
                            if DOT_F32:  # the interpreter's dot mishandles 16-bit float operands
                                gt = gt.to(tl.float32)
                                wt = wt.to(tl.float32)
                            p = tl.dot(gt, wt, p, input_precision=PRECISION)
                    acc += p * (kval * tap_w)[:, None]
                    if FUSE_DK:
                        s_dot = tl.sum(p * xi, axis=1)
                        dk = s_dot * tap_w
                        if POOL:
                            if HAS_W:
                                tl.store(part_row + t, tl.sum(kval * s_dot, axis=0))
                        if NORMALIZE:  # N = Σ_taps K·V (docs/semantics.md §2.4)
                            dk += tl.load(dnorm_ptr + (b * HO + oy) * WO + ox, mask=valid,
                                          other=0.0)
                        dk = tl.where(valid, dk, 0.0)
                        ddist, da, dl = _ddist(dk, kval, dist, alpha, lam, KIND)
                        dalpha += da
                        dlam += dl
                        tl.store(ddist_ptr + ((b * n_taps + t) * HO + oy) * WO + ox, ddist,
                                 mask=valid)

    tl.store(dx_ptr + x_off, acc.to(dx_ptr.dtype.element_ty), mask=io_mask)
    if FUSE_DK:
        if KIND == 1:
            tl.store(part_row + n_taps, tl.sum(dalpha, axis=0))
            tl.store(part_row + n_taps + 1, tl.sum(dlam, axis=0))


@triton.jit
def pac_bwd_centre_kernel(
    ddist_ptr, g_ptr, phi_ptr, dphi_ptr,
    B, HO, WO, C_F, HG, WG, KH, KW, GS_H, GS_W, GP_H, GP_W, D_H, D_W,
    ASYM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """``∂φ`` (``[B, C_F, HO, WO]``) ``= −Σ_t 2Δ·∂D`` per output pixel, from the ``∂D`` that
    :func:`pac_bwd_input_kernel` wrote with ``FUSE_DK``. Grid: output pixel blocks."""
    offs = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs < B * HO * WO
    b = (offs // (HO * WO)).to(tl.int64)
    r = offs % (HO * WO)
    oy = r // WO
    ox = r % WO
    cf = tl.arange(0, BLOCK_CF)
    cf_mask = cf < C_F
    phi = _load_phi(phi_ptr, b, oy, ox, m_mask, cf, cf_mask, C_F, HO, WO)
    n_taps = KH * KW

    acc = tl.zeros((BLOCK_M, BLOCK_CF), dtype=tl.float32)
    for a in range(0, KH):
        gy = oy * GS_H - GP_H + a * D_H
        for e in range(0, KW):
            gx = ox * GS_W - GP_W + e * D_W
            g_in = m_mask & (gy >= 0) & (gy < HG) & (gx >= 0) & (gx < WG)
            g_off = ((b[:, None] * C_F + cf[None, :]) * HG + gy[:, None]) * WG + gx[:, None]
            g = tl.load(g_ptr + g_off, mask=g_in[:, None] & cf_mask[None, :], other=0.0
                        ).to(tl.float32)
            delta = g - phi
            if ASYM:
                delta = tl.maximum(delta, 0.0)
            dd = tl.load(ddist_ptr + ((b * n_taps + a * KW + e) * HO + oy) * WO + ox,
                         mask=m_mask, other=0.0)
            acc -= 2.0 * delta * dd[:, None]
    p_off = ((b[:, None] * C_F + cf[None, :]) * HO + oy[:, None]) * WO + ox[:, None]
    tl.store(dphi_ptr + p_off, acc.to(dphi_ptr.dtype.element_ty),
             mask=m_mask[:, None] & cf_mask[None, :])


@triton.jit
def pac_bwd_kernel_grad_kernel(
    gr_ptr, dnorm_ptr, x_ptr, g_ptr, phi_ptr, w_ptr, alpha_ptr, lam_ptr,
    ddist_ptr, dphi_ptr, part_ptr,
    B, C_IN, H, W, C_OUT, HO, WO, C_F, HG, WG, KH, KW,
    GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W, U_H, U_W, D_H, D_W,
    KIND: tl.constexpr, ASYM: tl.constexpr, POOL: tl.constexpr, HAS_W: tl.constexpr,
    NORMALIZE: tl.constexpr, STORE_DDIST: tl.constexpr,
    PRECISION: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """``∂K`` per (output pixel, tap), chained to ``∂φ``, ``∂D`` and the scalar partials.

    Writes ``∂φ`` (``[B, C_F, HO, WO]``), with ``STORE_DDIST`` ``∂D`` (``[B, KH·KW, HO, WO]``,
    float32, zero-initialised by the caller: taps a class skips stay 0) and, per program (``pid``
    = first grid axis + second · its size), the row ``part[pid, :]`` of ``KH·KW + 2`` float32
    values: the pooling tap-weight partials ``Σ_m K·Σ_c G·X_t``, then ``Σ ∂K`` and
    ``Σ ∂K·(D + ε)^(λ/2)·ln(D + ε)/2`` (the ``α``/``λ`` partials of the ``inv_*`` kernels).
    ``dnorm_ptr`` holds ``∂L/∂N`` (``[B, HO, WO]``, float32) with ``NORMALIZE``. Convolution:
    ``w_ptr`` is the forward's ``[KH·KW, C_IN, C_OUT]`` weight. Grid: (output pixel blocks,
    ``U_H·U_W`` sub-pixel classes).
    """
    pid_m = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid = pid_m + pid_c * tl.num_programs(0)
    b, oy, ox, m_mask, ry, rx = _class_pixels(pid_m, pid_c, B, HO, WO, U_H, U_W, BLOCK_M)
    cf, cf_mask, phi, alpha, lam = _guidance_setup(phi_ptr, alpha_ptr, lam_ptr, b, oy, ox, m_mask,
                                                   C_F, HO, WO, KIND, BLOCK_CF)
    n_taps = KH * KW
    part_row = part_ptr + pid * (n_taps + 2)
    dn = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if NORMALIZE:
        dn = tl.load(dnorm_ptr + (b * HO + oy) * WO + ox, mask=m_mask, other=0.0)
    o_pix = b * C_OUT * HO * WO + oy * WO + ox
    ck0 = tl.arange(0, BLOCK_K)
    on0 = tl.arange(0, BLOCK_N)

    dphi = tl.zeros((BLOCK_M, BLOCK_CF), dtype=tl.float32)
    dalpha = tl.zeros((BLOCK_M,), dtype=tl.float32)
    dlam = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for a in range(0, KH):
        if _tap_lands(ry, XS_H, XP_H, D_H, U_H, a):  # other taps read inserted zeros only: ∂K = 0
            for e in range(0, KW):
                if _tap_lands(rx, XS_W, XP_W, D_W, U_W, e):
                    kval, delta, dist, valid, iy, ix = _tap_kernel(
                        g_ptr, phi, alpha, lam, b, oy, ox, m_mask, a, e, cf, cf_mask,
                        C_F, HG, WG, H, W, GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W,
                        U_H, U_W, D_H, D_W, KIND, ASYM)
                    t = a * KW + e
                    x_pix = b * C_IN * H * W + iy * W + ix
                    dk = tl.zeros((BLOCK_M,), dtype=tl.float32)
                    if POOL:
                        for c0 in range(0, C_IN, BLOCK_K):
                            ck = c0 + ck0
                            ck_mask = ck < C_IN
                            xt = tl.load(x_ptr + x_pix[:, None] + ck[None, :] * H * W,
                                         mask=valid[:, None] & ck_mask[None, :], other=0.0)
                            gt = tl.load(gr_ptr + o_pix[:, None] + ck[None, :] * HO * WO,
                                         mask=m_mask[:, None] & ck_mask[None, :], other=0.0)
                            dk += tl.sum(xt.to(tl.float32) * gt.to(tl.float32), axis=1)
                        if HAS_W:
                            tl.store(part_row + t, tl.sum(kval * dk, axis=0))
                            dk = dk * tl.load(w_ptr + t).to(tl.float32)
                    else:
                        for n0 in range(0, C_OUT, BLOCK_N):
                            on = n0 + on0
                            on_mask = on < C_OUT
                            z = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                            for c0 in range(0, C_IN, BLOCK_K):
                                ck = c0 + ck0
                                ck_mask = ck < C_IN
                                xt = tl.load(x_ptr + x_pix[:, None] + ck[None, :] * H * W,
                                             mask=valid[:, None] & ck_mask[None, :], other=0.0)
                                wt = tl.load(w_ptr + (t * C_IN + ck[:, None]) * C_OUT
                                             + on[None, :],
                                             mask=ck_mask[:, None] & on_mask[None, :], other=0.0)
                                if DOT_F32:
                                    xt = xt.to(tl.float32)
                                    wt = wt.to(tl.float32)
                                z = tl.dot(xt, wt, z, input_precision=PRECISION)
                            gt = tl.load(gr_ptr + o_pix[:, None] + on[None, :] * HO * WO,
                                         mask=m_mask[:, None] & on_mask[None, :], other=0.0)
                            dk += tl.sum(z * gt.to(tl.float32), axis=1)
                    if NORMALIZE:  # N = Σ_taps K·V (docs/semantics.md §2.4)
                        dk += tl.where(valid, dn, 0.0)
                    dk = tl.where(m_mask, dk, 0.0)
                    ddist, da, dl = _ddist(dk, kval, dist, alpha, lam, KIND)
                    dalpha += da
                    dlam += dl
                    if STORE_DDIST:
                        tl.store(ddist_ptr + ((b * n_taps + t) * HO + oy) * WO + ox, ddist,
                                 mask=m_mask)
                    # Δ is already max(Δ, 0) for the one-sided kernels: its derivative mask.
                    dphi -= 2.0 * delta * ddist[:, None]

    p_off = ((b[:, None] * C_F + cf[None, :]) * HO + oy[:, None]) * WO + ox[:, None]
    tl.store(dphi_ptr + p_off, dphi.to(dphi_ptr.dtype.element_ty),
             mask=m_mask[:, None] & cf_mask[None, :])
    if KIND == 1:
        tl.store(part_row + n_taps, tl.sum(dalpha, axis=0))
        tl.store(part_row + n_taps + 1, tl.sum(dlam, axis=0))


@triton.jit
def pac_bwd_guidance_kernel(
    ddist_ptr, g_ptr, phi_ptr, dg_ptr,
    B, HO, WO, C_F, HG, WG, KH, KW, GS_H, GS_W, GP_H, GP_W, D_H, D_W,
    ASYM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """``∂F̄`` (``[B, C_F, HG, WG]``): per guidance pixel, ``Σ 2Δ·∂D`` over the (output pixel, tap)
    pairs that read it (docs/semantics.md §2.1, §2.3). Grid: guidance pixel blocks."""
    offs = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs < B * HG * WG
    b = (offs // (HG * WG)).to(tl.int64)
    r = offs % (HG * WG)
    gy = r // WG
    gx = r % WG
    cf = tl.arange(0, BLOCK_CF)
    cf_mask = cf < C_F
    g_off = ((b[:, None] * C_F + cf[None, :]) * HG + gy[:, None]) * WG + gx[:, None]
    io_mask = m_mask[:, None] & cf_mask[None, :]
    g = tl.load(g_ptr + g_off, mask=io_mask, other=0.0).to(tl.float32)
    n_taps = KH * KW

    acc = tl.zeros((BLOCK_M, BLOCK_CF), dtype=tl.float32)
    for a in range(0, KH):
        vy = gy + GP_H - a * D_H
        oy = tl.where(vy >= 0, vy, 0) // GS_H
        ok_y = (vy >= 0) & (oy * GS_H == vy) & (oy < HO)
        for e in range(0, KW):
            vx = gx + GP_W - e * D_W
            ox = tl.where(vx >= 0, vx, 0) // GS_W
            ok = m_mask & ok_y & (vx >= 0) & (ox * GS_W == vx) & (ox < WO)
            dd = tl.load(ddist_ptr + ((b * n_taps + a * KW + e) * HO + oy) * WO + ox, mask=ok,
                         other=0.0)
            phi = _load_phi(phi_ptr, b, oy, ox, ok, cf, cf_mask, C_F, HO, WO)
            delta = g - phi
            if ASYM:
                delta = tl.maximum(delta, 0.0)
            acc += 2.0 * delta * dd[:, None]
    tl.store(dg_ptr + g_off, acc.to(dg_ptr.dtype.element_ty), mask=io_mask)


@triton.jit
def pac_bwd_weight_kernel(
    gr_ptr, x_ptr, g_ptr, phi_ptr, alpha_ptr, lam_ptr, part_ptr,
    B, C_IN, H, W, C_OUT, HO, WO, C_F, HG, WG, KH, KW,
    GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W, U_H, U_W, D_H, D_W, SPLIT,
    KIND: tl.constexpr, ASYM: tl.constexpr, PRECISION: tl.constexpr, DOT_F32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_CF: tl.constexpr,
):
    """Split partials of the convolution weight's gradient: ``part[s, t, c, o]`` (float32,
    ``[SPLIT, KH·KW, C_IN, C_OUT]``). Grid: (input × output channel tiles, taps, SPLIT)."""
    pid_kn = tl.program_id(0)
    t = tl.program_id(1)
    s = tl.program_id(2)
    n_kb = tl.cdiv(C_IN, BLOCK_K)
    offs_k = (pid_kn % n_kb) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_n = (pid_kn // n_kb) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_mask = offs_k < C_IN
    n_mask = offs_n < C_OUT
    a = t // KW
    e = t % KW
    cf = tl.arange(0, BLOCK_CF)
    cf_mask = cf < C_F
    alpha = 0.0
    lam = 0.0
    if KIND == 1:
        alpha = tl.load(alpha_ptr).to(tl.float32)
        lam = tl.load(lam_ptr).to(tl.float32)

    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    for cls in range(0, U_H * U_W):
        ry = cls // U_W
        rx = cls % U_W
        if _tap_lands(ry, XS_H, XP_H, D_H, U_H, a):
            if _tap_lands(rx, XS_W, XP_W, D_W, U_W, e):
                hoc = (HO - ry + U_H - 1) // U_H
                woc = (WO - rx + U_W - 1) // U_W
                n_mb = tl.cdiv(B * hoc * woc, BLOCK_M)
                for mb in range(s, n_mb, SPLIT):
                    b, oy, ox, m_mask, _ry, _rx = _class_pixels(mb, cls, B, HO, WO, U_H, U_W,
                                                                BLOCK_M)
                    phi = _load_phi(phi_ptr, b, oy, ox, m_mask, cf, cf_mask, C_F, HO, WO)
                    kval, _delta, _dist, valid, iy, ix = _tap_kernel(
                        g_ptr, phi, alpha, lam, b, oy, ox, m_mask, a, e, cf, cf_mask,
                        C_F, HG, WG, H, W, GS_H, GS_W, GP_H, GP_W, XS_H, XS_W, XP_H, XP_W,
                        U_H, U_W, D_H, D_W, KIND, ASYM)
                    x_pix = b * C_IN * H * W + iy * W + ix
                    xt = tl.load(x_ptr + x_pix[:, None] + offs_k[None, :] * H * W,
                                 mask=valid[:, None] & k_mask[None, :], other=0.0)
                    at = (xt.to(tl.float32) * kval[:, None]).to(x_ptr.dtype.element_ty)
                    o_pix = b * C_OUT * HO * WO + oy * WO + ox
                    gt = tl.load(gr_ptr + o_pix[:, None] + offs_n[None, :] * HO * WO,
                                 mask=m_mask[:, None] & n_mask[None, :], other=0.0)
                    gt = gt.to(x_ptr.dtype.element_ty)
                    if DOT_F32:
                        at = at.to(tl.float32)
                        gt = gt.to(tl.float32)
                    acc = tl.dot(tl.trans(at), gt, acc, input_precision=PRECISION)

    p_off = ((s * KH * KW + t) * C_IN + offs_k[:, None]) * C_OUT + offs_n[None, :]
    tl.store(part_ptr + p_off, acc, mask=k_mask[:, None] & n_mask[None, :])
