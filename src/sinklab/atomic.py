"""Crash-safe file replacement: write a temporary file in the same folder, fsync, rename.

A SIGKILL or power cut at any moment leaves either the old file or the new one under the
final name, never a torn one. A temporary file a crashed writer left behind is harmless: it
starts with a dot, ends in `.tmp`, and the next write to the same name replaces it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def temp_name(path: Path) -> Path:
    """The temporary sibling of `path` (same folder, so the rename never crosses filesystems)."""
    return path.with_name(f".{path.name}.tmp")


def fsync_path(path: Path) -> None:
    """Flush a file (or folder) to disk; folders cannot be opened on every platform."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """fsync `tmp`, rename it over `path`, fsync the folder so the rename itself is durable."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], unique: bool = False) -> None:
    """Call `write(fh)` on a temporary file, then move it over `path` in one rename.

    On an exception (a full disk, say) the temporary file is removed and `path` is untouched.
    `unique=True` gives every writer its own temporary name, for shared caches that two jobs
    of a sweep may build at the same moment (the last rename wins, both files are complete).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if unique:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
        commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
