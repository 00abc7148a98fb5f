"""A log that rotates by size, for the processes `reconcile up` starts without an init system (under systemd,
journald keeps their output instead).

    python -m reconciler.host.logpipe FILE [MAX_BYTES] [KEEP] < output

Reads its standard input (the pipe from the hub's or the daemon's stdout and stderr) and appends it to FILE;
when FILE would pass MAX_BYTES it becomes FILE.1 (FILE.1 becomes FILE.2, ... up to FILE.KEEP; the oldest goes)
and a new FILE starts.  Lines are never split across two files.  It ends when the writer does (end of file).
Rotating here, in the one process that writes the file, loses nothing: no copy-and-truncate race.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO
import contextlib

MAX_BYTES = 10 * 1024 * 1024
KEEP = 5


def rotate(path: Path, keep: int) -> None:
    """FILE -> FILE.1 -> ... -> FILE.keep (the oldest is dropped)."""
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.1"))


def pump(source: BinaryIO, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
    """Copy lines from ``source`` to ``path``, rotating.  A line that cannot be written (a full disk) is dropped,
    and the next one tried: the writer keeps reading, so the hub and the daemon never block on a full pipe or
    die of a broken one."""
    out, size = None, 0
    for line in source:
        try:
            if out is None:
                out = _open(path)
                size = out.tell()
            if size and size + len(line) > max_bytes:
                out.close()
                out = None
                rotate(path, keep)
                out = _open(path)
                size = 0
            out.write(line)
            out.flush()
            size += len(line)
        except OSError:
            if out is not None:
                with contextlib.suppress(OSError):
                    out.close()
            out = None  # opened again for the next line
    if out is not None:
        out.close()


def _open(path: Path) -> BinaryIO:
    """The log for appending, root's alone (0600) like every state file: it names people and may carry errors
    about them; a file an older version left 0644 is narrowed."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    max_bytes = int(argv[1]) if len(argv) > 1 else MAX_BYTES
    keep = int(argv[2]) if len(argv) > 2 else KEEP
    pump(sys.stdin.buffer, path, max_bytes, keep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
