"""What every volume backend provides (``VolumeBackend``) and what its observation returns (``VolumeFacts``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from collections.abc import Mapping

from ...core.actual import Mount, Volume
from ...core.desired import VolumeLayout
from ..facts import mount_at


@dataclass(frozen=True)
class VolumeFacts:
    """What one observation of the volumes found (one directory listing, or one lvs + one vgs)."""

    volumes: Mapping[str, Volume]
    mounts: Mapping[str, Mount]  # below homes_dir, sources translated back to images / LV paths
    step: int  # sizes are multiples of this (an ext4 block group, an LVM extent)
    capacity: int | None  # what the volumes can really hold together (None: each has its own space)
    capacity_of: str = ""  # what that is, for the over-commit guard's message


class NoVolume(RuntimeError):
    """The person has no volume (yet: the next pass creates it)."""


@dataclass(frozen=True)
class View:
    """A read-only mount of one person's files as they were at one instant (``open_view``), for an export."""

    username: str
    path: Path  # where it is mounted, below the scratch directory
    how: str  # said in the manifest and to the operator: a frozen copy, the unmounted volume, a snapshot
    scratch: str | None = None  # what close_view removes after the unmount (a copy's path, a snapshot)
    paused: float | None = None  # how long the home's writes waited, when they did


def unmount_view(run, host, view: View) -> None:
    """What closing a view is for every backend: unmount it (if it still is) and remove its mount point."""
    if mount_at(host, view.path) is not None:
        run.run(["umount", str(view.path)])
    if view.path.is_dir():
        view.path.rmdir()


def leftover_views(scratch: Path) -> list[View]:
    """The views a killed export left below ``scratch`` (their mount points), to be closed."""
    return [View(path.name.removesuffix(".view"), path, "") for path in sorted(scratch.glob("*.view"))]


class VolumeBackend(Protocol):
    name: str
    layout: VolumeLayout

    def observe(self) -> VolumeFacts: ...
    def create(self, username: str, size: int) -> str: ...
    def make_filesystem(self, username: str, size: int) -> str: ...
    def resize(self, username: str, size: int) -> str: ...
    def detach(self, username: str) -> str:
        """Disabled person, unmounted volume: release its device; the data stays."""
        ...

    def destroy(self, username: str) -> str:
        """Purge: delete the volume and its data (refuses while it is in use)."""
        ...

    def attach(self, username: str) -> None:
        """Make the source mountable (before a mount)."""
        ...

    def release(self, username: str) -> None:
        """Let go of the device after an unmount."""
        ...

    def held(self, usernames: set[str], found: Mapping[str, Volume] | None = None) -> set[str]:
        """Of these people, whose filesystem another mount namespace has mounted (one scan of /proc); ``found``:
        the volumes as the pass's snapshot found them, where the backend can use them."""
        ...

    def open_view(self, username: str, scratch: Path) -> View:
        """Mount a consistent read-only view of the person's files below ``scratch`` (root's own directory),
        without stopping their server; raise Busy when it cannot be taken now."""
        ...

    def close_view(self, view: View) -> None:
        """Unmount the view and remove what it took (a copy, a snapshot)."""
        ...

    def clear_views(self, scratch: Path) -> None:
        """Close every view a killed export left below ``scratch`` (one export runs at a time)."""
        ...

    def boot(self) -> list[str]:
        """What mount-all must attach before mounting (the LVM PV file); one line per step."""
        ...
