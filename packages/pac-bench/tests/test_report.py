import json

from pac_bench.cli import main
from pac_bench.report import compare, markdown_table, render_markdown, write_result


def _result(ratio):
    return {"environment": {"machine": "box", "date": "2025-01-02T03:04:05+00:00", "torch": "2.x",
                            "device": "cpu"},
            "results": [{"case": "conv_b2_c32_128_k5", "backend": "native", "mode": "forward",
                         "pac_s": 0.01 * ratio, "conv_s": 0.01, "ratio": ratio}]}


def test_compare_exits_nonzero_on_regression(tmp_path, capsys):
    old, new, same = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "same.json"
    old.write_text(json.dumps(_result(1.0)))
    new.write_text(json.dumps(_result(1.5)))      # 50 % slower relative to nn.Conv2d
    same.write_text(json.dumps(_result(1.05)))
    assert main(["compare", str(old), str(new), "--threshold", "10"]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["compare", str(old), str(same), "--threshold", "10"]) == 0
    assert main(["compare", str(old), str(new), "--threshold", "60"]) == 0
    lines, bad = compare(_result(2.0), _result(1.0), 10)
    assert not bad and "faster" in lines[-1]


def test_markdown_table_and_files(tmp_path):
    rec = dict(_result(1.234)["results"][0], pac_peak_bytes=3 * 2**20, conv_peak_bytes=2**20)
    table = markdown_table([rec])
    lines = table.splitlines()
    assert lines[0].startswith("| case | backend | mode | PacConv2d | nn.Conv2d | ratio |")
    assert lines[1].startswith("|---|---|---|---:")
    assert "| conv_b2_c32_128_k5 | native | forward | 12.34 ms | 10.00 ms | 1.23× |" in lines[2]
    assert "3.0 MiB" in lines[2] and "3.0×" in lines[2]
    res = _result(1.0)
    j, m = write_result(res, tmp_path)
    assert j.name == "2025-01-02-box.json" and json.loads(j.read_text()) == res
    assert "torch 2.x" in m.read_text() and m.read_text() == render_markdown(res)
