"""flock-based locks: <state_dir>/reconcile.lock serializes every pass, roster.lock every roster edit.

An exclusive holder writes who it is into the file, so a second pass that
gives up can name the holder.  A dry run takes the pass lock shared: it may run
beside other dry runs but never sees an apply half-done.  The held lock's file
descriptor is inheritable: a runner made with ``runner.holding(held.fd)``
passes it to its children, so an orphaned mkfs keeps the lock until it ends.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator


class LockBusy(RuntimeError):
    pass


@dataclass(frozen=True)
class Held:
    path: Path
    fd: int


@contextmanager
def hold(path: Path, *, exclusive: bool, timeout: float) -> Iterator[Held]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the state directory: root's alone
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
                    raise LockBusy(
                        f"another reconcile pass holds {path} ({holder}); gave up after {timeout:g}s"
                    ) from None
                time.sleep(0.05)
        if exclusive:
            os.ftruncate(fd, 0)
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            os.pwrite(fd, f"pid {os.getpid()}, started {started}: {' '.join(sys.argv)}\n".encode(), 0)
        os.set_inheritable(fd, True)  # only children started with pass_fds=(fd,) get it
        yield Held(path, fd)
    finally:
        os.close(fd)
