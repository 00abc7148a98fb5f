"""Driver for handing out an assignment: a student's own copy of a course-folder folder in ~/assignments/<name>.

A student controls everything in their home, symlinks included, and can change it while a pass runs; the
copy is made by root without ever following one.  Every folder of the home it writes into is opened with
``O_NOFOLLOW`` and held by its descriptor, and every file is created in one (``O_EXCL``): what a student swaps
in meanwhile is never written through, and nothing lands outside their own volume.  The course folder's side
is read the same way, and only what a student may read there is copied (a teacher's 0600 solutions stay
back).  The copy is built in ``~/assignments/.<name>.handout`` and moved into place in one rename, so a full
disk or a killed pass never leaves half a notebook where the student works (the next pass starts it again);
a student who already has the folder keeps every file of theirs (only what they lack is moved in, each by a
rename that never replaces).  Files and folders belong to the student; modes are the usual 0644 / 0755
(executable files stay executable), whatever the teacher's copy has.

Who got which copy is kept in ``<state_dir>/handouts.json`` (``Paths.handouts``) with their uid: each copy is
handed out once, and a person made again under the same name is someone new.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from ..core.actions import Action, Kind, Op
from .accounts import ours
from .drivers import Context, driver
from .fsutil import remove_at, rename_noreplace
from .ledger import Ledger
from .mounts import is_mounted

FOLDER = "assignments"  # in each student's home
FIRST_UID = 1000  # below: system accounts, never a student's
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _ledger(path: Path) -> Ledger:
    return Ledger(path, "no assignment is handed out")


def read(path: Path, uids: Mapping[str, int]) -> dict[str, dict[str, tuple[str, str]]]:
    """Assignment -> the students who got their copy -> when their first copy came and when the latest (ISO 8601;
    the same unless it was handed out again), counting only entries of the account that has the name now
    (``uids``: username -> uid).  No ledger yet: nobody.  Raises LedgerDamaged."""
    return {
        name: {
            user: (str(got.get("at", "")), str(got.get("again") or got.get("at", ""))) for user, got in people.items()
        }
        for name, people in _ledger(path).entries(uids).items()
    }


SOURCE_ENTRIES = 5000  # a source tree looked at for changes: at most this many entries


def changed_since(source: str, since: str) -> bool:
    """Did anything in the source folder change (its content, names or modes: the change time) after ``since``
    (ISO 8601)?  A stat walk that never follows a symlink, bounded; False when it cannot be looked at."""
    try:
        limit = datetime.datetime.fromisoformat(since).timestamp()
        todo, seen = [source], 0
        while todo:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > SOURCE_ENTRIES:
                        return False
                    info = entry.stat(follow_symlinks=False)
                    if info.st_ctime > limit:
                        return True
                    if stat.S_ISDIR(info.st_mode):
                        todo.append(entry.path)
        return os.lstat(source).st_ctime > limit
    except (OSError, ValueError):
        return False


def source_ok(source: str, course_folder: Path) -> bool:
    """A real folder (not a symlink to one), inside the course folder once every symlink on the way is resolved."""
    try:
        if not stat.S_ISDIR(os.lstat(source).st_mode):
            return False
    except OSError:
        return False
    return Path(os.path.realpath(source)).is_relative_to(os.path.realpath(course_folder))


def _record(path: Path, name: str, user: str, uid: int, when: str) -> None:
    """``at``: when their first copy was handed out (it decides whether a due time was theirs); a copy handed out
    again (a rerelease) is ``again``."""
    ledger = _ledger(path)
    before = ledger.entry(name, user)
    if before is not None and before.get("uid") == uid and before.get("at"):
        ledger.record(name, user, {**before, "again": when})
    else:
        ledger.record(name, user, {"uid": uid, "at": when})


def student(ctx: Context, user: str, doing: str) -> tuple[Path, int, int]:
    """What the teaching cycle's drivers check before touching a student's home: it is mounted from their volume
    (never the bare mount point), and the account is ours and no system account's.  Their home, uid and gid;
    a RuntimeError saying that nothing is ``doing`` ("handed out") otherwise."""
    home = ctx.paths.home(user)
    if not is_mounted(ctx.host, home, ctx.volumes.layout.source(user)):
        raise RuntimeError(f"{home} is not mounted; nothing is {doing} at the bare mount point")
    account = ours(ctx.host, user, ctx.classroom)
    if account is None:
        raise RuntimeError(f"{user} has no account")
    uid, gid = int(account[2]), int(account[3])
    if uid < FIRST_UID:
        raise RuntimeError(f"{user} has uid {uid}, a system account's: nothing is {doing}")
    return home, uid, gid


@driver(Kind.HANDOUT, Op.CREATE)
def hand_out(action: Action, ctx: Context) -> str:
    user, name, source = action.target, action.after.assignment, action.after.source
    home, uid, gid = student(ctx, user, "handed out")
    if not source_ok(source, ctx.paths.course_folder):
        raise RuntimeError(f"{source} is not a folder in the course folder")
    kept = copy_into_home(source, home, name, uid, gid)
    when = datetime.datetime.fromtimestamp(ctx.host.clock(), datetime.UTC).isoformat(timespec="seconds")
    _record(ctx.paths.handouts, name, user, uid, when)
    return "handed out" + (f"; {kept} teacher-only file(s) kept back (not readable by students)" if kept else "")


def copy_into_home(source: str, home: Path, name: str, uid: int, gid: int) -> int:
    """Copy ``source`` into ``home``/assignments/``name`` as described above; how many entries were kept back."""
    home_fd = os.open(home, _DIR)
    try:
        top = _folder(home_fd, FOLDER, uid, gid, f"~/{FOLDER}")
        try:
            return _build_and_place(source, top, name, uid, gid)
        finally:
            os.close(top)
    finally:
        os.close(home_fd)


def _build_and_place(source: str, top: int, name: str, uid: int, gid: int) -> int:
    staging = f".{name}.handout"
    remove_at(top, staging)  # what an interrupted handout left
    try:
        os.mkdir(staging, 0o700, dir_fd=top)
        built = _folder(top, staging, uid, gid, f"~/{FOLDER}/{staging}")
        try:
            src = os.open(source, _DIR)
            try:
                if os.fstat(src).st_mode & 0o005 != 0o005:
                    raise RuntimeError(f"{source} is not readable by students: chmod a+rX it, or nothing is handed out")
                kept = _fill(src, built, uid, gid)
            finally:
                os.close(src)
            os.fchmod(built, 0o755)
            os.fsync(built)
        finally:
            os.close(built)
        try:
            rename_noreplace(top, staging, top, name)  # the whole copy appears at once
        except FileExistsError:
            _merge(top, staging, name)  # the student has the folder: add only what they lack
        os.fsync(top)
        return kept
    except OSError as exc:
        raise RuntimeError(f"the copy could not be made ({exc.strerror or exc}); the next pass tries again") from exc
    finally:
        remove_at(top, staging)


def _folder(parent: int, name: str, uid: int, gid: int, shown: str) -> int:
    """The folder ``name`` in ``parent``, made (the student's, 0755) when missing, never through a symlink."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
    fd = _open_folder(parent, name, shown)
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)
    return fd


def _open_folder(parent: int, name: str, shown: str, hint: str = "") -> int:
    """``name`` in ``parent`` as a folder, never through a symlink; a clear error when it is none."""
    try:
        return os.open(name, _DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RuntimeError(f"{shown} is not a folder (a symlink or a file): nothing is handed out{hint}") from None
        raise


def _fill(src: int, dst: int, uid: int, gid: int) -> int:
    """Copy the folder open as ``src`` into the new folder ``dst``; what a student may not read stays back."""
    kept = 0
    for entry in os.scandir(src):
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(entry.name, dir_fd=src), entry.name, dir_fd=dst)
            os.chown(entry.name, uid, gid, dir_fd=dst, follow_symlinks=False)
        elif stat.S_ISDIR(info.st_mode) and info.st_mode & 0o005 == 0o005:  # students may list and enter it
            os.mkdir(entry.name, 0o700, dir_fd=dst)
            inner_dst = os.open(entry.name, _DIR, dir_fd=dst)
            try:
                os.fchown(inner_dst, uid, gid)
                inner_src = os.open(entry.name, _DIR, dir_fd=src)
                try:
                    kept += _fill(inner_src, inner_dst, uid, gid)
                finally:
                    os.close(inner_src)
                os.fchmod(inner_dst, 0o755)
            finally:
                os.close(inner_dst)
        elif stat.S_ISREG(info.st_mode) and info.st_mode & 0o004:
            _copy_file(src, dst, entry.name, uid, gid, 0o755 if info.st_mode & 0o111 else 0o644)
        else:  # a teacher-only file or folder, a device, a socket
            kept += 1
    return kept


def _copy_file(src: int, dst: int, name: str, uid: int, gid: int, mode: int, limit: int | None = None) -> int:
    """Copy the regular file ``name`` of ``src`` into ``dst`` as new; its size.  Opened without blocking and
    checked to be a regular file once open (one swapped for a FIFO or a device meanwhile is refused, never
    waited on); ``limit``: refuse a file larger than that (apparent size: a sparse file counts whole)."""
    reading = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src)
    try:
        info = os.fstat(reading)
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeError(f"{name!r} was replaced by something that is not a file while it was copied")
        size = info.st_size
        if limit is not None and size > limit:
            raise RuntimeError(f"{name!r} is larger ({size} bytes) than what is left of the limit ({limit} bytes)")
        writing = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst)
        try:
            os.fchown(writing, uid, gid)
            offset = 0
            while offset < size:
                sent = os.sendfile(writing, reading, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
            os.fchmod(writing, mode)
            os.fsync(writing)
        finally:
            os.close(writing)
        return size
    finally:
        os.close(reading)


def _merge(top: int, staging: str, name: str) -> None:
    """Move into the student's existing ``name`` what they lack, each entry in one rename that never replaces."""
    target = _open_folder(top, name, f"~/{FOLDER}/{name}", "; move it away")
    built = os.open(staging, _DIR, dir_fd=top)
    try:
        _move_missing(built, target)
    finally:
        os.close(built)
        os.close(target)


def _move_missing(src: int, dst: int) -> None:
    for entry in os.scandir(src):
        try:
            rename_noreplace(src, entry.name, dst, entry.name)
            continue
        except FileExistsError:
            pass
        if not entry.is_dir(follow_symlinks=False):
            continue  # the student has this file (or something by its name): theirs stays
        try:
            inner_dst = os.open(entry.name, _DIR, dir_fd=dst)
        except OSError:
            continue  # not a folder of theirs: left as it is
        inner_src = os.open(entry.name, _DIR, dir_fd=src)
        try:
            _move_missing(inner_src, inner_dst)
        finally:
            os.close(inner_src)
            os.close(inner_dst)
