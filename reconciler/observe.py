"""Read-only probes that build one immutable snapshot of the host.

Everything is read in batch, once per pass: /etc/passwd, /etc/group and
/etc/shadow are parsed as files; volume images are listed with one scandir;
loop devices come from one glob of sysfs; mounts from one read of
/proc/self/mountinfo; the manifest from one file.  No subprocess runs here,
so a no-op pass over a thousand students stays well under a second.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

from . import layout

MARKER_PREFIX = "classroom="
EXT4_MAGIC = 0xEF53


@dataclass(frozen=True)
class Account:
    username: str
    uid: int
    gid: int
    name: str  # first GECOS field
    classroom: str | None  # from our GECOS marker: proves we created it
    home: str
    shell: str
    groups: frozenset[str]  # supplementary groups
    has_password: bool
    locked: bool
    expire_day: int | None  # days since the epoch; None = never


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: frozenset[str]


@dataclass(frozen=True)
class Filesystem:
    """What an ext4 superblock says (read straight from the image or loop device)."""

    size: int
    free: int


@dataclass(frozen=True)
class Volume:
    username: str
    path: str  # the image (or the unfinished ``.partial`` one)
    complete: bool  # False: only a ``.partial`` image exists (creation was interrupted)
    size: int  # apparent size of the image
    allocated: int  # bytes really written: 0 means no data was ever stored
    fs: Filesystem | None
    loop: str | None  # /dev/loopN attached to the image
    used: int | None  # what `df` calls used (while unmounted: in_use)
    in_use: int | None = None  # blocks not free, filesystem metadata included: what a shrink must keep
    attached: bool = False  # a loop device holds the image / the logical volume is active


@dataclass(frozen=True)
class Mount:
    target: str
    source: str  # for loop mounts, the backing image
    fstype: str
    options: frozenset[str]
    owner: tuple[int, int, int] | None  # uid, gid, mode of the mounted root
    device: str = ""  # "major:minor" of the mounted device


@dataclass(frozen=True)
class ManifestEntry:
    source: str
    target: str
    fstype: str
    options: str


@dataclass(frozen=True)
class HubUser:
    name: str
    admin: bool
    running: bool  # the default server is running or starting
    last_activity: str | None = None


@dataclass(frozen=True)
class HubState:
    """JupyterHub's users, or why they could not be listed (the pass then reports the hub part failed)."""

    users: Mapping[str, HubUser] | None
    error: str | None = None


@dataclass(frozen=True)
class Container:
    """A student's server container (DockerSpawner), found by our labels."""

    username: str
    id: str
    running: bool
    memory: int  # the cgroup memory limit now in force (0 = none)


@dataclass(frozen=True)
class Actual:
    """The host as observed at one moment; plan() only ever reads this."""

    accounts: Mapping[str, Account]
    groups: Mapping[str, Group]
    volumes: Mapping[str, Volume]
    mounts: Mapping[str, Mount]  # by mount point
    manifest: Mapping[str, ManifestEntry]  # by mount point
    today: int  # days since the epoch, for account expiry
    volume_step: int = layout.LOOP_VOLUME_STEP
    thin_pool_size: int | None = None  # LVM thin provisioning: the pool every volume writes into
    hub: HubState | None = None  # None: no hub configured on this host
    containers: Mapping[str, Container] | None = field(default_factory=lambda: MappingProxyType({}))  # None: no Docker


@dataclass(frozen=True)
class Host:
    """Where the probes read from; tests point these at fixture files."""

    etc: Path = Path("/etc")
    mountinfo: Path = Path("/proc/self/mountinfo")
    sys_block: Path = Path("/sys/block")
    clock: object = field(default=time.time, compare=False)


def observe(paths: layout.Paths, host: Host = Host(), hub: Callable[[], HubState] | None = None,
            containers: Callable[[], Mapping[str, Container] | None] | None = None) -> Actual:
    """Take the snapshot.  Reads each source exactly once; ``hub`` and ``containers`` are one call each."""
    groups = read_groups(host.etc / "group")
    shadow = read_shadow(host.etc / "shadow")
    accounts = read_accounts(host.etc / "passwd", groups, shadow)
    loops = read_loops(host.sys_block)
    step, pool = layout.LOOP_VOLUME_STEP, None
    if paths.backend == "lvm":
        from . import lvm

        lvs = lvm.read_lvs(paths.vg or "")
        mounts = read_mounts(host.mountinfo, {**loops, **{v: k for k, v in lvm.device_aliases(lvs).items()}},
                             under=str(paths.homes))
        volumes = MappingProxyType(lvm.volumes_from(lvs, mounts, paths))
        step = lvm.read_vg(paths.vg or "")["extent"]
        pool = lvm.pool_size(lvs, paths.thin_pool)
    else:
        mounts = read_mounts(host.mountinfo, loops, under=str(paths.homes))
        volumes = read_volumes(paths.volumes, loops, mounts, paths.homes)
    manifest = read_manifest(paths.manifest)
    return Actual(
        accounts=MappingProxyType(accounts),
        groups=MappingProxyType(groups),
        volumes=MappingProxyType(volumes),
        mounts=MappingProxyType(mounts),
        manifest=MappingProxyType(manifest),
        today=int(host.clock() // 86400),  # type: ignore[operator]
        volume_step=step,
        thin_pool_size=pool,
        hub=hub() if hub else None,
        containers=containers() if containers else MappingProxyType({}),
    )


# --- accounts -----------------------------------------------------------------------------


def _colon_file(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def read_groups(path: Path) -> dict[str, Group]:
    groups = {}
    for fields in _colon_file(path):
        if len(fields) >= 4 and fields[2].isdigit():
            members = frozenset(m for m in fields[3].split(",") if m)
            groups[fields[0]] = Group(fields[0], int(fields[2]), members)
    return groups


def read_shadow(path: Path) -> dict[str, tuple[str, int | None]]:
    """username -> (password field, expire day); spwd is gone in Python 3.13, so parse the file."""
    shadow = {}
    for fields in _colon_file(path):
        if len(fields) >= 8:
            shadow[fields[0]] = (fields[1], int(fields[7]) if fields[7].isdigit() else None)
    return shadow


def parse_gecos(gecos: str) -> tuple[str, str | None]:
    """GECOS "Jane Doe,,,,classroom=python-101" -> ("Jane Doe", "python-101")."""
    parts = gecos.split(",")
    marker = parts[4] if len(parts) > 4 else ""
    classroom = marker[len(MARKER_PREFIX):] if marker.startswith(MARKER_PREFIX) else None
    return parts[0], classroom or None


def read_accounts(path: Path, groups: Mapping[str, Group], shadow: Mapping[str, tuple[str, int | None]]) -> dict[str, Account]:
    membership: dict[str, set[str]] = {}
    for group in groups.values():
        for member in group.members:
            membership.setdefault(member, set()).add(group.name)
    accounts = {}
    for fields in _colon_file(path):
        if len(fields) < 7 or not fields[2].isdigit() or not fields[3].isdigit():
            continue
        username = fields[0]
        name, classroom = parse_gecos(fields[4])
        password, expire = shadow.get(username, ("!", None))
        accounts[username] = Account(
            username=username,
            uid=int(fields[2]),
            gid=int(fields[3]),
            name=name,
            classroom=classroom,
            home=fields[5],
            shell=fields[6],
            groups=frozenset(membership.get(username, ())),
            has_password=password.lstrip("!").startswith("$"),
            locked=password.startswith("!"),
            expire_day=expire,
        )
    return accounts


# --- loop devices, mounts, volumes ----------------------------------------------------------


def read_loops(sys_block: Path) -> dict[str, str]:
    """backing file -> /dev/loopN, from sysfs (one listing, no losetup; free devices have no backing_file)."""
    loops = {}
    try:
        names = [n for n in os.listdir(sys_block) if n.startswith("loop")]
    except FileNotFoundError:
        return loops
    for name in names:
        try:
            with open(f"{sys_block}/{name}/loop/backing_file") as handle:
                target = handle.read().strip()
        except OSError:
            continue
        loops[target.removesuffix(" (deleted)")] = "/dev/" + name
    return loops


def _unescape(text: str) -> str:
    """mountinfo and fstab escape space, tab, newline and backslash as octal (\\040)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        code = text[i + 1:i + 4]
        if text[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


def read_mounts(mountinfo: Path, loops: Mapping[str, str], under: str) -> dict[str, Mount]:
    """Mounts below ``under``; loop sources are translated back to their image.

    ``loops`` maps image -> /dev/loopN, and may also map a volume's path -> "major:minor"
    (LVM: mountinfo names /dev/mapper/..., we name /dev/<vg>/<lv>).
    """
    by_device = {device: image for image, device in loops.items()}
    prefix = under.rstrip("/") + "/"
    mounts = {}
    for line in mountinfo.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        target = _unescape(fields[4])
        if not target.startswith(prefix):
            continue
        source = _unescape(tail[1])
        mounts[target] = Mount(
            target=target,
            source=by_device.get(fields[2], by_device.get(source, source)),
            fstype=tail[0],
            options=frozenset(fields[5].split(",")),
            owner=_owner(target),
            device=fields[2],
        )
    return mounts


def _owner(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def read_superblock(path: str) -> Filesystem | None:
    """Size and free space from an ext4 superblock, or None if there is no ext4 there."""
    try:
        with open(path, "rb") as handle:
            handle.seek(1024)
            block = handle.read(1024)
    except OSError:
        return None
    if len(block) < 0x160 or struct.unpack_from("<H", block, 0x38)[0] != EXT4_MAGIC:
        return None
    blocks_lo, _, free_lo = struct.unpack_from("<III", block, 0x04)
    block_size = 1024 << struct.unpack_from("<I", block, 0x18)[0]
    incompat = struct.unpack_from("<I", block, 0x60)[0]
    blocks_hi = free_hi = 0
    if incompat & 0x80:  # INCOMPAT_64BIT
        blocks_hi, = struct.unpack_from("<I", block, 0x150)
        free_hi, = struct.unpack_from("<I", block, 0x158)
    return Filesystem(size=(blocks_hi << 32 | blocks_lo) * block_size, free=(free_hi << 32 | free_lo) * block_size)


def read_volumes(directory: Path, loops: Mapping[str, str], mounts: Mapping[str, Mount], homes: Path) -> dict[str, Volume]:
    volumes: dict[str, Volume] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return volumes
    for entry in sorted(entries, key=lambda e: e.name):
        complete = entry.name.endswith(layout.IMAGE_SUFFIX)
        if not complete and not entry.name.endswith(layout.PARTIAL_SUFFIX):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue  # only our own regular files are images; never follow a link
        username = entry.name.removesuffix(layout.PARTIAL_SUFFIX).removesuffix(layout.IMAGE_SUFFIX)
        if username in volumes and volumes[username].complete:
            continue  # a finished image wins over a leftover partial one
        st = entry.stat(follow_symlinks=False)
        loop = loops.get(entry.path)
        # A mounted filesystem is read through its loop device: that is where the kernel keeps it current.
        fs = read_superblock(loop or entry.path)
        mount = mounts.get(str(homes / username))
        used = in_use = None
        if fs is not None and mount is not None and mount.source == entry.path:
            vfs = os.statvfs(mount.target)  # current; an ext4 superblock's free count lags while mounted
            used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
            in_use = fs.size - vfs.f_bfree * vfs.f_frsize
        elif fs is not None:
            used = in_use = fs.size - fs.free
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
        )
    return volumes


def read_manifest(path: Path) -> dict[str, ManifestEntry]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#"):
            entry = ManifestEntry(_unescape(fields[0]), _unescape(fields[1]), fields[2], fields[3])
            entries[entry.target] = entry
    return entries


# --- snapshots: plan elsewhere (CI) against what a server observed ------------------------------

SNAPSHOT_FORMAT = 1


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "clock"}
    if isinstance(value, (dict, MappingProxyType)):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def to_json(actual: Actual) -> dict:
    """The snapshot as JSON-ready data (no secrets: /etc/shadow contributes only lock and expiry state)."""
    return {"format_version": SNAPSHOT_FORMAT, **_plain(actual)}


def from_json(data: dict) -> Actual:
    """Rebuild a snapshot written by to_json (``reconcile status --json``)."""
    if data.get("format_version") != SNAPSHOT_FORMAT:
        raise ValueError(f"unsupported snapshot format {data.get('format_version')!r}")

    def table(key, build):
        return MappingProxyType({name: build(item) for name, item in (data.get(key) or {}).items()})

    def account(a):
        return Account(**{**a, "groups": frozenset(a["groups"])})

    def volume(v):
        return Volume(**{**v, "fs": Filesystem(**v["fs"]) if v.get("fs") else None})

    def mount(m):
        return Mount(**{**m, "options": frozenset(m["options"]), "owner": tuple(m["owner"]) if m["owner"] else None})

    hub = data.get("hub")
    containers = data.get("containers")
    return Actual(
        accounts=table("accounts", account),
        groups=table("groups", lambda g: Group(**{**g, "members": frozenset(g["members"])})),
        volumes=table("volumes", volume),
        mounts=table("mounts", mount),
        manifest=table("manifest", lambda e: ManifestEntry(**e)),
        today=data["today"],
        volume_step=data.get("volume_step", layout.LOOP_VOLUME_STEP),
        thin_pool_size=data.get("thin_pool_size"),
        hub=None if hub is None else HubState(
            None if hub["users"] is None else MappingProxyType({n: HubUser(**u) for n, u in hub["users"].items()}),
            hub.get("error")),
        containers=None if containers is None else MappingProxyType(
            {n: Container(**c) for n, c in containers.items()}),
    )
