"""Reading a file another program may be writing in place: a version is read only when it is whole.

A save by rename (editors, reconcile's own writers) replaces the file at once; a write in place (scp,
``cat > classroom.yaml``, an editor that truncates and rewrites) does not: a reader in the middle sees half a
file, and half of classroom.yaml cut at a line's end is valid YAML with people missing.  So a file is read only
while no process has it open for writing, and only if it did not change while it was read.

The kernel answers "is this file open for writing?" without a scan of /proc: a read lease (fcntl F_SETLEASE,
F_RDLCK) is refused with EAGAIN while any process holds the file open for writing.  The lease is a question, not
a hold: it is dropped at once.  Should a writer open the file in that instant, its open waits for the drop and
the kernel signals the lease holder with SIGURG (set with F_SETSIG), which a process ignores unless it asks for
it (SIGIO, the default, would end it).  Where leases do not work (NFS, a FUSE filesystem, a reader that is not
the file's owner and lacks CAP_LEASE), the check is the size and mtime staying put across the read.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

POLL = 0.02  # seconds between looks while a writer holds the file
WAIT = 2.0  # seconds a reader waits for the writer to close it (a roster is written in milliseconds)


class Busy(OSError):
    """The file is open for writing by another process (or kept changing) for longer than the reader waits."""

    def __init__(self, path: Path, writers: list[str]):
        self.path, self.writers = path, writers
        who = f" by {', '.join(writers)}" if writers else ""
        super().__init__(errno.EBUSY, f"is being written in place{who}: it is read once the writer closes it")


@dataclass(frozen=True)
class Version:
    """One whole version of a file: its bytes, and the inode and times they were read from."""

    data: bytes
    device: int
    inode: int
    size: int
    mtime_ns: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def same_file(self, st: os.stat_result) -> bool:
        """Is ``st`` this very version: the same inode, unchanged since it was read?"""
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (self.device, self.inode, self.size, self.mtime_ns)


def open_for_writing(fd: int) -> bool | None:
    """Does any process hold the file behind ``fd`` (opened read-only) open for writing?  None: cannot tell here."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return True
        return None  # EINVAL (no leases on this filesystem, or leases disabled), EACCES (not ours, no CAP_LEASE)
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def read(path: Path, wait: float = WAIT) -> Version:
    """The file's bytes, read while nobody writes it in place; waits up to ``wait`` seconds for a writer to close it.

    Raises OSError as open() does (FileNotFoundError, PermissionError, ...) and Busy after the wait."""
    deadline = time.monotonic() + wait
    while True:
        version = _try(path)
        if version is not None:
            return version
        if time.monotonic() >= deadline:
            raise Busy(path, writers(path))
        time.sleep(POLL)


def _try(path: Path) -> Version | None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        before = os.fstat(fd)
        if open_for_writing(fd):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        after = os.fstat(fd)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or open_for_writing(fd):
            return None  # changed while it was read (or a writer opened it meanwhile): read it again
        return Version(b"".join(chunks), after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns)
    finally:
        os.close(fd)


def writers(path: Path) -> list[str]:
    """Who holds ``path`` open for writing ("pid 123 (scp)"), for the message only: a scan of /proc, bounded."""
    try:
        st = path.stat()
    except OSError:
        return []
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    target = fd.stat()
                except OSError:
                    continue
                if (target.st_dev, target.st_ino) != (st.st_dev, st.st_ino):
                    continue
                flags = next(
                    (
                        int(line.split()[1], 8)
                        for line in (proc / "fdinfo" / fd.name).read_text().splitlines()
                        if line.startswith("flags:")
                    ),
                    0,
                )
                if flags & (os.O_WRONLY | os.O_RDWR):
                    comm = (proc / "comm").read_text().strip()
                    found.append(f"pid {proc.name} ({comm})")
                    break
        except OSError:
            continue
        if len(found) >= 5:
            break
    return found
