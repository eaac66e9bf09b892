"""One writer per narration project: a lock file in the project folder naming its holder.

Whatever renders takes into a project (engine.book.narration.narrate, the `narrate` command, the app's
project window while it narrates) holds `LOCK_FILE`, which records the holder's PID, host name and
start time. A second writer is refused with a message naming the holder; a lock whose PID is no longer
running on this host is stale and is taken over with a notice. Opening a project to read it never needs
the lock; NarrationProject.open only cleans up temporary files when nobody holds it (`exclusive`).

The lock is re-entrant within a process (the app's window and its engine thread share one), counted
per folder. Created with O_EXCL, so two processes can never both create it.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from engine.errors import ProjectError

T = TypeVar("T")
LOCK_FILE = ".llasa-writer.lock"  # in the project folder; dot-named like the temporary files
log = logging.getLogger("llasa.engine")


class ProjectLockedError(ProjectError):
    """Another live process is writing this project."""


@dataclass(frozen=True)
class LockHolder:
    """What the lock file says about the process holding it."""

    pid: int
    host: str  # socket.gethostname() of the holder
    since: str  # when it took the lock, ISO 8601 UTC, e.g. "2026-11-30 12:03:04 UTC"
    proc_start: int | None = None  # Linux: the process start time (clock ticks since boot), to detect PID reuse

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host} since {self.since}"

    def is_ours(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()

    def is_alive(self) -> bool:
        """False only when the holder is known to be gone: a dead (or reused) PID on this host."""
        if self.host != socket.gethostname():
            return True  # another machine (a shared folder): cannot tell, so assume it still runs
        return _pid_alive(self.pid, self.proc_start)


class ProjectLock:
    """This process's hold on a project's lock; release() once per acquire_lock()."""

    def __init__(self, folder: Path, path: Path, notice: str | None) -> None:
        self.folder, self.path = folder, path
        self.notice = notice  # set when a stale lock was taken over: say so to the user

    def release(self) -> None:
        with _HELD_GUARD:
            count = _HELD.get(self.path, 0) - 1
            if count > 0:
                _HELD[self.path] = count
                return
            _HELD.pop(self.path, None)
            holder = read_holder(self.folder)
            if holder is not None and holder.is_ours():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "ProjectLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_HELD: dict[Path, int] = {}  # lock path -> how many holds this process has on it
_HELD_GUARD = threading.RLock()


def read_holder(folder: Path) -> LockHolder | None:
    """The holder the lock file names, or None when there is no (readable) lock file."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["since"]), data.get("proc_start"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def acquire_lock(folder: Path) -> ProjectLock:
    """Take (or, in this process, re-enter) the writer lock of the project in `folder`.

    ProjectLockedError names the live holder; ProjectError when the folder cannot be written.
    """
    folder = Path(folder)
    path = (folder / LOCK_FILE).absolute()
    with _HELD_GUARD:
        if _HELD.get(path):
            _HELD[path] += 1
            return ProjectLock(folder, path, None)
        notice = None
        for _ in range(5):  # a lost race with another process taking over the same stale lock: try again
            if _create(path):
                _HELD[path] = 1
                return ProjectLock(folder, path, notice)
            holder = read_holder(folder)
            if holder is None:
                if _young(path):  # being written by its creator right now
                    time.sleep(0.05)
                    continue
                holder = LockHolder(0, socket.gethostname(), "an unknown time")  # unreadable: stale
            elif holder.is_alive() and not holder.is_ours():
                raise ProjectLockedError(
                    f"{folder} is being narrated by {holder.describe()}; wait for it to finish or stop it "
                    f"(if that process is gone, delete {path}).")
            if _take_over(path, holder):
                notice = (f"Took over the lock of {folder}: its holder ({holder.describe()}) is no longer "
                          "running; its unfinished take, if any, is rendered again.")
                log.warning(notice)
        raise ProjectLockedError(f"{folder} is being locked and unlocked by other processes; try again.")


def writes_project(func: Callable[..., "T"]) -> Callable[..., "T"]:
    """Decorator: hold the lock of the project passed as the first argument while `func` runs."""

    @functools.wraps(func)
    def locked(project, *args, **kwargs):
        with acquire_lock(project.folder):
            return func(project, *args, **kwargs)

    return locked


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[bool]:
    """True while nobody else holds the lock (taken for the block; stale locks taken over), False when
    a live writer (this process included) holds it or the folder cannot be written: then leave its
    temporary files alone."""
    path = (Path(folder) / LOCK_FILE).absolute()
    with _HELD_GUARD:
        if _HELD.get(path):
            yield False
            return
        try:
            lock = acquire_lock(folder)
        except ProjectError:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


# ---- the file and the process table ----
def _create(path: Path) -> bool:
    """Write our holder record into a new lock file; False when one exists."""
    holder = LockHolder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                        _proc_start(os.getpid()))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as error:  # a read-only folder or disk: nobody can write this project now
        raise ProjectError(f"Cannot lock {path.parent} for writing: {error.strerror or error}.") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(holder), f)
        f.flush()
        os.fsync(f.fileno())
    return True


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < 2.0
    except OSError:
        return False


def _take_over(path: Path, stale: LockHolder) -> bool:
    """Remove a stale lock, unless someone replaced it meanwhile (then False: look again)."""
    aside = path.with_name(f"{path.name}.stale.{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return False  # another process took it over first
    try:
        data = json.loads(aside.read_text(encoding="utf-8"))
        same = int(data["pid"]) == stale.pid and data["since"] == stale.since
    except (OSError, ValueError, KeyError, TypeError):
        same = stale.pid == 0  # still the unreadable one
    if not same:  # a live holder's fresh lock: put it back if its place is still free
        with contextlib.suppress(OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)
    return same


def _proc_start(pid: int) -> int | None:
    """Linux: the start time of process `pid` in clock ticks since boot; None elsewhere or when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int, proc_start: int | None) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        if Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie: dead, not yet reaped by its parent
    except (OSError, IndexError):
        pass
    now = _proc_start(pid)
    return proc_start is None or now is None or now == proc_start  # another start time: the PID was reused


def _windows_pid_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.GetLastError() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
