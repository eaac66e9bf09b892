"""Atomic file writes: a file appears complete under its name, or not at all.

Every file the engine writes (takes, project.json, voices, exports, `synth --out`) goes through here:
the data goes to a temporary file named ``.<name>.<random>.part`` in the destination's folder, is
synced to disk, gets the destination's mode (an existing file's, else rw-r--r--), and is renamed over
the destination. On any failure (full disk, read-only folder, an encoder error, Ctrl+C) the temporary
file is removed. A kill -9 can still leave one behind; ``remove_temp_files`` cleans up exactly the
files of this naming, so stale partial files never pile up.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".part"
_LEGACY_SUFFIX = ".tmp"  # what project files used before this module
_DEFAULT_MODE = 0o644


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary path next to ``dest``; on a clean exit it is synced and renamed over dest.

    Write to the yielded path by name (not through a Python file object handed to a C library: its write
    errors then surface as exceptions, not as "Exception ignored" noise). Raises OSError when the folder
    cannot be written; the temporary file is gone whatever happens.
    """
    dest = Path(dest)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except OSError:
            mode = _DEFAULT_MODE  # mkstemp makes the file private (0600)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(dest: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (see atomic_path). Raises OSError, leaving dest as it was."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def is_temp_file(path: Path, name: str | None = None) -> bool:
    """True for a temporary file of this module's naming (``.<name>.<random>.part``; legacy ``.tmp`` too)."""
    if not path.name.startswith(".") or not path.name.endswith((TEMP_SUFFIX, _LEGACY_SUFFIX)):
        return False
    return name is None or path.name.startswith(f".{name}.")


def remove_temp_files(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete leftover temporary files in ``folder`` (of destination ``name``, or all); return them.

    Only for files a crashed writer left: call it where no other writer can be writing into the folder.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for path in entries:
        if is_temp_file(path, name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
