"""Peers reports: pivot tables, plots, the torch-release matrix table, the CLI subcommands,
and ``compare`` on every committed result file."""

import json
import shutil
from pathlib import Path

import pytest

from pac_bench.cli import main
from pac_bench.report import (
    compare,
    matrix_table,
    peer_memory_table,
    peer_table,
    plot_label,
    plot_result,
    render_markdown,
    time_ratios,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _peers_result(torch_version="2.13.0+cpu", scale=1.0):
    recs, mem = [], []
    for size in (32, 64):
        case = f"conv_b1_c16_{size}_k5"
        base = {"case": case, "op": "conv2d", "family": "B=1 C=16→16 guide 8 k=5", "size": size}
        for i, peer in enumerate(["reference", "reference+compile", "native"]):
            for mode in ("forward", "forward_backward"):
                conv = 0.001 * size / 32
                pac = conv * (i + 1) * scale
                recs.append({**base, "backend": peer, "mode": mode, "pac_s": pac, "conv_s": conv,
                             "ratio": pac / conv, "first_s": pac, "note": ""})
        mem.append({**base, "backend": "torch", "peak_bytes": 2**20 * size, "ratio": 1.0,
                    "note": "nn.Conv2d"})
        mem.append({**base, "backend": "native", "peak_bytes": 2**21 * size, "ratio": 2.0,
                    "note": ""})
        mem.append({**base, "backend": "reference+compile", "peak_bytes": None, "ratio": None,
                    "note": "not measured (compiles in each fresh process; --compile-memory)"})
    jbf = {"case": "jbf_b1_c3_64_k5", "op": "bilateral", "family": "jbf", "size": 64,
           "backend": "kornia", "mode": "forward", "pac_s": None, "conv_s": None, "ratio": None,
           "first_s": None, "note": "skipped: kornia not importable (test)"}
    return {"kind": "peers",
            "environment": {"machine": "box", "date": "2026-01-02T03:04:05+00:00",
                            "torch": torch_version, "device": "cpu", "cpu_model": "EPYC",
                            "cpus": 2},
            "results": [*recs, jbf], "memory": mem}


def test_peer_tables_and_markdown():
    res = _peers_result()
    table = peer_table([r for r in res["results"] if r["op"] == "conv2d"]).splitlines()
    assert table[0] == ("| case | mode | nn.Conv2d (floor) | reference | reference+compile | "
                        "native |")
    assert table[2] == ("| conv_b1_c16_32_k5 | forward | 1.00 ms | 1.00× (1.00 ms) | "
                        "2.00× (2.00 ms) | 3.00× (3.00 ms) |")
    mem = peer_memory_table(res["memory"]).splitlines()
    assert mem[2] == "| conv_b1_c16_32_k5 | 32.0 MiB | — | 2.00× (64.0 MiB) |"
    md = render_markdown(dict(res, plots=["x-conv2d.png"], notes=["one core busy"]))
    assert "## joint bilateral (PacPool2d) vs Gaussian blur" in md
    assert "![x-conv2d](x-conv2d.png)" in md and "- one core busy" in md
    assert "`kornia` (bilateral): skipped: kornia not importable (test)" in md
    assert "torch 2.13.0+cpu" in md and "EPYC" in md


def test_plot_result(tmp_path):
    pytest.importorskip("matplotlib")
    res = _peers_result()
    paths = plot_result(res, tmp_path, "run")
    assert [p.name for p in paths] == ["run-conv2d.png"]  # the bilateral family has one size
    assert paths[0].stat().st_size > 10_000
    label = plot_label(res)
    assert "box" in label and "torch 2.13.0+cpu" in label and "2026-01-02" in label


def test_cli_plot_and_matrix_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_peers_result()))
    assert main(["plot", str(path)]) == 0
    assert (tmp_path / "run-conv2d.png").is_file()
    assert json.loads(path.read_text())["plots"] == ["run-conv2d.png"]
    assert "![run-conv2d](run-conv2d.png)" in (tmp_path / "run.md").read_text()
    dotted = tmp_path / "torch-2.4.1.json"
    dotted.write_text(path.read_text())
    assert main(["plot", str(dotted)]) == 0
    assert (tmp_path / "torch-2.4.1.md").is_file() and (tmp_path / "torch-2.4.1-conv2d.png").is_file()
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps({"results": []}))
    assert main(["plot", str(legacy)]) == 2

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_peers_result("2.13.0+cpu")))
    b.write_text(json.dumps(_peers_result("2.4.1+cu121", scale=2.0)))
    out = tmp_path / "matrix.md"
    assert main(["matrix-table", str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    # releases sorted by version, not by argument order
    assert "| case | mode | peer | torch 2.4.1+cu121 | torch 2.13.0+cpu |" in text
    assert "| conv_b1_c16_32_k5 | forward | torch | 1.0 | 1.0 |" in text
    assert "| conv_b1_c16_32_k5 | forward | native | 6.0 (6.00×) | 3.0 (3.00×) |" in text
    assert "| jbf_b1_c3_64_k5 | forward | kornia | — | — |" in text
    assert "a.json" in text


def test_matrix_table_missing_release_cells():
    old = _peers_result("2.1.2")
    old["results"] = [r for r in old["results"] if r["backend"] != "reference+compile"]
    lines = matrix_table([old, _peers_result()]).splitlines()
    row = [ln for ln in lines if ln.startswith("| conv_b1_c16_64_k5 | forward | reference+compile")]
    assert row == ["| conv_b1_c16_64_k5 | forward | reference+compile | — | 4.0 (2.00×) |"]


def test_compare_peers_results_and_skips():
    old, new = _peers_result(), _peers_result(scale=1.5)
    lines, bad = compare(old, new, 10)
    assert bad and any("REGRESSION" in ln for ln in lines)
    lines, bad = compare(old, old, 10)
    assert not bad and any("not timed" in ln for ln in lines)  # the skipped kornia peer


def test_time_ratios_gpu_layout():
    gpu = {"results": [
        {"case": "b2", "op": "conv2d", "peer": "cudnn", "fwd_ms": 0.1, "fwdbwd_ms": 0.3},
        {"case": "b2", "op": "conv2d", "peer": "native", "fwd_ms": 0.6, "fwdbwd_ms": None}]}
    assert time_ratios(gpu) == {("b2/conv2d", "native", "forward"): pytest.approx(6.0),
                                ("b2/conv2d", "native", "forward_backward"): None}


COMMITTED = sorted(RESULTS.rglob("*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_compare_committed_results(path, tmp_path, capsys):
    """Every committed result file compares cleanly with itself and flags a slowed copy."""
    assert main(["compare", str(path), str(path)]) == 0
    data = json.loads(path.read_text())
    ratios = time_ratios(data)
    assert any(v is not None for v in ratios.values()), path
    slowed = tmp_path / "slowed.json"
    for r in [*data.get("results", []), *data.get("crf_peers", [])]:
        for key in ("pac_s", "fwd_ms", "fwdbwd_ms"):
            if r.get(key) and r.get("peer", r.get("backend")) not in ("cudnn", "torch"):
                r[key] *= 2
        if r.get("ratio") is not None:
            r["ratio"] *= 2
    slowed.write_text(json.dumps(data))
    assert main(["compare", str(path), str(slowed), "--threshold", "50"]) == 1
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_gpu_set_precision_sets_both_switches():
    import torch

    from pac_bench.gpu import set_precision

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        set_precision("tf32")
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        set_precision("strict")
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
        set_precision("default")  # leaves them as they are
        assert not torch.backends.cudnn.allow_tf32
        with pytest.raises(ValueError, match="precision must be one of"):
            set_precision("fp16")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
