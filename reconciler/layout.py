"""Where things live on the host, derived from site.yaml, and the fixed conventions.

Kept apart from the drivers so that plan() can name paths without doing I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIX = ".img"
PARTIAL_SUFFIX = ".img.partial"  # an image being created; renamed once it holds a filesystem
# ext4 with 4 KiB blocks has 128 MiB block groups; a size that is a whole number of groups
# is filled exactly by mkfs and resize2fs, so the observed size always equals the planned one.
LOOP_VOLUME_STEP = 128 * 1024 * 1024
MOUNT_OPTIONS = "loop,nodev,nosuid,noatime"  # loop backend
LVM_MOUNT_OPTIONS = "nodev,nosuid,noatime"
REQUIRED_MOUNT_FLAGS = frozenset({"nodev", "nosuid"})
SHELL = "/usr/sbin/nologin"
HOME_MODE = 0o700


@dataclass(frozen=True)
class Paths:
    state: Path
    homes: Path
    backend: str = "loop"  # "loop" | "lvm"
    vg: str | None = None  # the volume group, for lvm
    thin_pool: str | None = None  # thin provisioning from this pool, for lvm

    def source(self, username: str) -> Path:
        """What is mounted at the person's home: their image, or their logical volume."""
        if self.backend == "lvm":
            from .lvm import lv_path

            return Path(lv_path(self.vg or "", username))
        return self.image(username)

    @property
    def mount_options(self) -> str:
        return LVM_MOUNT_OPTIONS if self.backend == "lvm" else MOUNT_OPTIONS

    @property
    def volumes(self) -> Path:
        return self.state / "volumes"

    @property
    def manifest(self) -> Path:
        return self.state / "mounts.fstab"

    @property
    def journal(self) -> Path:
        return self.state / "journal.jsonl"

    @property
    def lock(self) -> Path:
        return self.state / "reconcile.lock"

    @property
    def outbox(self) -> Path:
        return self.state / "outbox"

    def image(self, username: str) -> Path:
        return self.volumes / f"{username}{IMAGE_SUFFIX}"

    def partial(self, username: str) -> Path:
        return self.volumes / f"{username}{PARTIAL_SUFFIX}"

    def home(self, username: str) -> Path:
        return self.homes / username
