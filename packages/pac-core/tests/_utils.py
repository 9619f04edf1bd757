"""Test helpers: a direct, loop-based implementation of the formulas of docs/semantics.md §1–§3.

Written independently of the library (plain Python floats, one output element at a time, index
arithmetic exactly as written in docs/semantics.md) so that it can serve as an oracle for every backend.
Use it on tiny inputs only.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Num = Union[float, Sequence[float]]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _per_channel(v, n):
    if v is None:
        return None
    if isinstance(v, Tensor):
        v = v.detach().double().reshape(-1).tolist()
    elif isinstance(v, (int, float)):
        v = [float(v)]
    v = list(v)
    return v * n if len(v) == 1 else v


def loop_packernel2d(
    guidance: Tensor,
    mask: Optional[Tensor] = None,
    kernel_size=3,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    kernel_type: str = "gaussian",
    smooth_kernel: Optional[Tensor] = None,
    inv_alpha=None,
    inv_lambda=None,
    channel_wise: bool = False,
    normalize_kernel: bool = False,
    transposed: bool = False,
) -> tuple[Tensor, Optional[Tensor]]:
    """docs/semantics.md §2 with loops. ``smooth_kernel`` None means ``smooth_kernel_type='none'``."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    (qh, qw), (dh, dw) = _pair(output_padding), _pair(dilation)
    F = guidance.detach().double().tolist()
    B, C = guidance.shape[:2]
    Hf, Wf = guidance.shape[2:]
    CK = C if channel_wise else 1
    ch, cw = (kh - 1) // 2, (kw - 1) // 2
    if transposed:
        s_h, s_w, p_h, p_w = 1, 1, (kh - 1) * dh // 2, (kw - 1) * dw // 2
        Ho, Wo = Hf, Wf
        H_in = (Hf - qh - 1 - dh * (kh - 1) + 2 * ph) // sh + 1
        W_in = (Wf - qw - 1 - dw * (kw - 1) + 2 * pw) // sw + 1
    else:
        s_h, s_w, p_h, p_w = sh, sw, ph, pw
        Ho = (Hf + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        Wo = (Wf + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def fbar(b, c, i, j):
        return F[b][c][i][j] if 0 <= i < Hf and 0 <= j < Wf else 0.0

    def pos(y, x, a, e):
        return y * s_h - p_h + a * dh, x * s_w - p_w + e * dw

    S = None if smooth_kernel is None else smooth_kernel.detach().double().reshape(
        smooth_kernel.shape[-2:]).tolist()
    asym = "_asym" in kernel_type
    alpha = _per_channel(inv_alpha, CK)
    lam = _per_channel(inv_lambda, CK)

    def phi(b, c, y, x):
        i0, j0 = pos(y, x, ch, cw)
        if S is None:
            return fbar(b, c, i0, j0)
        mh, mw = len(S), len(S[0])
        return sum(S[u][v] * fbar(b, c, i0 - (mh - 1) // 2 + u, j0 - (mw - 1) // 2 + v)
                   for u in range(mh) for v in range(mw))

    # validity / mask value of a tap
    if mask is not None:
        M = mask.detach().double().tolist()
        CM = mask.shape[1]
    else:
        M, CM = None, 1

    def valid_and_mask(b, cm, y, x, a, e):
        if transposed:
            P_h, P_w = (kh - 1) * dh - ph, (kw - 1) * dw - pw
            u, v = y + a * dh - P_h, x + e * dw - P_w
            ok = u >= 0 and v >= 0 and u % sh == 0 and v % sw == 0 and u // sh < H_in \
                and v // sw < W_in
            mval = M[b][cm][u // sh][v // sw] if (ok and M is not None) else 0.0
        else:
            i, j = pos(y, x, a, e)
            ok = 0 <= i < Hf and 0 <= j < Wf
            mval = M[b][cm][i][j] if (ok and M is not None) else 0.0
        return (1.0 if ok else 0.0), mval

    K = torch.zeros(B, CK, kh, kw, Ho, Wo, dtype=torch.float64)
    Cout = max(CK, CM)
    Kout = torch.zeros(B, Cout, kh, kw, Ho, Wo, dtype=torch.float64)
    out_mask = None
    if M is not None:
        out_mask = torch.zeros(B, CM if not normalize_kernel else Cout, 1, 1, Ho, Wo,
                               dtype=torch.bool)
    for b in range(B):
        for y in range(Ho):
            for x in range(Wo):
                phis = [phi(b, c, y, x) for c in range(C)]
                raw = [[[0.0] * kw for _ in range(kh)] for _ in range(CK)]
                for a in range(kh):
                    for e in range(kw):
                        i, j = pos(y, x, a, e)
                        Ds = []
                        for c in range(C):
                            delta = fbar(b, c, i, j) - phis[c]
                            if asym:
                                delta = max(delta, 0.0)
                            Ds.append(delta * delta)
                        for ck in range(CK):
                            D = Ds[ck] if channel_wise else sum(Ds)
                            if kernel_type == "gaussian":
                                val = math.exp(-0.5 * D)
                            else:
                                val = alpha[ck] + (D + 1e-4) ** (lam[ck] / 2)
                            raw[ck][a][e] = val
                            K[b, ck, a, e, y, x] = val
                for co in range(Cout):
                    ck = co if CK > 1 else 0
                    cm = co if CM > 1 else 0
                    taps = [(a, e) for a in range(kh) for e in range(kw)]
                    vm = {t: valid_and_mask(b, cm, y, x, *t) for t in taps}
                    if M is None and not normalize_kernel:
                        vals = {t: raw[ck][t[0]][t[1]] for t in taps}
                    elif M is None:
                        kt = {t: raw[ck][t[0]][t[1]] * vm[t][0] for t in taps}
                        N = sum(kt.values())
                        vals = {t: kt[t] / (N + (N == 0)) for t in taps}
                    elif normalize_kernel:
                        kt = {t: raw[ck][t[0]][t[1]] * vm[t][1] for t in taps}
                        N = sum(kt.values())
                        vals = {t: kt[t] / (N + (N == 0)) for t in taps}
                        out_mask[b, co, 0, 0, y, x] = N != 0
                    else:
                        kt = {t: raw[ck][t[0]][t[1]] * vm[t][1] for t in taps}
                        nv = sum(vm[t][0] for t in taps)
                        rho = sum(vm[t][1] for t in taps) / (nv + (nv == 0))
                        vals = {t: kt[t] / (rho + (rho == 0)) for t in taps}
                        out_mask[b, cm, 0, 0, y, x] = rho != 0
                    for (a, e), v in vals.items():
                        Kout[b, co, a, e, y, x] = v
    return Kout, out_mask


def loop_pacconv2d(X, K, W, bias=None, stride=1, padding=0, dilation=1, shared_filters=False,
                   groups=1) -> Tensor:
    """docs/semantics.md §3.1 with loops (weight ``[C_out, C_in/groups, kh, kw]``)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    B, C, H, Wd = X.shape
    kh, kw = W.shape[-2:]
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x, k, w = X.double().tolist(), K.double().tolist(), W.double().tolist()
    Cout = C if shared_filters else W.shape[0]
    bl = [0.0] * Cout if bias is None else bias.double().tolist()
    cin_g = C // groups
    cout_g = Cout // groups
    Y = torch.zeros(B, Cout, Ho, Wo, dtype=torch.float64)
    for b in range(B):
        for o in range(Cout):
            chans = [o] if shared_filters else range((o // cout_g) * cin_g, (o // cout_g + 1) * cin_g)
            for y in range(Ho):
                for xx in range(Wo):
                    acc = bl[o]
                    for c in chans:
                        for a in range(kh):
                            for e in range(kw):
                                i, j = y * sh - ph + a * dh, xx * sw - pw + e * dw
                                if 0 <= i < H and 0 <= j < Wd:
                                    wt = w[0][0][a][e] if shared_filters else w[o][c - (o // cout_g) * cin_g][a][e]
                                    acc += wt * k[b][0][a][e][y][xx] * x[b][c][i][j]
                    Y[b, o, y, xx] = acc
    return Y


def loop_pacconv_transpose2d(X, K, W, bias=None, stride=1, padding=0, output_padding=0,
                             dilation=1, shared_filters=False, groups=1) -> Tensor:
    """docs/semantics.md §3.2 with loops (weight ``[C_in, C_out/groups, kh, kw]``, no flip)."""
    (sh, sw), (ph, pw), (qh, qw), (dh, dw) = (_pair(stride), _pair(padding),
                                              _pair(output_padding), _pair(dilation))
    B, C, H, Wd = X.shape
    kh, kw = W.shape[-2:]
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + qh + 1
    Wo = (Wd - 1) * sw - 2 * pw + dw * (kw - 1) + qw + 1
    x, k, w = X.double().tolist(), K.double().tolist(), W.double().tolist()
    Cout = C if shared_filters else W.shape[1] * groups
    bl = [0.0] * Cout if bias is None else bias.double().tolist()
    cin_g, cout_g = C // groups, Cout // groups
    Ph, Pw = (kh - 1) * dh - ph, (kw - 1) * dw - pw

    def zhat(b, c, u, v):
        u, v = u - Ph, v - Pw
        if u < 0 or v < 0 or u % sh or v % sw or u // sh >= H or v // sw >= Wd:
            return 0.0
        return x[b][c][u // sh][v // sw]

    Y = torch.zeros(B, Cout, Ho, Wo, dtype=torch.float64)
    for b in range(B):
        for o in range(Cout):
            g = o // cout_g
            chans = [o] if shared_filters else range(g * cin_g, (g + 1) * cin_g)
            for y in range(Ho):
                for xx in range(Wo):
                    acc = bl[o]
                    for c in chans:
                        for a in range(kh):
                            for e in range(kw):
                                wt = w[0][0][a][e] if shared_filters else w[c][o - g * cout_g][a][e]
                                acc += wt * k[b][0][a][e][y][xx] * zhat(b, c, y + a * dh, xx + e * dw)
                    Y[b, o, y, xx] = acc
    return Y


def loop_pacpool2d(X, K, kernel_size, stride=1, padding=0, dilation=1) -> Tensor:
    """docs/semantics.md §3.3 with loops."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (_pair(kernel_size), _pair(stride), _pair(padding),
                                              _pair(dilation))
    B, C, H, Wd = X.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x, k = X.double().tolist(), K.double().tolist()
    CK = K.shape[1]
    Y = torch.zeros(B, C, Ho, Wo, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            kc = c if CK > 1 else 0
            for y in range(Ho):
                for xx in range(Wo):
                    acc = 0.0
                    for a in range(kh):
                        for e in range(kw):
                            i, j = y * sh - ph + a * dh, xx * sw - pw + e * dw
                            if 0 <= i < H and 0 <= j < Wd:
                                acc += k[b][kc][a][e][y][xx] * x[b][c][i][j]
                    Y[b, c, y, xx] = acc
    return Y


def randn(*shape, dtype=torch.float64, requires_grad=False, seed=None) -> Tensor:
    """Seeded standard-normal tensor."""
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    return torch.randn(tuple(shape), generator=gen, dtype=dtype).requires_grad_(requires_grad)


def smooth_filter(kind: str, m: int = 3, dtype=torch.float64) -> Optional[Tensor]:
    """The module smoothing filters of docs/semantics.md §4.2 (``None`` for ``'none'``)."""
    if kind == "none":
        return None
    if kind == "gaussian":
        g = torch.tensor([0.25, 0.5, 0.25], dtype=dtype)
        return torch.outer(g, g).reshape(1, 1, 3, 3)
    if kind.startswith("average"):
        return torch.full((1, 1, m, m), (1 / m) * (1 / m), dtype=dtype)
    if kind.startswith("full"):
        return torch.full((1, 1, m, m), 1 / (m * m), dtype=dtype)
    raise ValueError(kind)
