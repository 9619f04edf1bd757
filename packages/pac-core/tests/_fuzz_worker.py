"""Worker process of ``test_fuzz.py``: runs fuzz cases one by one, isolated from pytest.

Reads one JSON case per line on stdin and answers one JSON line per case on stdout (flushed), so
that a case that kills the process (SIGSEGV, an ASan/UBSan abort) fails that case in the parent
instead of killing pytest. A case describes a call with plain data (shapes, dtypes, layouts,
values, geometry); this script builds the tensors and runs the call on every side it compares:

* ``op`` cases: one ``torch.ops.pac`` operator on CPU tensors and on meta tensors;
* ``api`` cases: a public layer or function on the native and the reference backend (CPU), on
  the reference backend with meta tensors, and on the native backend with fake CPU tensors
  (``FakeTensorMode``, what ``torch.compile`` traces).

Each side's answer is ``{"ok", "type", "msg", "shapes"}``; ``api`` cases also report whether the
native and reference values (and, for finite inputs, gradients) agree.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
import warnings
from typing import Any, Callable, Optional

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pac_core
    from pac_core import backends

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int32": torch.int32}
OPS = torch.ops.pac if "native" in backends.available() else None


# -- tensors --------------------------------------------------------------------------------------
def make_tensor(spec: Optional[dict], device: str, seed: int) -> Optional[torch.Tensor]:
    """A tensor of ``spec`` = {shape, dtype, layout, values} on ``device`` (None stays None)."""
    if spec is None:
        return None
    shape = list(spec["shape"])
    dtype = DTYPES[spec.get("dtype", "float64")]
    layout = spec.get("layout", "contiguous")
    values = spec.get("values", "normal")
    if device == "meta":
        t = torch.empty(shape, dtype=dtype, device="meta")
        if layout == "channels_last" and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    gen = torch.Generator().manual_seed(seed)
    numel = math.prod(shape)
    t = torch.randn(shape, generator=gen, dtype=torch.float64)
    if values == "positive":
        t = t.abs() + 0.1
    if values in ("nan", "inf", "-inf") and numel > 0:
        idx = int(torch.randint(numel, (1,), generator=gen))
        t.view(-1)[idx] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[values]
    t = t.to(dtype)
    if layout == "strided" and numel > 0:  # every other element of the last dim
        t = torch.zeros([*shape[:-1], 2 * shape[-1]], dtype=dtype)[..., ::2].copy_(t)
    if layout == "channels_last" and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def outcome(fn: Callable[[], Any]) -> tuple[dict, Any]:
    """Run ``fn``; ``({"ok", "type", "msg", "shapes"}, result or None)``."""
    try:
        res = fn()
    except Exception as exc:  # every failure is data for the parent
        msg = str(exc).split("\n")[0]
        return {"ok": False, "type": type(exc).__name__, "msg": msg}, None
    outs = res if isinstance(res, (tuple, list)) else (res,)
    shapes = [list(o.shape) if isinstance(o, torch.Tensor) else None for o in outs]
    return {"ok": True, "shapes": shapes}, res


# -- op cases -------------------------------------------------------------------------------------
def op_args(case: dict, device: str) -> list:
    seed = case.get("seed", 0)
    args = []
    for i, a in enumerate(case["args"]):
        if isinstance(a, dict) and "shape" in a:
            args.append(make_tensor(a, device, seed + i))
        elif isinstance(a, dict) and a.get("none"):
            args.append(None)
        else:
            args.append(a)
    return args


def run_op(case: dict) -> dict:
    op = getattr(OPS, case["op"])
    res = {}
    for device in ("cpu", "meta"):
        res[device], _ = outcome(lambda d=device: op(*op_args(case, d)))
    return res


# -- api cases ------------------------------------------------------------------------------------
def _tol(dtype: torch.dtype) -> dict:
    if dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-8}
    if dtype == torch.float32:
        return {"rtol": 2e-4, "atol": 2e-4}
    return {"rtol": 5e-2, "atol": 5e-2}


def _build_api(case: dict, device: str):
    """``(make, forward, grad inputs)`` of an api case on ``device``: ``forward(make())`` runs it.

    ``make`` builds the layer (its constructor checks are part of the case; None for the
    functions); keeping it apart lets the fake-tensor run build a real layer first.
    """
    seed = case.get("seed", 0)
    t = {name: make_tensor(spec, device, seed + i)
         for i, (name, spec) in enumerate(sorted(case["tensors"].items()))}
    kw = dict(case.get("kwargs", {}))
    fn = case["fn"]
    if fn in ("PacConv2d", "PacConvTranspose2d", "PacPool2d", "PacCRF", "PacCRFLoose"):

        def make():
            torch.manual_seed(seed)
            module = getattr(pac_core, fn)(*case["ctor"], **kw)
            if device == "meta":
                module = module.to("meta")
            if t["input"].dtype.is_floating_point:
                module = module.to(t["input"].dtype)
            return module

        def forward(module):
            if fn in ("PacCRF", "PacCRFLoose"):
                return module(t["input"], t["guidance"])
            return module(t["input"], t["guidance"], t.get("mask"))

        return make, forward, [t["input"]]
    f = getattr(pac_core, fn)
    if fn == "pacpool2d":
        return (lambda: None), (lambda _: f(t["input"], t["kernel"], **kw)), \
            [t["input"], t["kernel"]]
    return (lambda: None), (lambda _: f(t["input"], t["kernel"], t["weight"], t.get("bias"),
                                         **kw)), [t["input"], t["kernel"]]


def _first(res: Any) -> Any:
    return res[0] if isinstance(res, tuple) else res


def _compare(a: torch.Tensor, b: torch.Tensor, what: str) -> Optional[str]:
    if a.shape != b.shape:
        return f"{what}: shapes {list(a.shape)} != {list(b.shape)}"
    try:
        torch.testing.assert_close(a, b, equal_nan=True, **_tol(a.dtype))
    except AssertionError as exc:
        return f"{what}: " + " ".join(str(exc).split("\n")[:4])
    return None


def run_api(case: dict) -> dict:
    res: dict[str, Any] = {}
    values: dict[str, Any] = {}
    grads: dict[str, Any] = {}
    finite = case.get("finite", True)
    for name, be, device in (("native", "native", "cpu"), ("reference", "reference", "cpu"),
                             ("meta", "reference", "meta")):
        if be not in backends.available():
            continue
        with backends.use(be):
            make, forward, inputs = _build_api(case, device)
            want_grad = device == "cpu" and finite and case.get("grad", False)
            for x in inputs:
                if want_grad and x is not None and x.dtype in (torch.float32, torch.float64):
                    x.requires_grad_(True)
            res[name], out = outcome(lambda f=forward, m=make: f(m()))
            if out is not None and device == "cpu":
                out = _first(out)
                values[name] = out.detach()
                if want_grad and out.requires_grad and out.numel() > 0:
                    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
                    leaves = [x for x in inputs if x is not None and x.requires_grad]
                    res[name + "_grad"], g = outcome(
                        lambda o=out, w=w, leaves=leaves: torch.autograd.grad(
                            (o * w).sum(), leaves, allow_unused=True))
                    if g is not None:
                        grads[name] = g
    if "native" in backends.available():  # fake CPU tensors through the native backend
        from torch._subclasses.fake_tensor import FakeTensorMode

        with backends.use("native"):
            make, forward, _ = _build_api(case, "cpu")
            made, module = outcome(make)
            if not made["ok"]:
                res["fake"] = made
            else:
                with FakeTensorMode(allow_non_fake_inputs=True):
                    res["fake"], _ = outcome(lambda: forward(module))
    mism = []
    if "native" in values and "reference" in values:
        m = _compare(values["native"], values["reference"], "output native vs reference")
        if m:
            mism.append(m)
    if "native" in grads and "reference" in grads:
        for i, (a, b) in enumerate(zip(grads["native"], grads["reference"])):
            if a is not None and b is not None:
                m = _compare(a, b, f"gradient {i} native vs reference")
                if m:
                    mism.append(m)
    res["mismatch"] = mism
    return res


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            ans = run_op(case) if case["level"] == "op" else run_api(case)
        except Exception:  # a harness error is reported, not hidden
            ans = {"harness_error": traceback.format_exc()}
        sys.stdout.write(json.dumps(ans) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
