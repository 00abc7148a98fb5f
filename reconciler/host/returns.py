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
import hashlib
import json
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from ..config.site import COLLECTION_VOLUME
from ..core.actions import Action, Kind, Op
from .accounts import ours
from .drivers import Context, driver
from .fsutil import exchange_at, rename_noreplace, write_atomic
from .handouts import _DIR, FIRST_UID, FOLDER, _copy_file, _folder, _open_folder, _remove
from .mounts import is_mounted

FORMAT = 1
FEEDBACK = "feedback"  # nbgrader's folder in the course directory, and the folder each student gets
MAX_ENTRIES = 20000  # a feedback folder larger than this is not returned
_LEDGER = threading.Lock()


class LedgerDamaged(RuntimeError):
    """feedback.json exists but cannot be read: returning again could replace what students have."""


def read(path: Path, uids: Mapping[str, int]) -> dict[str, dict[str, str]]:
    """Assignment -> student -> the digest of the feedback they were given, counting only entries of the account
    that has the name now.  No ledger yet: nobody.  Raises LedgerDamaged."""
    data = _load(path)
    return {
        name: {user: got["digest"] for user, got in people.items() if uids.get(user) == got["uid"]}
        for name, people in data["assignments"].items()
    }


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT:
            raise ValueError(f"format {data.get('format_version')!r}, not {FORMAT}")
        for people in data["assignments"].values():
            for got in people.values():
                if not isinstance(got["uid"], int) or not isinstance(got["digest"], str):
                    raise ValueError(f"entry {got!r}")
        return data
    except FileNotFoundError:
        return {"format_version": FORMAT, "assignments": {}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LedgerDamaged(f"{path} cannot be read ({exc}); no feedback is returned until it is repaired") from exc


def with_feedback(area: Path) -> set[str]:
    """The names of the folders in the collection area's feedback/ (one directory read; none: empty)."""
    try:
        with os.scandir(area / FEEDBACK) as entries:
            return {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    except OSError:
        return set()


def digest(area: Path, user: str, name: str) -> str | None:
    """Of ``feedback/<user>/<name>`` in the area (names, kinds, sizes, change times; nothing read), None when
    there is none (or it is a symlink)."""
    try:
        fd = _feedback_folder(area, user, name)
    except OSError:
        return None
    try:
        return _digest(fd)
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


def _digest(top: int) -> str:
    found = hashlib.sha256()
    count = 0

    def walk(fd: int, prefix: bytes) -> None:
        nonlocal count
        for entry in sorted(os.scandir(fd), key=lambda e: e.name):
            count += 1
            if count > MAX_ENTRIES:
                raise RuntimeError(f"more than {MAX_ENTRIES} entries: not returned")
            info = entry.stat(follow_symlinks=False)
            path = prefix + os.fsencode(entry.name)
            found.update(b"%s\0%o\0%d\0%d\0" % (path, info.st_mode, info.st_size, info.st_ctime_ns))
            if stat.S_ISDIR(info.st_mode):
                inner = os.open(entry.name, _DIR, dir_fd=fd)
                try:
                    walk(inner, path + b"/")
                finally:
                    os.close(inner)

    walk(top, b"")
    return found.hexdigest()[:32]


def _record(path: Path, name: str, user: str, uid: int, seen: str, when: str) -> None:
    with _LEDGER:
        data = _load(path)
        data["assignments"].setdefault(name, {})[user] = {"uid": uid, "digest": seen, "at": when}
        write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


@driver(Kind.FEEDBACK, Op.CREATE)
def give_back(action: Action, ctx: Context) -> str:
    user, name = action.target, action.after.assignment
    area, home = ctx.paths.collection_area, ctx.paths.home(user)
    if not is_mounted(ctx.host, area, ctx.volumes.layout.source(COLLECTION_VOLUME)):
        raise RuntimeError(f"the collection area {area} is not mounted; its feedback is not read from the bare folder")
    if not is_mounted(ctx.host, home, ctx.volumes.layout.source(user)):
        raise RuntimeError(f"{home} is not mounted; nothing is returned to the bare mount point")
    account = ours(ctx.host, user, ctx.classroom)
    if account is None:
        raise RuntimeError(f"{user} has no account")
    uid, gid = int(account[2]), int(account[3])
    if uid < FIRST_UID:
        raise RuntimeError(f"{user} has uid {uid}, a system account's: nothing is returned")
    try:
        source = _feedback_folder(area, user, name)
    except OSError as exc:
        raise RuntimeError(f"{FEEDBACK}/{user}/{name} in the collection area is not a folder: {exc.strerror}") from exc
    try:
        before = _digest(source)
        files = _return(source, home, name, uid, gid)
        seen = _digest(source)
    finally:
        os.close(source)
    if seen != before:  # a teacher was writing it meanwhile: theirs is what the student gets, next pass
        raise RuntimeError("the feedback changed while it was returned; the next pass returns it whole")
    when = datetime.datetime.fromtimestamp(ctx.host.clock(), datetime.UTC).isoformat(timespec="seconds")
    _record(ctx.paths.returns, name, user, uid, seen, when)
    return f"returned: {files} file(s) in ~/{FOLDER}/{name}/{FEEDBACK}, read-only"


def _return(source: int, home: Path, name: str, uid: int, gid: int) -> int:
    """Build the copy in ``~/assignments/<name>/.feedback.returning`` and swap it in; how many files."""
    home_fd = os.open(home, _DIR)
    try:
        top = _folder(home_fd, FOLDER, uid, gid, f"~/{FOLDER}")
        try:
            work = _folder(top, name, uid, gid, f"~/{FOLDER}/{name}")
        finally:
            os.close(top)
        try:
            return _build_and_swap(source, work, name)
        finally:
            os.close(work)
    finally:
        os.close(home_fd)


def _build_and_swap(source: int, work: int, name: str) -> int:
    staging = f".{FEEDBACK}.returning"
    _remove(work, staging)
    try:
        os.mkdir(staging, 0o700, dir_fd=work)
        built = _open_folder(work, staging, f"~/{FOLDER}/{name}/{staging}")
        try:
            files = _fill(source, built)
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
        _remove(work, staging)  # what an interrupted return left, or the feedback it replaced


def _fill(src: int, dst: int) -> int:
    """Copy the regular files and folders of ``src`` into ``dst`` as root's, read-only; symlinks and anything
    else stay back.  How many files."""
    files = 0
    for entry in os.scandir(src):
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            os.mkdir(entry.name, 0o700, dir_fd=dst)
            inner_dst = os.open(entry.name, _DIR, dir_fd=dst)
            try:
                inner_src = os.open(entry.name, _DIR, dir_fd=src)
                try:
                    files += _fill(inner_src, inner_dst)
                finally:
                    os.close(inner_src)
                os.fchmod(inner_dst, 0o555)
            finally:
                os.close(inner_dst)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(src, dst, entry.name, 0, 0, 0o444)
            files += 1
    return files
