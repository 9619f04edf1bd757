"""Fuzzing the operators and the public API with hostile inputs (a crash fails a test, not pytest).

Hypothesis draws calls over shapes (zeros included), geometry (small, negative, and huge values
up to and beyond 2**63), dtypes, devices (cpu, meta), layouts (contiguous, channels-last,
strided) and values (NaN, Inf). Every call runs in a worker process (``_fuzz_worker.py``) that is
restarted after a crash, so a signal or a sanitizer abort fails the case that caused it, with the
worker's stderr in the message. Checked:

* ``torch.ops.pac`` on CPU and on meta tensors: the same accept/reject decision, the same
  message, the same output shapes;
* the public layers and functions on the native and the reference backend: the same decision
  and message, the same values (NaN where one has NaN), the same gradients for finite inputs;
  the reference backend on meta tensors and the native backend on fake tensors agree with their
  CPU runs on the decision and the shapes.

A few hundred cases run by default (deterministic draws); ``-m slow`` runs thousands of random
ones. ``nox -s sanitize`` runs this file against an ASan + UBSan build of the extension.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from pac_core import backends

WORKER = Path(__file__).with_name("_fuzz_worker.py")
NATIVE = "native" in backends.available()
#: Generous guard against a hung worker (a hang is a failure too); never reached by a passing case.
HANG_SECONDS = 600

# -- the worker -----------------------------------------------------------------------------------


class Worker:
    """A ``_fuzz_worker.py`` process; restarted after it dies."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.err = tempfile.TemporaryFile()

    def _start(self) -> None:
        self.err.seek(0)
        self.err.truncate()
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, env=env, text=True)

    def _stderr_tail(self) -> str:
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-4000:]

    def run(self, case: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.proc.stdout], [], [], HANG_SECONDS)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            if not ready:
                self.proc.kill()
            rc = self.proc.wait()
            self.proc = None
            what = (f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}")
            raise AssertionError(f"the worker died ({what}) on case {json.dumps(case)}\n"
                                 f"--- worker stderr ---\n{self._stderr_tail()}")
        ans = json.loads(line)
        if "harness_error" in ans:
            raise AssertionError(f"harness error on case {json.dumps(case)}:\n"
                                 f"{ans['harness_error']}")
        return ans

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            self.proc.wait()
        self.err.close()


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


# -- strategies -----------------------------------------------------------------------------------
HUGE = [2**31 - 1, 2**31, 2**32 + 1, 2**61, 2**62, 2**63 - 1, 2**63, 2**64, -(2**31), -(2**63)]
DTYPE = st.sampled_from(["float64", "float32"])
ANY_DTYPE = st.sampled_from(["float64", "float32", "float16", "bfloat16", "int32"])
LAYOUT = st.sampled_from(["contiguous", "contiguous", "channels_last", "strided"])
VALUES = st.sampled_from(["normal"] * 6 + ["nan", "inf", "-inf"])


def geo(lo: int, hi: int) -> st.SearchStrategy[int]:
    """A geometry value: usually in [lo, hi], sometimes zero, negative or huge."""
    return st.one_of(st.integers(lo, hi), st.integers(lo, hi), st.integers(lo, hi),
                     st.integers(-2, 0), st.sampled_from(HUGE))


def pair(lo: int, hi: int) -> st.SearchStrategy[list]:
    """A valid ``[h, w]`` geometry argument (:func:`fault` makes some of them invalid)."""
    return st.lists(st.integers(lo, hi), min_size=2, max_size=2)


WILD = st.one_of(st.sampled_from(HUGE), st.integers(-3, 0))


@st.composite
def fault(draw, args: list) -> list:
    """``args`` with nothing (half the time) or one thing wrong: a geometry value (zero,
    negative, huge), a list length, an int argument, a tensor's size, rank or dtype."""
    args = list(args)
    kind = draw(st.sampled_from(["none"] * 4 + ["geometry", "geometry", "length", "int", "shape",
                                                 "shape", "dtype"]))
    lists = [i for i, a in enumerate(args) if isinstance(a, list) and a
             and isinstance(a[0], int) and not isinstance(a[0], bool)]
    ints = [i for i, a in enumerate(args) if isinstance(a, int) and not isinstance(a, bool)]
    tensors = [i for i, a in enumerate(args) if isinstance(a, dict) and "shape" in a]
    if kind == "geometry" and lists:
        i = draw(st.sampled_from(lists))
        v = list(args[i])
        v[draw(st.integers(0, len(v) - 1))] = draw(WILD)
        args[i] = v
    elif kind == "length" and lists:
        i = draw(st.sampled_from(lists))
        args[i] = draw(st.lists(st.integers(1, 2), min_size=0, max_size=3))
    elif kind == "int" and ints:
        args[draw(st.sampled_from(ints))] = draw(st.one_of(WILD, st.integers(2, 5)))
    elif kind in ("shape", "dtype") and tensors:
        i = draw(st.sampled_from(tensors))
        t = dict(args[i])
        shape = list(t["shape"])
        if kind == "dtype":
            t["dtype"] = draw(ANY_DTYPE)
        else:
            how = draw(st.sampled_from(["size", "size", "drop", "add"]))
            if how == "size" and shape:
                shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from([0, 1, 2, 7]))
            elif how == "drop" and shape:
                shape = shape[:-1]
            else:
                shape = [1, *shape]
            t["shape"] = shape
        args[i] = t
    return args


SIZE = st.sampled_from([0, 1, 2, 3, 5])
SMALL = st.sampled_from([1, 2, 3, 5])


@st.composite
def tensor(draw, shape: list, dtype: str) -> dict:
    return {"shape": list(shape), "dtype": dtype, "layout": draw(LAYOUT), "values": draw(VALUES)}


def _out(n: int, k: int, s: Any, p: Any, d: Any) -> int:
    """Output size of a window geometry (at least 1, at most 7: the tensors stay small)."""
    if not all(isinstance(v, int) for v in (s, p, d)) or s < 1:
        return 1
    return min(max((n + 2 * p - d * (k - 1) - 1) // s + 1, 1), 7)


def _t_out(n: int, k: int, s: Any, p: Any, q: int, d: int) -> int:
    """Output size of a transposed geometry, in [1, 31]."""
    return min(max((n - 1) * s - 2 * p + d * (k - 1) + q + 1, 1), 31)


@st.composite
def op_case(draw) -> dict:
    """A direct ``torch.ops.pac`` call, mostly well-formed, with one or two things wrong."""
    name = draw(st.sampled_from(["conv2d_guided", "pool2d_guided", "conv2d_kernel",
                                 "pool2d_kernel"]))
    backward = draw(st.booleans())
    dt = draw(DTYPE) if draw(st.integers(0, 9)) else draw(ANY_DTYPE)
    b, c, h, w = draw(st.sampled_from([0, 1, 1, 2])), draw(SIZE), draw(SIZE), draw(SIZE)
    kh, kw = draw(SMALL), draw(SMALL)
    s, p, d, u = draw(pair(1, 2)), draw(pair(-1, 2)), draw(pair(1, 2)), draw(pair(1, 2))
    huge_ok = b == 0 and draw(st.booleans())  # empty tensors may have enormous other dims
    ho = draw(st.sampled_from([1, 2, 3] + ([2**33, 2**40] if huge_ok else [])))
    wo = draw(st.sampled_from([1, 2, 3]))
    T = lambda shape: draw(tensor(shape, dt))  # noqa: E731
    args: list = []
    if name.endswith("_guided"):
        cf = draw(st.sampled_from([0, 1, 2]))
        hg, wg = draw(st.sampled_from([0, 3, 5, 6, 6])), draw(st.sampled_from([1, 3, 5, 6, 6]))
        gs, gp = draw(pair(1, 2)), draw(pair(0, 2))
        ks = [kh, kw]
        pho = [_out(hg, kh, gs[0], gp[0], d[0]), _out(wg, kw, gs[1], gp[1], d[1])]
        kind = draw(st.sampled_from([0, 1]))
        asym = draw(st.booleans())
        cw = name == "pool2d_guided" and draw(st.booleans())
        ck = cf if cw else 1
        n_par = draw(st.sampled_from([1, ck, ck, 3]))
        par = ({"shape": [n_par] if draw(st.booleans()) else [], "dtype": dt} if kind == 1
               and draw(st.integers(0, 9)) else {"none": True})
        x, g, phi = T([b, c, h, w]), T([b, cf, hg, wg]), T([b, cf, *pho])
        if name == "conv2d_guided":
            groups = draw(st.sampled_from([1, 1, 1, 2]))
            o = draw(st.sampled_from([0, 1, 2, 4]))
            cg = c // groups
            wt = T([o, cg, kh, kw])
            bias = T([o]) if draw(st.booleans()) else {"none": True}
            geo_args = [s, p, d, u, gs, gp, groups, kind, asym]
            if not backward:
                args = [x, g, phi, wt, bias, par, par, *geo_args]
            else:
                grad = T([b, o, *pho])
                args = [grad, x, g, phi, wt, par, par, *geo_args]
        else:
            wt = T([1, 1, kh, kw]) if draw(st.booleans()) else {"none": True}
            geo_args = [ks, s, p, d, u, gs, gp, kind, asym, cw]
            if not backward:
                args = [x, g, phi, wt, par, par, *geo_args]
            else:
                grad = T([b, (ck if c == 1 else c), *pho])
                args = [grad, x, g, phi, wt, par, par, *geo_args]
        n_mask = 6
    else:
        ck = draw(st.sampled_from([1, 1, max(c, 1), 2]))
        x, k = T([b, c, h, w]), T([b, ck, kh, kw, ho, wo])
        if name == "conv2d_kernel":
            groups = draw(st.sampled_from([1, 1, 1, 2]))
            o = draw(st.sampled_from([0, 1, 2, 4]))
            wt = T([o, c // groups, kh, kw])
            if not backward:
                bias = T([o]) if draw(st.booleans()) else {"none": True}
                args = [x, k, wt, bias, s, p, d, u, groups]
            else:
                args = [T([b, o, ho, wo]), x, k, wt, s, p, d, u, groups]
        else:
            wt = T([1, 1, kh, kw]) if draw(st.booleans()) else {"none": True}
            if not backward:
                args = [x, k, wt, s, p, d, u]
            else:
                args = [T([b, ck if c == 1 else c, ho, wo]), x, k, wt, s, p, d, u]
        n_mask = 3
    args = draw(fault(args))
    if backward:
        n = n_mask if draw(st.integers(0, 9)) else draw(st.sampled_from([0, 2, 3, 6, 7]))
        args.append(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        name += "_backward"
    return {"level": "op", "op": name, "args": args, "seed": draw(st.integers(0, 1000))}


KERNEL_TYPES = ["gaussian", "inv_0.5_-1", "inv_0.5_-1_asym", "inv_1_1_asym_fixed"]


@st.composite
def api_case(draw) -> dict:
    """A public layer or function call on both backends."""
    fn = draw(st.sampled_from(["PacConv2d", "PacConvTranspose2d", "PacPool2d", "pacconv2d",
                               "pacconv_transpose2d", "pacpool2d", "PacCRF", "PacCRFLoose"]))
    dt = draw(st.sampled_from(["float64", "float64", "float32", "float16", "bfloat16"]))
    b = draw(st.sampled_from([0, 1, 2]))
    c = draw(st.sampled_from([1, 2, 3]))
    h, w = draw(st.sampled_from([0, 1, 3, 5, 6, 6])), draw(st.sampled_from([1, 3, 4, 6]))
    k = draw(st.sampled_from([1, 3, 5]))
    wild = draw(st.integers(0, 7)) == 0
    s = draw(st.sampled_from([1, 2**31 - 1, 2**31, 2**63]) if wild else st.integers(1, 3))
    d = draw(st.integers(1, 2))
    p = draw(st.sampled_from([2**31, 2**63 - 1, -1]) if wild
             else st.sampled_from([0, 1, 2, (k - 1) // 2 * d, (k - 1) // 2 * d]))
    cf = draw(st.sampled_from([0, 1, 2]))
    vals = draw(st.sampled_from(["normal"] * 8 + ["nan", "inf"]))
    gvals = draw(st.sampled_from(["normal"] * 8 + ["nan", "inf"]))
    T = lambda shape, v="normal": {"shape": shape, "dtype": dt, "layout": draw(LAYOUT),  # noqa: E731
                                   "values": v}
    ho, wo = _out(h, k, s, p, d), _out(w, k, s, p, d)
    kw: dict = {}
    tensors: dict = {}
    ctor: list = []
    if fn in ("PacConv2d", "PacConvTranspose2d", "PacPool2d"):
        kt = draw(st.sampled_from(KERNEL_TYPES))
        kw = {"kernel_type": kt, "stride": s, "padding": p, "dilation": d,
              "smooth_kernel_type": draw(st.sampled_from(["none", "gaussian"])),
              "normalize_kernel": draw(st.booleans())}
        gh, gw = h, w
        if fn == "PacConvTranspose2d":
            q = draw(st.integers(0, 1))
            kw["output_padding"] = q
            gh, gw = _t_out(h, k, s, p, q, d), _t_out(w, k, s, p, q, d)
        if fn == "PacPool2d":
            ctor = [k]
            kw["channel_wise"] = draw(st.booleans())
            if kw["channel_wise"]:
                cf = c
                kw["out_channels"] = c
        else:
            ctor = [c, draw(st.sampled_from([1, 2, 4])), k]
            if fn == "PacConv2d" and draw(st.booleans()):
                kw["shared_filters"] = True
                ctor[1] = c
        tensors = {"input": T([b, c, h, w], vals), "guidance": T([b, cf, gh, gw], gvals)}
        if draw(st.integers(0, 3)) == 0 and fn != "PacConvTranspose2d":
            tensors["mask"] = {"shape": [b, 1, h, w], "dtype": dt, "values": "positive"}
    elif fn in ("PacCRF", "PacCRFLoose"):
        ctor = [c, draw(st.integers(1, 2))]
        tensors = {"input": T([b, c, h, w], vals), "guidance": T([b, cf, h, w], gvals)}
    else:
        ks = {"kernel": {"shape": [b, 1, k, k, ho, wo], "dtype": dt, "layout": draw(LAYOUT),
                         "values": draw(st.sampled_from(["positive"] * 8 + ["nan", "inf"]))}}
        if fn == "pacpool2d":
            kw = {"kernel_size": k, "stride": s, "padding": p, "dilation": d}
        elif fn == "pacconv2d":
            kw = {"stride": s, "padding": p, "dilation": d}
            tensors["weight"] = T([draw(st.sampled_from([1, 2])), c, k, k])
            if draw(st.booleans()):
                tensors["bias"] = T([tensors["weight"]["shape"][0]])
        else:
            q = draw(st.integers(0, 1))
            kw = {"stride": s, "padding": p, "dilation": d, "output_padding": q}
            co = draw(st.sampled_from([1, 2]))
            tensors["weight"] = T([c, co, k, k])
            ks["kernel"]["shape"][4:] = [_t_out(h, k, s, p, q, d), _t_out(w, k, s, p, q, d)]
        tensors.update(ks)
        tensors["input"] = T([b, c, h, w], vals)
    finite = vals == "normal" and gvals == "normal" and all(
        t.get("values", "normal") in ("normal", "positive") for t in tensors.values())
    return {"level": "api", "fn": fn, "ctor": ctor, "kwargs": kw, "tensors": tensors,
            "seed": draw(st.integers(0, 1000)), "finite": finite,
            "grad": dt in ("float64", "float32")}


# -- checks ---------------------------------------------------------------------------------------
def _event(text: str) -> None:
    """A hypothesis statistic (``--hypothesis-show-statistics``), outside tests a no-op."""
    try:
        event(text)
    except InvalidArgument:
        pass


def check_op(ans: dict, case: dict) -> None:
    cpu, meta = ans["cpu"], ans["meta"]
    _event(f"{case['op']}: {'computed' if cpu['ok'] else 'rejected'}")
    where = f"\ncase: {json.dumps(case)}\ncpu: {cpu}\nmeta: {meta}"
    assert cpu["ok"] == meta["ok"], "CPU and meta disagree on accepting the call" + where
    if cpu["ok"]:
        assert cpu["shapes"] == meta["shapes"], "CPU and meta output shapes differ" + where
    else:
        assert cpu["msg"] == meta["msg"], "CPU and meta reject with different messages" + where


def check_api(ans: dict, case: dict) -> None:
    where = f"\ncase: {json.dumps(case)}\nanswers: {json.dumps(ans)}"
    ref = ans["reference"]
    _event(f"{case['fn']}: {'computed' if ref['ok'] else 'rejected'}")
    if "native" in ans:
        nat = ans["native"]
        assert nat["ok"] == ref["ok"], "native and reference disagree on accepting" + where
        if nat["ok"]:
            assert nat["shapes"] == ref["shapes"], "native and reference shapes differ" + where
            assert not ans["mismatch"], "native and reference values differ" + where
            if "native_grad" in ans and "reference_grad" in ans:
                assert ans["native_grad"]["ok"] == ans["reference_grad"]["ok"], \
                    "backward accepted by one backend only" + where
        else:
            assert (nat["type"], nat["msg"]) == (ref["type"], ref["msg"]), \
                "native and reference reject differently" + where
        fake = ans["fake"]
        assert fake["ok"] == nat["ok"], "fake (meta) native disagrees with CPU native" + where
        if fake["ok"]:
            assert fake["shapes"] == nat["shapes"], "fake native shapes differ" + where
    meta = ans["meta"]
    assert meta["ok"] == ref["ok"], "reference on meta disagrees with CPU" + where
    if meta["ok"]:
        assert meta["shapes"] == ref["shapes"], "reference meta shapes differ" + where


FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not built")


@needs_native
@FAST
@given(case=op_case())
def test_ops_cpu_meta_agree(worker, case):
    check_op(worker.run(case), case)


@FAST
@given(case=api_case())
def test_api_backends_agree(worker, case):
    check_api(worker.run(case), case)


@pytest.mark.slow
@needs_native
@SLOW
@given(case=op_case())
def test_ops_cpu_meta_agree_many(worker, case):
    check_op(worker.run(case), case)


@pytest.mark.slow
@SLOW
@given(case=api_case())
def test_api_backends_agree_many(worker, case):
    check_api(worker.run(case), case)


# -- the crashes and silent errors found before, kept as cases --------------------------------------
def _t(*shape: int, dtype: str = "float32") -> dict:
    return {"shape": list(shape), "dtype": dtype}


KNOWN = {
    "conv2d_kernel_backward padding 2**63-1": {
        "level": "op", "op": "conv2d_kernel_backward",
        "args": [_t(1, 1, 1, 64), _t(1, 1, 1, 1), _t(1, 1, 1, 1, 1, 64), _t(1, 1, 1, 1), [1, 2],
                 [0, 2**63 - 1], [1, 1], [1, 1], 1, [True, False, False]]},
    "pool2d_kernel padding 2**63-1 wide kernel": {
        "level": "op", "op": "pool2d_kernel",
        "args": [_t(1, 1, 1, 1), _t(1, 1, 1, 1, 1, 64), {"none": True}, [1, 1], [0, 2**63 - 1],
                 [1, 1], [1, 1]]},
    "pool2d_kernel stride 2**61": {
        "level": "op", "op": "pool2d_kernel",
        "args": [_t(1, 1, 4, 4), _t(1, 1, 3, 3, 2, 2), {"none": True}, [2**61, 2**61], [1, 1],
                 [1, 1], [1, 1]]},
    "pool2d_kernel 0 input channels": {
        "level": "op", "op": "pool2d_kernel",
        "args": [_t(2, 0, 5, 5), _t(2, 1, 3, 3, 5, 5), {"none": True}, [1, 1], [1, 1], [1, 1],
                 [1, 1]]},
    "output_mask of length 2": {
        "level": "op", "op": "pool2d_kernel_backward",
        "args": [_t(2, 4, 5, 6), _t(2, 4, 5, 6), _t(2, 1, 3, 3, 5, 6), {"none": True}, [1, 1],
                 [1, 1], [1, 1], [1, 1], [True, True]]},
    "empty batch, huge output": {
        "level": "op", "op": "conv2d_kernel",
        "args": [_t(0, 1, 1, 1), _t(0, 1, 1, 1, 2**40, 2**22), _t(1, 1, 1, 1), {"none": True},
                 [2**31 - 1, 1], [1, 1], [1, 1], [1, 1], 1]},
}


@needs_native
@pytest.mark.parametrize("name", list(KNOWN))
def test_known_hostile_calls(worker, name):
    """Each rejected on CPU and meta alike with a message naming the argument, or computed."""
    case = KNOWN[name]
    ans = worker.run(case)
    check_op(ans, case)
    if name == "pool2d_kernel 0 input channels":
        assert ans["cpu"]["ok"] and ans["cpu"]["shapes"] == [[2, 0, 5, 5]]
    else:
        assert not ans["cpu"]["ok"], ans
        word = {"output_mask of length 2": "output_mask", "pool2d_kernel stride 2**61": "stride",
                "empty batch, huge output": "too large"}.get(name, "padding")
        assert word in ans["cpu"]["msg"], ans


def test_public_api_huge_geometry(worker):
    """Geometry beyond int64 is rejected by the Python layer with the argument's name."""
    case = {"level": "api", "fn": "pacpool2d", "ctor": [], "seed": 0, "finite": True,
            "kwargs": {"kernel_size": 1, "stride": 2**63 - 1, "padding": 2**63 - 1},
            "tensors": {"input": _t(1, 1, 4, 4), "kernel": _t(1, 1, 1, 1, 3, 3)}}
    ans = worker.run(case)
    check_api(ans, case)
    assert not ans["reference"]["ok"]
    assert ans["reference"]["type"] == "ValueError" and "stride" in ans["reference"]["msg"]
