"""Driver for loop-image volumes: one sparse ext4 image per person.

A new image is built as ``<user>.img.partial`` and renamed to ``<user>.img``
only once it holds a filesystem, so an interrupted creation never leaves a
half-formatted image that looks like real data.  Growing is online; shrinking
is offline and checks the filesystem's size before the image is cut.
"""

from __future__ import annotations

import os

from . import lvm, mounts
from .fsutil import fsync_dir
from .layout import Paths
from .mounts import loop_of
from .observe import read_superblock
from .system import CommandFailed, run


def _ensure_dir(paths: Paths) -> None:
    paths.volumes.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.volumes, 0o700)  # images hold students' files: root only


def create_image(paths: Paths, username: str, size: int) -> str:
    """A sparse file of ``size`` bytes: no disk is used until the student writes (or an LV, with lvm)."""
    if paths.backend == "lvm":
        return lvm.create(paths.vg or "", username, size, paths.thin_pool)
    if paths.image(username).exists():
        return "exists"
    _ensure_dir(paths)
    partial = paths.partial(username)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    return "created"


def make_filesystem(paths: Paths, username: str, size: int) -> str:
    """mkfs the partial image (it never held data), then rename it into place."""
    if paths.backend == "lvm":
        return lvm.make_filesystem(paths.vg or "", username)
    image, partial = paths.image(username), paths.partial(username)
    if image.exists():
        return "exists"
    if not partial.exists():
        create_image(paths, username, size)
    os.truncate(partial, size)
    # 4 KiB blocks always (mke2fs would pick 1 KiB for small images), no root reserve:
    # the quota is all the student's.
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-L", username[:16], str(partial)])
    with open(partial, "rb+") as handle:
        os.fsync(handle.fileno())
    os.rename(partial, image)
    fsync_dir(image.parent)
    return "formatted"


def resize(paths: Paths, username: str, size: int) -> str:
    """Grow online (truncate, losetup -c, resize2fs); shrink offline, remounting if it was mounted."""
    if paths.backend == "lvm":
        return _resize_lv(paths, username, size)
    image = paths.image(username)
    loop = loop_of(image)
    fs = read_superblock(loop or str(image))
    if fs is None:
        raise RuntimeError(f"{image} holds no ext4 filesystem")
    if image.stat().st_size == size and fs.size == size:
        return "already"
    if size < fs.size:
        _resize_offline(paths, username, size)
        return "shrunk"
    if image.stat().st_size < size:
        os.truncate(image, size)
    if loop and mounts.is_mounted(paths.home(username), image):
        run(["losetup", "--set-capacity", loop])
        try:
            run(["resize2fs", loop])
            return "grown online"
        except CommandFailed as exc:
            # Online resizing needs CAP_SYS_RESOURCE, which a container's root may lack.
            if "Permission denied" not in exc.stderr:
                raise
    _resize_offline(paths, username, size)
    return "grown offline"


def _resize_offline(paths: Paths, username: str, size: int) -> None:
    """Unmount, check, resize the filesystem, then cut or extend the image; remount as it was."""
    image, home = paths.image(username), paths.home(username)
    was_mounted = mounts.is_mounted(home, image)
    if was_mounted:
        mounts.unmount(paths, username)  # fails with "target is busy" while their server runs
    elif loop_of(image):
        run(["losetup", "--detach", loop_of(image)])
    try:
        if image.stat().st_size < size:
            os.truncate(image, size)
        run(["e2fsck", "-f", "-p", str(image)], ok_codes=(0, 1, 2))
        run(["resize2fs", str(image), f"{size // 1024}K"])
        after = read_superblock(str(image))
        if after is None or after.size > size:
            raise RuntimeError(f"resize2fs left {image} larger than {size} bytes; not cutting the image")
        if image.stat().st_size > size:
            os.truncate(image, size)
    finally:
        if was_mounted:
            mounts.mount(paths, username)


def _resize_lv(paths: Paths, username: str, size: int) -> str:
    """lvextend -r online; a shrink unmounts, lets fsadm check and shrink, then mounts again."""
    home, source = paths.home(username), paths.source(username)
    mounted = mounts.is_mounted(home, source)
    lv = lvm.read_lvs(paths.vg or "")
    current = next((int(x["lv_size"]) for x in lv if x["lv_name"] == lvm.lv_name(username)), size)
    if size >= current or not mounted:
        return lvm.resize(paths.vg or "", username, size, mounted)
    mounts.unmount(paths, username)
    try:
        return lvm.resize(paths.vg or "", username, size, mounted=False)
    finally:
        mounts.mount(paths, username)


def detach(paths: Paths, username: str) -> str:
    if paths.backend == "lvm":
        if mounts.is_mounted(paths.home(username), paths.source(username)):
            raise RuntimeError(f"{paths.source(username)} is still mounted")
        return lvm.deactivate(paths.vg or "", username)
    loop = loop_of(paths.image(username))
    if loop is None:
        return "already"
    if mounts.is_mounted(paths.home(username), paths.image(username)):
        raise RuntimeError(f"{paths.image(username)} is still mounted")
    run(["losetup", "--detach", loop])
    return "detached"


def destroy(paths: Paths, username: str) -> str:
    """Delete the image or LV (purge only).  Refuses while it is mounted or attached."""
    if paths.backend == "lvm":
        if mounts.is_mounted(paths.home(username), paths.source(username)):
            raise RuntimeError(f"{paths.source(username)} is still mounted")
        return lvm.destroy(paths.vg or "", username)
    image = paths.image(username)
    if mounts.is_mounted(paths.home(username), image) or loop_of(image):
        raise RuntimeError(f"{image} is still in use")
    removed = False
    for path in (image, paths.partial(username)):
        if path.exists():
            path.unlink()
            removed = True
    return "deleted" if removed else "absent"
