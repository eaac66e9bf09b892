"""One writer per narration project (engine.book.lock): the lock names its holder, a second writer is
refused, a dead holder's lock is taken over, reading stays possible, open() leaves a live writer's
temporary files alone; and two real `main.py narrate` processes on one project."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.book.importer import Book, Chapter
from engine.book.lock import LOCK_FILE, ProjectLockedError, acquire_lock, read_holder
from engine.book.narration import create_project, narrate
from engine.book.project import PENDING, NarrationProject, NarrationSettings
from engine.voices import VoiceLibrary

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 300  # only guards against a hang; nothing is timed
TRANSCRIPT = "The quick brown fox jumps over the lazy dog, near the quiet river bank. " * 4
# A child that takes the lock, says so, and holds it until its stdin closes (or exits without releasing).
HOLD = ("import sys; from engine.book.lock import acquire_lock; lock = acquire_lock(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.read(); {end}")


def make_project(folder: Path, tmp_path: Path, lm="tiny-lm", codec="tiny-codec", paragraphs=3) -> NarrationProject:
    """A real project folder written without models (the segment budget given by hand)."""
    codes = tuple(int(c) for c in np.random.default_rng(0).integers(0, 65536, 100))
    voice = VoiceLibrary(tmp_path / "voices").add("Narrator", np.zeros(32000, np.float32), TRANSCRIPT.strip(),
                                                  codes, "tiny")
    text = "\n\n".join(f"Paragraph number {n} of the book." for n in range(1, paragraphs + 1))
    settings = NarrationSettings(lm=str(lm), codec=str(codec), base_seed=3)
    return create_project(folder, Book("Locked", "A. Author", (Chapter("One", text),)), voice, settings,
                          max_tokens=300, tokens_per_char=0.35)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def holder_process(folder: Path, end: str = "lock.release()") -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD.format(end=end), str(folder)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "held"
    return child


def test_the_lock_names_its_holder_and_is_reentrant_in_one_process(tmp_path):
    project = make_project(tmp_path / "book", tmp_path)
    with acquire_lock(project.folder) as lock:
        holder = read_holder(project.folder)
        assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname()) and lock.notice is None
        assert time.strptime(holder.since, "%Y-%m-%d %H:%M:%S UTC")
        with acquire_lock(project.folder):  # the app's window and its engine thread share the hold
            pass
        assert (project.folder / LOCK_FILE).is_file()
    assert not (project.folder / LOCK_FILE).exists()


def test_a_second_process_is_refused_with_the_holders_name(tmp_path):
    project = make_project(tmp_path / "book", tmp_path)
    child = holder_process(project.folder)
    try:
        with pytest.raises(ProjectLockedError) as refused:
            acquire_lock(project.folder)
        message = str(refused.value)
        assert f"is being narrated by PID {child.pid} on host {socket.gethostname()} since " in message
        assert read_holder(project.folder).since in message
        with pytest.raises(ProjectLockedError):
            narrate(project, None)  # every writer goes through the lock (no models needed to be refused)
        assert [project.status(s) for _, s in project.segments()] == [PENDING] * 3  # reading still works
    finally:
        child.communicate("")
    assert child.returncode == 0 and not (project.folder / LOCK_FILE).exists()
    acquire_lock(project.folder).release()  # free again


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_notice(tmp_path):
    project = make_project(tmp_path / "book", tmp_path)
    child = holder_process(project.folder, end="import os; os._exit(0)")  # dies holding it, as kill -9 would
    child.communicate("")
    dead = read_holder(project.folder)
    assert dead.pid == child.pid
    with acquire_lock(project.folder) as lock:
        assert f"PID {child.pid} on host {socket.gethostname()}" in lock.notice and "no longer running" in lock.notice
        assert read_holder(project.folder).pid == os.getpid()


def test_a_lock_from_another_host_is_respected(tmp_path):
    project = make_project(tmp_path / "book", tmp_path)
    record = {"pid": os.getpid(), "host": "other-machine", "since": "2026-01-02 03:04:05 UTC"}
    (project.folder / LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(ProjectLockedError, match="PID .* on host other-machine since 2026-01-02 03:04:05 UTC"):
        acquire_lock(project.folder)


def test_open_leaves_a_live_writers_temporary_files_alone(tmp_path):
    project = make_project(tmp_path / "book", tmp_path)
    takes = project.folder / "takes"
    work = {takes / ".abc.flac.x1.tmp": b"half a take", takes / "abc.flac": b"audio whose json comes next"}
    for path, data in work.items():
        path.write_bytes(data)
    child = holder_process(project.folder)
    try:
        reopened = NarrationProject.open(project.folder)  # read-only opening while it writes
        assert reopened.title == "Locked" and all(p.read_bytes() == d for p, d in work.items())
    finally:
        child.communicate("")
    NarrationProject.open(project.folder)  # nobody writes now: the leftovers of a crash are cleaned up
    assert not any(p.exists() for p in work)
    assert not (project.folder / LOCK_FILE).exists()


@pytest.mark.slow
def test_two_narrate_processes_one_renders_the_other_is_refused(tiny_models, tmp_path):
    """A runs `main.py narrate`; while it holds the lock (paused with SIGSTOP to freeze the folder), B
    is refused in one line with exit code 2 and leaves the project byte-identical; A then finishes.
    A lock left by a dead process is taken over by the next run, with a notice."""
    project = make_project(tmp_path / "book", tmp_path, tiny_models["lm"], tiny_models["codec"])
    command = [sys.executable, str(ROOT / "main.py"), "narrate", str(project.folder), "--device", "cpu"]
    a = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while (holder := read_holder(project.folder)) is None or holder.pid != a.pid:
            assert a.poll() is None and time.monotonic() < deadline, "A never took the lock"
            time.sleep(0.01)
        os.kill(a.pid, signal.SIGSTOP)
        before = snapshot(project.folder)
        b = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)
        assert b.returncode == 2, b.stderr
        assert b.stderr.strip().splitlines() == [
            f"error: {project.folder} is being narrated by {holder.describe()}; wait for it to finish or stop it "
            f"(if that process is gone, delete {project.folder / LOCK_FILE})."]
        assert snapshot(project.folder) == before
    finally:
        os.kill(a.pid, signal.SIGCONT)
    _, a_err = a.communicate(timeout=WAIT_S)
    assert a.returncode == 0, a_err
    assert "(3 this run)" in a_err and "notice:" not in a_err
    done = NarrationProject.open(project.folder)
    assert [done.status(s) for _, s in done.segments()] != [PENDING] * 3
    assert all(done.record(s) is not None for _, s in done.segments())
    assert not (project.folder / LOCK_FILE).exists()

    child = holder_process(project.folder, end="import os; os._exit(0)")
    child.communicate("")
    c = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S)
    assert c.returncode == 0, c.stderr
    assert f"Took over the lock of {project.folder}: its holder (PID {child.pid} on host" in c.stderr  # logged by open()
    assert "(0 this run)" in c.stderr and not (project.folder / LOCK_FILE).exists()
