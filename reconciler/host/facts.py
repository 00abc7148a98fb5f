"""Read-only parsers of the host's own files: passwd, group, shadow, sysfs loop devices, mountinfo,
ext4 superblocks, the mount manifest.

No subprocess runs here.  ``HostFiles`` says where each file is, so tests point
the same parsers at fixture files and the drivers' re-checks at a fake /etc.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator, Mapping

from ..core.actual import Account, Disk, Filesystem, Group, ManifestEntry, Mount
import contextlib

MARKER_PREFIX = "classroom="
EXT4_MAGIC = 0xEF53
CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class HostFiles:
    """Where the probes read from; tests point these at fixture files."""

    etc: Path = Path("/etc")
    mountinfo: Path = Path("/proc/self/mountinfo")
    sys_block: Path = Path("/sys/block")
    dev: Path = Path("/dev")
    sys_fs: Path = Path("/sys/fs")
    sys_dev: Path = Path("/sys/dev/block")
    proc: Path = Path("/proc")
    nfs_etab: Path = Path("/var/lib/nfs/etab")  # the kernel's NFS export table, as exportfs keeps it
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def loops(self) -> dict[str, str]:
        """backing file -> loop device, from one listing of sysfs."""
        return read_loops(self.sys_block, self.dev)

    def ext4_alive(self, device: str) -> bool:
        """Is an ext4 filesystem on this block device mounted anywhere, in any mount namespace?

        The kernel keeps /sys/fs/ext4/<device>/ while the filesystem's superblock is alive, which is
        as long as one mount of it exists: the host's, a container's bind mount, a lazily detached one.
        """
        return (self.sys_fs / "ext4" / Path(device).name).exists()

    def device_number(self, device: str) -> str | None:
        """ "major:minor" of a block device (/dev/loop3 -> 7:3), from sysfs."""
        try:
            return (self.sys_block / Path(device).name / "dev").read_text().strip()
        except OSError:
            return None

    def device_name(self, number: str) -> str | None:
        """The kernel's name of the block device "major:minor" (253:2 -> dm-2)."""
        try:
            return Path(os.readlink(self.sys_dev / number)).name
        except OSError:
            return None

    def can_resize_online(self) -> bool:
        """Growing a mounted ext4 needs CAP_SYS_RESOURCE; a container's root may lack it."""
        try:
            for line in (self.proc / "self" / "status").read_text().split("\n"):
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
        except (OSError, ValueError, IndexError):
            pass
        return False

    def holders(self, devices: set[str]) -> list[str]:
        """Processes in other mount namespaces that have one of ``devices`` ("major:minor") mounted, and NFS
        clients with files open on it."""
        return sorted(
            {who for found in self.holders_by_device(devices).values() for who in found},
            key=lambda who: (who.startswith("NFS"), int(who.split()[1]) if who.startswith("pid") else who),
        )

    def holders_by_device(self, devices: set[str]) -> dict[str, list[str]]:
        """device -> processes of other mount namespaces that have it mounted ("pid 812 (jupyterhub-sing)").

        One mountinfo per namespace (processes share their namespace's), never our own: what the host
        has mounted is read from our mountinfo.  The way to find a container's bind mount of a home.
        """
        found: dict[str, list[str]] = {}
        if not devices:
            return found
        try:
            own = os.readlink(self.proc / "self" / "ns" / "mnt")
            pids = [p for p in os.listdir(self.proc) if p.isdigit()]
        except OSError:
            return found
        seen = {own}
        for pid in sorted(pids, key=int):
            try:
                namespace = os.readlink(self.proc / pid / "ns" / "mnt")
                if namespace in seen:
                    continue
                seen.add(namespace)
                lines = (self.proc / pid / "mountinfo").read_text().split("\n")
            except OSError:
                continue  # gone meanwhile, or a kernel thread
            held = {fields[2] for line in lines if len(fields := line.split()) > 2 and fields[2] in devices}
            if held:
                try:
                    comm = (self.proc / pid / "comm").read_text().strip()
                except OSError:
                    comm = "?"
                for device in held:
                    found.setdefault(device, []).append(f"pid {pid} ({comm})")
        for device, clients in self.nfs_holders(devices).items():
            found.setdefault(device, []).extend(clients)
        return found

    def nfs_holders(self, devices: set[str]) -> dict[str, list[str]]:
        """device -> NFS clients (swarm workers) holding files open on it, from nfsd's own client table.

        A worker's mount of an exported home is invisible to this host's mount namespaces; what the kernel NFS
        server knows is each client's open state, with the superblock ("07:01:ino", hex major:minor) of each
        file.  Nothing to read when nfsd is not running.
        """
        found: dict[str, list[str]] = {}
        clients = self.proc / "fs" / "nfsd" / "clients"
        try:
            entries = sorted(os.listdir(clients))
        except OSError:
            return found
        for entry in entries:
            try:
                states = (clients / entry / "states").read_text(errors="replace")
                info = (clients / entry / "info").read_text(errors="replace")
            except OSError:
                continue  # expired meanwhile
            address = next(
                (
                    line.split('"')[1].rsplit(":", 1)[0]
                    for line in info.splitlines()
                    if line.startswith("address:") and line.count('"') >= 2
                ),
                "?",
            )
            held = set()
            for match in re.finditer(r'superblock: "([0-9a-f]+):([0-9a-f]+):', states):
                number = f"{int(match.group(1), 16)}:{int(match.group(2), 16)}"
                if number in devices:
                    held.add(number)
            for device in held:
                found.setdefault(device, []).append(f"NFS client {address} (files open)")
        return found

    def memory_available(self) -> int | None:
        """What the kernel thinks can still be used without swapping (MemAvailable), bytes."""
        try:
            for line in (self.proc / "meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def nfsd_threads(self) -> int:
        """How many kernel NFS server threads run (0: no NFS server on this host)."""
        try:
            return int((self.proc / "fs" / "nfsd" / "threads").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def today(self) -> int:
        """Days since the epoch, as /etc/shadow counts them."""
        return int(self.clock() // 86400)


# --- accounts -------------------------------------------------------------------------------------


def _colon_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    # "\n" only: str.splitlines() would also split on U+2028 and friends, which a name could hold
    return [line.split(":") for line in text.split("\n") if line and not line.startswith("#")]


def colon_entry(path: Path, name: str) -> list[str] | None:
    """The fields of one entry of passwd, group or shadow, without parsing the rest of the file."""
    prefix = name + ":"
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.rstrip("\n").split(":")
    except FileNotFoundError:
        pass
    return None


def read_groups(path: Path) -> dict[str, Group]:
    groups = {}
    for fields in _colon_lines(path):
        if len(fields) >= 4 and fields[2].isdigit():
            members = frozenset(m for m in fields[3].split(",") if m)
            groups[fields[0]] = Group(fields[0], int(fields[2]), members)
    return groups


def read_shadow(path: Path) -> dict[str, tuple[str, int | None]]:
    """username -> (password field, expire day); spwd is gone in Python 3.13, so parse the file."""
    shadow = {}
    for fields in _colon_lines(path):
        if len(fields) >= 8:
            shadow[fields[0]] = (fields[1], int(fields[7]) if fields[7].isdigit() else None)
    return shadow


def shadow_entry(etc: Path, username: str) -> tuple[str, int | None]:
    """(password field, expire day) of one account; ("!", None) when it has no shadow entry."""
    fields = colon_entry(etc / "shadow", username)
    if fields is None or len(fields) < 8:
        return "!", None
    return fields[1], int(fields[7]) if fields[7].isdigit() else None


def parse_gecos(gecos: str) -> tuple[str, str | None]:
    """GECOS "Jane Doe,,,,classroom=python-101" -> ("Jane Doe", "python-101")."""
    parts = gecos.split(",")
    marker = parts[4] if len(parts) > 4 else ""
    classroom = marker[len(MARKER_PREFIX) :] if marker.startswith(MARKER_PREFIX) else None
    return parts[0], classroom or None


def gecos(name: str, classroom: str) -> str:
    """Full name plus the marker that proves reconcile created the account (chfn's 'other' field)."""
    return f"{name},,,,{MARKER_PREFIX}{classroom}"


def read_accounts(
    path: Path, groups: Mapping[str, Group], shadow: Mapping[str, tuple[str, int | None]]
) -> dict[str, Account]:
    membership: dict[str, set[str]] = {}
    for group in groups.values():
        for member in group.members:
            membership.setdefault(member, set()).add(group.name)
    accounts = {}
    for fields in _colon_lines(path):
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


# --- loop devices, mounts, superblocks ----------------------------------------------------------------


def read_loops(sys_block: Path, dev: Path = Path("/dev")) -> dict[str, str]:
    """backing file -> /dev/loopN, from sysfs (one listing, no losetup; free devices have no backing_file)."""
    loops: dict[str, str] = {}
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
        loops[target.removesuffix(" (deleted)")] = f"{dev}/{name}"
    return loops


def unescape(text: str) -> str:
    """mountinfo and fstab escape space, tab, newline and backslash as octal (\\040)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        code = text[i + 1 : i + 4]
        if text[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def escape(text: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


def read_mounts(mountinfo: Path, loops: Mapping[str, str], under: str, also: Iterable[str] = ()) -> dict[str, Mount]:
    """Mounts below ``under`` and on the paths in ``also``; loop sources are translated back to their image.

    ``loops`` maps image -> /dev/loopN, and may also map a volume's path -> "major:minor"
    (LVM: mountinfo names /dev/mapper/..., we name /dev/<vg>/<lv>).
    """
    by_device = {device: image for image, device in loops.items()}
    prefix = under.rstrip("/") + "/"
    exact = {path.rstrip("/") for path in also}
    mounts = {}
    for target, device, options, fstype, source in _mountinfo(mountinfo):
        if not target.startswith(prefix) and target not in exact:
            continue
        mounts[target] = Mount(
            target=target,
            source=by_device.get(device, by_device.get(source, source)),
            fstype=fstype,
            options=options,
            owner=_owner(target),
            device=device,
        )
    return mounts


def _mountinfo(mountinfo: Path, target: str | None = None) -> Iterator[tuple[str, str, frozenset[str], str, str]]:
    """(mount point, "major:minor", options, fstype, source) for each line, or only for ``target``'s lines (then
    compared before anything is unescaped: the cheap way to find one mount among thousands)."""
    want = None if target is None else escape(target)
    for line in mountinfo.read_text().split("\n"):
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2 or (want is not None and fields[4] != want):
            continue
        yield unescape(fields[4]), fields[2], frozenset(fields[5].split(",")), tail[0], unescape(tail[1])


def mount_at(host: HostFiles, target: Path) -> Mount | None:
    """What is mounted at ``target`` right now (the topmost mount), a loop device's source translated back to its
    image.  The drivers' re-check just before they act: one pass over mountinfo comparing one field, and only
    that mount's loop device looked up, so it costs the same for the first student and the thousandth."""
    found = None
    for line in _mountinfo(host.mountinfo, str(target)):  # the last one is the topmost
        found = line
    if found is None:
        return None
    _, device, options, fstype, source = found
    name = Path(source).name
    if str(Path(source).parent) == str(host.dev) and name.startswith("loop"):
        with contextlib.suppress(OSError):
            source = (host.sys_block / name / "loop" / "backing_file").read_text().strip().removesuffix(" (deleted)")
    return Mount(
        target=str(target), source=source, fstype=fstype, options=options, owner=_owner(str(target)), device=device
    )


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
        (blocks_hi,) = struct.unpack_from("<I", block, 0x150)
        (free_hi,) = struct.unpack_from("<I", block, 0x158)
    return Filesystem(size=(blocks_hi << 32 | blocks_lo) * block_size, free=(free_hi << 32 | free_lo) * block_size)


def usage(
    fs: Filesystem, mount: Mount | None, source: str, statvfs: Callable = os.statvfs
) -> tuple[int | None, int | None]:
    """(used as `df` counts it, blocks in use including metadata) of a volume's filesystem.

    A mounted filesystem is asked through statvfs: an ext4 superblock's free count lags while mounted.
    """
    if mount is not None and mount.source == source:
        vfs = statvfs(mount.target)
        return (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize, fs.size - vfs.f_bfree * vfs.f_frsize
    return fs.size - fs.free, fs.size - fs.free


# --- disk space ------------------------------------------------------------------------------------------


def nearest_existing(path: Path) -> Path:
    """``path``, or its closest existing parent: the filesystem it is (or will be) on."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_space(places: list[tuple[str, Path]], warn_below: float) -> list[Disk]:
    """Size and free space of the filesystems holding ``places`` ((what, path)), one entry per filesystem.

    ``low`` when less than ``warn_below`` of it is free: when the disk holding sparse images or the
    state fills, students' writes and reconcile's own records fail.
    """
    found: dict[int, Disk] = {}
    for what, path in places:
        place = nearest_existing(path)
        try:
            vfs, device = os.statvfs(place), os.stat(place).st_dev
        except OSError:
            continue
        if device in found:
            found[device] = dataclasses.replace(found[device], what=f"{found[device].what}, {what}")
            continue
        size, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
        found[device] = Disk(what, str(path), size, free, size > 0 and free < warn_below * size)
    return list(found.values())


# --- the manifest ------------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, ManifestEntry]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in text.split("\n"):
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#"):
            entry = ManifestEntry(unescape(fields[0]), unescape(fields[1]), fields[2], fields[3])
            entries[entry.target] = entry
    return entries


def alive(pid_file: Path) -> int | None:
    """The pid in the file, if that process runs (a zombie has exited; only its parent has not reaped it)."""
    import psutil  # only the commands that ask load it

    try:
        process = psutil.Process(int(pid_file.read_text()))
        return None if process.status() == psutil.STATUS_ZOMBIE else process.pid
    except (OSError, ValueError, psutil.Error):
        return None
