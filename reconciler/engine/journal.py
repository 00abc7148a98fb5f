"""Append-only record of every applied action: <state_dir>/journal.jsonl.

It records what was done and how it ended, never a secret: password actions
carry only the placeholder the plan shows.  When the file has grown past
``max_size``, the next writer renames it to ``journal-<UTC time>.jsonl`` next
to it and starts a new one: nothing is ever deleted (an admin may compress or
prune the old files), and ``read`` returns every file in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.actions import Action


MAX_SIZE = 16 * 1024 * 1024  # bytes before a rotation (site.yaml: journal_max_size)
# Journal first, then act: before an action is taken, the disk space for its entry is already the journal's.
# The file keeps this much allocated past its end (fallocate, KEEP_SIZE), topped up when less than LOW is left;
# when the disk cannot give it (ENOSPC), the action is not taken.  About a thousand entries' worth.
RESERVE = 256 * 1024
LOW = 64 * 1024


def rotate(path: Path, max_size: int = MAX_SIZE) -> Path | None:
    """Start a new journal when this one is past ``max_size``; the old one is kept under a dated name.

    Two writers rotating at once lose nothing: a rename never deletes, and a writer that opened the file
    before it was renamed goes on appending to the renamed file.
    """
    try:
        if path.stat().st_size < max_size:
            return None
    except FileNotFoundError:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    n = 1
    while (kept := path.with_name(f"{path.stem}-{stamp}-{n:03d}{path.suffix}")).exists():  # two in one second
        n += 1
    try:
        os.rename(path, kept)
    except FileNotFoundError:  # another writer rotated it just now
        return None
    return kept


def history(path: Path) -> list[Path]:
    """Every journal file, oldest first: the rotated ones (their names sort by time), then the current one."""
    rotated = sorted(path.parent.glob(f"{path.stem}-*{path.suffix}"))
    return [*rotated, *([path] if path.exists() else [])]


class Journal:
    def __init__(self, path: Path, pass_id: str, actor: str | None = None, max_size: int = MAX_SIZE):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.pass_id, self.actor = path, pass_id, actor  # actor: the teacher behind an API write
        rotate(path, max_size)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def reserve(self) -> None:
        """Room on disk for the next entries, before the action they record (OSError: no room; do nothing)."""
        st = os.fstat(self._fd)
        if st.st_blocks * 512 - st.st_size >= LOW:
            return
        _allocate(self._fd, st.st_size, RESERVE)

    def record(self, action: Action, result: str, detail: str = "") -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pass": self.pass_id,
            **({"actor": self.actor} if self.actor else {}),
            **action.to_json(),
            "result": result,
            "detail": detail,
        }
        line = (json.dumps(entry) + "\n").encode()
        end = os.fstat(self._fd).st_size
        try:
            while line:
                line = line[os.write(self._fd, line) :]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):  # never leave half a line: the journal stays one JSON per line
                os.ftruncate(self._fd, end)
            raise

    def close(self) -> None:
        os.close(self._fd)


def _allocate(fd: int, offset: int, length: int) -> None:
    """fallocate(2) with FALLOC_FL_KEEP_SIZE: blocks past the end, the file's size unchanged (appends fill them).
    A filesystem that cannot (EOPNOTSUPP) is left as it is: the entries are then written as before."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    if libc.fallocate(fd, 1, offset, length) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(code, os.strerror(code))


def read(path: Path) -> list[dict]:
    """Every entry ever written, oldest first, across the rotated files."""
    return [json.loads(line) for part in history(path) for line in part.read_text().split("\n") if line.strip()]


def _edit_pass(source: str) -> str:
    """The pass id of an edit outside a pass (a roster edit, a password reset): its source, time and process."""
    return time.strftime(f"{source}-%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"


def record_edit(path: Path, actor: str, action: Action, detail: str = "", source: str = "edit") -> None:
    """One action done outside a pass (a roster edit, a password reset), in its own journal entry."""
    journal = Journal(path, _edit_pass(source), actor=actor)
    try:
        journal.record(action, "ok", detail)
    finally:
        journal.close()


class Unwritable(OSError):
    """The journal has no room (or cannot be opened): the change it would record was not made."""


@contextmanager
def before(path: Path, actor: str, source: str = "edit") -> Iterator[Journal]:
    """An edit outside a pass, journal first: room for its entries is taken before the caller acts (Unwritable:
    none, and the caller has done nothing), then the caller records what it did."""
    journal = None
    try:
        journal = Journal(path, _edit_pass(source), actor=actor)
        journal.reserve()
    except OSError as exc:
        if journal is not None:
            journal.close()
        raise Unwritable(
            exc.errno, f"cannot write the journal {path}: {exc.strerror or exc}; nothing was changed"
        ) from None
    try:
        yield journal
    finally:
        journal.close()
