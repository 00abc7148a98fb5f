"""The LVM volume backend: one logical volume per person in a volume group.

Observing costs one `lvs` and one `vgs` per pass, never one per person.  Sizes
are whole extents: the plan asks for the rounded size, so the observed size
equals it and no 1 MiB of rounding can cause an endless resize.  A new LV
carries the tag ``classroom-partial`` until it holds a filesystem, so an
interrupted creation is finished (formatted) and never mistaken for data.
Grow is online (`lvextend -r`); shrink unmounts and lets fsadm check first
(`lvreduce -r`).  Disable deactivates the LV; purge removes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from collections.abc import Callable, Mapping

from ...config.site import LvmVolumes, Paths
from ...core.actions import VolumeFields
from ...core.actual import Filesystem, Mount, Volume
from ...core.desired import Release
from ..facts import HostFiles, read_mounts, read_superblock, usage
from ..drivers import Busy
from ..mounts import is_mounted, mount_fs, umount
from ..run import Runner
from .base import NoVolume, View, VolumeFacts, leftover_views, unmount_view

PARTIAL_TAG = "classroom-partial"
LV_PREFIX = "home-"
SNAPSHOT_PREFIX = "export-"
EXPORT_TAG = "classroom-export"  # on an export's snapshot: what clear_views may remove
VIEW_OPTIONS = "ro,noload,nodev,nosuid,noexec"
MOUNT_OPTIONS = "nodev,nosuid,noatime"
_FIELDS = "lv_name,vg_name,lv_size,lv_active,lv_path,lv_tags,lv_kernel_major,lv_kernel_minor,pool_lv"


# LVM reserves some suffixes (_tmeta, _rimage, ...) inside names; usernames never contain '+', so
# '_' -> '+' keeps every username a legal LV name and the mapping reversible.
def lv_name(username: str) -> str:
    return LV_PREFIX + username.replace("_", "+")


def username_of(lv: str) -> str | None:
    return lv[len(LV_PREFIX) :].replace("+", "_") if lv.startswith(LV_PREFIX) else None


def snapshot_name(username: str) -> str:
    """An export's snapshot of the person's LV (not a person's volume: observe ignores it)."""
    return SNAPSHOT_PREFIX + username.replace("_", "+")


def lv_path(vg: str, username: str) -> str:
    return f"/dev/{vg}/{lv_name(username)}"


@dataclass(frozen=True)
class LvmLayout:
    vg: str
    mount_options: str = MOUNT_OPTIONS

    def release(self, volume: Volume) -> Release:
        return Release(VolumeFields(active=True), VolumeFields(active=False), "logical volume still active")

    def source(self, username: str) -> str:
        return lv_path(self.vg, username)


def layout(settings: LvmVolumes) -> LvmLayout:
    return LvmLayout(settings.vg)


def _report(stdout: str, key: str) -> list[dict]:
    return json.loads(stdout)["report"][0][key]


def read_vg(vg: str, run: Runner) -> dict:
    """Extent size, size and free bytes of the volume group (one `vgs`)."""
    out = run.run(
        [
            "vgs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,vg_extent_size,vg_size,vg_free",
            vg,
        ]
    )
    (row,) = _report(out, "vg")
    return {"extent": int(row["vg_extent_size"]), "size": int(row["vg_size"]), "free": int(row["vg_free"])}


def read_lvs(vg: str, run: Runner) -> list[dict]:
    """Every LV of the group (one `lvs`)."""
    out = run.run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", _FIELDS, vg])
    return _report(out, "lv")


def device_aliases(lvs: list[dict]) -> dict[str, str]:
    """ "major:minor" -> /dev/<vg>/<lv>, so mountinfo's /dev/mapper names map back to our paths."""
    return {
        f"{lv['lv_kernel_major']}:{lv['lv_kernel_minor']}": lv["lv_path"]
        for lv in lvs
        if lv.get("lv_kernel_major") not in (None, "", "-1")
    }


def _number(lv: dict) -> str | None:
    """The active LV's "major:minor", from the report."""
    if lv.get("lv_kernel_major") in (None, "", "-1"):
        return None
    return f"{lv['lv_kernel_major']}:{lv['lv_kernel_minor']}"


def pool_size(lvs: list[dict], thin_pool: str | None) -> int | None:
    """The thin pool's data size, what every thin volume's writes share."""
    return next((int(lv["lv_size"]) for lv in lvs if thin_pool and lv["lv_name"] == thin_pool), None)


def volumes_from(
    lvs: list[dict],
    mounts: Mapping[str, Mount],
    paths: Paths,
    superblock: Callable[[str], Filesystem | None] = read_superblock,
    statvfs: Callable = os.statvfs,
    alive: Callable[[str], bool] = lambda number: False,
) -> dict[str, Volume]:
    """The volumes from one `lvs` report; ``alive("major:minor")`` tells whether its ext4 is mounted anywhere."""
    volumes = {}
    for lv in lvs:
        username = username_of(lv["lv_name"])
        if username is None:
            continue
        active = lv["lv_active"] == "active"
        complete = PARTIAL_TAG not in lv["lv_tags"].split(",")
        fs = superblock(lv["lv_path"]) if active else None
        mount = mounts.get(str(paths.home(username)))
        used, in_use = usage(fs, mount, lv["lv_path"], statvfs) if fs is not None else (None, None)
        host_mounted = mount is not None and mount.source == lv["lv_path"]
        number = _number(lv)
        volumes[username] = Volume(
            username=username,
            path=lv["lv_path"],
            complete=complete,
            size=int(lv["lv_size"]),
            allocated=int(lv["lv_size"]),
            fs=fs,
            loop=None,
            used=used,
            in_use=in_use,
            attached=active,
            readable=active,
            held_elsewhere=active and not host_mounted and number is not None and alive(number),
        )
    return volumes


class LvmBackend:
    name = "lvm"

    def __init__(self, settings: LvmVolumes, paths: Paths, run: Runner, host: HostFiles):
        self.settings, self.paths, self.run, self.host = settings, paths, run, host
        self.layout = layout(settings)
        self.vg = settings.vg

    # --- observing ---------------------------------------------------------------------------------

    def observe(self) -> VolumeFacts:
        lvs = read_lvs(self.vg, self.run)
        loops = self.host.loops()
        aliases = {path: device for device, path in device_aliases(lvs).items()}
        mounts = read_mounts(
            self.host.mountinfo, {**loops, **aliases}, under=str(self.paths.homes), also=list(self.paths.own_folders)
        )
        volumes = volumes_from(lvs, mounts, self.paths, alive=self._alive)
        pool = pool_size(lvs, self.settings.thin_pool)
        return VolumeFacts(
            MappingProxyType(volumes),
            MappingProxyType(mounts),
            read_vg(self.vg, self.run)["extent"],
            pool,
            f"the thin pool {self.vg}/{self.settings.thin_pool}" if pool is not None else "",
        )

    def _alive(self, number: str) -> bool:
        """Is the ext4 on device "major:minor" mounted anywhere (any mount namespace)?"""
        name = self.host.device_name(number)
        return name is not None and self.host.ext4_alive(name)

    def _in_use(self, username: str, lv: dict) -> None:
        """Raise Busy when the LV's filesystem is mounted in another mount namespace (a running server)."""
        number = _number(lv)
        holders = self.host.holders({number}) if number else []
        if holders:
            raise Busy(
                f"{username}'s volume is mounted by {', '.join(holders)} (a running server holds the "
                "home); nothing was touched, it applies when that ends"
            )

    def _check_size(self, lv_path: str, size: int) -> None:
        now = read_superblock(lv_path)
        if now is None or now.size != size:
            shown = "no ext4" if now is None else f"{now.size} bytes"
            raise RuntimeError(f"the resize succeeded but {lv_path} holds {shown}, not {size} bytes")

    # --- drivers -------------------------------------------------------------------------------------

    def _lv(self, username: str) -> dict | None:
        name = lv_name(username)
        return next((lv for lv in read_lvs(self.vg, self.run) if lv["lv_name"] == name), None)

    def _need(self, username: str) -> dict:
        lv = self._lv(username)
        if lv is None:
            raise RuntimeError(f"{lv_path(self.vg, username)} does not exist")
        return lv

    def create(self, username: str, size: int) -> str:
        if self._lv(username) is not None:
            return "exists"
        if self.settings.thin_pool:
            self.run.run(
                [
                    "lvcreate",
                    "--yes",
                    "--thin",
                    "-V",
                    f"{size}b",
                    "--addtag",
                    PARTIAL_TAG,
                    "-n",
                    lv_name(username),
                    f"{self.vg}/{self.settings.thin_pool}",
                ]
            )
        else:
            self.run.run(
                [
                    "lvcreate",
                    "--yes",
                    "--wipesignatures",
                    "y",
                    "--zero",
                    "y",
                    "--addtag",
                    PARTIAL_TAG,
                    "-L",
                    f"{size}b",
                    "-n",
                    lv_name(username),
                    self.vg,
                ]
            )
        return "created"

    def make_filesystem(self, username: str, size: int) -> str:
        lv = self._need(username)
        if PARTIAL_TAG not in lv["lv_tags"].split(","):
            return "exists"
        self._activate(lv)
        self.run.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-L", username[:16], lv["lv_path"]])
        self.run.run(["lvchange", "--deltag", PARTIAL_TAG, lv["lv_path"]])
        return "formatted"

    def _activate(self, lv: dict) -> str:
        if lv["lv_active"] == "active":
            return "already"
        self.run.run(["lvchange", "-ay", lv["lv_path"]])
        return "activated"

    def resize(self, username: str, size: int) -> str:
        """Grow online where the kernel allows it (lvextend, then resize2fs on the mounted filesystem);
        anything else offline, and only when the filesystem is mounted nowhere else: a shrink lets fsadm
        check and shrink (`lvreduce -r`), a grow extends the LV and then checks and resizes the filesystem.

        The filesystem's own size decides what is left to do, so a grow whose resize2fs failed after
        lvextend (a kernel that denies online resizing) is finished by the next pass, never "already".
        """
        lv = self._need(username)
        current = int(lv["lv_size"])
        self._activate(lv)
        fs = read_superblock(lv["lv_path"])
        fs_size = fs.size if fs is not None else current
        if current == size and fs_size == size:
            return "already"
        home, source = self.paths.home(username), self.layout.source(username)
        mounted = is_mounted(self.host, home, source)
        grow = size >= fs_size
        if grow and mounted and self.host.can_resize_online():
            if current < size:
                self.run.run(["lvextend", "--yes", "-L", f"{size}b", lv["lv_path"]])
            self.run.run(["resize2fs", lv["lv_path"]])
            self._check_size(lv["lv_path"], size)
            return "grown online"
        self._in_use(username, lv)
        if mounted:
            umount(self.run, home, self.host)
        number = _number(lv)
        if number is not None and self._alive(number):
            if mounted:
                mount_fs(self.run, source, home, self.layout.mount_options)
            raise Busy(
                f"{username}'s volume is still mounted in another mount namespace; nothing was touched, "
                "it applies when that ends"
            )
        try:
            if grow:
                if current < size:
                    self.run.run(["lvextend", "--yes", "-L", f"{size}b", lv["lv_path"]])
                self.run.run(["e2fsck", "-f", "-p", lv["lv_path"]], ok_codes=(0, 1, 2))
                self.run.run(["resize2fs", lv["lv_path"]])
            else:
                self.run.run(["lvreduce", "--yes", "-r", "-L", f"{size}b", lv["lv_path"]])
            self._check_size(lv["lv_path"], size)
        finally:
            if mounted:
                mount_fs(self.run, source, home, self.layout.mount_options)
        return "grown offline" if grow else "shrunk"

    def attach(self, username: str) -> None:
        """Before a mount: the LV must be active."""
        self._activate(self._need(username))

    def release(self, username: str) -> None:
        """After an unmount: deactivate the LV."""
        lv = self._lv(username)
        if lv is not None and lv["lv_active"] == "active":
            self.run.run(["lvchange", "-an", lv["lv_path"]])

    def detach(self, username: str) -> str:
        if is_mounted(self.host, self.paths.home(username), self.layout.source(username)):
            raise RuntimeError(f"{self.layout.source(username)} is still mounted")
        lv = self._lv(username)
        if lv is None or lv["lv_active"] != "active":
            return "already"
        self.run.run(["lvchange", "-an", lv["lv_path"]])
        return "deactivated"

    def destroy(self, username: str) -> str:
        if is_mounted(self.host, self.paths.home(username), self.layout.source(username)):
            raise RuntimeError(f"{self.layout.source(username)} is still mounted")
        lv = self._lv(username)
        if lv is None:
            return "absent"
        if (number := _number(lv)) is not None and self._alive(number):
            raise Busy(f"{username}'s volume is still mounted somewhere; it is deleted when that ends")
        self.run.run(["lvremove", "--yes", lv["lv_path"]])
        return "deleted"

    def held(self, usernames: set[str], found: Mapping[str, Volume] | None = None) -> set[str]:
        """An LV's device number comes from one `lvs` here (``found`` is the loop backend's shortcut)."""
        numbers = {}
        for lv in read_lvs(self.vg, self.run):
            user = username_of(lv["lv_name"])
            if user in usernames and (number := _number(lv)) is not None:
                numbers[number] = user
        return {numbers[number] for number in self.host.holders_by_device(set(numbers))}

    # --- export views --------------------------------------------------------------------------------

    def open_view(self, username: str, scratch: Path) -> View:
        """A mounted volume through a snapshot (lvcreate freezes the filesystem for the instant it takes);
        an unmounted one as it is.  Either is mounted read-only without replaying its journal."""
        lv = self._lv(username)
        if lv is None:
            raise NoVolume(f"{username} has no volume yet ({lv_path(self.vg, username)} does not exist)")
        home, source = self.paths.home(username), self.layout.source(username)
        mounted = is_mounted(self.host, home, source)
        number = _number(lv)
        if not mounted and number is not None and self._alive(number):
            raise Busy(
                f"{username}'s volume is mounted in another mount namespace only (a server still ending); "
                "export it when that ends"
            )
        target = scratch / f"{username}.view"
        if mounted:
            snap = snapshot_name(username)
            if any(
                other["lv_name"] == snap and EXPORT_TAG in other["lv_tags"].split(",")
                for other in read_lvs(self.vg, self.run)
            ):
                self.run.run(["lvremove", "--yes", f"{self.vg}/{snap}"])  # left by an export that was killed
            if self.settings.thin_pool:
                self.run.run(
                    [
                        "lvcreate",
                        "--yes",
                        "--snapshot",
                        "--setactivationskip",
                        "n",
                        "--addtag",
                        EXPORT_TAG,
                        "-n",
                        snap,
                        f"{self.vg}/{lv['lv_name']}",
                    ]
                )
            else:  # room for what the student writes while the export reads: a fifth of the volume
                cow = max(int(lv["lv_size"]) // 5, 4 << 20)
                self.run.run(
                    [
                        "lvcreate",
                        "--yes",
                        "--snapshot",
                        "--addtag",
                        EXPORT_TAG,
                        "-L",
                        f"{cow}b",
                        "-n",
                        snap,
                        lv["lv_path"],
                    ]
                )
            device, how, leftover = (
                f"/dev/{self.vg}/{snap}",
                "an LVM snapshot of the mounted volume",
                f"snapshot:{snap}",
            )
        else:
            activated = self._activate(lv) == "activated"
            device, how = lv["lv_path"], "the unmounted volume"
            leftover = f"deactivate:{lv['lv_path']}" if activated else None
        try:
            target.mkdir(mode=0o700, exist_ok=True)
            self.run.run(["mount", "-o", VIEW_OPTIONS, device, str(target)])
        except BaseException:
            if target.is_dir():
                target.rmdir()
            self._drop(leftover)
            raise
        return View(username, target, how, leftover)

    def close_view(self, view: View) -> None:
        unmount_view(self.run, self.host, view)
        self._drop(view.scratch)

    def clear_views(self, scratch: Path) -> None:
        for view in leftover_views(scratch):
            self.close_view(view)
        for lv in read_lvs(self.vg, self.run):  # only our own snapshots: the tag, not the name alone
            if lv["lv_name"].startswith(SNAPSHOT_PREFIX) and EXPORT_TAG in lv["lv_tags"].split(","):
                self._drop(f"snapshot:{lv['lv_name']}")

    def _drop(self, leftover: str | None) -> None:
        if leftover is None:
            return
        what, _, name = leftover.partition(":")
        if what == "snapshot":
            self.run.run(["lvremove", "--yes", f"{self.vg}/{name}"])
        elif what == "deactivate":
            self.run.run(["lvchange", "-an", name])

    def boot(self) -> list[str]:
        """At boot, before mount-all: attach the loop device that carries the VG of `storage init`."""
        if self.settings.pv_file is None:
            return []
        from .lvm_storage import attach_pv

        return [attach_pv(self.settings.pv_file, self.run, self.host)]
