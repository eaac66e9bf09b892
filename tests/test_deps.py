"""tests/deps.missing: a missing test dependency skips on a developer's machine and fails when CI is set."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(TESTS)} | ({"CI": "1"} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_needs.py"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_dependency_skips_locally_and_fails_under_ci(tmp_path):
    (tmp_path / "test_needs.py").write_text(
        "from deps import missing\n\ndef test_needs_it():\n    missing('needs frobnicator (apt-get install frob)')\n")
    local = _run(tmp_path, ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    assert "needs frobnicator (apt-get install frob)" in local.stdout
    ci = _run(tmp_path, ci=True)
    assert ci.returncode == 1 and "1 failed" in ci.stdout, ci.stdout
    assert "missing test dependency: needs frobnicator (apt-get install frob) (CI is set" in ci.stdout


def test_scripts_test_sh_names_what_is_missing_when_not_root(tmp_path):
    """Run as a non-root user (or as root with a PATH whose dpkg-query knows no package): it lists them."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")  # a machine where none is installed
    (fake / "id").write_text("#!/bin/sh\necho 1000\n")  # not root
    for tool in fake.iterdir():
        tool.chmod(0o755)
    script = TESTS.parent / "scripts" / "test.sh"
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PATH": f"{fake}:{os.environ['PATH']}", "CI": "1"}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Missing system packages the tests need: espeak-ng sox libsndfile1 pulseaudio")
    assert "apt-get install espeak-ng sox" in lines[1] and "CI is set" in lines[2]
