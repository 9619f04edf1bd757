"""Result files and their markdown tables; comparison of two runs."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
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


CRF_PEER_MODE = "mf_step_vs_pydensecrf"
"""The mode under which :func:`time_ratios` (and so ``compare``) lists the CRF step ratios."""


def refiner_crf_table(records: Iterable[Record]) -> str:
    """Markdown table of refiner-CRF step records (:func:`pac_bench.densecrf.time_refiner_step`):
    our step and pydensecrf's (medians, interleaved), their ratio, and the once-per-image work."""
    lines = ["| case | threads | backend | ms per step | pydensecrf ms per step "
             "| ours / pydensecrf | same, CPU time | per image: our kernels "
             "| per image: pydensecrf setup |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if r.get("ratio") is None:
            peer, ratio, ratio_cpu, peer_setup = "—", "— (" + str(r.get("note", "")) + ")", "—", "—"
        else:
            peer = f"{r['peer_step_s'] * 1e3:.2f}"
            ratio = f"**{r['ratio']:.2f}×**"
            ratio_cpu = "—" if r.get("ratio_cpu") is None else f"{r['ratio_cpu']:.2f}×"
            peer_setup = _fmt_time(r["peer_setup_s"])
        lines.append(f"| {r['case']} | {r['threads']} | {r['backend']} | "
                     f"{r['step_s'] * 1e3:.2f} | {peer} | {ratio} | {ratio_cpu} | "
                     f"{_fmt_time(r['setup_s'])} | {peer_setup} |")
    return "\n".join(lines)


REFINER_CRF_TEXT = (
    "One mean-field step of `paccrf_refiner`'s default CRF (four Potts kernels with learnable "
    "5×5 spatial filters at dilations 1, 4, 12, 32 on the image's colours; kernels computed "
    "once per image) against one `stepInference` of pydensecrf's `DenseCRF2D` (Gaussian "
    "sxy=3 compat=3 and bilateral sxy=80 srgb=13 compat=10, fully connected on the "
    "permutohedral lattice; single-threaded at any thread count): random unaries and a "
    "random image, run alternately in one process, medians. Two different models of the same "
    "job; the ratio compares the cost of one update. 'CPU time' is the ratio of the process "
    "CPU times of the same calls (with 2 threads: both threads' work, not the wall time).")
"""What the refiner-CRF table measures (the reports' paragraph above it)."""


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
    A peers run (``result['kind'] == 'peers'``) is rendered by :func:`render_peers_markdown`.
    """
    from .cases import PEER_NAMES, TARGETS

    if result.get("kind") == PEERS_KIND:
        return render_peers_markdown(result)

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
    if result.get("crf_peers"):
        body += ["## PacCRF mean-field step vs pydensecrf", "", REFINER_CRF_TEXT, "",
                 refiner_crf_table(result["crf_peers"]), ""]
    targets = target_lines(result, TARGETS)
    if targets:
        body += ["## Targets", "", *targets, ""]
    if result.get("notes"):
        body += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    return "\n".join(header) + "\n" + "\n".join(body).strip("\n") + "\n"


def result_stem(result: Record) -> str:
    """``<date>-<machine>``: the default file name (without suffix) of a result."""
    env = result.get("environment", {})
    date = str(env.get("date", _dt.date.today().isoformat()))[:10]
    host = str(env.get("machine", "host"))
    return f"{date}-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in host)


def write_result(result: Record, out_dir: str | Path, stem: str | None = None
                 ) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``.md`` into ``out_dir``; returns both paths.

    Args:
        result: The result record.
        out_dir: Target directory (created).
        stem: File name without suffix (default :func:`result_stem`: ``<date>-<machine>``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (stem or result_stem(result))
    # not with_suffix: a stem such as torch-2.4.1 has dots of its own
    json_path, md_path = stem.parent / f"{stem.name}.json", stem.parent / f"{stem.name}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(render_markdown(result))
    return json_path, md_path


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a result JSON written by :func:`write_result`."""
    return json.loads(Path(path).read_text())


def compare(old: Record, new: Record, threshold: float) -> tuple[list[str], bool]:
    """Compare the time ratios (to the torch op of the same shape) of two runs.

    Ratios rather than absolute times are compared so that runs on differently loaded machines stay
    comparable. Entries are matched on ``(case, backend, mode)`` (see :func:`time_ratios`, which
    reads every committed layout); entries without a ratio on either side (a skipped peer) are
    listed but never count as a regression.

    Args:
        old: The baseline result.
        new: The candidate result.
        threshold: Allowed increase of a ratio, in percent.

    Returns:
        ``(lines, regressed)``: a markdown table of the changes and whether any matched entry got
        slower by more than ``threshold`` percent.
    """
    old_by = time_ratios(old)
    lines = ["| case | backend | mode | old ratio | new ratio | change | |",
             "|---|---|---|---:|---:|---:|---|"]
    regressed = False
    for k, n in time_ratios(new).items():
        shown_n = "—" if n is None else f"{n:.2f}"
        if k not in old_by:
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} | — | {shown_n} | new | |")
            continue
        o = old_by[k]
        if o is None or n is None:
            shown_o = "—" if o is None else f"{o:.2f}"
            lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {shown_o} | {shown_n} | | not timed |")
            continue
        change = 100.0 * (n - o) / o if o > 0 else 0.0
        bad = change > threshold
        regressed |= bad
        flag = "REGRESSION" if bad else ("faster" if change < -threshold else "")
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {o:.2f} | {n:.2f} | {change:+.1f}% | {flag} |")
    gone = [k for k in old_by if k not in time_ratios(new)]
    for k in gone:
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {old_by[k] or 0:.2f} | — | gone | |")
    return lines, regressed


# -- peers: side-by-side tables, plots, matrix table ---------------------------------------------
PEERS_KIND = "peers"
"""``result["kind"]`` of a run written by ``pac-bench run`` without ``--suite``."""


def _peer_order(names: Iterable[str]) -> list[str]:
    from .peers import PEERS

    names = list(dict.fromkeys(names))
    return [p for p in PEERS if p in names] + [n for n in names if n not in PEERS]


def peer_table(records: Iterable[Record]) -> str:
    """Markdown pivot of peer timing records: one row per (case, mode), one column per peer.

    The floor column gives the torch op's time (median over the rows' interleaved floor runs);
    each peer column its ratio to the floor measured in the same interleaved runs, and its time.
    A skipped or failed peer shows ``—``.
    """
    import statistics

    records = list(records)
    peers = _peer_order(r["backend"] for r in records)
    rows: dict[tuple[str, str], dict[str, Record]] = {}
    for r in records:
        rows.setdefault((str(r["case"]), str(r["mode"])), {})[str(r["backend"])] = r
    op = records[0].get("op", "conv2d") if records else "conv2d"
    from .cases import PEER_NAMES

    floor_name = PEER_NAMES.get(op, ("", "torch op"))[1]
    head = ["case", "mode", f"{floor_name} (floor)", *peers]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for (case, mode), by_peer in rows.items():
        floors = [r["conv_s"] for r in by_peer.values() if r.get("conv_s")]
        floor = _fmt_time(statistics.median(floors)) if floors else "—"
        cells = _ratio_cells(by_peer, peers, lambda r: _fmt_time(r["pac_s"]))
        lines.append(f"| {case} | {mode} | {floor} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio_cells(by_peer: dict[str, Record], peers: list[str],
                 value: Callable[[Record], str]) -> list[str]:
    """One pivot cell per peer: ``"<ratio>× (<value>)"``, or ``—`` without a ratio."""
    return ["—" if (r := by_peer.get(p)) is None or r.get("ratio") is None
            else f"{r['ratio']:.2f}× ({value(r)})" for p in peers]


def peer_memory_table(records: Iterable[Record]) -> str:
    """Markdown pivot of peer memory records: one row per case, one column per peer.

    The floor column gives the torch op's peak extra memory, the others their ratio to it.
    """
    records = list(records)
    peers = [p for p in _peer_order(r["backend"] for r in records) if p != "torch"]
    rows: dict[str, dict[str, Record]] = {}
    for r in records:
        rows.setdefault(str(r["case"]), {})[str(r["backend"])] = r
    head = ["case", "torch op (floor)", *peers]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for case, by_peer in rows.items():
        floor = by_peer.get("torch", {})
        cells = _ratio_cells(by_peer, peers, lambda r: _fmt_bytes(r["peak_bytes"]))
        lines.append(f"| {case} | {_fmt_bytes(floor.get('peak_bytes'))} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _skip_notes(result: Record) -> list[str]:
    """One line per peer that was skipped or failed (and why), deduplicated."""
    seen: dict[str, None] = {}
    for r in [*result.get("results", []), *result.get("memory", [])]:
        note = str(r.get("note") or "")
        if note.startswith(("skipped", "failed", "not measured")):
            seen[f"`{r['backend']}` ({r.get('op', '?')}): {note}"] = None
    return list(seen)


def render_peers_markdown(result: Record) -> str:
    """The ``.md`` report of a peers run: header, one time table per op, memory, plots, notes."""
    from .cases import PEER_NAMES

    env = result.get("environment", {})
    header = [
        "# pac-bench results: PAC layers and their peers",
        "",
        f"- date: {env.get('date', '?')}",
        f"- machine: {env.get('machine', '?')} ({env.get('platform', '?')})",
        f"- device: {env.get('device', '?')} ({env.get('cpu_model', env.get('device_name', '?'))}"
        f"), CPUs: {env.get('cpus', '?')}, torch threads: {env.get('threads', '?')}",
        f"- torch {env.get('torch', '?')}, python {env.get('python', '?')}, "
        f"pac-core {env.get('pac_core', '?')}, kornia {env.get('kornia', 'not installed')}"
        + (f", {env['pydensecrf']}" if env.get("pydensecrf") else ""),
    ]
    for key, label in (("load_before", "load average before"), ("command", "command")):
        if key in env:
            header.append(f"- {label}: `{env[key]}`")
    header += [
        "",
        "Each peer is timed interleaved with the torch op of the same shape (the floor), in one "
        "process: cells are the median time ratio to the floor (lower is better, 1.00× = as fast "
        "as the torch op) and, in brackets, the peer's median time. `reference+compile` excludes "
        "its first (compiling) call. Each case starts by allocating and freeing 16 MiB, so that "
        "the floor and the peers reuse heap memory as in a training loop instead of faulting in "
        "fresh pages for every output.",
        "",
    ]
    body: list[str] = []
    records = list(result.get("results", []))
    for op in dict.fromkeys(r.get("op", "conv2d") for r in records):
        pac, peer = PEER_NAMES.get(op, (op, "torch op"))
        body += [f"## {pac} vs {peer}", "",
                 peer_table([r for r in records if r.get("op", "conv2d") == op]), ""]
    if result.get("memory"):
        body += ["## Peak extra memory of one inference forward (fresh process each)", "",
                 peer_memory_table(result["memory"]), ""]
    if result.get("crf_peers"):
        body += ["## PacCRF mean-field step vs pydensecrf", "", REFINER_CRF_TEXT, "",
                 refiner_crf_table(result["crf_peers"]), ""]
    if result.get("plots"):
        body += ["## Plots", ""]
        body += [f"![{Path(p).stem}]({Path(p).name})" + "\n" for p in result["plots"]]
    notes = [*result.get("notes", []), *_skip_notes(result)]
    if notes:
        body += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(header) + "\n" + "\n".join(body).strip("\n") + "\n"


def _families(result: Record) -> dict[tuple[str, str], list[Record]]:
    fam: dict[tuple[str, str], list[Record]] = {}
    for r in [*result.get("results", []), *result.get("memory", [])]:
        if "size" in r:
            fam.setdefault((str(r.get("op", "conv2d")), str(r.get("family", ""))), []).append(r)
    return {k: v for k, v in fam.items() if len({r["size"] for r in v}) >= 2}


def plot_label(result: Record) -> str:
    """The line that labels a plot: machine, device, torch version and date of the run."""
    env = result.get("environment", {})
    device = env.get("device", "?")
    model = env.get("cpu_model") or env.get("device_name", "?")
    return (f"{env.get('machine', '?')} · {device} ({model}, {env.get('cpus', '?')} CPUs) · "
            f"torch {env.get('torch', '?')} · {str(env.get('date', '?'))[:16]}")


def plot_result(result: Record, out_dir: str | Path, stem: str) -> list[Path]:
    """Plot time and peak memory against image size, log-log, one line per peer.

    One PNG per case family (cases that differ only in image size, at least two sizes):
    ``<stem>-<op>.png`` (``-<op>-<i>`` when an op has several families), with one panel per
    timing mode and one for memory when it was measured; the floor is the dashed line.

    Args:
        result: A peers result (``pac-bench run``).
        out_dir: Where the PNGs go.
        stem: File name prefix (usually the result file's stem).

    Returns:
        The written paths (empty when no family has two sizes).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .cases import PEER_NAMES

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    families = _families(result)
    per_op: dict[str, int] = {}
    paths: list[Path] = []
    for op, _family in families:
        per_op[op] = per_op.get(op, 0) + 1
    seen: dict[str, int] = {}
    for (op, family), recs in families.items():
        timing = [r for r in recs if "mode" in r]
        memory = [r for r in recs if "peak_bytes" in r]
        panels = [m for m in ("forward", "forward_backward") if any(r["mode"] == m for r in timing)]
        n = len(panels) + (1 if any(r.get("peak_bytes") for r in memory) else 0)
        if n == 0:
            continue
        fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
        pac, floor_name = PEER_NAMES.get(op, (op, "torch op"))
        for ax, mode in zip(axes[0], panels):
            rows = [r for r in timing if r["mode"] == mode]
            lines: dict[str, dict[int, list[float]]] = {"torch": {}}
            for r in rows:
                if r.get("conv_s"):
                    lines["torch"].setdefault(r["size"], []).append(r["conv_s"] * 1e3)
                if r.get("pac_s"):
                    lines.setdefault(r["backend"], {}).setdefault(r["size"], []).append(
                        r["pac_s"] * 1e3)
            _draw(ax, lines, floor_name, "time (ms, median)")
            ax.set_title(mode.replace("_", " + "))
        if n > len(panels):
            ax = axes[0][-1]
            lines = {}
            for r in memory:
                if r.get("peak_bytes"):
                    lines.setdefault(r["backend"], {}).setdefault(r["size"], []).append(
                        r["peak_bytes"] / 2**20)
            _draw(ax, lines, floor_name, "peak extra memory (MiB)")
            ax.set_title("inference forward memory")
        fig.suptitle(f"{pac} vs peers — {family}\n{plot_label(result)}", fontsize=10)
        fig.tight_layout()
        seen[op] = seen.get(op, 0) + 1
        suffix = op if per_op[op] == 1 else f"{op}-{seen[op]}"
        path = out / f"{stem}-{suffix}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


# one colour per peer in every panel and plot
_COLOURS = {"torch": "black", "reference": "C0", "reference+compile": "C1", "native": "C2",
            "kornia": "C3"}


def _draw(ax: Any, lines: Mapping[str, Mapping[int, list[float]]], floor_name: str,
          ylabel: str) -> None:
    import statistics

    for peer in _peer_order(lines):
        pts = sorted((s, statistics.median(v)) for s, v in lines[peer].items() if v)
        if not pts:
            continue
        label = f"{floor_name} (floor)" if peer == "torch" else peer
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                linestyle="--" if peer == "torch" else "-", color=_COLOURS.get(peer),
                label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("image size (pixels per side)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def time_ratios(result: Record) -> dict[tuple[str, str, str], float | None]:
    """``{(case, backend, mode): ratio to the torch op}`` of any committed result file.

    Reads both layouts: ``pac-bench run`` records (``case, backend, mode, ratio``; a skipped peer
    has ratio None) and ``python -m pac_bench.gpu`` records (``case, op, peer, fwd_ms,
    fwdbwd_ms``, ratios taken here against the ``cudnn`` peer of the same case and op, keyed
    ``case/op``); plus the CRF step records of ``result['crf_peers']``, whose ratio is to
    pydensecrf's step (mode :data:`CRF_PEER_MODE`).
    """
    out: dict[tuple[str, str, str], float | None] = {}
    rows = list(result.get("results", []))
    gpu = [r for r in rows if "peer" in r and "fwd_ms" in r]
    floors = {(r["case"], r["op"]): r for r in gpu if r["peer"] == "cudnn"}
    for r in rows:
        if r in gpu:
            base = floors.get((r["case"], r["op"]))
            if r["peer"] == "cudnn" or base is None:
                continue
            for mode, key in (("forward", "fwd_ms"), ("forward_backward", "fwdbwd_ms")):
                t, b = r.get(key), base.get(key)
                out[(f"{r['case']}/{r['op']}", r["peer"], mode)] = t / b if t and b else None
        elif "ratio" in r:
            ratio = r["ratio"]
            out[(str(r["case"]), str(r["backend"]), str(r["mode"]))] = (
                None if ratio is None else float(ratio))
    for r in result.get("crf_peers", []):  # our CRF step over pydensecrf's
        ratio = r.get("ratio")
        out[(str(r["case"]), str(r["backend"]), CRF_PEER_MODE)] = (
            None if ratio is None else float(ratio))
    return out


def matrix_table(results: Iterable[Record], modes: Sequence[str] = ("forward",
                                                                       "forward_backward")
                 ) -> str:
    """Markdown table of time per torch release from several peers runs (``nox -s bench_matrix``).

    One row per (case, mode, peer) — the floor as ``torch`` — and one column per torch release
    (sorted by version): the median time in ms and, for PAC peers, the ratio to the floor of the
    same run in brackets. ``—`` where a peer was skipped or failed under that release.
    """
    import statistics

    from .cases import OPS

    results = sorted(results, key=lambda r: _version_key(r.get("environment", {}).get("torch",
                                                                                     "")))
    releases = [str(r.get("environment", {}).get("torch", "?")) for r in results]
    cells: dict[tuple[str, str, str], dict[int, str]] = {}
    case_order: dict[str, tuple[int, str, int]] = {}
    for i, res in enumerate(results):
        floors: dict[tuple[str, str], list[float]] = {}
        for r in res.get("results", []):
            if r.get("mode") not in modes:
                continue
            if r.get("conv_s"):
                floors.setdefault((r["case"], r["mode"]), []).append(r["conv_s"])
            key = (str(r["case"]), str(r["mode"]), str(r["backend"]))
            cells.setdefault(key, {})
            op = str(r.get("op", ""))
            case_order.setdefault(key[0], (OPS.index(op) if op in OPS else len(OPS),
                                           str(r.get("family", "")), int(r.get("size", 0))))
            if r.get("pac_s") is not None and r.get("ratio") is not None:
                cells[key][i] = f"{r['pac_s'] * 1e3:.1f} ({r['ratio']:.2f}×)"
        for (case, mode), ts in floors.items():
            cells.setdefault((case, mode, "torch"), {})[i] = f"{statistics.median(ts) * 1e3:.1f}"
    order = {p: n for n, p in enumerate(_peer_order(k[2] for k in cells))}
    keys = sorted(cells, key=lambda k: (case_order.get(k[0], (len(OPS), "", 0)), k[0],
                                        modes.index(k[1]) if k[1] in modes else 9, order[k[2]]))
    head = ["case", "mode", "peer", *[f"torch {v}" for v in releases]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * len(releases)]
    for case, mode, peer in keys:
        row = [cells[(case, mode, peer)].get(i, "—") for i in range(len(releases))]
        lines.append(f"| {case} | {mode} | {peer} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("+")[0].split("."):
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def render_matrix_markdown(results: Sequence[Record], sources: Sequence[str] = ()) -> str:
    """The whole ``bench_matrix`` page: what was run where, and :func:`matrix_table`."""
    envs = [r.get("environment", {}) for r in results]
    first = envs[0] if envs else {}
    lines = [
        "# pac-bench across torch releases (nox -s bench_matrix)",
        "",
        f"- machine: {first.get('machine', '?')} ({first.get('cpu_model', '?')}, "
        f"{first.get('cpus', '?')} CPUs), device {first.get('device', '?')}",
        "- runs: " + ", ".join(f"torch {e.get('torch', '?')} on {str(e.get('date', '?'))[:16]}"
                               for e in sorted(envs, key=lambda e: _version_key(e.get('torch',
                                                                                         '')))),
        "",
        "Cells: median time in ms of one call; for the PAC peers the ratio to the torch op "
        "(`torch` rows) of the same run in brackets. pac-core was built natively against each "
        "release. Read the ratios: the runs were made one after the other on a shared machine. "
        "kornia 0.9 needs torch ≥ 2.5.1, so `nox -s bench_matrix` installs it only there.",
        "",
        matrix_table(results),
        "",
    ]
    notes = [n for r in results for n in r.get("notes", [])]
    skips = list(dict.fromkeys(f"torch {r.get('environment', {}).get('torch', '?')}: {s}"
                               for r in results for s in _skip_notes(r)))
    if notes or skips:
        lines += ["## Notes", "", *[f"- {n}" for n in dict.fromkeys(notes)],
                  *[f"- {s}" for s in skips], ""]
    if sources:
        lines += ["Sources: " + ", ".join(f"`{s}`" for s in sources), ""]
    return "\n".join(lines)
