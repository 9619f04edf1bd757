"""Result files and their markdown tables; comparison of two runs."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Record = Mapping[str, Any]


def environment(device: str = "cpu") -> dict[str, Any]:
    """Machine, torch version, device and date of a run."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "machine": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _fmt_bytes(n: float | None) -> str:
    return "—" if n is None else f"{n / 2**20:.1f} MiB"


def markdown_table(records: Iterable[Record], pac_name: str = "PacConv2d",
                   peer_name: str = "nn.Conv2d") -> str:
    """Markdown table of timing records (``case, backend, mode, pac_s, conv_s, ratio``).

    Optional keys ``pac_peak_bytes`` / ``conv_peak_bytes`` add memory columns.

    Args:
        records: The timing records.
        pac_name: Header of the PAC layer's time column.
        peer_name: Header of the torch op's time column.
    """
    records = list(records)
    has_mem = any("pac_peak_bytes" in r for r in records)
    head = ["case", "backend", "mode", pac_name, peer_name, "ratio"]
    if has_mem:
        head += ["PAC peak mem", "conv peak mem", "mem ratio"]
    align = ["---"] * 3 + ["---:"] * (len(head) - 3)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for r in records:
        row = [str(r["case"]), str(r["backend"]), str(r["mode"]), _fmt_time(r["pac_s"]),
               _fmt_time(r["conv_s"]), f"{r['ratio']:.2f}×"]
        if has_mem:
            pm, cm = r.get("pac_peak_bytes"), r.get("conv_peak_bytes")
            ratio = f"{pm / cm:.1f}×" if pm is not None and cm else "—"
            row += [_fmt_bytes(pm), _fmt_bytes(cm), ratio]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def memory_table(records: Iterable[Record]) -> str:
    """Markdown table of memory records (``case, op, backend, peak_bytes, ratio, note``)."""
    lines = ["| case | backend | peak extra memory | ratio to torch op | note |",
             "|---|---|---:|---:|---|"]
    for r in records:
        ratio = "—" if r.get("ratio") is None else f"{r['ratio']:.2f}×"
        lines.append(f"| {r['case']} | {r['backend']} | {_fmt_bytes(r.get('peak_bytes'))} | "
                     f"{ratio} | {r.get('note', '')} |")
    return "\n".join(lines)


def crf_table(records: Iterable[Record]) -> str:
    """Markdown table of ``PacCRF`` step records (see :func:`pac_bench.timing.time_crf`).

    The last column is the step time relative to the ``reference`` backend's on the same case.
    """
    records = list(records)
    ref = {r["case"]: r["step_s"] for r in records if r["backend"] == "reference"}
    lines = ["| case | backend | t(n₁ steps) | t(n₂ steps) | ms per step | vs reference |",
             "|---|---|---:|---:|---:|---:|"]
    for r in records:
        (n1, n2), (t1, t2) = r["steps"], r["times_s"]
        base = ref.get(r["case"])
        rel = f"{r['step_s'] / base:.2f}×" if base and base > 0 else "—"
        lines.append(f"| {r['case']} | {r['backend']} | {_fmt_time(t1)} ({n1}) | "
                     f"{_fmt_time(t2)} ({n2}) | {r['step_s'] * 1e3:.2f} | {rel} |")
    return "\n".join(lines)


def target_lines(result: Record, targets: Mapping[tuple[str, str], float]) -> list[str]:
    """Markdown bullet lines: each measured ``(op, mode)`` with a target, met or missed.

    ``mode`` ``'memory'`` refers to the memory records, others to the timing records.
    """
    lines = []
    rows = [(r.get("op", "conv2d"), r["mode"], r["backend"], r["case"], r["ratio"])
            for r in result.get("results", [])]
    rows += [(r.get("op", "conv2d"), "memory", r["backend"], r["case"], r["ratio"])
             for r in result.get("memory", []) if r["backend"] != "torch"]
    for op, mode, backend, case, ratio in rows:
        limit = targets.get((op, mode))
        if limit is None:
            continue
        verdict = "—" if ratio is None else ("met" if ratio <= limit else "**missed**")
        shown = "—" if ratio is None else f"{ratio:.2f}×"
        lines.append(f"- {case} {backend} {mode}: {shown} (target ≤ {limit:g}×) {verdict}")
    return lines


def render_markdown(result: Record) -> str:
    """The whole ``.md`` report: environment header, ratio tables per op, memory and CRF.

    Timing records are grouped by their ``op`` (default ``'conv2d'``); ``result['memory']`` and
    ``result['crf']`` add their tables and ``result['notes']`` (a list of strings) a notes list.
    """
    from .cases import PEER_NAMES, TARGETS

    env = result.get("environment", {})
    header = [
        "# pac-bench results",
        "",
        f"- date: {env.get('date', '?')}",
        f"- machine: {env.get('machine', '?')} ({env.get('platform', '?')})",
        f"- device: {env.get('device', '?')} ({env.get('device_name', '?')}), "
        f"threads: {env.get('threads', '?')}",
        f"- torch {env.get('torch', '?')}, python {env.get('python', '?')}",
    ]
    for key, label in (("cpu_model", "CPU"), ("cpus", "CPUs"), ("pac_core", "pac-core"),
                       ("backends", "pac-core backends"), ("load_before", "load average before"),
                       ("command", "command")):
        if key in env:
            header.append(f"- {label}: {env[key]}")
    header += [
        "",
        "Times are medians; ratio = PAC layer time / time of the torch op of the same shape "
        "(lower is better, 1.0 = as fast as the torch op).",
        "",
    ]
    records = list(result.get("results", []))
    ops = list(dict.fromkeys(r.get("op", "conv2d") for r in records))
    body: list[str] = []
    if ops == ["conv2d"]:
        body += [markdown_table(records), ""]
    else:
        for op in ops:
            pac, peer = PEER_NAMES.get(op, (op, "torch op"))
            body += [f"## {pac} vs {peer}", "",
                     markdown_table([r for r in records if r.get("op", "conv2d") == op], pac, peer),
                     ""]
    if result.get("memory"):
        body += ["## Peak extra memory of one inference forward (fresh process each)", "",
                 memory_table(result["memory"]), ""]
    if result.get("crf"):
        body += ["## PacCRF mean-field step (inference)", "", crf_table(result["crf"]), ""]
    targets = target_lines(result, TARGETS)
    if targets:
        body += ["## Targets", "", *targets, ""]
    if result.get("notes"):
        body += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    return "\n".join(header) + "\n" + "\n".join(body).strip("\n") + "\n"


def write_result(result: Record, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<date>-<machine>.json`` and ``.md`` into ``out_dir``; returns both paths."""
    env = result.get("environment", {})
    date = str(env.get("date", _dt.date.today().isoformat()))[:10]
    host = str(env.get("machine", "host"))
    machine = "".join(c if c.isalnum() or c in "-_." else "_" for c in host)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{date}-{machine}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(render_markdown(result))
    return json_path, md_path


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a result JSON written by :func:`write_result`."""
    return json.loads(Path(path).read_text())


def compare(old: Record, new: Record, threshold: float) -> tuple[list[str], bool]:
    """Compare the time ratios (to nn.Conv2d) of two runs.

    Ratios rather than absolute times are compared so that runs on differently loaded machines stay
    comparable. Entries are matched on ``(case, backend, mode)``.

    Args:
        old: The baseline result.
        new: The candidate result.
        threshold: Allowed increase of a ratio, in percent.

    Returns:
        ``(lines, regressed)``: a markdown table of the changes and whether any matched entry got
        slower by more than ``threshold`` percent.
    """
    def key(r: Record) -> tuple[str, str, str]:
        return (str(r["case"]), str(r["backend"]), str(r["mode"]))

    old_by = {key(r): r for r in old.get("results", [])}
    lines = ["| case | backend | mode | old ratio | new ratio | change | |",
             "|---|---|---|---:|---:|---:|---|"]
    regressed = False
    for r in new.get("results", []):
        k = key(r)
        if k not in old_by:
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} | — | {r['ratio']:.2f} | new | |")
            continue
        o = float(old_by[k]["ratio"])
        n = float(r["ratio"])
        change = 100.0 * (n - o) / o if o > 0 else 0.0
        bad = change > threshold
        regressed |= bad
        flag = "REGRESSION" if bad else ("faster" if change < -threshold else "")
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {o:.2f} | {n:.2f} | {change:+.1f}% | {flag} |")
    return lines, regressed
