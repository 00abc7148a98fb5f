"""End of term, pure: what an export's manifest holds, how archives are named, whether a restore fits.

An export is ``<user>-<YYYYMMDD>.tar.zst`` (a POSIX tar of the home, zstd-compressed) beside
``<user>-<YYYYMMDD>.manifest.json``: every file, directory and link of the home with its size and mode, a
sha256 of each regular file's content, and the archive's own size and sha256.  A sparse file (its blocks on
disk fewer than its length: a student's ``truncate -s 1T``) is recorded with its length and the blocks it
holds but no hash, so neither the export nor its check ever reads a terabyte of holes.

The host side (``host.tarball``) makes the view, writes and reads the archives; this module only describes
them, so naming, the manifest's round trip and the restore guard are table-tested without a filesystem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from collections.abc import Iterable, Mapping

ARCHIVE_SUFFIX = ".tar.zst"
MANIFEST_SUFFIX = ".manifest.json"
FORMAT = 1
INODE_COST = 4096  # what one more file or directory takes on a volume, at least: one 4 KiB block


@dataclass(frozen=True)
class Entry:
    """One member of a home: ``kind`` is file, dir, symlink or other (a fifo or socket the student made)."""

    path: str  # relative to the home, "/"-separated, never starting with "/" or containing ".."
    kind: str
    mode: int  # permission bits (with setuid/setgid/sticky)
    size: int = 0  # a file's length
    allocated: int = 0  # a file's blocks on disk, in bytes
    sha256: str | None = None  # regular, non-sparse files only
    target: str | None = None  # a symlink's target

    @property
    def sparse(self) -> bool:
        return self.kind == "file" and self.sha256 is None

    def to_json(self) -> dict:
        data: dict = {"path": self.path, "kind": self.kind, "mode": f"{self.mode:04o}"}
        if self.kind == "file":
            data.update(size=self.size, allocated=self.allocated, sha256=self.sha256)
        if self.target is not None:
            data["target"] = self.target
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> Entry:
        path = data["path"]
        if (
            not isinstance(path, str)
            or not path
            or path.startswith("/")
            or ".." in path.split("/")
            or "" in path.split("/")
            or "\0" in path
        ):
            raise ValueError(f"manifest path {path!r}: not a plain path inside a home")
        return cls(
            path=path,
            kind=data["kind"],
            mode=int(data["mode"], 8),
            size=data.get("size", 0),
            allocated=data.get("allocated", 0),
            sha256=data.get("sha256"),
            target=data.get("target"),
        )


@dataclass(frozen=True)
class Manifest:
    user: str
    created: str  # ISO 8601, UTC
    view: str  # how the consistent view was taken (a frozen copy, the unmounted volume, an LVM snapshot)
    archive: str  # the archive's file name, beside the manifest
    archive_bytes: int
    archive_sha256: str
    volume_size: int | None
    entries: tuple[Entry, ...] = field(default=())

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries if e.kind == "file")

    @property
    def content_bytes(self) -> int:
        """The files' lengths added up (what a student sees as the size of their work)."""
        return sum(e.size for e in self.entries if e.kind == "file")

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "format": FORMAT,
                    "user": self.user,
                    "created": self.created,
                    "view": self.view,
                    "archive": {"file": self.archive, "bytes": self.archive_bytes, "sha256": self.archive_sha256},
                    "volume_size": self.volume_size,
                    "files": self.files,
                    "content_bytes": self.content_bytes,
                    "entries": [e.to_json() for e in self.entries],
                },
                indent=1,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"manifest format {data.get('format')!r} is not {FORMAT}")
        archive = data["archive"]
        return cls(
            user=data["user"],
            created=data["created"],
            view=data["view"],
            archive=archive["file"],
            archive_bytes=archive["bytes"],
            archive_sha256=archive["sha256"],
            volume_size=data.get("volume_size"),
            entries=tuple(Entry.from_json(e) for e in data["entries"]),
        )


def stem(user: str, day: date) -> str:
    return f"{user}-{day:%Y%m%d}"


def archive_name(user: str, day: date, clock: str, existing: Iterable[str]) -> str:
    """``<user>-<YYYYMMDD>.tar.zst``; a second export the same day adds the time (``clock``, HHMMSS) and, if
    need be, a counter: an archive is never overwritten."""
    taken = set(existing)
    base = stem(user, day)
    for candidate in [base, f"{base}-{clock}", *(f"{base}-{clock}-{n}" for n in range(2, 1000))]:
        if candidate + ARCHIVE_SUFFIX not in taken and candidate + MANIFEST_SUFFIX not in taken:
            return candidate + ARCHIVE_SUFFIX
    raise ValueError(f"too many archives of {user} on {day}")


def manifest_name(archive: str) -> str:
    return archive.removesuffix(ARCHIVE_SUFFIX) + MANIFEST_SUFFIX


def needs(entries: Iterable[Entry]) -> int:
    """What restoring these entries takes on a volume, at least: every file's blocks, an inode's block each."""
    total = 0
    for entry in entries:
        if entry.kind == "file":
            data = entry.allocated if entry.sparse else entry.size
            total += -(-data // INODE_COST) * INODE_COST
        total += INODE_COST if entry.kind == "dir" else 0
    return total


@dataclass(frozen=True)
class Existing:
    """What a path of the archive already is in the home it is restored into (``host.tarball`` looks)."""

    kind: str  # file, dir, symlink, other
    sha256: str | None = None  # a regular file's content (when its length is the archived one's)
    mode: int | None = None


def restore_problems(
    manifest: Manifest, free: int, existing: Mapping[str, Existing], into: str | None = None, into_exists: bool = False
) -> list[str]:
    """Why restoring ``manifest`` would lose or not fit something; empty when it may go ahead.

    ``existing``: the archive's paths that are already in the target directory (the home, or ``into``).
    Restoring only adds: a path already there must be the same directory or the same file (identical
    content); anything else is a conflict, and ``--into`` (a new folder in the home) is the way to get both.
    ``free``: what the volume has left; what the archive adds must fit in it.
    """
    problems = []
    if into is not None and into_exists:
        return [f"{into!r} already exists in the home: --into takes a new folder"]
    conflicts = []
    for entry in manifest.entries:
        there = existing.get(entry.path)
        if there is None:
            continue
        same = (there.kind == entry.kind == "dir") or (
            there.kind == entry.kind == "file" and entry.sha256 is not None and there.sha256 == entry.sha256
        )
        if not same:
            conflicts.append(entry.path)
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        problems.append(
            f"{len(conflicts)} path(s) of the archive already exist in the home with other content "
            f"({shown}); nothing is overwritten: restore with --into FOLDER"
        )
    need = needs(e for e in manifest.entries if not _same_there(e, existing))
    if need > free:
        problems.append(
            f"the archive needs {need} bytes on the volume and it has {free} free: raise the person's disk quota first"
        )
    return problems


def _same_there(entry: Entry, existing: Mapping[str, Existing]) -> bool:
    there = existing.get(entry.path)
    return there is not None and there.kind == entry.kind and (entry.kind == "dir" or there.sha256 == entry.sha256)
