"""Shared by the hostile-input tests (issue 12, tests/test_hostile_*.py): each hostile input is refused
with exit code 2, one `error:` line, no traceback, nothing changed.

Real subprocesses of main.py against the tiny models, real damaged files on disk. A full disk is made
real with RLIMIT_FSIZE in the child process (the kernel refuses writes past the limit with EFBIG,
"File too large", the same OSError path as ENOSPC; it needs no root and no mount, so it runs in CI).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(*args, fsize_limit: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """main.py with `args`; fsize_limit (bytes) makes every larger file write fail as on a full disk."""

    def limit() -> None:
        import resource  # POSIX only

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit if fsize_limit else None)


def call(capsys, *args) -> subprocess.CompletedProcess:
    """main.main(args) in this process (no interpreter start-up: light), as a CompletedProcess."""
    import main

    capsys.readouterr()
    code = main.main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


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


def tiny_project(tmp_path: Path, lm: str = "lm", codec: str = "codec") -> Path:
    """A real, tiny project folder written by NarrationProject.create (no model needed to write it).

    A slow speaking rate (0.04 tokens per character) keeps each segment's runaway cap near 50 tokens,
    so the tiny random LM (which never stops by itself) renders a segment in seconds."""
    from engine.book.project import NarrationProject, NarrationSettings, ProjectChapter, Segment
    from engine.voices import VoiceLibrary

    voice = VoiceLibrary(tmp_path / "lib").add("Narrator", np.zeros(16000, np.float32) + 0.1, "Hello.", [1, 2, 3], "tiny")
    chapters = [ProjectChapter("One", "Hello world. Good night.", (Segment("c0s0", "Hello world.", 0.5),
                                                                   Segment("c0s1", "Good night.", 2.0)))]
    folder = tmp_path / "project"
    NarrationProject.create(folder, title="Book", author="A", chapters=chapters, voice=voice,
                            settings=NarrationSettings(lm=str(lm), codec=str(codec), base_seed=3), max_tokens=500,
                            tokens_per_char=0.04)
    return folder


def project_with_takes(tmp_path: Path, **models) -> Path:
    """The tiny project with both segments rendered (real FLAC takes of noise, marked done)."""
    import torch

    from engine.book.project import NarrationProject, Runtime, TakeRecord
    from engine.lm.device import default_precision

    folder = tiny_project(tmp_path, **models)
    project = NarrationProject.open(folder)
    # keyed for the runtime `narrate --device cpu` resolves here (the take key holds it)
    project.use_runtime(Runtime("cpu", default_precision(torch.device("cpu"))))
    rng = np.random.default_rng(0)
    for _, segment in project.segments():
        audio = (rng.standard_normal(16000) * 0.1).astype(np.float32)
        record = TakeRecord(project.take_key(segment), 0, project.take_seed(segment), "end", 1.0, 50)
        project.write_take(segment, 0, audio, record)
    return folder


DAMAGE = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:-200]),
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(os.urandom(3000)),
}
