"""The ``pac-bench`` command: ``run``, ``plot``, ``compare`` and ``matrix-table``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cases import (
    CASES,
    CRF_CASES,
    FULL_CASES,
    MATRIX_CASES,
    NATIVE_SUITE,
    QUICK_CASES,
    QUICK_REFINER_CRF_CASES,
    REFINER_CRF_CASES,
    get_case,
    get_crf_case,
    get_refiner_crf_case,
)
from .report import (
    PEERS_KIND,
    compare,
    environment,
    load_result,
    plot_result,
    render_markdown,
    render_matrix_markdown,
    result_stem,
    write_result,
)
from .timing import MODES, time_case, time_crf

SUITES = ("native",)
"""Named case selections for ``run --suite`` (see :data:`pac_bench.cases.NATIVE_SUITE`)."""


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


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform.processor()`` elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_extras(result: dict[str, Any], memory_cases: Sequence[str], crf_cases: Sequence[str],
               backends: Sequence[str], runs: int, warmup: int, crf_steps: tuple[int, int],
               memory_limit_gb: float) -> dict[str, Any]:
    """Add memory records (``result['memory']``) and CRF step records (``result['crf']``).

    Args:
        result: A record from :func:`run` (changed in place and returned).
        memory_cases: Case names whose inference-forward peak memory is measured, the torch op
            and each backend in a fresh process.
        crf_cases: CRF case names (:data:`pac_bench.cases.CRF_CASES`) to time per step.
        backends: pac_core backends.
        runs: Timed repetitions.
        warmup: Untimed repetitions.
        crf_steps: The two step counts whose time difference gives the step time.
        memory_limit_gb: ``reference`` memory runs estimated above this are skipped.
    """
    from .memory import GiB, memory_records

    mem: list[dict[str, Any]] = []
    for name in memory_cases:
        for rec in memory_records(get_case(name), list(backends),
                                  limit_bytes=int(memory_limit_gb * GiB)):
            mem.append(rec)
            peak = rec["peak_bytes"]
            shown = "—" if peak is None else f"{peak / 2**20:.1f} MiB"
            print(f"  {name:28s} {rec['backend']:10s} memory            {shown} {rec['note']}",
                  file=sys.stderr, flush=True)
    crf: list[dict[str, Any]] = []
    for name in crf_cases:
        for backend in backends:
            rec = time_crf(get_crf_case(name), backend, crf_steps, runs=runs, warmup=warmup)
            crf.append(rec)
            print(f"  {name:28s} {backend:10s} mf_step           {rec['step_s'] * 1e3:.2f} ms",
                  file=sys.stderr, flush=True)
    if mem:
        result["memory"] = mem
    if crf:
        result["crf"] = crf
    return result


def run_refiner_crf(cases: Sequence[str], runs: int, warmup: int,
                    backend: str | None = None) -> list[dict[str, Any]]:
    """One mean-field step of the refiner CRF against pydensecrf's, per case
    (:func:`pac_bench.densecrf.time_refiner_step`); without pydensecrf our step alone, with a
    'not installed' note."""
    from .densecrf import time_refiner_step

    records = []
    for name in cases:
        rec = time_refiner_step(get_refiner_crf_case(name), runs, warmup, backend)
        records.append(rec)
        peer = (f"pydensecrf {rec['peer_step_s'] * 1e3:.2f} ms, ratio {rec['ratio']:.2f}×"
                if rec["ratio"] is not None else rec["note"])
        _log(f"{name:28s} {rec['backend']:10s} mf_step           "
             f"{rec['step_s'] * 1e3:.2f} ms; {peer}")
    return records


def _log(line: str) -> None:
    print("  " + line, file=sys.stderr, flush=True)


def run_peers(cases: Sequence[str], peers: Sequence[str] | None, modes: Sequence[str], runs: int,
              warmup: int, device: str, memory: bool, compile_memory: bool = False,
              memory_limit_gb: float = 8.0) -> dict[str, Any]:
    """Every peer of every case side by side (:func:`pac_bench.peers.time_peers`), and memory.

    Memory (CPU only) is measured first, each peer in a fresh process
    (:func:`pac_bench.memory.peer_memory_records`), while this process is still small.

    Args:
        cases: Case names.
        peers: Peer names (default: those that apply to each case).
        modes: Timing modes.
        runs: Timed repetitions.
        warmup: Untimed repetitions.
        device: Torch device.
        memory: Measure inference-forward peak memory.
        compile_memory: Measure ``reference+compile`` memory too (compiles in each child).
        memory_limit_gb: ``reference`` memory runs estimated above this are skipped.

    Returns:
        ``{"kind": "peers", "environment", "results", "memory"?}``.
    """
    from .memory import GiB, peer_memory_records
    from .peers import applicable_peers, time_peers

    chosen = [get_case(n) for n in cases]
    result: dict[str, Any] = {"kind": PEERS_KIND}
    if memory and device == "cpu":
        mem: list[dict[str, Any]] = []
        for case in chosen:
            names = [p for p in (peers or applicable_peers(case)) if p in applicable_peers(case)]
            for rec in peer_memory_records(case, names, limit_bytes=int(memory_limit_gb * GiB),
                                           compile_memory=compile_memory):
                mem.append(rec)
                peak = rec["peak_bytes"]
                shown = "—" if peak is None else f"{peak / 2**20:.1f} MiB"
                _log(f"{case.name:24s} {rec['backend']:18s} memory            {shown} "
                     f"{rec['note']}")
        result["memory"] = mem
    records: list[dict[str, Any]] = []
    for case in chosen:
        names = [p for p in (peers or applicable_peers(case)) if p in applicable_peers(case)]
        records += time_peers(case, names, modes, runs, warmup, device, log=_log)
    result["results"] = records
    return result


def _versions() -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {}
    try:
        out["kornia"] = md.version("kornia")
    except md.PackageNotFoundError:
        pass
    from .densecrf import densecrf_available, densecrf_version

    if densecrf_available():
        out["pydensecrf"] = densecrf_version()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pac-bench``."""
    parser = argparse.ArgumentParser(prog="pac-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="time the PAC layers against their peers, write results")
    p_run.add_argument("--out", default="results", help="directory for <date>-<machine>.json/.md")
    p_run.add_argument("--stem", default=None,
                       help="file name of the results without suffix (default <date>-<machine>)")
    p_run.add_argument("--cases", nargs="+", default=list(QUICK_CASES),
                       help=f"case names (known: {', '.join(CASES)})")
    p_run.add_argument("--full", action="store_true",
                       help="every named case (but the tiny test shapes) instead of the quick set")
    p_run.add_argument("--matrix", action="store_true",
                       help="the small case set of `nox -s bench_matrix` (MATRIX_CASES)")
    p_run.add_argument("--peers", nargs="+", default=None,
                       help="peers to run (default: all that apply: torch, reference, "
                            "reference+compile, native, kornia)")
    p_run.add_argument("--no-memory", action="store_true",
                       help="skip the peak-memory children (peers run)")
    p_run.add_argument("--compile-memory", action="store_true",
                       help="also measure reference+compile memory (compiles in each child)")
    p_run.add_argument("--no-plot", action="store_true", help="write no PNG plots")
    p_run.add_argument("--threads", type=int, default=None,
                       help="torch intra-op threads for the timings (default: torch's)")
    p_run.add_argument("--backends", nargs="+", default=None,
                       help="pac_core backends of --suite native (default: every available one)")
    p_run.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p_run.add_argument("--runs", type=int, default=5)
    p_run.add_argument("--warmup", type=int, default=1)
    p_run.add_argument("--device", default="cpu")
    p_run.add_argument("--memory", action="store_true",
                       help="also measure forward peak memory in a subprocess (CPU)")
    p_run.add_argument("--suite", choices=SUITES, default=None,
                       help="named selection: 'native' = conv, conv-transpose and pool timings, "
                            "512x512 forward memory and PacCRF step times (overrides --cases, "
                            "--memory-cases and --crf-cases)")
    p_run.add_argument("--memory-cases", nargs="*", default=[],
                       help="cases whose forward peak memory alone is measured (torch op and "
                            "each backend, fresh process each)")
    p_run.add_argument("--crf-cases", nargs="*", default=[],
                       help="PacCRF cases timed per mean-field step (known: "
                            f"{', '.join(CRF_CASES)})")
    p_run.add_argument("--refiner-crf-cases", nargs="*", default=None,
                       help="refiner-CRF cases whose mean-field step is timed against "
                            "pydensecrf's (default: "
                            f"{', '.join(QUICK_REFINER_CRF_CASES)} in a peers run, none with "
                            f"--matrix or --suite; known: {', '.join(REFINER_CRF_CASES)})")
    p_run.add_argument("--crf-steps", nargs=2, type=int, default=[1, 3], metavar=("N1", "N2"),
                       help="step counts; step time = (t(N2) - t(N1)) / (N2 - N1)")
    p_run.add_argument("--memory-limit-gb", type=float, default=8.0,
                       help="skip reference memory runs estimated above this (default 8)")
    p_run.add_argument("--note", action="append", default=[],
                       help="a note for the report (repeatable)")

    p_plot = sub.add_parser("plot", help="plot a result JSON (time, memory vs image size)")
    p_plot.add_argument("result", help="a result JSON written by `pac-bench run`")
    p_plot.add_argument("--out", default=None, help="directory of the PNGs (default: beside it)")

    p_mat = sub.add_parser("matrix-table",
                           help="tabulate time per torch release from per-release result JSONs")
    p_mat.add_argument("results", nargs="+", help="result JSONs (one per torch release)")
    p_mat.add_argument("--out", default=None, help="markdown file to write (default: print)")

    p_cmp = sub.add_parser("compare", help="compare two result JSON files")
    p_cmp.add_argument("old")
    p_cmp.add_argument("new")
    p_cmp.add_argument("--threshold", type=float, default=10.0,
                       help="allowed slowdown of a time ratio, in percent (default 10)")

    args = parser.parse_args(argv)
    if args.command == "plot":
        return _plot(Path(args.result), args.out)
    if args.command == "matrix-table":
        results = [load_result(p) for p in args.results]
        text = render_matrix_markdown(results, [Path(p).name for p in args.results])
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
            print(f"wrote {args.out}")
        else:
            print(text)
        return 0
    if args.command == "run":
        import os

        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        cases, memory_cases, crf_cases = args.cases, args.memory_cases, args.crf_cases
        if args.suite == "native":
            cases = list(NATIVE_SUITE["time"])
            memory_cases, crf_cases = list(NATIVE_SUITE["memory"]), list(NATIVE_SUITE["crf"])
        import pac_core

        backends = args.backends or pac_core.backends.available()
        steps = (args.crf_steps[0], args.crf_steps[1])
        extras: dict[str, Any] = {}
        if args.device == "cpu":
            # memory first, while this process is small: once the timing runs have grown its
            # heap, the kernel may reclaim the children's library pages and the forward's
            # re-faults would be counted as forward memory
            run_extras(extras, memory_cases, [], backends, args.runs, args.warmup, steps,
                       args.memory_limit_gb)
        if args.suite is None:
            if args.full:
                cases = list(FULL_CASES)
            elif args.matrix:
                cases = list(MATRIX_CASES)
            result = run_peers(cases, args.peers or args.backends, args.modes, args.runs,
                               args.warmup, args.device, not args.no_memory,
                               args.compile_memory, args.memory_limit_gb)
            result["environment"] = {**environment(args.device), **_versions(),
                                     "backends": pac_core.backends.available()}
        else:
            result = run(cases, args.backends, args.modes, args.runs, args.warmup, args.device,
                         args.memory)
        result.update(extras)
        if args.device == "cpu":
            run_extras(result, [], crf_cases, backends, args.runs, args.warmup, steps,
                       args.memory_limit_gb)
            refiner_cases = args.refiner_crf_cases
            if refiner_cases is None:
                plain = args.suite is None and not args.matrix
                refiner_cases = list(QUICK_REFINER_CRF_CASES) if plain else []
            if refiner_cases:
                result["crf_peers"] = run_refiner_crf(refiner_cases, args.runs, args.warmup)
        result["environment"].update(
            cpu_model=cpu_model(), cpus=os.cpu_count(),
            pac_core=getattr(pac_core, "__version__", "unknown"),
            command="pac-bench " + " ".join(sys.argv[1:] if argv is None else argv))
        if load is not None:
            result["environment"]["load_before"] = " ".join(f"{v:.2f}" for v in load)
        if args.note:
            result["notes"] = list(args.note)
        stem = args.stem or result_stem(result)
        if result.get("kind") == PEERS_KIND and not args.no_plot:
            try:
                plots = plot_result(result, args.out, stem)
                result["plots"] = [p.name for p in plots]
            except ImportError as exc:
                print(f"no plots: {exc} (pip install matplotlib)", file=sys.stderr)
        json_path, md_path = write_result(result, args.out, stem)
        print(render_markdown(result))
        print(f"wrote {json_path} and {md_path}")
        return 0
    lines, regressed = compare(load_result(args.old), load_result(args.new), args.threshold)
    print("\n".join(lines))
    if regressed:
        print(f"regression beyond {args.threshold:g}%", file=sys.stderr)
        return 1
    return 0


def _plot(path: Path, out: str | None) -> int:
    """``pac-bench plot``: PNGs beside the result; its ``.json``/``.md`` list them."""
    result = load_result(path)
    if result.get("kind") != PEERS_KIND:
        print(f"{path}: not a peers result (written by `pac-bench run` without --suite)",
              file=sys.stderr)
        return 2
    out_dir = Path(out) if out else path.parent
    plots = plot_result(result, out_dir, path.stem)
    for p in plots:
        print(f"wrote {p}")
    if out is None:
        result["plots"] = [p.name for p in plots]
        write_result(result, path.parent, path.stem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
