"""Driver for the mount manifest and the mounts themselves.

``<state_dir>/mounts.fstab`` is an fstab-format list of every active
person's volume, rewritten atomically on each change.  ``reconcile mount-all``
mounts what it lists (at boot, before the hub starts).  An unmounted home's
mount point is left root-owned with mode 0000, so nothing can write to the
host's disk there by mistake.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from . import layout
from .fsutil import write_atomic
from .layout import Paths
from .observe import ManifestEntry, escape, read_loops, read_manifest, read_mounts
from .system import run

MOUNTINFO = Path("/proc/self/mountinfo")
SYS_BLOCK = Path("/sys/block")
HEADER = (
    "# Managed by reconcile: do not edit.  `reconcile mount-all` mounts every line (at boot, before the hub).\n"
    "# <image> <mount point> <type> <options> <dump> <pass>\n"
)


def _mounted_source(home: Path) -> str | None:
    """The image (or device) mounted at ``home`` right now, if any."""
    mounts = read_mounts(MOUNTINFO, read_loops(SYS_BLOCK), under=str(home.parent))
    mount = mounts.get(str(home))
    return None if mount is None else mount.source


def _device_number(path: str) -> str | None:
    try:
        rdev = os.stat(path).st_rdev
    except OSError:
        return None
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def is_mounted(home: Path, source: Path) -> bool:
    """Is ``source`` (an image, or a device such as /dev/vg/lv) what is mounted at ``home``?"""
    mount = read_mounts(MOUNTINFO, read_loops(SYS_BLOCK), under=str(home.parent)).get(str(home))
    if mount is None:
        return False
    if mount.source == str(source):
        return True
    return str(source).startswith("/dev/") and _device_number(str(source)) == mount.device


def loop_of(image: Path) -> str | None:
    """The loop device the image is attached to, if any."""
    return read_loops(SYS_BLOCK).get(str(image))


# --- manifest ---------------------------------------------------------------------------------


def _write_manifest(paths: Paths, entries: dict[str, ManifestEntry]) -> None:
    lines = [
        f"{escape(e.source)} {escape(e.target)} {e.fstype} {e.options} 0 2\n"
        for e in sorted(entries.values(), key=lambda e: e.target)
    ]
    write_atomic(paths.manifest, HEADER + "".join(lines))


def add_entry(paths: Paths, username: str) -> str:
    entries = read_manifest(paths.manifest)
    want = ManifestEntry(str(paths.source(username)), str(paths.home(username)), "ext4", paths.mount_options)
    if entries.get(want.target) == want:
        return "already"
    entries[want.target] = want
    _write_manifest(paths, entries)
    return "written"


def remove_entry(paths: Paths, username: str) -> str:
    entries = read_manifest(paths.manifest)
    if entries.pop(str(paths.home(username)), None) is None:
        return "already"
    _write_manifest(paths, entries)
    return "written"


# --- mounts -----------------------------------------------------------------------------------


def _prepare_mount_point(home: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.mkdir(mode=0o000, exist_ok=True)
    os.chown(home, 0, 0)
    os.chmod(home, 0o000)


def mount(paths: Paths, username: str) -> str:
    home, image = paths.home(username), paths.source(username)
    if is_mounted(home, image):
        return "already"
    if (source := _mounted_source(home)) is not None:
        raise RuntimeError(f"{home} already has {source} mounted on it")
    if paths.backend == "lvm":
        from . import lvm

        lvm.activate(paths.vg or "", username)
    elif not image.exists():
        raise RuntimeError(f"{image} does not exist")
    elif stale := loop_of(image):  # never attach one image twice: two loop devices on one ext4 corrupt it
        run(["losetup", "--detach", stale])
    _prepare_mount_point(home)
    run(["mount", "-t", "ext4", "-o", paths.mount_options, str(image), str(home)])
    return "mounted"


def remount(paths: Paths, username: str) -> str:
    home = paths.home(username)
    if not is_mounted(home, paths.source(username)):
        raise RuntimeError(f"{home} is not mounted")
    run(["mount", "-o", "remount,nodev,nosuid", str(home)])
    return "remounted"


def unmount(paths: Paths, username: str) -> str:
    """Unmount, then detach the loop device or deactivate the LV; the data stays."""
    home, image = paths.home(username), paths.source(username)
    source = _mounted_source(home)
    if source is not None and not is_mounted(home, image):
        raise RuntimeError(f"{home} has {source} mounted, not {image}; leaving it alone")
    if source is not None:
        try:
            run(["umount", str(home)])
        except Exception as exc:
            raise RuntimeError(f"cannot unmount {home} (is their server still running?): {exc}") from None
    if paths.backend == "lvm":
        from . import lvm

        lvm.deactivate(paths.vg or "", username)
    elif loop := loop_of(image):
        run(["losetup", "--detach", loop])
    return "unmounted" if source else "already"


def set_ownership(paths: Paths, username: str) -> str:
    """The mounted volume's root belongs to its owner, mode 0700; never the bare mount point."""
    home = paths.home(username)
    if not is_mounted(home, paths.source(username)):
        raise RuntimeError(f"{home} is not mounted; not changing the bare mount point")
    entry = pwd.getpwnam(username)
    st = os.stat(home)
    if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (entry.pw_uid, entry.pw_gid, layout.HOME_MODE):
        return "already"
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, layout.HOME_MODE)
    return "set"


def mount_all(paths: Paths) -> dict[str, str]:
    """Mount every manifest entry that is not mounted yet (at boot).  A no-op when all are."""
    entries = read_manifest(paths.manifest)
    mounts = read_mounts(MOUNTINFO, read_loops(SYS_BLOCK), under=str(paths.homes))
    results = {}
    for target, entry in sorted(entries.items()):
        username = Path(target).name
        if target in mounts and is_mounted(Path(target), Path(entry.source)):
            results[username] = "already"
            continue
        try:
            results[username] = mount(paths, username)
        except Exception as exc:  # one broken image must not keep the others unmounted
            results[username] = f"failed: {exc}"
    return results
