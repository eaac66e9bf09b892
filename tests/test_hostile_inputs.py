"""Hostile inputs (issue 12): each is refused with exit code 2, one `error:` line, no traceback, nothing changed.

Real subprocesses of main.py against the tiny models, real damaged files on disk. A full disk is made
real with RLIMIT_FSIZE in the child process (the kernel refuses writes past the limit with EFBIG,
"File too large", the same OSError path as ENOSPC; it needs no root and no mount, so it runs in CI).
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio.atomic import atomic_path, remove_temp_files, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def run(*args, fsize_limit: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """main.py with `args`; fsize_limit (bytes) makes every larger file write fail as on a full disk."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit if fsize_limit else None)


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2, exactly one `error:` line naming `words`, no traceback; returns the error line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (names relative to it) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- one atomic-write helper


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    dest = tmp_path / "take.json"
    write_atomic(dest, b"old")
    assert dest.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder died")
    assert dest.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [dest]
    write_atomic(dest, b"new")
    assert dest.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [dest]


def test_only_our_own_stale_partial_files_are_removed(tmp_path):
    ours = [tmp_path / ".book.m4b.k2j4x9q1.part", tmp_path / ".project.json.abcd.tmp"]
    theirs = [tmp_path / "book.m4b.part", tmp_path / ".other.m4b.x.part", tmp_path / "notes.part", tmp_path / ".hidden"]
    for path in ours + theirs:
        path.write_bytes(b"x")
    assert remove_temp_files(tmp_path, "book.m4b") == [ours[0]]
    assert sorted(remove_temp_files(tmp_path)) == sorted([ours[1], theirs[1]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["book.m4b.part", "notes.part", ".hidden"])


def test_no_hand_written_temp_file_dance_outside_the_helper():
    """Every file write goes through engine.audio.atomic: no other module makes temp files by hand."""
    offenders = []
    for path in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("cli/*.py"), *ROOT.glob("app/*.py")]:
        if path.name == "atomic.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "mkstemp(" in text or "NamedTemporaryFile(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_synth_out_on_a_full_disk_is_one_error_line_and_no_file(tiny_models, tmp_path):
    """Issue item 3: no "Exception ignored from cffi callback" blocks, no temp file left behind."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello there.",
                 "--seed", "1", "--out", out_dir / "out.wav", fsize_limit=4096)
    assert_refused(result, "Cannot write", "out.wav", "too large")
    assert list(out_dir.iterdir()) == []
