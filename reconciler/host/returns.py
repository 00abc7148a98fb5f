"""Driver for returning feedback: what teachers wrote for a student in the collection area (nbgrader's
``feedback/<student>/<assignment>/``) reaches them as ``~/assignments/<assignment>/feedback/``, read-only.

Both sides are read and written by root without following a symlink: a teacher's symlink in the feedback
folder (to /etc/shadow, to another student's files) is never read, and a student's at ``~/assignments`` or at
the assignment's folder is never written through (every folder held by its descriptor, as the handout does).
Only regular files and folders are returned; they belong to root, files 0444 and folders 0555, so a student
reads their feedback and cannot change it (they may move the whole folder away: it is in their home).  The
copy is built beside its place and swapped in whole; a ``feedback`` the student made themselves is never
replaced (said, and that student's return waits).

Which feedback (by digest: names, sizes, change times) reached whom is kept in ``<state_dir>/feedback.json``
with their uid: feedback is returned again only when teachers write it again.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from ..config.site import COLLECTION_VOLUME
from ..core.actions import Action, Kind, Op
from .drivers import Context, driver
from .fsutil import exchange_at, remove_at, rename_noreplace
from .ledger import Ledger
from .collect import MAX_DEPTH, MAX_ENTRIES, survey
from .handouts import _DIR, FOLDER, _copy_file, _folder, _open_folder, student
from .mounts import is_mounted

FEEDBACK = "feedback"  # nbgrader's folder in the course directory, and the folder each student gets


def _check(entry: dict) -> None:
    if not isinstance(entry["digest"], str):
        raise ValueError(f"digest {entry['digest']!r}")


def _ledger(path: Path) -> Ledger:
    return Ledger(path, "no feedback is returned", _check)


def read(path: Path, uids: Mapping[str, int]) -> dict[str, dict[str, str]]:
    """Assignment -> student -> the digest of the feedback they were given, counting only entries of the account
    that has the name now.  No ledger yet: nobody.  Raises LedgerDamaged."""
    return {
        name: {user: got["digest"] for user, got in people.items()}
        for name, people in _ledger(path).entries(uids).items()
    }


def with_feedback(area: Path) -> set[str]:
    """The names of the folders in the collection area's feedback/ (one directory read; none: empty)."""
    try:
        with os.scandir(area / FEEDBACK) as entries:
            return {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    except OSError:
        return set()


def digest(area: Path, user: str, name: str) -> str | None:
    """Of ``feedback/<user>/<name>`` in the area (names, kinds, sizes, change times; nothing read), None when
    there is none (or it is a symlink), or it cannot be looked at now (the next pass looks again)."""
    try:
        fd = _feedback_folder(area, user, name)
    except OSError:
        return None
    try:
        return survey(fd)[0]
    except (OSError, RuntimeError):
        return None
    finally:
        os.close(fd)


def _feedback_folder(area: Path, user: str, name: str) -> int:
    """``feedback/<user>/<name>`` below the area, opened without following a symlink on the way."""
    fd = os.open(area, _DIR)
    try:
        for part in (FEEDBACK, user, name):
            inner = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = inner
        return fd
    except BaseException:
        os.close(fd)
        raise


@driver(Kind.FEEDBACK, Op.CREATE)
def give_back(action: Action, ctx: Context) -> str:
    user, name = action.target, action.after.assignment
    area = ctx.paths.collection_area
    if not is_mounted(ctx.host, area, ctx.volumes.layout.source(COLLECTION_VOLUME)):
        raise RuntimeError(f"the collection area {area} is not mounted; its feedback is not read from the bare folder")
    home, uid, gid = student(ctx, user, "returned")
    try:
        source = _feedback_folder(area, user, name)
    except OSError as exc:
        raise RuntimeError(f"{FEEDBACK}/{user}/{name} in the collection area is not a folder: {exc.strerror}") from exc
    try:
        before, too_many = survey(source)
        if too_many:
            raise RuntimeError(f"{FEEDBACK}/{user}/{name} holds more than {MAX_ENTRIES} entries: not returned")
        if before != action.after.digest:  # written again since the plan: the next pass returns the new one
            raise RuntimeError("the feedback changed since this pass looked at it; the next pass returns it")
        files = _return(source, home, name, uid, gid, action.after.limit)
        seen = survey(source)[0]
    finally:
        os.close(source)
    if seen != before:  # a teacher was writing it meanwhile: theirs is what the student gets, next pass
        raise RuntimeError("the feedback changed while it was returned; the next pass returns it whole")
    when = datetime.datetime.fromtimestamp(ctx.host.clock(), datetime.UTC).isoformat(timespec="seconds")
    _ledger(ctx.paths.returns).record(name, user, {"uid": uid, "digest": seen, "at": when})
    return f"returned: {files} file(s) in ~/{FOLDER}/{name}/{FEEDBACK}, read-only"


def _return(source: int, home: Path, name: str, uid: int, gid: int, limit: int) -> int:
    """Build the copy in ``~/assignments/<name>/.feedback.returning`` and swap it in; how many files."""
    home_fd = os.open(home, _DIR)
    try:
        top = _folder(home_fd, FOLDER, uid, gid, f"~/{FOLDER}")
        try:
            work = _folder(top, name, uid, gid, f"~/{FOLDER}/{name}")
        finally:
            os.close(top)
        try:
            return _build_and_swap(source, work, name, limit)
        finally:
            os.close(work)
    finally:
        os.close(home_fd)


def _build_and_swap(source: int, work: int, name: str, limit: int) -> int:
    staging = f".{FEEDBACK}.returning"
    remove_at(work, staging)
    try:
        os.mkdir(staging, 0o700, dir_fd=work)
        built = _open_folder(work, staging, f"~/{FOLDER}/{name}/{staging}")
        try:
            files = _fill(source, built, _Budget(limit))
            os.fchmod(built, 0o555)
            os.fsync(built)
        finally:
            os.close(built)
        try:
            rename_noreplace(work, staging, work, FEEDBACK)
        except FileExistsError:
            there = os.stat(FEEDBACK, dir_fd=work, follow_symlinks=False)
            if not stat.S_ISDIR(there.st_mode) or there.st_uid != 0:
                raise RuntimeError(
                    f"~/{FOLDER}/{name}/{FEEDBACK} is the student's own (not feedback returned before): it is never "
                    "replaced; they can move it away and the next pass returns the feedback"
                ) from None
            exchange_at(work, staging, FEEDBACK)  # the new feedback in, the old one out, in one step
        os.fsync(work)
        return files
    except OSError as exc:
        raise RuntimeError(
            f"the feedback could not be returned ({exc.strerror or exc}); the next pass tries again"
        ) from exc
    finally:
        remove_at(work, staging)  # what an interrupted return left, or the feedback it replaced


class _Budget:
    """What a return may still write into the student's home: bytes (the assignment's max_submission: a teacher's
    sparse terabyte is refused, not written out by root) and entries."""

    def __init__(self, limit: int) -> None:
        self.bytes, self.entries = limit, MAX_ENTRIES

    def entry(self) -> None:
        self.entries -= 1
        if self.entries < 0:
            raise RuntimeError(f"more than {MAX_ENTRIES} entries: not returned")


def _fill(src: int, dst: int, budget: _Budget, depth: int = 0) -> int:
    """Copy the regular files and folders of ``src`` into ``dst`` as root's, read-only; symlinks and anything
    else stay back, and folders deeper than MAX_DEPTH.  How many files."""
    files = 0
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        budget.entry()
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone meanwhile: the digest check after the copy says the feedback changed
        if stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
            os.mkdir(entry.name, 0o700, dir_fd=dst)
            inner_dst = os.open(entry.name, _DIR, dir_fd=dst)
            try:
                inner_src = os.open(entry.name, _DIR, dir_fd=src)
                try:
                    files += _fill(inner_src, inner_dst, budget, depth + 1)
                finally:
                    os.close(inner_src)
                os.fchmod(inner_dst, 0o555)
            finally:
                os.close(inner_dst)
        elif stat.S_ISREG(info.st_mode):
            budget.bytes -= _copy_file(src, dst, entry.name, 0, 0, 0o444, budget.bytes)
            files += 1
    return files
