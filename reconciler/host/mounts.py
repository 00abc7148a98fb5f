"""Drivers for the mount manifest, the mounts and the homes' ownership, and the mount primitives.

``<state_dir>/mounts.fstab`` is an fstab-format list of every active
person's volume, rewritten atomically on each change.  ``reconcile mount-all``
mounts what it lists (at boot, before the hub starts).  An unmounted home's
mount point is left root-owned with mode 0000, so nothing can write to the
host's disk there by mistake.  What is mounted comes from the volume backend
(``ctx.volumes``): it attaches the device before a mount and releases it after.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..config.site import Paths
from ..core.actions import Action, Kind, Op
from ..core.actual import ManifestEntry, Mount
from ..core.desired import Owner
from .drivers import Busy, Context, driver
from .facts import HostFiles, colon_entry, escape, mount_at, read_manifest, read_mounts
from .fsutil import write_atomic
from .run import CommandFailed, Runner

HEADER = (
    "# Managed by reconcile: do not edit.  `reconcile mount-all` mounts every line (at boot, before the hub).\n"
    "# <image> <mount point> <type> <options> <dump> <pass>\n"
)


# --- primitives --------------------------------------------------------------------------------------


def mounted_source(host: HostFiles, home: Path) -> str | None:
    """The image (or device) mounted at ``home`` right now, if any."""
    mount = mount_at(host, home)
    return None if mount is None else mount.source


def _device_number(path: str) -> str | None:
    try:
        rdev = os.stat(path).st_rdev
    except OSError:
        return None
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def is_mounted(host: HostFiles, home: Path, source: str) -> bool:
    """Is ``source`` (an image, or a device such as /dev/vg/lv) what is mounted at ``home``?"""
    return _is_source(mount_at(host, home), source)


def _is_source(mount: Mount | None, source: str) -> bool:
    if mount is None:
        return False
    if mount.source == source:
        return True
    return source.startswith("/dev/") and _device_number(source) == mount.device


def loop_of(host: HostFiles, image: Path) -> str | None:
    """The loop device the image is attached to, if any."""
    return host.loops().get(str(image))


def prepare_mount_point(run: Runner, home: Path) -> None:
    """A bare mount point is root's, mode 0000: nothing lands on the host's disk by mistake."""
    home.parent.mkdir(parents=True, exist_ok=True)
    home.mkdir(mode=0o000, exist_ok=True)
    run.chown(home, 0, 0)
    run.chmod(home, 0o000)


def mount_fs(run: Runner, source: str, home: Path, options: str) -> None:
    prepare_mount_point(run, home)
    run.run(["mount", "-t", "ext4", "-o", options, source, str(home)])


def _held_here(host: HostFiles, home: Path) -> bool:
    """Does a process of this host hold the filesystem at ``home`` (another mount namespace, an NFS client with
    files open)?  Then a busy unmount is theirs, not the NFS server's caches'."""
    mount = mount_at(host, home)
    return mount is not None and bool(host.holders({mount.device}))


NFS_HOLDS = (
    "{home} is still in use though no server or mount namespace holds it: the NFS server keeps it for a "
    "while after a swarm worker used it (its export withdrawn, within two NFS lease times, 90 s each by "
    "default), or a process of this host has a file open there; nothing was touched"
)


def umount(run: Runner, home: Path, host: HostFiles = HostFiles()) -> None:
    try:
        run.run(["umount", str(home)])
    except CommandFailed as exc:
        if "busy" in exc.stderr and host.nfsd_threads() > 0 and not _held_here(host, home):
            raise Busy(NFS_HOLDS.format(home=home)) from None
        raise RuntimeError(f"cannot unmount {home} (is their server still running?): {exc}") from None
    except Exception as exc:
        raise RuntimeError(f"cannot unmount {home} (is their server still running?): {exc}") from None


# --- the manifest ------------------------------------------------------------------------------------


def _write_manifest(paths: Paths, entries: dict[str, ManifestEntry]) -> None:
    lines = [
        f"{escape(e.source)} {escape(e.target)} {e.fstype} {e.options} 0 2\n"
        for e in sorted(entries.values(), key=lambda e: e.target)
    ]
    write_atomic(paths.manifest, HEADER + "".join(lines))


def _wanted_entry(ctx: Context, username: str) -> ManifestEntry:
    layout = ctx.volumes.layout
    return ManifestEntry(layout.source(username), str(ctx.paths.home(username)), "ext4", layout.mount_options)


MANIFEST_LOCK = threading.Lock()  # people are applied side by side (engine/apply.py): one rewrite at a time


@driver(Kind.MANIFEST, Op.CREATE)
@driver(Kind.MANIFEST, Op.UPDATE)
def add_entry(action: Action, ctx: Context) -> str:
    with MANIFEST_LOCK:
        entries = read_manifest(ctx.paths.manifest)
        want = _wanted_entry(ctx, action.target)
        if entries.get(want.target) == want:
            return "already"
        entries[want.target] = want
        _write_manifest(ctx.paths, entries)
        return "written"


@driver(Kind.MANIFEST, Op.DISABLE)
def remove_entry(action: Action, ctx: Context) -> str:
    with MANIFEST_LOCK:
        entries = read_manifest(ctx.paths.manifest)
        if entries.pop(str(ctx.paths.home(action.target)), None) is None:
            return "already"
        _write_manifest(ctx.paths, entries)
        return "written"


# --- mounts --------------------------------------------------------------------------------------------


@driver(Kind.MOUNT, Op.CREATE)
def mount(action: Action, ctx: Context) -> str:
    return mount_home(ctx, action.target)


def mount_home(ctx: Context, username: str) -> str:
    home, source = ctx.paths.home(username), ctx.volumes.layout.source(username)
    found = mount_at(ctx.host, home)  # one look at mountinfo for both questions
    if _is_source(found, source):
        return "already"
    if found is not None:
        raise RuntimeError(f"{home} already has {found.source} mounted on it")
    ctx.volumes.attach(username)
    mount_fs(ctx.run, source, home, ctx.volumes.layout.mount_options)
    return "mounted"


@driver(Kind.MOUNT, Op.UPDATE)
def remount(action: Action, ctx: Context) -> str:
    home = ctx.paths.home(action.target)
    if not is_mounted(ctx.host, home, ctx.volumes.layout.source(action.target)):
        raise RuntimeError(f"{home} is not mounted")
    ctx.run.run(["mount", "-o", "remount,nodev,nosuid", str(home)])
    return "remounted"


@driver(Kind.MOUNT, Op.DISABLE)
def unmount(action: Action, ctx: Context) -> str:
    """Unmount, then release the device (detach the loop device, deactivate the LV); the data stays."""
    user = action.target
    home, source = ctx.paths.home(user), ctx.volumes.layout.source(user)
    found = mount_at(ctx.host, home)
    if found is not None and not _is_source(found, source):
        raise RuntimeError(f"{home} has {found.source} mounted, not {source}; leaving it alone")
    if found is not None:
        umount(ctx.run, home, ctx.host)
    ctx.volumes.release(user)
    return "unmounted" if found else "already"


@driver(Kind.OWNERSHIP, Op.CREATE)
@driver(Kind.OWNERSHIP, Op.UPDATE)
def set_ownership(action: Action, ctx: Context) -> str:
    """The mounted volume's root belongs to the owner the plan names (a home: its person, 0700; the course
    folder: root and the teachers' group, setgid 2775: teachers write, students read); never the bare mount
    point."""
    user = action.target
    home = ctx.paths.home(user)
    if not is_mounted(ctx.host, home, ctx.volumes.layout.source(user)):
        raise RuntimeError(f"{home} is not mounted; not changing the bare mount point")
    owner = Owner.parse(action.after)  # by name: resolved now, on the host (an account may be new in this pass)
    account = colon_entry(ctx.host.etc / "passwd", owner.user)
    if account is None:
        raise RuntimeError(f"{owner.user} has no account")
    group = colon_entry(ctx.host.etc / "group", owner.group)
    if group is None and owner.group != owner.user:
        raise RuntimeError(f"the group {owner.group} does not exist")
    # a person's own group is their primary group when no group of that name exists (as the plan has it)
    uid, gid, mode = int(account[2]), int(group[2] if group is not None else account[3]), owner.mode
    st = os.stat(home)
    if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode):
        return "already"
    ctx.run.chown(home, uid, gid)
    ctx.run.chmod(home, mode)
    return "set"


def mount_all(ctx: Context) -> dict[str, str]:
    """Mount every manifest entry that is not mounted yet (at boot).  A no-op when all are."""
    entries = read_manifest(ctx.paths.manifest)
    mounts = read_mounts(
        ctx.host.mountinfo, ctx.host.loops(), under=str(ctx.paths.homes), also=list(ctx.paths.own_folders)
    )
    results = {}
    for target, entry in sorted(entries.items()):
        username = ctx.paths.volume_of(target)
        if username is None:
            results[target] = "failed: not a home or the course folder (site.yaml's paths changed?)"
            continue
        if target in mounts and is_mounted(ctx.host, Path(target), entry.source):
            results[username] = "already"
            continue
        try:
            results[username] = mount_home(ctx, username)
        except Exception as exc:  # one broken image must not keep the others unmounted
            results[username] = f"failed: {exc}"
    return results
