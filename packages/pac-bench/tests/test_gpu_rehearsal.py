"""``pac_bench.gpu`` on the CPU: the benchmark's code path on a tiny case (timings meaningless)."""

from __future__ import annotations

import json

import pytest
import torch

from pac_bench import gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_rehearsal_runs_every_op(dtype):
    meta, results = gpu.run_benchmarks((gpu.TINY,), ("cudnn", "reference"), warmup=0, iters=1,
                                       dtype=dtype, device="cpu")
    assert meta["dtype"] == str(dtype).replace("torch.", "")
    assert {(r.op, r.peer) for r in results} == {
        (op, peer) for op in ("conv2d", "conv_transpose2d", "pool2d")
        for peer in ("cudnn", "reference")}
    for r in results:
        assert r.error is None, r.error
        assert r.fwd_ms > 0 and r.fwdbwd_ms > 0
        assert r.fwd_peak_mib is None  # no peak memory on the CPU


def test_main_writes_the_files(tmp_path):
    rc = gpu.main(["--device", "cpu", "--cases", "tiny", "--peers", "cudnn", "--warmup", "0",
                   "--iters", "1", "--dtype", "bfloat16", "--tag", "t", "--out", str(tmp_path)])
    assert rc == 0
    payload = json.loads((tmp_path / "gpu-bench-t.json").read_text())
    assert payload["dtype"] == "bfloat16" and len(payload["results"]) == 3
    assert "- dtype: bfloat16" in (tmp_path / "gpu-bench-t.md").read_text()


def test_triton_peers_are_skipped_where_the_backend_does_not_run():
    from pac_core import backends

    if "triton" in backends.available() and backends.get("triton").supports(
            torch.device("cpu"), torch.float32):
        pytest.skip("a triton backend claims the CPU in this process")
    meta, results = gpu.run_benchmarks((gpu.TINY,), ("cudnn", "triton", "triton-nativebwd"),
                                       warmup=0, iters=1, device="cpu")
    assert meta["skipped_peers"] == ["triton", "triton-nativebwd"]
    assert meta["triton_backward"] is None
    assert {r.peer for r in results} == {"cudnn"}
