"""One flock on <state_dir>/reconcile.lock serializes every pass.

An applying pass takes it exclusively and writes who it is into the file, so
a second pass that gives up can name the holder.  A dry run takes it shared:
it may run beside other dry runs but never sees an apply half-done.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import system


class LockBusy(RuntimeError):
    pass


@contextmanager
def hold(path: Path, *, exclusive: bool, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "unknown process"
                    raise LockBusy(f"another reconcile pass holds {path} ({holder}); "
                                   f"gave up after {timeout:g}s") from None
                time.sleep(0.05)
        if exclusive:
            os.ftruncate(fd, 0)
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            os.pwrite(fd, f"pid {os.getpid()}, started {started}: {' '.join(sys.argv)}\n".encode(), 0)
        # Children inherit the lock: an orphaned mkfs keeps it until it finishes.
        os.set_inheritable(fd, True)
        system.inherit((fd,))
        yield
    finally:
        system.inherit(())
        os.close(fd)
