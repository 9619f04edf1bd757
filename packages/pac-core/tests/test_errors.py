"""Argument validation: every invalid argument gives a ValueError/TypeError naming it (issue pt 6).

Ends with a Hypothesis test throwing random argument combinations at the public functions: each
call must either match the loop oracle or raise ValueError/TypeError.
"""

from __future__ import annotations

import pytest
import torch
from _utils import (
    loop_pacconv2d,
    loop_pacconv_transpose2d,
    loop_packernel2d,
    loop_pacpool2d,
    randn,
    smooth_filter,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pac_core import functional as PF
from pac_core import pacconv2d, pacconv_transpose2d, packernel2d, pacpool2d
from pac_core._validation import parse_kernel_type, parse_smooth_kernel_type
from pac_core.helpers import conv_output_size, conv_transpose_output_size

pytestmark = pytest.mark.usefixtures("reference_backend")

D = torch.float64
G = randn(2, 2, 5, 6)
X = randn(2, 4, 5, 6, seed=1)
K3, _ = packernel2d(G, kernel_size=3, padding=1)
W = randn(6, 4, 3, 3, seed=2)
META = torch.empty(3, device="meta")


KERNEL_ERRORS = [
    ("default kernel_size", lambda: packernel2d(G), ValueError, "kernel_size"),
    ("even kernel", lambda: packernel2d(G, kernel_size=4), ValueError, "odd"),
    ("even pair", lambda: packernel2d(G, kernel_size=(3, 2)), ValueError, "odd"),
    ("float kernel", lambda: packernel2d(G, kernel_size=3.0), TypeError, "kernel_size"),
    ("zero stride", lambda: packernel2d(G, kernel_size=3, stride=0), ValueError, "stride"),
    ("zero dilation", lambda: packernel2d(G, kernel_size=3, dilation=(1, 0)), ValueError,
     "dilation"),
    ("negative padding", lambda: packernel2d(G, kernel_size=3, padding=-1), ValueError, "padding"),
    ("negative output_padding", lambda: packernel2d(G, kernel_size=3, output_padding=-1,
                                                    transposed=True), ValueError, "output_padding"),
    ("triple stride", lambda: packernel2d(G, kernel_size=3, stride=(1, 1, 1)), TypeError, "stride"),
    ("not a tensor", lambda: packernel2d(G.tolist(), kernel_size=3), TypeError, "input"),
    ("int guidance", lambda: packernel2d(G.long(), kernel_size=3), TypeError, "floating"),
    ("3-D guidance", lambda: packernel2d(G[0], kernel_size=3), ValueError, "4-D"),
    ("gaussian_asym", lambda: packernel2d(G, kernel_size=3, kernel_type="gaussian_asym"),
     ValueError, "kernel_type"),
    ("unknown kernel", lambda: packernel2d(G, kernel_size=3, kernel_type="box"), ValueError,
     "kernel_type"),
    ("kernel type not str", lambda: packernel2d(G, kernel_size=3, kernel_type=1), TypeError,
     "kernel_type"),
    ("inv without alpha", lambda: packernel2d(G, kernel_size=3, kernel_type="inv_1_-1"),
     ValueError, "inv_alpha"),
    ("inv without lambda", lambda: packernel2d(G, kernel_size=3, kernel_type="inv_1_-1",
                                               inv_alpha=1.0), ValueError, "inv_lambda"),
    ("inv alpha wrong length", lambda: packernel2d(G, kernel_size=3, kernel_type="inv_1_-1",
                                                   inv_alpha=torch.ones(3, dtype=D),
                                                   inv_lambda=-1.0), ValueError, "inv_alpha"),
    ("inv alpha string", lambda: packernel2d(G, kernel_size=3, kernel_type="inv_1_-1",
                                             inv_alpha="1", inv_lambda=-1.0), TypeError,
     "inv_alpha"),
    ("even smoothing", lambda: packernel2d(G, kernel_size=3, smooth_kernel_type="average_4",
                                           smooth_kernel=torch.ones(1, 1, 4, 4, dtype=D)),
     ValueError, "smooth_kernel_type"),
    ("unknown smoothing", lambda: packernel2d(G, kernel_size=3, smooth_kernel_type="blur"),
     ValueError, "smooth_kernel_type"),
    ("smoothing without filter", lambda: packernel2d(G, kernel_size=3,
                                                     smooth_kernel_type="gaussian"),
     ValueError, "smooth_kernel"),
    ("smoothing filter even", lambda: packernel2d(G, kernel_size=3, smooth_kernel_type="gaussian",
                                                  smooth_kernel=torch.ones(1, 1, 2, 2, dtype=D)),
     ValueError, "smooth_kernel"),
    ("smoothing filter size mismatch", lambda: packernel2d(
        G, kernel_size=3, smooth_kernel_type="average_3", smooth_kernel=smooth_filter("average", 5)),
     ValueError, "smooth_kernel"),
    ("mask spatial", lambda: packernel2d(G, torch.ones(2, 1, 5, 5), kernel_size=3), ValueError,
     "mask"),
    ("mask batch", lambda: packernel2d(G, torch.ones(1, 1, 5, 6), kernel_size=3), ValueError,
     "mask"),
    ("mask channels", lambda: packernel2d(G, torch.ones(2, 2, 5, 6), kernel_size=3), ValueError,
     "mask"),
    ("mask 3-D", lambda: packernel2d(G, torch.ones(2, 5, 6), kernel_size=3), ValueError, "mask"),
    ("transposed mask channels", lambda: packernel2d(
        randn(1, 2, 8, 10), torch.ones(1, 2, 4, 5), kernel_size=3, stride=2, padding=1,
        output_padding=1, transposed=True), ValueError, "mask"),
    ("transposed mask size", lambda: packernel2d(
        randn(1, 2, 8, 10), torch.ones(1, 1, 8, 10), kernel_size=3, stride=2, padding=1,
        output_padding=1, transposed=True), ValueError, "H_in"),
    ("mask other device", lambda: packernel2d(G, torch.ones(2, 1, 5, 6, device="meta"),
                                              kernel_size=3), ValueError, "device"),
    ("transposed padding mode", lambda: packernel2d(G, kernel_size=3, transposed=True,
                                                    padding_mode="reflect"), ValueError,
     "padding_mode"),
    ("unknown padding mode", lambda: packernel2d(G, kernel_size=3, padding_mode="mirror"),
     ValueError, "padding_mode"),
    ("reflect too large", lambda: packernel2d(G, kernel_size=3, padding=5, padding_mode="reflect"),
     ValueError, "reflect"),
    ("empty output", lambda: packernel2d(G, kernel_size=7), ValueError, "empty output"),
]

CONV_ERRORS = [
    ("kernel batch", lambda: pacconv2d(X, K3[:1], W, padding=1), ValueError, "kernel"),
    ("kernel channels", lambda: pacconv2d(X, K3.expand(2, 4, 3, 3, 5, 6), W, padding=1),
     ValueError, "kernel"),
    ("kernel taps", lambda: pacconv2d(X, K3, randn(6, 4, 1, 1), padding=1), ValueError,
     "kernel"),
    ("kernel output size", lambda: pacconv2d(X, K3, W, padding=1, stride=2), ValueError,
     "kernel"),
    ("kernel 5-D", lambda: pacconv2d(X, K3[:, 0], W, padding=1), ValueError, "kernel"),
    ("even weight", lambda: pacconv2d(X, K3[:, :, :2, :2], randn(6, 4, 2, 2), padding=1),
     ValueError, "odd"),
    ("weight channels", lambda: pacconv2d(X, K3, randn(6, 3, 3, 3), padding=1), ValueError,
     "weight"),
    ("groups not dividing", lambda: pacconv2d(X, K3, randn(6, 4, 3, 3), padding=1, groups=3),
     ValueError, "groups"),
    ("out channels not dividing", lambda: pacconv2d(X, K3, randn(5, 2, 3, 3), padding=1,
                                                    groups=2), ValueError, "weight"),
    ("groups zero", lambda: pacconv2d(X, K3, W, padding=1, groups=0), ValueError, "groups"),
    ("groups float", lambda: pacconv2d(X, K3, W, padding=1, groups=1.0), TypeError, "groups"),
    ("bias length", lambda: pacconv2d(X, K3, W, randn(4), padding=1), ValueError, "bias"),
    ("bias 2-D", lambda: pacconv2d(X, K3, W, randn(6, 1), padding=1), ValueError, "bias"),
    ("shared with full weight", lambda: pacconv2d(X, K3, W, padding=1, shared_filters=True),
     ValueError, "shared_filters"),
    ("shared with groups", lambda: pacconv2d(X, K3, randn(1, 1, 3, 3), padding=1,
                                             shared_filters=True, groups=2), ValueError, "groups"),
    ("shared bias", lambda: pacconv2d(X, K3, randn(1, 1, 3, 3), randn(6), padding=1,
                                      shared_filters=True), ValueError, "bias"),
    ("dtype mismatch", lambda: pacconv2d(X, K3, W.float(), padding=1), TypeError, "dtype"),
    ("int input", lambda: pacconv2d(X.long(), K3, W, padding=1), TypeError, "floating"),
    ("device mismatch", lambda: pacconv2d(X, K3, W.to("meta"), padding=1), ValueError, "device"),
    ("negative padding", lambda: pacconv2d(X, K3, W, padding=-1), ValueError, "padding"),
    ("zero stride", lambda: pacconv2d(X, K3, W, padding=1, stride=0), ValueError, "stride"),
    ("unknown padding mode", lambda: pacconv2d(X, K3, W, padding=1, padding_mode="same"),
     ValueError, "padding_mode"),
    ("weight not tensor", lambda: pacconv2d(X, K3, 1.0, padding=1), TypeError, "weight"),
]

XT = randn(2, 4, 4, 5, seed=3)
GT = randn(2, 2, 8, 10, seed=4)
KT, _ = packernel2d(GT, kernel_size=3, stride=2, padding=1, output_padding=1, transposed=True)
WT = randn(4, 3, 3, 3, seed=5)

TRANSPOSED_ERRORS = [
    ("conv weight layout", lambda: pacconv_transpose2d(XT, KT, randn(3, 4, 3, 3), None, 2, 1, 1),
     ValueError, "C_in, C_out/groups"),
    ("kernel output size", lambda: pacconv_transpose2d(XT, KT, WT, None, 2, 1, 0), ValueError,
     "kernel"),
    ("kernel channels", lambda: pacconv_transpose2d(XT, KT.expand(2, 4, 3, 3, 8, 10), WT, None, 2,
                                                    1, 1), ValueError, "kernel"),
    ("shared with groups", lambda: pacconv_transpose2d(XT, KT, randn(1, 1, 3, 3), None, 2, 1, 1,
                                                       shared_filters=True, groups=2),
     ValueError, "groups"),
    ("even weight", lambda: pacconv_transpose2d(XT, KT, randn(4, 3, 4, 4), None, 2, 1, 1),
     ValueError, "odd"),
    ("negative output_padding", lambda: pacconv_transpose2d(XT, KT, WT, None, 2, 1, -1),
     ValueError, "output_padding"),
    ("bias length", lambda: pacconv_transpose2d(XT, KT, WT, randn(4), 2, 1, 1), ValueError,
     "bias"),
    ("groups not dividing", lambda: pacconv_transpose2d(XT, KT, randn(4, 1, 3, 3), None, 2, 1, 1,
                                                        groups=3), ValueError, "groups"),
]

X3 = randn(2, 3, 5, 6, seed=6)

POOL_ERRORS = [
    ("kernel channels", lambda: pacpool2d(X3, K3.expand(2, 2, 3, 3, 5, 6), 3, 1, 1), ValueError,
     "kernel"),
    ("even kernel_size", lambda: pacpool2d(X3, K3, 2, 1, 1), ValueError, "odd"),
    ("kernel_size mismatch", lambda: pacpool2d(X3, K3, 5, 1, 2), ValueError, "kernel"),
    ("kernel dtype", lambda: pacpool2d(X3, K3.float(), 3, 1, 1), TypeError, "dtype"),
    ("kernel not tensor", lambda: pacpool2d(X3, None, 3, 1, 1), TypeError, "kernel"),
]

_GUIDED_KERNEL = dict(kernel_type="gaussian", smooth_kernel_type="none", smooth_kernel=None,
                      inv_alpha=None, inv_lambda=None, normalize_kernel=False)

GUIDED_ERRORS = [
    ("conv guidance batch", lambda: PF._pacconv2d_guided(
        X, G[:1], None, W, None, stride=1, padding=1, dilation=1, shared_filters=False, groups=1,
        padding_mode="zeros", **_GUIDED_KERNEL), ValueError, "guidance"),
    ("conv guidance size", lambda: PF._pacconv2d_guided(
        X, randn(2, 2, 10, 12), None, W, None, stride=1, padding=1, dilation=1,
        shared_filters=False, groups=1, padding_mode="zeros", **_GUIDED_KERNEL), ValueError,
     "guidance"),
    ("conv guidance dtype", lambda: PF._pacconv2d_guided(
        X, G.float(), None, W, None, stride=1, padding=1, dilation=1, shared_filters=False,
        groups=1, padding_mode="zeros", **_GUIDED_KERNEL), TypeError, "dtype"),
    ("conv even weight", lambda: PF._pacconv2d_guided(
        X, G, None, randn(6, 4, 2, 2), None, stride=1, padding=1, dilation=1,
        shared_filters=False, groups=1, padding_mode="zeros", **_GUIDED_KERNEL), ValueError,
     "odd"),
    ("transposed guidance at input size", lambda: PF._pacconv_transpose2d_guided(
        XT, randn(2, 2, 4, 5), None, WT, None, stride=2, padding=1, output_padding=1,
        dilation=1, shared_filters=False, groups=1, **_GUIDED_KERNEL), ValueError,
     "output size"),
    ("transposed mask at output size", lambda: PF._pacconv_transpose2d_guided(
        XT, GT, torch.ones(2, 1, 8, 10, dtype=D), WT, None, stride=2, padding=1,
        output_padding=1, dilation=1, shared_filters=False, groups=1, **_GUIDED_KERNEL),
     ValueError, "mask"),
    ("pool channel_wise channels", lambda: PF._pacpool2d_guided(
        X3, G, None, kernel_size=3, stride=1, padding=1, dilation=1, padding_mode="zeros",
        channel_wise=True, **_GUIDED_KERNEL), ValueError, "channel_wise"),
    ("pool guidance size", lambda: PF._pacpool2d_guided(
        X3, G[:, :, :4], None, kernel_size=3, stride=1, padding=1, dilation=1,
        padding_mode="zeros", channel_wise=False, **_GUIDED_KERNEL), ValueError, "guidance"),
    ("pool even kernel", lambda: PF._pacpool2d_guided(
        X3, G, None, kernel_size=4, stride=1, padding=1, dilation=1, padding_mode="zeros",
        channel_wise=False, **_GUIDED_KERNEL), ValueError, "odd"),
]

ALL_ERRORS = KERNEL_ERRORS + CONV_ERRORS + TRANSPOSED_ERRORS + POOL_ERRORS + GUIDED_ERRORS


@pytest.mark.parametrize("name,call,exc,fragment", ALL_ERRORS, ids=[e[0] for e in ALL_ERRORS])
def test_invalid_argument(name, call, exc, fragment):
    with pytest.raises(exc, match=None) as info:
        call()
    assert fragment in str(info.value), str(info.value)


def test_parse_kernel_type():
    assert parse_kernel_type("gaussian") == ("gaussian", None, None, False, False)
    assert parse_kernel_type("inv_1_-1_fixed") == ("inv", 1.0, -1.0, False, True)
    assert parse_kernel_type("inv_0.2_0.3_asym") == ("inv", 0.2, 0.3, True, False)
    assert parse_kernel_type("inv_0.5_-1_asym_fixed") == ("inv", 0.5, -1.0, True, True)
    for bad in ("gaussian_asym", "inv", "inv_1", "inv_a_b", "Gaussian", ""):
        with pytest.raises(ValueError):
            parse_kernel_type(bad)
    with pytest.raises(TypeError):
        parse_kernel_type(None)


def test_parse_smooth_kernel_type():
    assert parse_smooth_kernel_type("none") == ("none", 0)
    assert parse_smooth_kernel_type("gaussian") == ("gaussian", 3)
    assert parse_smooth_kernel_type("average_5") == ("average", 5)
    assert parse_smooth_kernel_type("full_3") == ("full", 3)
    for bad in ("average_4", "full_0", "full_x", "average", "box_3", "average_-3", "None"):
        with pytest.raises(ValueError):
            parse_smooth_kernel_type(bad)
    with pytest.raises(TypeError):
        parse_smooth_kernel_type(3)


# -- random argument combinations --------------------------------------------------------------
KERNEL_TYPES = ["gaussian", "inv_0.5_-1", "inv_0.2_0.3_asym"]
SMOOTH_TYPES = ["none", "gaussian", "average_3", "full_3"]

small = st.integers(1, 3)


INVALID = {
    "k": [0, 2, (3, 4)], "s": [0, (2, 0), 1.0], "p": [-1, (0, -2)], "d": [0, (1, 0)], "q": [-1],
    "groups": [0, 2.0], "kernel_type": ["gaussian_asym", "box"], "smooth": ["average_4", "blur"],
    "mask": ["bad"], "kernel_shape": ["bad"], "c_out": [0],
}


@st.composite
def calls(draw):
    """Valid arguments, then (about a third of the time) one argument made invalid."""
    op = draw(st.sampled_from(["kernel", "conv", "convT", "pool"]))
    a = dict(
        op=op, b=draw(small), c=draw(small), h=draw(st.integers(1, 6)), w=draw(st.integers(2, 6)),
        k=draw(st.sampled_from([1, 3, 5, (3, 1), (1, 5)])),
        s=draw(st.sampled_from([1, 2, 3, (1, 2)])),
        p=draw(st.sampled_from([0, 1, 2, 3, (1, 0), (0, 2)])),
        d=draw(st.sampled_from([1, 2, (2, 1)])), q=draw(st.sampled_from([0, 1, 2])),
        kernel_type=draw(st.sampled_from(KERNEL_TYPES)),
        smooth=draw(st.sampled_from(SMOOTH_TYPES)),
        channel_wise=draw(st.booleans()), normalize=draw(st.booleans()),
        mask=draw(st.sampled_from([None, "ok"])), shared=draw(st.booleans()),
        groups=draw(st.sampled_from([1, 2, 3])), c_out=draw(st.integers(1, 3)),
        kernel_shape="ok", bias=draw(st.booleans()), gc=draw(small),
        seed=draw(st.integers(0, 2**16)),
    )
    if a["shared"]:
        a["groups"] = 1
    a["c"] = a["c"] * a["groups"]  # divisible channel counts (broken below on purpose)
    bad = draw(st.sampled_from([None] * 12 + sorted(INVALID)))
    if bad is not None:
        a[bad] = draw(st.sampled_from(INVALID[bad]))
    if draw(st.integers(0, 9)) == 0:  # a channel count that groups does not divide
        a["c"] += 1
    return a


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _sizes(a):
    """Output size for the drawn geometry, or None if it is not computable."""
    k, s, p, d, q = (_pair(a[n]) for n in ("k", "s", "p", "d", "q"))
    if not all(isinstance(v, int) for v in k + s + p + d + q):
        return None
    if min(k + s + d) < 1 or min(p + q) < 0:
        return None
    if a["op"] == "convT":
        return tuple(conv_transpose_output_size((a["h"], a["w"])[i], k[i], s[i], p[i], q[i], d[i])
                     for i in range(2))
    return tuple(conv_output_size((a["h"], a["w"])[i], k[i], s[i], p[i], d[i]) for i in range(2))


def _run(a):
    """Call the public function; return (result, oracle thunk)."""
    torch.manual_seed(a["seed"])
    b, c, h, w = a["b"], a["c"], a["h"], a["w"]
    kt, sm = a["kernel_type"], a["smooth"]
    if a["op"] == "kernel":
        g = torch.randn(b, a["gc"], h, w, dtype=D)
        ck = a["gc"] if a["channel_wise"] else 1
        mask = None
        if a["mask"] == "ok":
            mask = (torch.rand(b, ck, h, w) > 0.3).double()
        elif a["mask"] == "bad":
            mask = torch.ones(b, 1, h + 1, w, dtype=D)
        m = int(sm.split("_")[1]) if "_" in sm else 3
        sk = torch.rand(1, 1, m, m, dtype=D) if sm != "none" else None
        inv = dict(inv_alpha=0.3, inv_lambda=-0.5) if kt.startswith("inv") else {}
        out = packernel2d(g, mask, a["k"], a["s"], a["p"], 0, a["d"], kt, sm, sk,
                          channel_wise=a["channel_wise"], normalize_kernel=a["normalize"], **inv)
        return out, lambda: loop_packernel2d(g, mask, a["k"], a["s"], a["p"], 0, a["d"], kt,
                                             None if sm == "none" else sk,
                                             channel_wise=a["channel_wise"],
                                             normalize_kernel=a["normalize"], **inv)
    x = torch.randn(b, c, h, w, dtype=D)
    size = _sizes(a)
    kk = _pair(a["k"])
    kk = kk if all(isinstance(v, int) for v in kk) else (3, 3)
    kb = b if a["kernel_shape"] == "ok" else b + 1
    if size is None or min(size) < 1 or min(kk) < 1:
        kernel = torch.rand(kb, 1, max(kk[0], 1), max(kk[1], 1), 2, 2, dtype=D)
    else:
        kc = c if (a["op"] == "pool" and a["channel_wise"]) else 1
        kernel = torch.rand(kb, kc, kk[0], kk[1], *size, dtype=D)
    if a["op"] == "pool":
        return (pacpool2d(x, kernel, a["k"], a["s"], a["p"], a["d"]),
                lambda: loop_pacpool2d(x, kernel, a["k"], a["s"], a["p"], a["d"]))
    g = a["groups"]
    if a["shared"]:
        wt = torch.randn(1, 1, *kk, dtype=D)
        c_out = c
    elif a["op"] == "conv":
        c_out = a["c_out"] * (g if isinstance(g, int) and g > 0 else 1)
        wt = torch.randn(c_out, max(c // max(int(g), 1), 1), *kk, dtype=D)
    else:
        wt = torch.randn(c, a["c_out"], *kk, dtype=D)
        c_out = a["c_out"] * int(g)
    bias = torch.randn(c_out, dtype=D) if a["bias"] else None
    if a["op"] == "conv":
        return (pacconv2d(x, kernel, wt, bias, a["s"], a["p"], a["d"], a["shared"], groups=g),
                lambda: loop_pacconv2d(x, kernel, wt, bias, a["s"], a["p"], a["d"], a["shared"],
                                       g))
    return (pacconv_transpose2d(x, kernel, wt, bias, a["s"], a["p"], a["q"], a["d"], a["shared"],
                                groups=g),
            lambda: loop_pacconv_transpose2d(x, kernel, wt, bias, a["s"], a["p"], a["q"], a["d"],
                                             a["shared"], g))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_random_arguments_match_oracle_or_raise(args):
    try:
        out, oracle = _run(args)
    except (ValueError, TypeError):
        return
    ref = oracle()
    if isinstance(out, tuple):
        (K, m), (K_ref, m_ref) = out, ref
        torch.testing.assert_close(K, K_ref, rtol=1e-10, atol=1e-10)
        assert (m is None) == (m_ref is None)
        if m is not None:
            assert torch.equal(m, m_ref)
    else:
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
