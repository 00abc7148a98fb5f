"""End of term on the host: a home's consistent view written as a tar.zst with its manifest, checked, restored.

The view is the volume backend's (``VolumeBackend.open_view``): a read-only mount of the unmounted volume, or
of a copy taken while the home's writes were paused (``writes_paused``), or of an LVM snapshot; never the
live home, whose files a running server may be half-way through writing.

- ``write``: GNU tar (POSIX format, sparse files as holes, names sorted, numeric owners, user xattrs) piped
  through zstd into ``<archive>.partial``, hashed as it is written and renamed once complete; it stops before
  the disk holding it falls below its reserve (``reserve``), so an export never fills the disk the students'
  volumes live on.  ``walk`` reads the same view for the manifest.
- ``verify``: reads an archive back (its sha256, then every member against the manifest).
- ``restore``: GNU tar run as the student (setpriv: their uid and group, no other groups, no capabilities),
  so a crafted archive can do nothing the student could not; existing files are never replaced.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator, Mapping

from ..core.archive import Entry, Existing, Manifest
from .fsutil import fsync_dir
from .run import CommandFailed, Runner, as_user, environment

CHUNK = 1 << 20
CHECK_EVERY = 64 << 20  # look at the disk's free space this often while writing
SKIPPED = ("lost+found",)  # the filesystem's own, at the top of every volume
TAR_CREATE = [
    "tar",
    "--create",
    "--format=posix",
    "--sparse",
    "--numeric-owner",
    "--xattrs",
    "--sort=name",
    "--one-file-system",
    "--zstd",
    "--file=-",
]


class NoSpace(RuntimeError):
    """Writing this would leave less than the reserve free on a disk that others need."""


def reserve(path: Path) -> int:
    """What must stay free on the filesystem of ``path``: 2 % of it, at least 256 MiB."""
    vfs = os.statvfs(path)
    return max(256 << 20, vfs.f_blocks * vfs.f_frsize // 50)


def free(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def check_room(path: Path, need: int, what: str, images: Path | None = None) -> None:
    """Refuse before starting when ``need`` bytes would eat into the reserve of the disk holding ``path``, or into
    what the sparse ``images`` there are promised."""
    have, keep = free(path), reserve(path) + (promised(path, images) if images is not None else 0)
    if have - need < keep:
        raise NoSpace(
            f"{what} may take {need >> 20} MiB and {path} has {have >> 20} MiB free; "
            f"{keep >> 20} MiB must stay free there (students' volumes and reconcile's records need it)"
        )


# --- pausing a home's writes ------------------------------------------------------------------------------


@contextmanager
def writes_paused(mountpoint: Path, run: Runner, limit: float = 150.0) -> Iterator[None]:
    """Freeze the filesystem at ``mountpoint`` (every mount of it: a running server's too) and thaw it after.

    Writers block while it is frozen and cannot even be killed, so neither the freeze nor the thaw depends on this
    process living: a guard process in its own session, deaf to SIGTERM, SIGHUP and SIGINT (a service stopped by
    systemd signals its whole cgroup), freezes, says so, and thaws as soon as the pipe from this process closes,
    which the kernel does when this process exits, SIGKILL and OOM included, or after ``limit`` seconds at most.
    ``run`` is kept for the signature drivers share (the guard runs outside the pass's runner on purpose).
    """
    del run
    script = (
        'trap "" TERM HUP INT; fsfreeze --freeze "$0" || exit 3; echo frozen; '
        f'timeout -s KILL {int(limit)} cat >/dev/null; exec fsfreeze --unfreeze "$0"'
    )
    read_end, write_end = os.pipe()
    guard = subprocess.Popen(
        ["sh", "-c", script, str(mountpoint)],
        stdin=read_end,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=environment(),
    )
    os.close(read_end)
    try:
        assert guard.stdout is not None
        if guard.stdout.readline().strip() != b"frozen":
            os.close(write_end)
            write_end = -1
            _, err = guard.communicate()
            raise RuntimeError(f"fsfreeze --freeze {mountpoint} failed: {err.decode(errors='replace').strip()}")
        yield
    finally:
        if write_end >= 0:
            os.close(write_end)  # the guard reads end-of-file and thaws
        _, err = guard.communicate()
        if guard.returncode != 0 and write_end >= 0:
            subprocess.run(["fsfreeze", "--unfreeze", str(mountpoint)], capture_output=True, env=environment())
            raise RuntimeError(f"the thaw of {mountpoint} failed: {err.decode(errors='replace').strip()}")


def promised(path: Path, images: Path) -> int:
    """What the sparse images in ``images`` may still claim on the filesystem of ``path`` (their sizes less what
    they hold): a student's write into their quota must never find that disk full.  0 on another filesystem."""
    try:
        if os.stat(path).st_dev != os.stat(images).st_dev:
            return 0
        with os.scandir(images) as listing:
            return sum(
                max(0, st.st_size - st.st_blocks * 512)
                for st in (
                    entry.stat(follow_symlinks=False) for entry in listing if entry.is_file(follow_symlinks=False)
                )
            )
    except OSError:
        return 0


# --- the manifest ---------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb", buffering=0) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def walk(view: Path) -> list[Entry]:
    """Every member of the home below ``view`` as tar stores it (sorted by name bytes, one filesystem, no
    sockets: tar leaves them out), each regular file hashed unless it is sparse."""
    entries: list[Entry] = []
    device = view.stat().st_dev
    folders = [(str(view), "")]  # a stack, not recursion: a student's folders may nest thousands deep
    while folders:
        directory, prefix = folders.pop()
        with os.scandir(directory) as listing:
            children = sorted(listing, key=lambda e: os.fsencode(e.name))
        below = []
        for child in children:
            if not prefix and child.name in SKIPPED:
                continue
            rel = prefix + child.name
            st = child.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", mode))
                if st.st_dev == device:
                    below.append((child.path, rel + "/"))
            elif stat.S_ISREG(st.st_mode):
                allocated = st.st_blocks * 512
                digest = None if allocated < st.st_size else _sha256(Path(child.path))
                entries.append(Entry(rel, "file", mode, st.st_size, allocated, digest))
            elif stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "symlink", mode, target=os.readlink(child.path)))
            elif not stat.S_ISSOCK(st.st_mode):
                entries.append(Entry(rel, "other", mode))
        folders += reversed(below)
    return entries


# --- writing --------------------------------------------------------------------------------------------


def write(view: Path, target: Path, keep_free: int | None = None) -> tuple[int, str]:
    """Write the archive of ``view`` to ``target`` (through ``target.partial``); return its size and sha256."""
    partial = target.with_name(target.name + ".partial")
    keep = reserve(target.parent) if keep_free is None else keep_free
    digest, written, checked = hashlib.sha256(), 0, 0
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - tar's stderr, read and closed below
    tar = subprocess.Popen(
        [*TAR_CREATE, f"--exclude=./{SKIPPED[0]}", "-C", str(view), "."],
        stdout=subprocess.PIPE,
        stderr=errors,
        env=environment(),
    )
    try:
        assert tar.stdout is not None
        while chunk := tar.stdout.read(CHUNK):
            digest.update(chunk)
            view_of = memoryview(chunk)
            while view_of:
                view_of = view_of[os.write(fd, view_of) :]
            written += len(chunk)
            if written - checked >= CHECK_EVERY:
                checked = written
                if free(target.parent) < keep:
                    raise NoSpace(
                        f"stopped writing {target.name}: {target.parent} would fall below the "
                        f"{keep >> 20} MiB that must stay free there"
                    )
        if tar.wait() != 0:
            errors.seek(0)
            raise CommandFailed(TAR_CREATE, tar.returncode, errors.read().decode(errors="replace"))
        os.fsync(fd)
    except BaseException:
        tar.kill()
        tar.wait()
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    finally:
        errors.close()
    os.close(fd)
    os.rename(partial, target)
    fsync_dir(target.parent)
    return written, digest.hexdigest()


# --- checking -------------------------------------------------------------------------------------------


def _name(member: tarfile.TarInfo) -> str:
    name = member.name.removeprefix("./").rstrip("/")
    return "" if name == "." else name


def verify(archive: Path, manifest: Manifest) -> list[str]:
    """What in ``archive`` disagrees with ``manifest``: its size or sha256, a member missing, extra, of another
    kind, mode, length or content.  Reads the whole archive; empty when all of it matches."""
    problems = []
    size = archive.stat().st_size
    if size != manifest.archive_bytes or _sha256(archive) != manifest.archive_sha256:
        return [
            f"{archive.name} is not the file its manifest describes ({size} bytes; the manifest says "
            f"{manifest.archive_bytes} bytes, sha256 {manifest.archive_sha256[:12]}…): damaged or replaced"
        ]
    expected = {entry.path: entry for entry in manifest.entries}
    seen_files: dict[str, str | None] = {}
    zstd = subprocess.Popen(
        ["zstd", "-dcq", "--", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment()
    )
    try:
        with tarfile.open(fileobj=zstd.stdout, mode="r|") as tar:
            for member in tar:
                name = _name(member)
                if not name:
                    continue
                entry = expected.pop(name, None)
                if entry is None:
                    problems.append(f"{name}: in the archive, not in the manifest")
                    continue
                problems += _compare(entry, member, tar, seen_files)
    except (tarfile.TarError, EOFError, OSError) as exc:
        problems.append(f"{archive.name} cannot be read to its end: {exc}")
    finally:
        if zstd.stdout is not None:
            zstd.stdout.close()
        zstd.wait()
    problems += [f"{path}: in the manifest, not in the archive" for path in expected]
    return problems


def _compare(entry: Entry, member: tarfile.TarInfo, tar: tarfile.TarFile, seen: dict[str, str | None]) -> list[str]:
    kind = (
        "dir"
        if member.isdir()
        else "file"
        if member.isreg() or member.islnk()
        else "symlink"
        if member.issym()
        else "other"
    )
    if kind != entry.kind:
        return [f"{entry.path}: a {kind} in the archive, a {entry.kind} in the manifest"]
    problems = []
    if stat.S_IMODE(member.mode) != entry.mode:
        problems.append(
            f"{entry.path}: mode {stat.S_IMODE(member.mode):04o} in the archive, {entry.mode:04o} in the manifest"
        )
    if kind == "symlink" and member.linkname != entry.target:
        problems.append(f"{entry.path}: links to {member.linkname!r}, the manifest says {entry.target!r}")
    if kind != "file":
        return problems
    if member.islnk():  # a hard link: the content of the member it names
        digest = seen.get(member.linkname.removeprefix("./"))
    elif entry.sha256 is None:  # sparse: not read (its length may be far beyond the volume)
        digest = None
        if member.size != entry.size and not member.sparse:
            problems.append(f"{entry.path}: {member.size} bytes in the archive, {entry.size} in the manifest")
    else:
        if member.size != entry.size:
            problems.append(f"{entry.path}: {member.size} bytes in the archive, {entry.size} in the manifest")
        data = tar.extractfile(member)
        digest = hashlib.file_digest(data, "sha256").hexdigest() if data is not None else None
    seen[entry.path] = digest
    if entry.sha256 is not None and digest != entry.sha256:
        problems.append(f"{entry.path}: its content in the archive differs from the manifest's sha256")
    return problems


# --- restoring ------------------------------------------------------------------------------------------


def _open_below(root_fd: int, path: str) -> int | None:
    """A file descriptor for ``path`` below ``root_fd`` without following any symlink on the way (a student's
    link must not lead root elsewhere); None when some part is missing or is not a directory."""
    fd = os.dup(root_fd)
    parts = path.split("/")
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError, OSError):
                return None
            os.close(fd)
            fd = nxt
        return os.dup(fd)
    finally:
        os.close(fd)


def existing(target: Path, manifest: Manifest) -> dict[str, Existing]:
    """Which of the archive's paths already exist below ``target`` and as what (files hashed)."""
    found: dict[str, Existing] = {}
    try:
        root = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return found
    try:
        for entry in manifest.entries:
            parent = _open_below(root, entry.path)
            if parent is None:
                continue
            try:
                name = entry.path.rsplit("/", 1)[-1]
                try:
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISDIR(st.st_mode):
                    found[entry.path] = Existing("dir", mode=mode)
                elif stat.S_ISREG(st.st_mode):
                    digest = None
                    if entry.kind == "file" and entry.sha256 is not None and st.st_size == entry.size:
                        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
                        with os.fdopen(fd, "rb", buffering=0) as handle:
                            digest = hashlib.file_digest(handle, "sha256").hexdigest()
                    found[entry.path] = Existing("file", digest, mode)
                else:
                    found[entry.path] = Existing("symlink" if stat.S_ISLNK(st.st_mode) else "other", mode=mode)
            finally:
                os.close(parent)
    finally:
        os.close(root)
    return found


def restore(archive: Path, home: Path, uid: int, gid: int, into: str | None = None) -> Path:
    """Unpack ``archive`` into ``home`` (or a new folder ``into`` in it) as the student; never replaces a file.
    Returns the directory it unpacked into."""
    user = as_user(uid, gid)
    target = home
    if into is not None:
        made = subprocess.run(
            [*user, "mkdir", "-m", "0700", "--", into], cwd=home, env=environment(), capture_output=True, text=True
        )
        if made.returncode != 0:
            raise CommandFailed(["mkdir", into], made.returncode, made.stderr)
        target = home / into
    argv = [
        *user,
        "tar",
        "--extract",
        "--zstd",
        "--file=-",
        "--preserve-permissions",
        "--no-same-owner",
        "--skip-old-files",
        "--xattrs",
    ]
    with open(archive, "rb") as source:
        proc = subprocess.run(argv, stdin=source, cwd=target, env=environment(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stderr)
    return target


def check_restored(target: Path, manifest: Manifest, before: Mapping[str, Existing]) -> list[str]:
    """What below ``target`` does not match the manifest after a restore (kind, content, mode); the paths that
    were there ``before`` (the same files, kept as they were) are not looked at."""
    problems = []
    there = existing(target, manifest)
    for entry in manifest.entries:
        found = there.get(entry.path)
        if entry.path in before:
            continue
        if found is None:
            problems.append(f"{entry.path}: not restored")
        elif found.kind != entry.kind:
            problems.append(f"{entry.path}: restored as a {found.kind}, the archive has a {entry.kind}")
        elif entry.sha256 is not None and found.sha256 != entry.sha256:
            problems.append(f"{entry.path}: restored content differs from the archive")
        elif entry.kind != "symlink" and found.mode != entry.mode:
            problems.append(f"{entry.path}: restored with mode {found.mode:04o}, the archive has {entry.mode:04o}")
    return problems
