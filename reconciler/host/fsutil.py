"""Crash-safe, race-safe file writes: a fresh temp file beside the target, fsync, rename, fsync the directory.

The temp file is made with mkstemp in the target's own directory: an unpredictable name opened
with O_EXCL, so nobody can plant a symlink where the data (a password slip, the state) is written.
A write that fails (a full disk) leaves the old file as it was and no temp file behind.
Files are 0600 unless the caller says otherwise: reconcile's state is root's alone.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ..config import settled

STATE_DIR_MODE = 0o700


def write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    """After a crash the file holds either the old or the new content, never half of it."""
    name = _written_beside(path, data, mode)
    try:
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _written_beside(path: Path, data: str, mode: int) -> str:
    """A temp file in ``path``'s directory holding ``data``, synced: ready to be renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
            payload = data.encode()
            while payload:
                written = os.write(fd, payload)
                payload = payload[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


def replace_if_unchanged(path: Path, data: str, seen: settled.Version, mode: int) -> bool:
    """Compare-and-swap a file: ``data`` takes ``path``'s place only over the very version ``seen`` that the
    caller read; False (nothing changed) when another writer got there first.

    The file is checked first (the same inode and bytes as read, nobody writing it in place): the usual race, a
    save since the read, ends here and nothing was ever visible.  Then the new file and the old change places in
    one step (renameat2 RENAME_EXCHANGE), and the old one, now under the temp name, is checked again: a save that
    landed in the instant between the check and the swap is put back where it was, so even then no writer's
    file is lost.  (In that instant's aftermath a reader may glimpse the new file; for that to cost a save, an
    editor would have to read in those microseconds and save on what it read.)  Where the filesystem cannot
    exchange (NFS), the check just before a plain rename is all there is.
    """
    name = _written_beside(path, data, mode)
    try:
        if not _is(Path(path), seen):
            return False
        try:
            swapped = _exchange(name, path)
        except FileNotFoundError:  # removed meanwhile: not the version read either
            return False
        if not swapped:
            os.replace(name, path)
            fsync_dir(path.parent)
            return True
        if _is(Path(name), seen):
            Path(name).unlink()
            fsync_dir(path.parent)
            return True
        try:
            _exchange(name, path)  # give the other writer's version its place back
        except FileNotFoundError:  # and if the name went away meanwhile, it takes it again all the same
            os.rename(name, path)
        return False
    finally:
        Path(name).unlink(missing_ok=True)


def _is(path: Path, seen: settled.Version) -> bool:
    """Is the file at ``path`` the version ``seen``: same inode and bytes, and nobody writing it now?"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not seen.same_file(os.fstat(fd)) or settled.open_for_writing(fd):
            return False
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read() == seen.data
    finally:
        os.close(fd)


_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2


def rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """Move ``src`` (in the directory open as ``src_dir``) to ``dst`` (in ``dst_dir``), never over anything:
    FileExistsError when ``dst`` exists, whatever it is (rename(2) would replace a file or an empty folder)."""
    code = _renameat2(src_dir, src, dst_dir, dst, _RENAME_NOREPLACE)
    if code:
        raise OSError(code, os.strerror(code), dst) if code != errno.EEXIST else FileExistsError(code, "exists", dst)


def exchange_at(directory: int, a: str, b: str) -> None:
    """Swap the names ``a`` and ``b`` in the directory open as ``directory``, in one step (both must exist)."""
    code = _renameat2(directory, a, directory, b, _RENAME_EXCHANGE)
    if code:
        raise OSError(code, os.strerror(code), b)


def _renameat2(src_dir: int, src: str | Path, dst_dir: int, dst: str | Path, flags: int) -> int:
    """renameat2(2); 0, or the errno it failed with."""
    import ctypes  # only the writers that need it load it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), flags) == 0:
        return 0
    return ctypes.get_errno()


def _exchange(a: str | Path, b: str | Path) -> bool:
    """Swap two names atomically; False where the filesystem (or kernel) cannot."""
    code = _renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)
    if code in (0, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return code == 0
    if code == errno.ENOENT:
        raise FileNotFoundError(code, os.strerror(code), str(b))
    raise OSError(code, os.strerror(code), str(b))


def remove_at(parent: int, name: str) -> None:
    """Remove ``name`` from the folder open as ``parent`` if it is there: a folder with shutil.rmtree (which never
    follows a link), anything else (a file, a symlink someone put there by that name) unlinked."""
    import shutil
    import stat

    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Make ``path`` (reconcile's state directory) exist, owned by root, mode 0700."""
    path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != STATE_DIR_MODE:
        os.chmod(path, STATE_DIR_MODE)
    return path
