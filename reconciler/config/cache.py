"""Validated configuration remembered by content, so an unchanged site.yaml and classroom.yaml are not parsed
and validated again by every command (issue #14: `reconcile --dry-run` at N = 1000 spent ~80 ms of its ~370 ms
on YAML, pydantic's schema building and validation of files that had not changed).

An entry is found by the file's absolute path (one slot per file) and is used only when its key matches:
sha256 over this format's number, Python's and pydantic's versions, the validating code (size and mtime of
every file in reconciler/config), the file's path and exact bytes, and for classroom.yaml the key of the
site it was checked against (its limits are part of the check).  Only what validated is stored; a file with
problems is validated (and reported) every time.  What the key cannot see: a symlink along a relative path
in site.yaml that is changed to point elsewhere (paths are made absolute when the file is validated); set
RECONCILE_CACHE=off, or touch site.yaml, after moving one.

Trust: root loads these files, and they are pickles.  So the directory is made 0700 and each file 0600 by
this user, and a directory or file that another user owns or could write is not read (said once on
stderr); each file carries a sha256 of its payload (a torn write reads as a miss); and unpickling admits
only the configuration's own pydantic models and a few plain types (paths, dates, time zones, networks).

Where: $RECONCILE_CACHE (``off`` to disable), else /var/cache/classroom for root and
$XDG_CACHE_HOME/classroom-reconciler (~/.cache) for anyone else.  Anything that goes wrong here is a miss:
the file is validated as if there were no cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path

ENV = "RECONCILE_CACHE"
FORMAT = b"classroom-config-cache 1\n"
KEEP = 64  # entries kept; the oldest go first
_MAGIC = b"CLSRMCFG"
_HEADER = len(_MAGIC) + 32 + 32  # magic, key, sha256 of the payload

# What an entry may contain besides the configuration's own models (checked by _Loader).
_PLAIN = {
    ("pathlib", "PosixPath"),
    ("pathlib", "Path"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("zoneinfo", "ZoneInfo"),
    ("zoneinfo._zoneinfo", "ZoneInfo"),
    ("ipaddress", "IPv4Network"),
    ("ipaddress", "IPv6Network"),
    ("ipaddress", "IPv4Address"),
    ("ipaddress", "IPv6Address"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}
_MODULES = ("reconciler.config.classroom", "reconciler.config.site")
_warned: set[str] = set()


def directory() -> Path | None:
    """Where entries live, or None when remembering is off."""
    setting = os.environ.get(ENV)
    if setting is not None:
        return None if setting.strip().lower() in ("", "off", "0", "no") else Path(setting)
    if os.geteuid() == 0:
        return Path("/var/cache/classroom")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "classroom-reconciler"


def key(*parts: bytes | str) -> bytes:
    """The key of an entry: the parts plus everything that could change what validation gives."""
    digest = hashlib.sha256(FORMAT)
    for part in (*_fingerprint(), *parts):
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.digest()


def fetch(slot: str, wanted: bytes) -> object | None:
    """The value stored in ``slot`` under ``wanted``, or None (a miss)."""
    where = _usable_directory(create=False)
    if where is None:
        return None
    try:
        fd = os.open(where / _file_name(slot), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            _warn(str(where / _file_name(slot)), "owned by someone else or writable by others")
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            header = file.read(_HEADER)
            if len(header) != _HEADER or header[: len(_MAGIC)] != _MAGIC or header[len(_MAGIC) : -32] != wanted:
                return None
            payload = file.read()
        if hashlib.sha256(payload).digest() != header[-32:]:
            return None
        return _Loader(io.BytesIO(payload)).load()
    except Exception:  # a cache never fails a command: anything odd is a miss
        return None
    finally:
        os.close(fd)


def store(slot: str, wanted: bytes, value: object) -> None:
    """Remember ``value`` in ``slot`` under ``wanted`` (atomically; failures are ignored)."""
    where = _usable_directory(create=True)
    if where is None:
        return
    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        fd, temporary = tempfile.mkstemp(dir=where, prefix=".entry-")  # 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(_MAGIC + wanted + hashlib.sha256(payload).digest() + payload)
            os.replace(temporary, where / _file_name(slot))
        except BaseException:
            os.unlink(temporary)
            raise
        _prune(where)
    except Exception:
        return


def _file_name(slot: str) -> str:
    return hashlib.sha256(slot.encode()).hexdigest()[:24] + ".pickle"


def _usable_directory(create: bool) -> Path | None:
    where = directory()
    if where is None:
        return None
    try:
        info = os.lstat(where)
    except FileNotFoundError:
        if not create:
            return None
        try:
            os.makedirs(where, mode=0o700, exist_ok=True)
            info = os.lstat(where)
        except OSError:
            return None
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        _warn(str(where), "not a directory of this user's that only it can write")
        return None
    return where


def _prune(where: Path) -> None:
    entries = []
    with os.scandir(where) as found:
        for entry in found:
            if entry.name.endswith(".pickle"):
                entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
    for _, path in sorted(entries)[: max(0, len(entries) - KEEP)]:
        os.unlink(path)


def _warn(what: str, why: str) -> None:
    if what not in _warned:
        _warned.add(what)
        print(f"note: not using the configuration cache {what}: {why} (validating the files instead)", file=sys.stderr)


_fingerprint_parts: tuple[str, ...] | None = None


def _fingerprint() -> tuple[str, ...]:
    """Python's and pydantic's versions and the validating code's files (size, mtime), once per process."""
    global _fingerprint_parts
    if _fingerprint_parts is None:
        import pydantic
        import pydantic_core

        here = Path(__file__).parent
        files = []
        for folder in (here, here / "languages"):
            with os.scandir(folder) as found:
                for entry in found:
                    if entry.is_file() and not entry.name.startswith("."):
                        info = entry.stat()
                        files.append(f"{folder.name}/{entry.name}:{info.st_size}:{info.st_mtime_ns}")
        _fingerprint_parts = (sys.version, pydantic.VERSION, pydantic_core.__version__, *sorted(files))
    return _fingerprint_parts


class _Loader(pickle.Unpickler):
    """Unpickles the configuration's models and plain values, nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        if module in _MODULES:
            from pydantic import BaseModel

            found = super().find_class(module, name)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a configuration")
