"""The benchmark tool runs end to end (its numbers are checked by reading docs/benchmarks.md, not
asserted: timings on a shared machine are noise). ORT's venv is optional here."""
import json
import subprocess
import sys

from conftest import ROOT


def test_bench_runs_and_reports_every_field(tmp_path):
    out = tmp_path / "b.json"
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "bench.py"), "--models", "mlp", "--threads", "1",
                          "--ort-python", str(tmp_path / "no-ort"), "--json", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    row = data["models"]["mlp/t1"]
    assert row["intedge"]["ms"] > 0 and row["torch"]["ms"] > 0 and row["intedge"]["rss_mb"] > 0
    assert row["intedge"]["arena_mb"] > 0 and row["ort"] == {"error": "no ORT venv"}
    assert data["gemm"]["int8_peak_gops"] > 0 and all(v > 0 for v in data["gemm"]["gops"].values())
    assert "int8 GEMM" in res.stdout
