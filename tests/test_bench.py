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
