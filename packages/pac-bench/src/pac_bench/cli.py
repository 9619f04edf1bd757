"""The ``pac-bench`` command: ``run`` and ``compare``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .cases import CASES, QUICK_CASES, get_case
from .report import compare, environment, load_result, markdown_table, write_result
from .timing import MODES, time_case


def run(cases: Sequence[str], backends: Sequence[str] | None, modes: Sequence[str], runs: int,
        warmup: int, device: str, memory: bool) -> dict[str, Any]:
    """Time every (case, backend, mode); optionally measure forward peak memory (CPU only).

    Returns:
        The result record: ``{"environment": ..., "results": [...]}``.
    """
    import pac_core

    available = pac_core.backends.available()
    chosen = list(backends) if backends else available
    missing = [b for b in chosen if b not in available]
    if missing:
        raise SystemExit(f"backend(s) not available: {missing}; available: {available}")
    records: list[dict[str, Any]] = []
    for name in cases:
        case = get_case(name)
        for backend in chosen:
            mem: dict[str, int] = {}
            if memory and device == "cpu":
                from .memory import peak_forward_bytes

                mem = {"pac_peak_bytes": peak_forward_bytes(case, "pac", backend),
                       "conv_peak_bytes": peak_forward_bytes(case, "conv")}
            for mode in modes:
                rec = time_case(case, backend, mode, runs=runs, warmup=warmup, device=device)
                records.append({**rec.as_dict(), **(mem if mode == "forward" else {})})
                print(f"  {name:28s} {backend:10s} {mode:17s} ratio {rec.ratio:6.2f}×",
                      file=sys.stderr, flush=True)
    return {"environment": {**environment(device), "backends": available}, "results": records}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pac-bench``."""
    parser = argparse.ArgumentParser(prog="pac-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="time PacConv2d against nn.Conv2d, write results")
    p_run.add_argument("--out", default="results", help="directory for <date>-<machine>.json/.md")
    p_run.add_argument("--cases", nargs="+", default=list(QUICK_CASES),
                       help=f"case names (known: {', '.join(CASES)})")
    p_run.add_argument("--backends", nargs="+", default=None,
                       help="pac_core backends (default: every available one)")
    p_run.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p_run.add_argument("--runs", type=int, default=5)
    p_run.add_argument("--warmup", type=int, default=1)
    p_run.add_argument("--device", default="cpu")
    p_run.add_argument("--memory", action="store_true",
                       help="also measure forward peak memory in a subprocess (CPU)")

    p_cmp = sub.add_parser("compare", help="compare two result JSON files")
    p_cmp.add_argument("old")
    p_cmp.add_argument("new")
    p_cmp.add_argument("--threshold", type=float, default=10.0,
                       help="allowed slowdown of a time ratio, in percent (default 10)")

    args = parser.parse_args(argv)
    if args.command == "run":
        result = run(args.cases, args.backends, args.modes, args.runs, args.warmup, args.device,
                     args.memory)
        json_path, md_path = write_result(result, args.out)
        print(markdown_table(result["results"]))
        print(f"wrote {json_path} and {md_path}")
        return 0
    lines, regressed = compare(load_result(args.old), load_result(args.new), args.threshold)
    print("\n".join(lines))
    if regressed:
        print(f"regression beyond {args.threshold:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
