"""The loop volume backend: one sparse ext4 image per person under <state_dir>/volumes.

A new image is built as ``<user>.img.partial`` and renamed to ``<user>.img``
only once it holds a filesystem, so an interrupted creation never leaves a
half-formatted image that looks like real data.  Growing is online where the
kernel allows it; shrinking is offline and checks the filesystem's size before
the image is cut.  Observing lists the directory once and loop devices from
one listing of sysfs; sizes come straight from each image's superblock.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from collections.abc import Callable, Iterable, Mapping

from ...config.site import Paths
from ...core.actions import VolumeFields
from ...core.actual import EXT4_BLOCK_GROUP, Volume
from ...core.desired import Release
from ..facts import HostFiles, nearest_existing, read_mounts, read_superblock, usage
from ..fsutil import fsync_dir
from ..mounts import is_mounted, loop_of, mount_fs, umount
from ..drivers import Busy
from ..run import CommandFailed, Runner
from .base import NoVolume, View, VolumeFacts, leftover_views, unmount_view

IMAGE_SUFFIX = ".img"
PARTIAL_SUFFIX = ".img.partial"  # an image being created; renamed once it holds a filesystem
MOUNT_OPTIONS = "loop,nodev,nosuid,noatime"
# An export's view: a read-only loop device, no journal replay (the image is not written at all), nothing runs.
VIEW_OPTIONS = "loop,ro,noload,nodev,nosuid,noexec"
PAUSE_LIMIT = 120.0  # seconds a running server's writes may wait for the copy of its volume
# Volumes are whole ext4 block groups, so the filesystem always fills its image exactly.
VOLUME_STEP = EXT4_BLOCK_GROUP


@dataclass(frozen=True)
class LoopLayout:
    """Where the images are: pure naming, shared by the planner and the drivers."""

    directory: Path  # <state_dir>/volumes
    mount_options: str = MOUNT_OPTIONS

    def release(self, volume: Volume) -> Release:
        return Release(VolumeFields(loop=volume.loop), VolumeFields(loop=None), "image still attached to a loop device")

    def source(self, username: str) -> str:
        return _source(self.directory, username)

    def image(self, username: str) -> Path:
        return _image(self.directory, username)

    def partial(self, username: str) -> Path:
        return self.directory / f"{username}{PARTIAL_SUFFIX}"


@functools.lru_cache(maxsize=8192)
def _image(directory: Path, username: str) -> Path:
    return directory / f"{username}{IMAGE_SUFFIX}"


@functools.lru_cache(maxsize=8192)
def _source(directory: Path, username: str) -> str:
    return str(_image(directory, username))


def layout(paths: Paths) -> LoopLayout:
    return LoopLayout(paths.state / "volumes")


class LoopBackend:
    name = "loop"

    def __init__(self, paths: Paths, run: Runner, host: HostFiles, preallocate: bool = False):
        self.paths, self.run, self.host = paths, run, host
        self.layout = layout(paths)
        self.preallocate = preallocate  # reserve the whole size on disk instead of a sparse file

    # --- observing ---------------------------------------------------------------------------------

    def observe(self) -> VolumeFacts:
        loops = self.host.loops()
        mounts = read_mounts(self.host.mountinfo, loops, under=str(self.paths.homes), also=list(self.paths.own_folders))
        volumes = read_volumes(self.layout.directory, loops, mounts, self.paths.home, self.host.ext4_alive)
        capacity = images_space(self.layout.directory, volumes.values())
        return VolumeFacts(
            MappingProxyType(volumes),
            MappingProxyType(mounts),
            VOLUME_STEP,
            capacity,
            "the space of the filesystem that holds the images (free + already written)",
        )

    # --- drivers -------------------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        self.layout.directory.mkdir(parents=True, exist_ok=True)
        self.run.chmod(self.layout.directory, 0o700)  # images hold students' files: root only

    def create(self, username: str, size: int) -> str:
        """A sparse file of ``size`` bytes: no disk is used until the student writes."""
        if self.layout.image(username).exists():
            return "exists"
        self._ensure_dir()
        self._size(self.layout.partial(username), size)
        return "created"

    def _size(self, image: Path, size: int) -> None:
        """Make the image ``size`` bytes: sparse, or with every block reserved when preallocating."""
        fd = os.open(image, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            if self.preallocate:
                os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def make_filesystem(self, username: str, size: int) -> str:
        """mkfs the partial image (it never held data), then rename it into place."""
        image, partial = self.layout.image(username), self.layout.partial(username)
        if image.exists():
            return "exists"
        if not partial.exists():
            self.create(username, size)
        os.truncate(partial, size)
        # 4 KiB blocks always (mke2fs would pick 1 KiB for small images), no root reserve:
        # the quota is all the student's; a preallocated image must not be punched sparse by mkfs's discard.
        keep = ["-E", "nodiscard"] if self.preallocate else []
        self.run.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", *keep, "-L", username[:16], str(partial)])
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.rename(partial, image)
        fsync_dir(image.parent)
        return "formatted"

    def resize(self, username: str, size: int) -> str:
        """Grow online where the kernel allows it; otherwise (and always to shrink) offline, and only when the
        filesystem is mounted nowhere else: never fsck or resize2fs an ext4 that a running server holds."""
        image, home = self.layout.image(username), self.paths.home(username)
        loop = loop_of(self.host, image)
        fs = read_superblock(loop or str(image))
        if fs is None:
            raise RuntimeError(f"{image} holds no ext4 filesystem")
        if image.stat().st_size == size and fs.size == size:
            return "already"
        if size > fs.size and loop and is_mounted(self.host, home, str(image)):
            self._size(image, size)
            self.run.run(["losetup", "--set-capacity", loop])
            try:
                self.run.run(["resize2fs", loop])
            except CommandFailed as exc:
                # Online resizing needs CAP_SYS_RESOURCE, which a container's root may lack: offline instead.
                if "Permission denied" not in exc.stderr:
                    raise
            else:
                self._check_size(loop, size)
                return "grown online"
        self._resize_offline(username, size, loop)
        return "grown offline" if size > fs.size else "shrunk"

    def _check_size(self, device: str, size: int) -> None:
        """Never claim a size the kernel does not show: read the superblock back through the device."""
        now = read_superblock(device)
        if now is None or now.size != size:
            shown = "no ext4" if now is None else f"{now.size} bytes"
            raise RuntimeError(f"resize2fs succeeded but {device} holds {shown}, not {size} bytes")

    def _in_use(self, username: str, loop: str | None) -> None:
        """Raise Busy when the filesystem is mounted in another mount namespace (a running server's container)."""
        number = self.host.device_number(loop) if loop else None
        holders = self.host.holders({number}) if number else []
        if holders:
            raise Busy(
                f"{username}'s volume is mounted by {', '.join(holders)} (a running server holds the "
                "home); nothing was touched, it applies when that ends"
            )

    def _resize_offline(self, username: str, size: int, loop: str | None) -> None:
        """Unmount, check, resize the filesystem, then cut or extend the image; remount as it was."""
        image, home = self.layout.image(username), self.paths.home(username)
        self._in_use(username, loop)
        was_mounted = is_mounted(self.host, home, str(image))
        if was_mounted:
            umount(self.run, home, self.host)
        if loop and self.host.ext4_alive(loop):
            # unmounted here, but its superblock lives on: mounted somewhere the scan could not see
            if was_mounted:
                mount_fs(self.run, loop, home, self.layout.mount_options.replace("loop,", ""))
            raise Busy(
                f"{username}'s volume is still mounted in another mount namespace; nothing was touched, "
                "it applies when that ends"
            )
        if still := loop_of(self.host, image):  # mount's autoclear has usually detached it already
            self._detach(still, image)
        try:
            self._size(image, size)
            self.run.run(["e2fsck", "-f", "-p", str(image)], ok_codes=(0, 1, 2))
            self.run.run(["resize2fs", str(image), f"{size // 1024}K"])
            after = read_superblock(str(image))
            if after is None or after.size != size:
                shown = "no ext4" if after is None else f"{after.size} bytes"
                raise RuntimeError(f"resize2fs left {image} with {shown}, not {size}; the image is not cut")
            if image.stat().st_size > size:
                os.truncate(image, size)
        finally:
            if was_mounted:
                self.attach(username)
                mount_fs(self.run, str(image), home, self.layout.mount_options)

    def attach(self, username: str) -> None:
        """Before a mount: the image must exist, and no loop device may hold it already."""
        image = self.layout.image(username)
        if not image.exists():
            raise RuntimeError(f"{image} does not exist")
        if stale := loop_of(self.host, image):  # two loop devices on one ext4 would corrupt it
            if self.host.ext4_alive(stale):
                raise Busy(
                    f"{username}'s volume is still mounted through {stale} in another mount namespace; "
                    "a second loop device would corrupt it: it is mounted when that ends"
                )
            self._detach(stale, image)

    def release(self, username: str) -> None:
        """After an unmount: detach the loop device (mount's autoclear usually has)."""
        image = self.layout.image(username)
        if loop := loop_of(self.host, image):
            self._detach(loop, image)

    def _detach(self, loop: str, image: Path) -> None:
        """Detach ``loop`` if it still holds ``image``.  The kernel's autoclear after an unmount may free it between
        our look and losetup (more likely while other people's steps run beside this one): then it is done."""
        try:
            self.run.run(["losetup", "--detach", loop])
        except CommandFailed as exc:
            if "No such device or address" not in exc.stderr or loop_of(self.host, image) == loop:
                raise

    def detach(self, username: str) -> str:
        image = self.layout.image(username)
        loop = loop_of(self.host, image)
        if loop is None:
            return "already"
        if is_mounted(self.host, self.paths.home(username), str(image)):
            raise RuntimeError(f"{image} is still mounted")
        self._detach(loop, image)
        return "detached"

    def destroy(self, username: str) -> str:
        """Delete the image (purge only).  Refuses while it is mounted or attached."""
        image = self.layout.image(username)
        loop = loop_of(self.host, image)
        if loop and self.host.ext4_alive(loop):
            raise Busy(f"{username}'s volume is still mounted somewhere; it is deleted when that ends")
        if is_mounted(self.host, self.paths.home(username), str(image)) or loop:
            raise RuntimeError(f"{image} is still in use")
        removed = False
        for path in (image, self.layout.partial(username)):
            if path.exists():
                path.unlink()
                removed = True
        return "deleted" if removed else "absent"

    def held(self, usernames: set[str], found: Mapping[str, Volume] | None = None) -> set[str]:
        """``found``: the volumes as this pass's snapshot found them, with their loop devices (else sysfs is
        listed again)."""
        loops = (
            {str(self.layout.image(user)): volume.loop for user, volume in found.items() if volume.loop}
            if found is not None
            else self.host.loops()
        )
        numbers = {}
        for user in usernames:
            loop = loops.get(str(self.layout.image(user)))
            number = self.host.device_number(loop) if loop else None
            if number:
                numbers[number] = user
        return {numbers[number] for number in self.host.holders_by_device(set(numbers))}

    def boot(self) -> list[str]:
        """Nothing to attach before mount-all: each image is attached as it is mounted."""
        return []

    # --- export views --------------------------------------------------------------------------------

    def open_view(self, username: str, scratch: Path) -> View:
        """The unmounted image itself, read-only; a mounted one is copied while its writes are paused (a
        sparse copy: as long as copying the blocks it holds takes, at most ``PAUSE_LIMIT``)."""
        from ..tarball import check_room, writes_paused  # only an export needs it: every pass imports this module

        image, home = self.layout.image(username), self.paths.home(username)
        if not image.exists():
            raise NoVolume(f"{username} has no volume yet ({image} does not exist)")
        loop = loop_of(self.host, image)
        mounted = is_mounted(self.host, home, str(image))
        if not mounted and loop and self.host.ext4_alive(loop):
            raise Busy(
                f"{username}'s volume is mounted in another mount namespace only (a server still ending); "
                "export it when that ends"
            )
        target = scratch / f"{username}.view"
        source, copy, paused = image, None, None
        if mounted:
            copy = scratch / f"{username}.img"
            check_room(scratch, image.stat().st_blocks * 512, f"a copy of {username}'s volume", self.layout.directory)
            started = time.monotonic()
            try:
                with writes_paused(home, self.run):
                    self.run.run(
                        ["cp", "--sparse=always", "--reflink=auto", "--", str(image), str(copy)], timeout=PAUSE_LIMIT
                    )
            except BaseException:
                copy.unlink(missing_ok=True)
                raise
            source, paused = copy, time.monotonic() - started
        try:
            target.mkdir(mode=0o700, exist_ok=True)
            self.run.run(["mount", "-o", VIEW_OPTIONS, str(source), str(target)])
        except BaseException:
            if target.is_dir():
                target.rmdir()
            if copy is not None:
                copy.unlink(missing_ok=True)
            raise
        how = (
            f"a copy taken with the home's writes paused {paused:.1f} s"
            if paused is not None
            else "the unmounted volume"
        )
        return View(username, target, how, str(copy) if copy else None, paused)

    def close_view(self, view: View) -> None:
        unmount_view(self.run, self.host, view)
        if view.scratch is not None:
            Path(view.scratch).unlink(missing_ok=True)

    def clear_views(self, scratch: Path) -> None:
        for view in leftover_views(scratch):
            self.close_view(view)
        for copy in scratch.glob("*.img"):
            copy.unlink()


def images_space(directory: Path, volumes: Iterable[Volume]) -> int | None:
    """What the images can hold together: the free space of their filesystem plus what they already use."""
    try:  # before the first volume: the filesystem the directory will be made on
        vfs = os.statvfs(nearest_existing(directory))
    except OSError:
        return None
    return vfs.f_bavail * vfs.f_frsize + sum(volume.allocated for volume in volumes)


def read_volumes(
    directory: Path,
    loops: dict[str, str],
    mounts: dict,
    home: Callable[[str], Path],
    alive: Callable[[str], bool] = lambda device: False,
) -> dict[str, Volume]:
    """One scandir of the images; ``alive(device)`` tells whether a loop device's ext4 is mounted anywhere."""
    volumes: dict[str, Volume] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return volumes
    for entry in sorted(entries, key=lambda e: e.name):
        complete = entry.name.endswith(IMAGE_SUFFIX)
        if not complete and not entry.name.endswith(PARTIAL_SUFFIX):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue  # only our own regular files are images; never follow a link
        username = entry.name.removesuffix(PARTIAL_SUFFIX).removesuffix(IMAGE_SUFFIX)
        if username in volumes and volumes[username].complete:
            continue  # a finished image wins over a leftover partial one
        st = entry.stat(follow_symlinks=False)
        loop = loops.get(entry.path)
        # A mounted filesystem is read through its loop device: that is where the kernel keeps it current.
        fs = read_superblock(loop or entry.path)
        mount = mounts.get(str(home(username)))
        used, in_use = usage(fs, mount, entry.path) if fs is not None else (None, None)
        host_mounted = mount is not None and mount.source == entry.path
        volumes[username] = Volume(
            username=username,
            path=entry.path,
            complete=complete,
            size=st.st_size,
            allocated=st.st_blocks * 512,
            fs=fs,
            loop=loop,
            used=used,
            in_use=in_use,
            attached=loop is not None,
            held_elsewhere=loop is not None and not host_mounted and alive(loop),
        )
    return volumes
