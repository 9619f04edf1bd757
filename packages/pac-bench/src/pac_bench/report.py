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


def markdown_table(records: Iterable[Record]) -> str:
    """Markdown table of timing records (``case, backend, mode, pac_s, conv_s, ratio``).

    Optional keys ``pac_peak_bytes`` / ``conv_peak_bytes`` add memory columns.
    """
    records = list(records)
    has_mem = any("pac_peak_bytes" in r for r in records)
    head = ["case", "backend", "mode", "PacConv2d", "nn.Conv2d", "ratio"]
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


def render_markdown(result: Record) -> str:
    """The whole ``.md`` report: environment header plus the ratio table."""
    env = result.get("environment", {})
    header = [
        "# pac-bench results",
        "",
        f"- date: {env.get('date', '?')}",
        f"- machine: {env.get('machine', '?')} ({env.get('platform', '?')})",
        f"- device: {env.get('device', '?')} ({env.get('device_name', '?')}), "
        f"threads: {env.get('threads', '?')}",
        f"- torch {env.get('torch', '?')}, python {env.get('python', '?')}",
        "",
        "Times are medians; ratio = PacConv2d time / nn.Conv2d time for the same shape "
        "(lower is better, 1.0 = as fast as nn.Conv2d).",
        "",
    ]
    return "\n".join(header) + markdown_table(result.get("results", [])) + "\n"


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
