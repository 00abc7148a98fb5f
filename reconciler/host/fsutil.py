"""Crash-safe, race-safe file writes: a fresh temp file beside the target, fsync, rename, fsync the directory.

The temp file is made with mkstemp in the target's own directory: an unpredictable name opened
with O_EXCL, so nobody can plant a symlink where the data (a password slip, the state) is written.
A write that fails (a full disk) leaves the old file as it was and no temp file behind.
Files are 0600 unless the caller says otherwise: reconcile's state is root's alone.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

STATE_DIR_MODE = 0o700


def write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    """After a crash the file holds either the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
            payload = data.encode()
            while payload:
                written = os.write(fd, payload)
                payload = payload[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Make ``path`` (reconcile's state directory) exist, owned by root, mode 0700."""
    path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != STATE_DIR_MODE:
        os.chmod(path, STATE_DIR_MODE)
    return path
