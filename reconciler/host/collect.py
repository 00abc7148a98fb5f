"""Driver for collecting an assignment at its deadline: a copy of a student's ~/assignments/<name> into the
collection area, in nbgrader's layout (``<area>/submitted/<user>/<name>`` with its ``timestamp.txt``), so that
``nbgrader autograde`` works on the area as its course directory.

The copy is one instant of the student's work: it is read while the home's writes are paused
(``tarball.writes_paused``: the filesystem frozen, a running server's writes wait, nothing of the home is
written meanwhile, not even by this module), for at most a minute.  A student controls everything in their home,
symlinks included: every folder is opened with ``O_NOFOLLOW`` and held by its descriptor, and only regular files
and folders are copied; symlinks, fifos, devices and sockets are listed in the submission's manifest, never
followed or opened.  What one submission may hold is bounded (``CollectFields.limit`` bytes, ``MAX_ENTRIES``
entries, ``MAX_DEPTH`` folders deep): the rest is listed, not collected.  Whether the work is late is decided by
the newest change time (ctime) in the folder (the folder's own included), which, unlike a modification time, no
student can set.  The folder's ``feedback`` (what teachers return there, host.returns) is not the student's work:
neither collected nor fingerprinted, though its return changes the folder's own ctime.

The copy is built in ``<area>/.staging/<user>.<name>`` (root's alone, on the collection volume) and moved into
place in one rename, after everything that may run out of space (the copy, its manifest) is written: a full
collection volume or a killed pass leaves nothing half-made in ``submitted/``, and the next pass tries again.  An
earlier collection of the same work is never deleted: it moves to ``<area>/earlier/<name>/<user>/<its time>``.
Teachers (the classroom's teachers group) read everything collected, students nothing: folders are root's,
group teachers, 0750, files 0640.  Teachers may write in the area itself (nbgrader's own folders), so the area
is walked by descriptors too, and every folder of this module's is made root's again before it is used.

Who was collected when, and as what (on time, late, missing), is kept in ``<state_dir>/collections.json``
(``Paths.collections``) with each student's uid, and the folder's fingerprint at that instant (``fingerprint``:
names, sizes and change times, nothing read): a pass compares it with the folder as it is now to collect
changed work again during the late window.  A person made again under the same name is someone new.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import datetime
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from ..config.classroom import ASSIGNMENT_PATTERN, USERNAME_PATTERN, group_name
from ..config.site import COLLECTION_VOLUME
from ..core.actions import Action, Kind, Op
from ..core.actual import NO_FOLDER, Collected
from .drivers import Context, driver
from .facts import colon_entry
from .fsutil import remove_at, rename_noreplace
from .handouts import FOLDER, student
from .ledger import Ledger
from .mounts import is_mounted
from .tarball import writes_paused

FORMAT = 1
MISSING = NO_FOLDER  # the fingerprint of a folder that is not there (or not a folder: a symlink)
UNREADABLE = "unreadable"  # the fingerprint of a folder that could not be walked (an I/O error)
MAX_ENTRIES = 20000  # entries of one submission looked at, folders and skipped ones included
MAX_DEPTH = 32  # folders deep: each level holds two descriptors while it is walked
PAUSE_LIMIT = 60.0  # seconds the home's writes wait at most (the freeze's own guard thaws after that)
READ_WITHIN = PAUSE_LIMIT - 10  # the copy gives up after this long, before the guard thaws under it
CHUNK = 1 << 20
STATUSES = ("on time", "late", "missing")
TIMESTAMP = "timestamp.txt"  # nbgrader's: when the submission was made (here: collected)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # nbgrader's default; in UTC: 2026-12-21 23:00:01.123456 UTC
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"  # an earlier copy's folder name in earlier/<name>/<user>/
STAGING = ".staging"
# What nbgrader itself leaves out of a submission (its CourseDirectory.ignore: .ipynb_checkpoints, *.pyc,
# __pycache__, feedback), at any depth: listed in the manifest, neither collected nor part of the fingerprint or
# the verdict -- JupyterLab's checkpoints appear when a notebook is opened, and the feedback returned into the
# folder (host.returns) is the teachers', not new work.
IGNORED = (b".ipynb_checkpoints", b"__pycache__", b"feedback")
FOLDER_MODE, FILE_MODE = 0o750, 0o640  # root's, the teachers' group reads
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFDIR: "folder",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "device",
    stat.S_IFBLK: "device",
    stat.S_IFSOCK: "socket",
}


# --- the ledger ---------------------------------------------------------------------------------------------


def _check(entry: dict) -> None:
    if entry["status"] not in STATUSES:
        raise ValueError(f"status {entry['status']!r}")
    if not isinstance(entry["fingerprint"], str) or not isinstance(entry["at"], str):
        raise ValueError(f"fingerprint {entry['fingerprint']!r}, at {entry['at']!r}")


def _ledger(path: Path) -> Ledger:
    return Ledger(path, "nothing is collected", _check)


def read(path: Path, uids: Mapping[str, int]) -> dict[str, dict[str, Collected]]:
    """Assignment -> user -> their submission as last collected, counting only entries of the account that has
    the name now (``uids``: username -> uid).  No ledger yet: nothing.  Raises LedgerDamaged."""
    return {
        name: {user: Collected(got["status"], got["fingerprint"], got["at"]) for user, got in people.items()}
        for name, people in _ledger(path).entries(uids).items()
    }


# --- walking a student's folder -----------------------------------------------------------------------------


def _shown(rel: bytes) -> str:
    """A name as the manifest and the messages show it: UTF-8, any other byte as \\xNN."""
    return rel.decode("utf-8", "backslashreplace")


class _Survey:
    """What one walk saw: the fingerprint (sha256 over every entry's relative path, kind, size, mtime and ctime, in
    walk order), the newest ctime, how many regular files."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256(b"collect.fingerprint 1\0")
        self.entries = 0
        self.newest = 0  # ns
        self.regular = 0
        self.truncated = False

    def add(self, rel: bytes, kind: str, st: os.stat_result) -> None:
        self.entries += 1
        self.newest = max(self.newest, st.st_ctime_ns)
        self.regular += kind == "file"
        # a name holds no NUL and the rest are numbers: the record cannot be read two ways
        self.digest.update(rel + f"\0{kind}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0".encode())

    def stop(self) -> None:
        self.truncated = True
        self.digest.update(f"\0more than {MAX_ENTRIES} entries\0".encode())

    @property
    def fingerprint(self) -> str:
        return self.digest.hexdigest()[:32]


class _Look:
    """What the walk does at each entry: for the fingerprint, nothing (a stat walk, nothing opened but folders)."""

    def enter(self, made: int | None, name: bytes) -> int | None:
        return None

    def leave(self, made: int | None) -> None:
        pass

    def close(self, made: int | None) -> None:
        pass

    def file(self, src: int, made: int | None, name: bytes, rel: bytes, st: os.stat_result) -> None:
        pass

    def other(self, src: int, name: bytes, rel: bytes, kind: str, why: str = "") -> None:
        pass

    def more(self) -> None:
        pass

    def tick(self) -> None:
        pass


def _listing(fd: int) -> list[bytes]:
    """The names in the folder open as ``fd``, sorted by their bytes and reversed (the walk pops the first).  At
    most MAX_ENTRIES + 1 of them are read: a folder holding more is beyond the bound anyway (which of its names are
    looked at then follows the directory's own order, the same while it is unchanged)."""
    found = []
    with os.scandir(fd) as listing:
        for entry in listing:
            found.append(os.fsencode(entry.name))
            if len(found) > MAX_ENTRIES:
                break
    found.sort(reverse=True)
    return found


def _walk(top: int, visit: _Look, made: int | None = None) -> _Survey:
    """Walk the folder open as ``top`` (depth first, names sorted by bytes, never through a symlink, only on its
    own filesystem), telling ``visit`` what it finds; ``made``: what ``visit`` made for ``top`` (the copy's
    folder).  Stops after MAX_ENTRIES entries; folders deeper than MAX_DEPTH are not entered."""
    survey = _Survey()
    here = os.fstat(top)
    survey.add(b"", "folder", here)
    stack: list[tuple[int, bytes, int | None, list | None]] = [(top, b"", made, None)]
    try:
        while stack:
            fd, prefix, into, todo = stack[-1]
            if todo is None:
                todo = _listing(fd)
                stack[-1] = (fd, prefix, into, todo)
            if not todo:
                stack.pop()
                if fd != top:
                    os.close(fd)
                    visit.leave(into)
                continue
            if survey.entries >= MAX_ENTRIES:
                survey.stop()
                visit.more()
                break
            visit.tick()
            name = todo.pop()
            if name in IGNORED or name.endswith(b".pyc"):
                visit.other(fd, name, prefix + name, "ignored", "left out, as nbgrader leaves it out")
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone meanwhile (a fingerprint's walk: the home is not paused)
            rel = prefix + name
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
            survey.add(rel, kind, st)
            if kind == "file":
                visit.file(fd, into, name, rel, st)
            elif kind != "folder":
                visit.other(fd, name, rel, kind)
            elif len(stack) > MAX_DEPTH:
                visit.other(fd, name, rel, kind, f"nested deeper than {MAX_DEPTH} folders: not entered")
            elif st.st_dev != here.st_dev:
                visit.other(fd, name, rel, kind, "another filesystem: not entered")
            else:
                child = _enter(fd, name, st)
                if child is None:
                    continue  # replaced meanwhile (a fingerprint's walk: the home is not paused)
                try:
                    inner = visit.enter(into, name)
                except BaseException:
                    os.close(child)
                    raise
                stack.append((child, rel + b"/", inner, None))
    except BaseException:
        for fd, _, into, _ in stack[1:]:
            os.close(fd)
            visit.close(into)
        raise
    for fd, _, into, _ in reversed(stack[1:]):  # stopped early: what was begun is finished
        os.close(fd)
        visit.leave(into)
    return survey


def survey(top: int) -> tuple[str, bool]:
    """The fingerprint of the folder open as ``top`` (a stat walk: bounded, iterative, never through a symlink,
    what vanishes meanwhile skipped) and whether it stopped at MAX_ENTRIES: the returned feedback's digest."""
    found = _walk(top, _Look())
    return found.fingerprint, found.truncated


def _enter(parent: int, name: bytes, seen: os.stat_result) -> int | None:
    """The folder ``name`` as it was listed (the same inode), never through a symlink; None when it changed."""
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        return None
    return fd


def _open_work(home: int, name: str) -> tuple[int | None, str]:
    """~/assignments/``name`` of the home open as ``home``, as a folder descriptor; (None, why) when it is missing
    or not a folder (a symlink is never followed)."""
    top = _open_step(home, FOLDER, f"~/{FOLDER}")
    if isinstance(top, str):
        return None, top
    try:
        work = _open_step(top, name, f"~/{FOLDER}/{name}")
    finally:
        os.close(top)
    return (None, work) if isinstance(work, str) else (work, "")


def _open_step(parent: int, name: str, shown: str) -> int | str:
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return f"no {shown}"
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return f"no {shown}"
    if stat.S_ISLNK(st.st_mode):
        return f"{shown} is a symlink: not followed"
    return f"{shown} is not a folder"


def _survey(home: Path, name: str, visit: _Look | None = None, made: int | None = None) -> tuple[_Survey | None, str]:
    """The walk of ~/assignments/``name`` in ``home``; (None, why) when it is missing.  Only reads: a stat walk as
    the folder is now, or (``visit``: the copy, inside the pause) the copy into ``made``."""
    home_fd = os.open(home, _DIR)
    try:
        work, why = _open_work(home_fd, name)
        if work is None:
            return None, why
        try:
            return _walk(work, visit or _Look(), made), ""
        finally:
            os.close(work)
    finally:
        os.close(home_fd)


def fingerprint(home: Path, name: str) -> str:
    """The fingerprint of ~/assignments/``name`` in the mounted ``home`` as it is now: a stat walk (nothing read,
    no symlink followed, at most MAX_ENTRIES entries), the same as a collection records.  MISSING when the folder
    is not there or is not a folder; UNREADABLE when it cannot be walked."""
    try:
        found, _ = _survey(home, name)
    except OSError:
        return UNREADABLE
    return MISSING if found is None else found.fingerprint


# --- copying ------------------------------------------------------------------------------------------------


class _Copy(_Look):
    """The collection's walk: folders made again and regular files copied (hashed as they are read) into the
    staging folder, root's and the teachers'; the rest listed as skipped."""

    def __init__(self, limit: int, gid: int, stop_at: float):
        self.limit, self.gid, self.stop_at = limit, gid, stop_at
        self.files: list[dict] = []
        self.skipped: list[dict] = []
        self.bytes = 0

    def tick(self) -> None:
        if time.monotonic() > self.stop_at:
            raise RuntimeError(
                f"reading the folder took longer than {READ_WITHIN:.0f} s (the home's writes may wait "
                f"{PAUSE_LIMIT:.0f} s at most): nothing is collected; the next pass tries again"
            )

    def enter(self, made: int | None, name: bytes) -> int:
        os.mkdir(name, 0o700, dir_fd=made)
        return os.open(name, _DIR, dir_fd=made)

    def leave(self, made: int | None) -> None:
        assert made is not None
        try:
            os.fchown(made, 0, self.gid)
            os.fchmod(made, FOLDER_MODE)
        finally:
            os.close(made)

    def close(self, made: int | None) -> None:
        if made is not None:
            os.close(made)

    def skip(self, rel: bytes, kind: str, why: str, **more: str) -> None:
        self.skipped.append({"path": _shown(rel), "kind": kind, "why": why, **more})

    def other(self, src: int, name: bytes, rel: bytes, kind: str, why: str = "") -> None:
        if kind == "symlink":
            target = _shown(os.readlink(name, dir_fd=src))
            self.skip(rel, kind, why or f"a symlink (to {target}): not followed", target=target)
        else:
            self.skip(rel, kind, why or f"a {kind}: only files and folders are collected")

    def more(self) -> None:
        self.skip(b"", "more", f"more than {MAX_ENTRIES} entries: the rest is not collected")

    def file(self, src: int, made: int | None, name: bytes, rel: bytes, st: os.stat_result) -> None:
        if rel == TIMESTAMP.encode():
            self.skip(rel, "file", "nbgrader's own name: the collection time is written there")
            return
        if self.bytes + st.st_size > self.limit:
            self.skip(
                rel,
                "file",
                f"over the submission limit ({_size(st.st_size)}; {_size(self.limit)} in all)",
            )
            return
        try:  # O_NONBLOCK: a lease the student holds on it refuses at once instead of pausing the home for 45 s
            reading = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ENOENT, errno.ELOOP):
                raise
            self.skip(rel, "file", f"could not be opened ({exc.strerror})")
            return
        try:
            now = os.fstat(reading)
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                self.skip(rel, "file", "replaced while it was read")
                return
            digest, size = self._copy(reading, made, name, now)
        finally:
            os.close(reading)
        self.bytes += size
        self.files.append({"path": _shown(rel), "size": size, "sha256": digest, "changed": _iso_ns(now.st_mtime_ns)})

    def _copy(self, reading: int, made: int | None, name: bytes, st: os.stat_result) -> tuple[str, int]:
        writing = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=made)
        try:
            digest, left = hashlib.sha256(), st.st_size  # the home is paused: its size is its size
            while left > 0:
                self.tick()
                chunk = os.read(reading, min(CHUNK, left))
                if not chunk:
                    break
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(writing, view) :]
                left -= len(chunk)
            os.fchown(writing, 0, self.gid)
            os.fchmod(writing, FILE_MODE)
            os.utime(writing, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(writing)
        return digest.hexdigest(), st.st_size - left


def _size(size: int) -> str:
    """A size as the messages say it: 21 B, 12 KiB, 2.9 KiB, 3 MiB."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} B"


def _iso_ns(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).isoformat(timespec="seconds")


def _syncfs(fd: int) -> None:
    """Everything written to the filesystem of ``fd`` on disk (one call for the whole copy)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


# --- the collection area ------------------------------------------------------------------------------------


def _own_folder(parent: int, name: str, gid: int, mode: int = FOLDER_MODE, make: bool = True) -> int | None:
    """This module's folder ``name`` in the area: made when missing (unless not ``make``: then None), never
    through a symlink, and root's with ``gid`` and ``mode`` whoever made it (teachers may write in the area)."""
    if make:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=parent)
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except FileNotFoundError:
        if make:
            raise
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RuntimeError(
                f"{name} in the collection area is not a folder (a symlink or a file someone put there): move "
                "it away; nothing is collected until then"
            ) from None
        raise
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (0, gid):
        os.fchown(fd, 0, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(fd, mode)
    return fd


def _own_path(area: int, parts: tuple[str, ...], gid: int, make: bool = True) -> int | None:
    fd = os.dup(area)
    try:
        for part in parts:
            inner = _own_folder(fd, part, gid, make=make)
            os.close(fd)
            fd = -1
            if inner is None:
                return None
            fd = inner
        found, fd = fd, -1
        return found
    finally:
        if fd >= 0:
            os.close(fd)


def _collected_when(folder: int, name: str) -> datetime.datetime:
    """When the copy ``name`` (in the folder open as ``folder``) was collected: its timestamp.txt, or its mtime."""
    try:
        copy = os.open(name, _DIR, dir_fd=folder)
    except OSError:
        copy = None
    if copy is not None:
        try:
            stamp = os.open(TIMESTAMP, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=copy)
            try:
                text = os.read(stamp, 256).decode(errors="replace").strip()
            finally:
                os.close(stamp)
            when = datetime.datetime.strptime(text, TIMESTAMP_FORMAT)
            return when.replace(tzinfo=datetime.UTC)
        except (OSError, ValueError):
            pass
        finally:
            os.close(copy)
    st = os.stat(name, dir_fd=folder, follow_symlinks=False)
    return datetime.datetime.fromtimestamp(st.st_mtime, datetime.UTC)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _write_new(folder: int, name: str, data: bytes, gid: int) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, 0, gid)
        os.fchmod(fd, FILE_MODE)
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_name(keep: int, old_manifests: int, user: str, stamp: str) -> str:
    """A name for an earlier copy in the folder open as ``keep``: its time, made unique (its manifest's too)."""
    for n in range(1, 1000):
        moved = stamp if n == 1 else f"{stamp}-{n}"
        if not _exists(keep, moved) and not _exists(old_manifests, f"{user}.{moved}.json"):
            return moved
    raise RuntimeError(f"the collection area holds 999 earlier copies collected at {stamp}: nothing is collected")


def _move_earlier(submitted: int, keep: int, manifests: int, old_manifests: int, user: str, name: str, moved: str):
    """Move the earlier copy ``submitted``/``name`` to the folder open as ``keep`` (earlier/<name>/<user>/) as
    ``moved``, and its manifest to manifests/<name>/earlier/<user>.<moved>.json."""
    rename_noreplace(submitted, name, keep, moved)
    with contextlib.suppress(FileNotFoundError, FileExistsError):
        rename_noreplace(manifests, f"{user}.json", old_manifests, f"{user}.{moved}.json")
    os.fsync(keep)
    os.fsync(old_manifests)


# --- the driver ---------------------------------------------------------------------------------------------


def _deadline(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise RuntimeError(f"the deadline {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise RuntimeError(f"the deadline {text!r} has no time zone")
    return when


def _ns(when: datetime.datetime) -> int:
    """A moment as nanoseconds since the epoch, exactly (a float would blur the microseconds)."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (when - epoch) // datetime.timedelta(microseconds=1) * 1000


def _status(survey: _Survey | None, deadline: datetime.datetime) -> str:
    if survey is None or survey.regular == 0:
        return "missing"
    return "late" if survey.newest > _ns(deadline) else "on time"


def _teachers(ctx: Context) -> int:
    group = group_name(ctx.classroom, "teacher")
    entry = colon_entry(ctx.host.etc / "group", group)
    if entry is None or len(entry) < 3 or not entry[2].isdigit():
        raise RuntimeError(f"the group {group} does not exist: nothing is collected (teachers could not read it)")
    return int(entry[2])


@driver(Kind.COLLECTION, Op.CREATE)
def collect(action: Action, ctx: Context) -> str:
    user, want = action.target, action.after
    name, limit, deadline = want.assignment, want.limit, _deadline(want.deadline)
    if not re.fullmatch(USERNAME_PATTERN, user) or not re.fullmatch(ASSIGNMENT_PATTERN, name) or name in (".", ".."):
        raise RuntimeError(f"{user!r}, {name!r}: not a username and an assignment name")
    area = ctx.paths.collection_area
    if not is_mounted(ctx.host, area, ctx.volumes.layout.source(COLLECTION_VOLUME)):
        raise RuntimeError(f"the collection area {area} is not mounted; nothing is collected onto the bare mount point")
    home, uid, _ = student(ctx, user, "collected")
    gid = _teachers(ctx)
    before = _ledger(ctx.paths.collections).entry(name, user)
    if before is not None and before["uid"] == uid:
        done = _already(before, home, user, name, deadline, area)
        if done:  # found as it was collected: the ledger says it was looked at now (a moved deadline is met)
            now = datetime.datetime.fromtimestamp(ctx.host.clock(), datetime.UTC).isoformat(timespec="seconds")
            _ledger(ctx.paths.collections).record(name, user, {**before, "at": now})
            return done
    got = _collect(ctx, user, name, limit, deadline, gid)
    entry = {k: got[k] for k in ("at", "status", "fingerprint", "files", "bytes", "skipped")}
    try:
        _ledger(ctx.paths.collections).record(name, user, {"uid": uid, **entry})
    except OSError as exc:
        raise RuntimeError(
            f"collected, but {ctx.paths.collections} could not be written ({exc.strerror or exc}); the next pass "
            "collects again (and keeps this copy under earlier/)"
        ) from exc
    return got["message"]


def _already(before: dict, home: Path, user: str, name: str, deadline: datetime.datetime, area: Path) -> str:
    """The message when the folder is as it was collected (the same fingerprint and status, the copy still in
    place): nothing to do.  Empty otherwise."""
    try:
        survey, _ = _survey(home, name)
    except OSError:
        return ""
    now = MISSING if survey is None else survey.fingerprint
    status = _status(survey, deadline)
    if now != before["fingerprint"] or status != before["status"]:
        return ""
    if status != "missing" and not os.path.isdir(area / "submitted" / user / name):
        return ""
    return f"already collected {before['at']} ({status}); unchanged since"


def _collect(ctx: Context, user: str, name: str, limit: int, deadline: datetime.datetime, gid: int) -> dict:
    """Copy, describe and place one submission; what the ledger and the journal get."""
    staged = f"{user}.{name}"
    try:
        area = os.open(ctx.paths.collection_area, _DIR)
        try:
            staging = _own_folder(area, STAGING, 0, 0o700)
            assert staging is not None
            try:
                remove_at(staging, staged)  # what an interrupted collection left
                return _build_and_place(ctx, area, staging, staged, user, name, limit, deadline, gid)
            finally:
                try:
                    remove_at(staging, staged)
                finally:
                    os.close(staging)
        finally:
            os.close(area)
    except OSError as exc:
        raise RuntimeError(
            f"~/{FOLDER}/{name} could not be collected ({exc.strerror or exc}); nothing was placed, the next pass "
            "tries again"
        ) from exc


def _build_and_place(
    ctx: Context,
    area: int,
    staging: int,
    staged: str,
    user: str,
    name: str,
    limit: int,
    deadline: datetime.datetime,
    gid: int,
) -> dict:
    home = ctx.paths.home(user)
    os.mkdir(staged, 0o700, dir_fd=staging)
    made = os.open(staged, _DIR, dir_fd=staging)
    try:
        copy = _Copy(limit, gid, time.monotonic() + READ_WITHIN)
        with writes_paused(home, ctx.run, limit=PAUSE_LIMIT):
            began = time.monotonic()
            copy.stop_at = began + READ_WITHIN
            survey, why = _survey(home, name, copy, made)
        paused = time.monotonic() - began
        now = datetime.datetime.fromtimestamp(ctx.host.clock(), datetime.UTC)
        status = _status(survey, deadline)
        if status == "missing" and not why:
            why = f"no file in ~/{FOLDER}/{name}"
        if status != "missing":
            _write_new(made, TIMESTAMP, f"{now.strftime(TIMESTAMP_FORMAT)}\n".encode(), gid)
            os.fchown(made, 0, gid)
            os.fchmod(made, FOLDER_MODE)
        _syncfs(made)  # the whole copy on disk before it is placed (one flush, after the home's writes go on)
    finally:
        os.close(made)
    manifest = {
        "format_version": FORMAT,
        "assignment": name,
        "user": user,
        "collected_at": now.isoformat(),
        "deadline": deadline.isoformat(),
        "status": status,
        "newest_change": _iso_ns(survey.newest) if survey is not None else None,
        "files": copy.files,
        "skipped": copy.skipped,
        "bytes": copy.bytes,
        "how": f"read with the home's writes paused {paused:.3f} s",
    }
    if why:
        manifest["why"] = why
    earlier = _place(area, staging, staged, user, name, gid, status != "missing", manifest)
    message = _message(status, why, copy, survey, earlier)
    return {
        "at": now.isoformat(timespec="seconds"),
        "status": status,
        "fingerprint": MISSING if survey is None else survey.fingerprint,
        "files": len(copy.files),
        "bytes": copy.bytes,
        "skipped": len(copy.skipped),
        "message": message,
    }


def _place(
    area: int, staging: int, staged: str, user: str, name: str, gid: int, present: bool, manifest: dict
) -> str | None:
    """The manifest written (not yet in place), the earlier copy moved to earlier/, the new one renamed in, then
    the manifest: nothing that needs space comes after the first move.  Where the earlier copy went, if any.

    Only the first copy is kept in earlier/ (the one collected at the due time): a late copy that a later one
    replaces is removed, so a student whose work keeps changing in the late window takes at most twice their
    submission's room."""
    manifests = _own_path(area, ("manifests", name), gid)
    assert manifests is not None
    temp = f".{user}.json.{secrets.token_hex(4)}.tmp"
    submitted = keep = old_manifests = None
    try:
        submitted = _own_path(area, ("submitted", user), gid, make=present)
        earlier, first = None, []
        if submitted is not None and _exists(submitted, name):
            keep = _own_path(area, ("earlier", name, user), gid)
            old_manifests = _own_folder(manifests, "earlier", gid)
            assert keep is not None and old_manifests is not None
            first = sorted(os.listdir(keep))
            moved = first[0] if first else ""
            if not first:
                moved = _free_name(keep, old_manifests, user, _collected_when(submitted, name).strftime(STAMP_FORMAT))
            earlier = f"earlier/{name}/{user}/{moved}"
        data = manifest | {"earlier": earlier}
        _write_new(manifests, temp, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode(), gid)
        if earlier and first:
            assert submitted is not None
            remove_at(submitted, name)  # a late copy replaced by a later one: the first copy stays in earlier/
        elif earlier:
            assert submitted is not None and keep is not None and old_manifests is not None
            _move_earlier(submitted, keep, manifests, old_manifests, user, name, moved)
        if present:
            assert submitted is not None
            rename_noreplace(staging, staged, submitted, name)  # the whole copy appears at once
            os.fsync(staging)
        if submitted is not None:
            os.fsync(submitted)
        os.rename(temp, f"{user}.json", src_dir_fd=manifests, dst_dir_fd=manifests)
        os.fsync(manifests)
        return earlier
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=manifests)
        for fd in (manifests, submitted, keep, old_manifests):
            if fd is not None:
                os.close(fd)


def _message(status: str, why: str, copy: _Copy, survey: _Survey | None, earlier: str | None) -> str:
    if status == "missing":
        text = f"missing: {why}"
    else:
        text = f"collected: {len(copy.files)} file(s), {_size(copy.bytes)}, {status}"
        if status == "late" and survey is not None:
            changed = datetime.datetime.fromtimestamp(survey.newest / 1e9, datetime.UTC)
            text += f" (changed {changed:%Y-%m-%d %H:%M} UTC)"
    if copy.skipped:
        kinds = collections.Counter(_reason(item) for item in copy.skipped)
        text += f"; {len(copy.skipped)} file(s) not collected ({', '.join(f'{n} {k}' for k, n in kinds.items())})"
    if earlier:
        text += f"; the earlier copy is kept in {earlier}"
    return text


def _reason(item: dict) -> str:
    if item["why"].startswith("over the submission limit"):
        return "over the submission limit"
    if item["kind"] in ("file", "folder", "more"):
        return item["why"].split(":")[0].split(" (")[0]
    return item["kind"]
