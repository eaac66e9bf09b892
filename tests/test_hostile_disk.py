"""Hostile disks (issue 12, items 3, 8 and 9): every write is atomic (one helper), a full disk is one error
line and leaves no file, and a file half written by a killed export is removed by the next one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from engine.audio.atomic import atomic_path, remove_temp_files, write_atomic
from hostile import ROOT, assert_refused, run, snapshot, tiny_project


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


@pytest.mark.slow
def test_synth_out_on_a_full_disk_is_one_error_line_and_no_file(tiny_models, tmp_path):
    """Issue item 3: no "Exception ignored from cffi callback" blocks, no temp file left behind."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello there.",
                 "--seed", "1", "--out", out_dir / "out.wav", fsize_limit=4096)
    assert_refused(result, "Cannot write", "out.wav", "too large")
    assert list(out_dir.iterdir()) == []


# ---------------------------------------------------------------- item 9: narrate into a full disk


@pytest.mark.slow
def test_narrate_into_a_full_disk_is_one_error_line_and_keeps_the_project(tiny_models, tmp_path):
    import torch

    from engine.book.project import NarrationProject, Runtime
    from engine.lm.device import default_precision

    folder = tiny_project(tmp_path, lm=tiny_models["lm"], codec=tiny_models["codec"])
    # narrated on this runtime before: the run only adds takes (runtime.json is recorded before rendering)
    NarrationProject.open(folder).use_runtime(Runtime("cpu", default_precision(torch.device("cpu"))))
    before = snapshot(folder)
    result = run("narrate", folder, "--device", "cpu", fsize_limit=8192)  # a take's FLAC is larger: EFBIG
    assert_refused(result, "Cannot write", "File too large", "finished segments are kept", "resume")
    assert snapshot(folder) == before  # no take, no temporary file


# ---------------------------------------------------------------- item 8: kill -9 during an export


_EXPORT_THEN_DIE = """
import os, signal, sys
import numpy as np
from engine.book.export import BookMetadata, ChapterAudio, export_book

calls = []

def chapter():
    calls.append(1)
    if len(calls) == 3:  # the write pass (after two measuring passes): the .part file exists, half written
        os.kill(os.getpid(), signal.SIGKILL)
    return np.full(16000, 0.1, np.float32)

export_book([ChapterAudio("One", chapter), ChapterAudio("Two", chapter)], sys.argv[1], fmt=sys.argv[2],
            metadata=BookMetadata("Book"))
"""


def _wait_for_group_exit(pgid: int) -> None:
    import time

    for _ in range(1200):  # at most ~60 s (a container without an init may keep a zombie in the group)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("fmt", ["wav", "m4b"])
def test_export_after_a_kill_9_removes_the_partial_file_it_left(tmp_path, fmt):
    from engine.book.export import BookMetadata, ChapterAudio, export_book

    dest = tmp_path / f"book.{fmt}"
    killed = subprocess.Popen([sys.executable, "-c", _EXPORT_THEN_DIE, dest, fmt], cwd=ROOT, start_new_session=True,
                              env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert killed.wait(timeout=120) == -signal.SIGKILL
    _wait_for_group_exit(killed.pid)  # the orphaned ffmpeg (m4b) finishes writing its .part file first
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".book.{fmt}.") and left[0].endswith(".part")  # what kill -9 left
    (tmp_path / "notes.part").write_bytes(b"someone else's")  # not ours: stays
    export_book([ChapterAudio("One", lambda: np.full(16000, 0.1, np.float32))], dest, fmt=fmt,
                metadata=BookMetadata("Book"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, "notes.part"])
