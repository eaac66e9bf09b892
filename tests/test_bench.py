"""The decode benchmark runs end to end (tiny shapes, CPU) and writes its JSON, so it cannot rot
between the GPU sessions that produce the real figures. Its numbers are not asserted."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_decode_smoke_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_decode.py"), "--size", "tiny", "--quant", "fp32",
         "--new-tokens", "16", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    paths = {row["path"] for row in rows}
    assert any("recipe" in p for p in paths) and any("fast" in p for p in paths), paths
    assert "tok/s" in result.stdout or "tokens" in result.stdout


def test_bench_narrate_smoke_run_writes_json(tmp_path):
    """Tiny shapes, batch 1 and 2 of 3 ragged takes: the table and the JSON, and takes equal across batches."""
    out = tmp_path / "narrate.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_narrate.py"), "--size", "tiny", "--batches", "1", "2",
         "--workers", "--jobs", "3", "--new-tokens", "8", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [row["what"] for row in data["rows"]] == ["batch 1", "batch 2"] and data["meta"]["uptime"]
    assert all(row["takes"] == 3 and row["codes"] == 24 and row["takes_differing_from_first_batch"] == 0
               for row in data["rows"])
    assert "audio min/wall min" in result.stdout
