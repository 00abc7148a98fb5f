"""The LVM volume backend: one logical volume per person in a volume group.

Observing costs one `lvs` and one `vgs` per pass, never one per person.  Sizes
are whole extents: the plan asks for the rounded size, so the observed size
equals it and no 1 MiB of rounding can cause an endless resize.  A new LV
carries the tag ``classroom-partial`` until it holds a filesystem, so an
interrupted creation is finished (formatted) and never mistaken for data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

from .layout import Paths
from .observe import Filesystem, Mount, Volume, read_superblock
from .system import run

PARTIAL_TAG = "classroom-partial"
LV_PREFIX = "home-"
# LVM reserves some suffixes (_tmeta, _rimage, ...) inside names; usernames never contain '+', so
# '_' -> '+' keeps every username a legal LV name and the mapping reversible.
_RESERVED_FIELDS = "lv_name,vg_name,lv_size,lv_active,lv_path,lv_tags,lv_kernel_major,lv_kernel_minor,pool_lv"


def lv_name(username: str) -> str:
    return LV_PREFIX + username.replace("_", "+")


def username_of(lv: str) -> str | None:
    return lv[len(LV_PREFIX):].replace("+", "_") if lv.startswith(LV_PREFIX) else None


def lv_path(vg: str, username: str) -> str:
    return f"/dev/{vg}/{lv_name(username)}"


def _report(stdout: str, key: str) -> list[dict]:
    return json.loads(stdout)["report"][0][key]


def read_vg(vg: str, runner: Callable | None = None) -> dict:
    """Extent size, size and free bytes of the volume group (one `vgs`)."""
    out = (runner or run)(["vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
                  "-o", "vg_name,vg_extent_size,vg_size,vg_free", vg])
    (row,) = _report(out, "vg")
    return {"extent": int(row["vg_extent_size"]), "size": int(row["vg_size"]), "free": int(row["vg_free"])}


def read_lvs(vg: str, runner: Callable | None = None) -> list[dict]:
    """Every LV of the group (one `lvs`)."""
    out = (runner or run)(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", _RESERVED_FIELDS, vg])
    return _report(out, "lv")


def device_aliases(lvs: list[dict]) -> dict[str, str]:
    """"major:minor" -> /dev/<vg>/<lv>, so mountinfo's /dev/mapper names map back to our paths."""
    return {f"{lv['lv_kernel_major']}:{lv['lv_kernel_minor']}": lv["lv_path"]
            for lv in lvs if lv.get("lv_kernel_major") not in (None, "", "-1")}


def volumes_from(lvs: list[dict], mounts: Mapping[str, Mount], paths: Paths,
                 superblock: Callable[[str], Filesystem | None] = read_superblock,
                 statvfs: Callable = os.statvfs) -> dict[str, Volume]:
    volumes = {}
    for lv in lvs:
        username = username_of(lv["lv_name"])
        if username is None:
            continue
        active = lv["lv_active"] == "active"
        complete = PARTIAL_TAG not in lv["lv_tags"].split(",")
        fs = superblock(lv["lv_path"]) if active else None
        mount = mounts.get(str(paths.home(username)))
        used = in_use = None
        if fs is not None and mount is not None and mount.source == lv["lv_path"]:
            vfs = statvfs(mount.target)
            used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
            in_use = fs.size - vfs.f_bfree * vfs.f_frsize
        elif fs is not None:
            used = in_use = fs.size - fs.free
        volumes[username] = Volume(
            username=username, path=lv["lv_path"], complete=complete, size=int(lv["lv_size"]),
            allocated=int(lv["lv_size"]), fs=fs, loop=None, used=used, in_use=in_use, attached=active)
    return volumes


def observe_lvm(vg: str, mounts: Mapping[str, Mount], paths: Paths) -> tuple[Mapping[str, Volume], int]:
    return MappingProxyType(volumes_from(read_lvs(vg), mounts, paths)), read_vg(vg)["extent"]


# --- drivers --------------------------------------------------------------------------------------


def _lv(vg: str, username: str) -> dict | None:
    name = lv_name(username)
    return next((lv for lv in read_lvs(vg) if lv["lv_name"] == name), None)


def create(vg: str, username: str, size: int, thin_pool: str | None = None) -> str:
    if _lv(vg, username) is not None:
        return "exists"
    if thin_pool:
        run(["lvcreate", "--yes", "--thin", "-V", f"{size}b", "--addtag", PARTIAL_TAG, "-n", lv_name(username),
             f"{vg}/{thin_pool}"])
    else:
        run(["lvcreate", "--yes", "--wipesignatures", "y", "--zero", "y", "--addtag", PARTIAL_TAG,
             "-L", f"{size}b", "-n", lv_name(username), vg])
    return "created"


def pool_size(lvs: list[dict], thin_pool: str | None) -> int | None:
    """The thin pool's data size, what every thin volume's writes share."""
    return next((int(lv["lv_size"]) for lv in lvs if thin_pool and lv["lv_name"] == thin_pool), None)


def make_filesystem(vg: str, username: str) -> str:
    lv = _lv(vg, username)
    if lv is None:
        raise RuntimeError(f"{lv_path(vg, username)} does not exist")
    if PARTIAL_TAG not in lv["lv_tags"].split(","):
        return "exists"
    activate(vg, username)
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-L", username[:16], lv["lv_path"]])
    run(["lvchange", "--deltag", PARTIAL_TAG, lv["lv_path"]])
    return "formatted"


def activate(vg: str, username: str) -> str:
    lv = _lv(vg, username)
    if lv is None:
        raise RuntimeError(f"{lv_path(vg, username)} does not exist")
    if lv["lv_active"] == "active":
        return "already"
    run(["lvchange", "-ay", lv["lv_path"]])
    return "activated"


def deactivate(vg: str, username: str) -> str:
    lv = _lv(vg, username)
    if lv is None or lv["lv_active"] != "active":
        return "already"
    run(["lvchange", "-an", lv["lv_path"]])
    return "deactivated"


def resize(vg: str, username: str, size: int, mounted: bool) -> str:
    """Grow online with `lvextend -r`; shrink only unmounted (fsadm checks, then `lvreduce -r`)."""
    lv = _lv(vg, username)
    if lv is None:
        raise RuntimeError(f"{lv_path(vg, username)} does not exist")
    current = int(lv["lv_size"])
    if current == size:
        return "already"
    activate(vg, username)
    if size > current:
        run(["lvextend", "--yes", "-r", "-L", f"{size}b", lv["lv_path"]])
        return "grown"
    if mounted:
        raise RuntimeError("an LVM volume is shrunk only while unmounted")
    run(["lvreduce", "--yes", "-r", "-L", f"{size}b", lv["lv_path"]])
    return "shrunk"


def destroy(vg: str, username: str) -> str:
    lv = _lv(vg, username)
    if lv is None:
        return "absent"
    run(["lvremove", "--yes", lv["lv_path"]])
    return "deleted"


def attach_pv(file: Path) -> str:
    """At boot, before mount-all: the loop device that carries the VG of `storage init`."""
    from .observe import read_loops

    loop = read_loops(Path("/sys/block")).get(str(file.resolve()))
    if loop is not None:
        return f"{file}: attached at {loop}"
    loop = run(["losetup", "--find", "--show", str(file)]).strip()
    run(["pvscan", "--cache", loop], ok_codes=(0, 5))
    return f"{file}: attached at {loop}"


def storage_init(vg: str, file: Path, size: int) -> str:
    """The seed's layout for servers without a spare disk: a VG on a sparse file behind a loop device.

    Idempotent: an existing VG is left alone; the file is attached if it is not.
    """
    from .observe import read_loops

    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "wb") as handle:
            handle.truncate(size)
    loop = read_loops(Path("/sys/block")).get(str(file.resolve()))
    if loop is None:
        loop = run(["losetup", "--find", "--show", str(file)]).strip()
    vgs = run(["vgs", "--reportformat", "json", "-o", "vg_name"])
    if any(row["vg_name"] == vg for row in _report(vgs, "vg")):
        return f"{vg} exists ({loop})"
    run(["pvcreate", "--yes", loop])
    run(["vgcreate", vg, loop])
    return f"{vg} created on {loop}"
