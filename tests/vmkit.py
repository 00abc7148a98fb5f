"""A throw-away QEMU VM running Debian's own kernel, for tests this host's kernel cannot run.

This host's kernel has no device-mapper, so LVM cannot work here. `run_in_vm` boots Debian's
stock kernel under QEMU with a tiny busybox initramfs, shares the host's root filesystem
READ-ONLY over 9p with a tmpfs overlay on top, chroots into it and runs one command there as
root. The project's checkout, its venv, lvm2 and e2fsprogs run inside unchanged at the same
paths; whatever the command writes lands in the overlay and is gone at poweroff, except in the
writable `shares` (mounted at the same path inside the VM), which is how results come back.

    assets = ensure_assets()            # apt installs + kernel + initramfs, cached
    r = run_in_vm(["lvs"], cwd=Path("/work/main"), extra_disks=[disk_img])
    assert r.returncode == 0, r.output

Inside the VM: no udev (LVM is configured with udev_sync=0, udev_rules=0, monitoring=0,
use_lvmpolld=0 in the overlay's /etc/lvm/lvmlocal.conf), fresh tmpfs on /run, /tmp and
/dev/shm, devtmpfs on /dev, extra disks as /dev/vda, /dev/vdb, ... in order, the loop and
device-mapper modules loaded (and `modprobe` works for anything in the initramfs: ON_DEMAND_MODULES),
VMKIT_IN_VM=1 in the environment, no network.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
import contextlib

DEFAULT_CACHE = Path("/var/cache/classroom-test-vm")

# Debian packages the VM needs on the host: QEMU itself, the initramfs's shell, and the tools
# that run *inside* the VM from the shared host root.
PACKAGES = {
    "qemu-system-x86": ["qemu-system-x86_64"],
    "busybox-static": ["/bin/busybox"],
    "lvm2": ["lvm"],
    "e2fsprogs": ["mkfs.ext4", "e2fsck", "resize2fs"],
}
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Modules loaded at boot, their dependencies resolved from the modules' own .modinfo.
# crc32c_generic: ext4/jbd2 checksums (the soft dependency depmod would not follow).
MODULES = [
    "virtio_pci",
    "virtio_blk",
    "virtio_rng",
    "9pnet_virtio",
    "9p",
    "overlay",
    "crc32c_generic",
    "crc32c_intel",
    "ext4",
    "quota_v2",
    "loop",
    "dm_mod",
    "dm_snapshot",
    "dm_thin_pool",
    "dm_mirror",
    "dm_zero",
]
OPTIONAL_MODULES = {"crc32c_intel", "virtio_rng", "quota_v2"}  # absent or unloadable is fine
# In the initramfs (with their dependencies) but loaded only by `modprobe` inside the VM: the kernel NFS server
# and client (tests/vm/vm_nfs_inside.py) and veth pairs to network namespaces.  rpcsec_gss_krb5 is only
# request_module()d by sunrpc, never a hard dependency.
ON_DEMAND_MODULES = [
    "nfsd",
    "nfsv4",
    "nfs",
    "veth",
    "sunrpc",
    "auth_rpcgss",
    "rpcsec_gss_krb5",
    "lockd",
    "grace",
    "nfs_acl",
]

KERNEL_CMDLINE = (
    "console=ttyS0 rdinit=/init panic=-1 oops=panic no_timer_check quiet loglevel=4 "
    "mitigations=off random.trust_cpu=on 8250.nr_uarts=1 i8042.noaux i8042.nokbd"
)

# Bump when the way assets are built changes (it is part of the cache key).
RECIPE_VERSION = 1

INIT = r"""#!/bin/busybox sh
# vmkit's /init: PID 1 in the initramfs. Mounts the host root (9p, read-only) under a tmpfs
# overlay, runs /.vmjob/job.sh chrooted into it, reports its exit code, powers off.
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev /job /lower /ovl /newroot
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "vminit: $*"; }
off() { sync; poweroff -f; sleep 5; }
fail() { say "FAILED: $*"; [ -d /job/.ok ] && echo "$*" > /job/vm-error; off; }
KVER=$(uname -r)
say "kernel $KVER up at $(cut -d' ' -f1 /proc/uptime)s"
while read -r m; do
  case "$m" in
    *'?') modprobe "${m%'?'}" 2>/dev/null || say "optional module ${m%'?'} not loaded" ;;
    *) modprobe "$m" || say "module $m failed to load" ;;
  esac
done < /modules.load
say "modules loaded at $(cut -d' ' -f1 /proc/uptime)s"

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none vmjob /job || fail "mount job share"
mkdir -p /job/.ok
. /job/vm.conf || fail "read vm.conf"

mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower || fail "mount host root"
mount -t tmpfs -o mode=0755 overlay-upper /ovl || fail "tmpfs for overlay"
mkdir -p /ovl/upper /ovl/work
mount -t overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work overlay /newroot || fail "overlay"

R=/newroot
mount -t proc proc $R/proc || fail "proc"
mount -t sysfs sysfs $R/sys || fail "sysfs"
mount -t devtmpfs devtmpfs $R/dev || fail "devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=0755 run $R/run || fail "run"
mkdir -p $R/run/lock $R/run/lvm
mount -t tmpfs -o mode=1777 tmp $R/tmp || fail "tmp"

# modprobe inside the VM: this kernel's modules, and busybox's modprobe where kmod is missing
mkdir -p $R/lib/modules/$KVER && mount --bind /lib/modules/$KVER $R/lib/modules/$KVER
[ -e $R/usr/sbin/modprobe ] || [ -e $R/sbin/modprobe ] || [ ! -x $R/bin/busybox ] || ln -s /bin/busybox $R/usr/sbin/modprobe

# no udev in here
mkdir -p $R/etc/lvm
cat > $R/etc/lvm/lvmlocal.conf <<'EOF'
local {
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
devices {
	use_devicesfile = 0
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
}
global {
	use_lvmpolld = 0
}
EOF

mkdir -p $R/.vmjob && mount --bind /job $R/.vmjob || fail "bind job share"
for s in $SHARES; do
  tag=${s%%=*}; path=${s#*=}
  mkdir -p "$R$path" && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none "$tag" "$R$path" || fail "share $tag at $path"
done

n=0
while [ "$(ls /sys/block | grep -c '^vd')" -lt "$NDISKS" ]; do
  n=$((n+1)); [ $n -gt 200 ] && fail "only $(ls /sys/block | grep -c '^vd') of $NDISKS disks appeared"
  sleep 0.05
done

cut -d' ' -f1 /proc/uptime > /job/boot-seconds
chroot $R /bin/sh /.vmjob/job.sh < /dev/null > /job/output 2>&1
echo $? > /job/rc.tmp && mv /job/rc.tmp /job/rc
cut -d' ' -f1 /proc/uptime > /job/end-seconds
off
"""


@dataclass(frozen=True)
class Assets:
    kernel: Path  # the uncompressed vmlinux (PVH boot) or, failing that, the bzImage
    initrd: Path
    kernel_version: str  # e.g. 6.1.0-56-amd64
    kernel_package: str  # e.g. linux-image-6.1.0-56-amd64-unsigned=6.1.192-2
    key: str
    dir: Path


@dataclass
class VmResult:
    returncode: int  # the command's exit code; 124 if the VM timed out, 125 if it broke first
    output: str  # the command's stdout+stderr (+ the VM console log when it failed)
    duration: float  # wall-clock seconds, QEMU start to exit
    boot_seconds: float | None = None  # guest uptime when the command started
    console: str = ""  # kernel + /init log (serial console)
    timed_out: bool = False
    vm_error: str | None = None  # set when the VM failed before the command reported an exit code

    @property
    def ok(self) -> bool:
        return self.returncode == 0


# --- host prerequisites -----------------------------------------------------------------------


def _have(tool: str) -> bool:
    if tool.startswith("/"):
        return os.access(tool, os.X_OK)
    return shutil.which(tool, path=SBIN_PATH) is not None


def _apt(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", *args],
        env=env,
        capture_output=True,
        text=True,
        check=check,
    )


def _is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        data = path.read_bytes()[:65536]
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


_apt_updated = False


def ensure_packages() -> None:
    """apt-get install whatever of PACKAGES is missing (an apt-get update first, once, if needed)."""
    global _apt_updated
    missing = [pkg for pkg, tools in PACKAGES.items() if not all(_have(t) for t in tools)]
    if "busybox-static" not in missing and not _is_static_elf(Path("/bin/busybox")):
        missing.append("busybox-static")  # the dynamic busybox package is installed instead
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"needs root to install {missing}")
    install = ["install", "-y", "--no-install-recommends", *missing]
    if _apt(*install, check=False).returncode != 0:
        if not _apt_updated:
            _apt("update")
            _apt_updated = True
        result = _apt(*install, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get install {' '.join(missing)} failed:\n{result.stdout}\n{result.stderr}")


def _accel() -> list[str]:
    """KVM only where a real KVM module is loaded; /dev/kvm may be a stand-in that cannot boot Debian."""
    real_kvm = any(Path("/sys/module", m).exists() for m in ("kvm_intel", "kvm_amd"))
    if real_kvm and os.access("/dev/kvm", os.R_OK | os.W_OK) and not os.environ.get("VMKIT_NO_KVM"):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]


@lru_cache(maxsize=1)
def vm_unavailable() -> str | None:
    """None when run_in_vm can work here, else why not (for pytest.skip)."""
    if os.environ.get("VMKIT_IN_VM"):
        return "already inside the test VM (no nested VMs)"
    if os.geteuid() != 0:
        return "needs root: installs QEMU with apt and shares the host root into the VM"
    try:
        ensure_packages()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        return f"cannot install the VM's packages: {exc}"
    qemu = shutil.which("qemu-system-x86_64", path=SBIN_PATH)
    if qemu is None:
        return "qemu-system-x86_64 is not installed"
    try:
        probe = subprocess.run(
            [
                qemu,
                "-machine",
                "none",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                *_accel()[:2],
                "-monitor",
                "stdio",
            ],
            input="quit\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"qemu-system-x86_64 does not start: {exc}"
    if probe.returncode != 0:
        return f"qemu-system-x86_64 does not start: {probe.stderr.strip()[-500:]}"
    return None


# --- assets: kernel + initramfs ---------------------------------------------------------------


def _recipe_key() -> str:
    recipe = json.dumps(
        {
            "version": RECIPE_VERSION,
            "init": INIT,
            "modules": MODULES,
            "on_demand": ON_DEMAND_MODULES,
            "optional": sorted(OPTIONAL_MODULES),
            "kernel": os.environ.get("VMKIT_KERNEL_PACKAGE", ""),
        },
        sort_keys=True,
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _version_key(name: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def _pick_kernel_package() -> str:
    """The kernel of this Debian release: what linux-image-amd64 depends on (the newest
    linux-image-<abi>-amd64 if that fails), as its -unsigned build when there is one.
    VMKIT_KERNEL_PACKAGE overrides the choice."""
    global _apt_updated
    if os.environ.get("VMKIT_KERNEL_PACKAGE"):
        return os.environ["VMKIT_KERNEL_PACKAGE"]

    def query() -> tuple[list[str], str | None]:
        names = subprocess.run(
            ["apt-cache", "pkgnames", "linux-image-"], check=False, capture_output=True, text=True
        ).stdout.split()
        deps = subprocess.run(
            ["apt-cache", "depends", "linux-image-amd64"], check=False, capture_output=True, text=True
        ).stdout
        meta = re.search(r"Depends: (linux-image-\S+-amd64)\s*$", deps, re.MULTILINE)
        return names, meta.group(1) if meta else None

    names, chosen = query()
    if not names and not _apt_updated:
        _apt("update")
        _apt_updated = True
        names, chosen = query()
    if chosen is None:
        strict = re.compile(r"^linux-image-(\d+\.\d+\.\d+-\d+)-amd64$")  # Debian's ABI names, no flavours
        found = [n for n in names if strict.match(n)]
        if not found:
            raise RuntimeError("apt knows no linux-image-amd64 nor any linux-image-<abi>-amd64 package")
        chosen = max(found, key=lambda n: _version_key(strict.match(n).group(1)))
    return f"{chosen}-unsigned" if f"{chosen}-unsigned" in names else chosen


def _extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside a bzImage (like the kernel's scripts/extract-vmlinux), or None."""
    magics = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x1f\x8b\x08", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
    ]
    for magic, kind in magics:
        start = 0
        while (pos := bzimage.find(magic, start)) >= 0:
            start = pos + 1
            out = None
            try:
                if kind == "xz":
                    out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[pos:])
                elif kind == "gzip":
                    out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bzimage[pos:])
                elif shutil.which("zstd"):
                    out = subprocess.run(["zstd", "-dc"], input=bzimage[pos:], capture_output=True, check=False).stdout
            except (lzma.LZMAError, zlib.error):
                continue
            if out and out[:4] == b"\x7fELF":
                return out
    return None


def _modinfo(ko: bytes) -> dict[str, list[str]]:
    """key -> values from an ELF64 module's .modinfo section."""
    (shoff,) = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", ko, base)
        offset, size = struct.unpack_from("<QQ", ko, base + 0x18)
        return name, offset, size

    _, str_off, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for i in range(shnum):
        name, offset, size = section(i)
        if ko[str_off + name : ko.index(b"\0", str_off + name)] == b".modinfo":
            for entry in ko[offset : offset + size].split(b"\0"):
                if b"=" in entry:
                    key, _, value = entry.decode(errors="replace").partition("=")
                    info.setdefault(key, []).append(value)
    return info


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return data


def _module_name(path: Path) -> str:
    return re.sub(r"\.ko(\.(xz|gz|zst))?$", "", path.name).replace("-", "_")


def _collect_modules(moddir: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (path relative to moddir, uncompressed .ko) for MODULES and their dependencies."""
    index = {_module_name(p): p for p in moddir.rglob("*.ko*") if re.search(r"\.ko(\.(xz|gz|zst))?$", p.name)}
    builtin = set()
    builtin_file = moddir / "modules.builtin"
    if builtin_file.exists():
        builtin = {_module_name(Path(line)) for line in builtin_file.read_text().split()}
    chosen: dict[str, tuple[str, bytes]] = {}
    todo = list(MODULES) + list(ON_DEMAND_MODULES)
    while todo:
        name = todo.pop().replace("-", "_")
        if name in chosen or name in builtin:
            continue
        if name not in index:
            if name in OPTIONAL_MODULES:
                continue
            raise RuntimeError(f"kernel module {name} is neither built in nor in {moddir}")
        path = index[name]
        data = _read_module(path)
        rel = re.sub(r"\.(xz|gz|zst)$", "", str(path.relative_to(moddir)))
        chosen[name] = (rel, data)
        for deps in _modinfo(data).get("depends", []):
            todo.extend(d for d in deps.split(",") if d)
    return chosen


def _cpio(entries: Iterable[tuple[str, int, bytes | int]]) -> bytes:
    """A newc cpio archive from (name, mode, data) — data is file content, link target bytes, or an
    rdev number for device nodes."""
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * ((4 - n % 4) % 4))

    def header(ino: int, name: str, mode: int, body: bytes, rdev: int = 0) -> None:
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(body), 0, 0, os.major(rdev), os.minor(rdev), len(encoded), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.write(encoded)
        pad(110 + len(encoded))
        out.write(body)
        pad(len(body))

    ino = 1
    for name, mode, data in entries:
        if isinstance(data, int):
            header(ino, name, mode, b"", data)
        else:
            header(ino, name, mode, data)
        ino += 1
    header(0, "TRAILER!!!", 0, b"")
    return out.getvalue()


def _build_initrd(moddir: Path, kver: str, busybox: bytes, workdir: Path) -> bytes:
    modules = _collect_modules(moddir)
    # modules.dep etc. for busybox's modprobe, written by busybox's depmod over the subset
    stage = workdir / "stage"
    for rel, data in modules.values():
        target = stage / "lib/modules" / kver / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    subprocess.run(["/bin/busybox", "depmod", "-b", str(stage), kver], check=True, capture_output=True)

    load = "".join(f"{m}?\n" if m in OPTIONAL_MODULES else f"{m}\n" for m in MODULES)
    entries: list[tuple[str, int, bytes | int]] = []
    dirs = {"bin", "dev", "proc", "sys", "lib", "lib/modules"}
    files: list[tuple[str, int, bytes]] = [
        ("init", 0o100755, INIT.encode()),
        ("modules.load", 0o100644, load.encode()),
        ("bin/busybox", 0o100755, busybox),
        ("bin/sh", 0o120777, b"busybox"),
    ]
    for path in sorted(stage.rglob("*")):
        rel = str(path.relative_to(stage))
        if path.is_dir():
            dirs.add(rel)
        else:
            files.append((rel, 0o100644, path.read_bytes()))
    for d in sorted(dirs):
        entries.append((d, 0o040755, b""))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, os.makedev(5, 1)))
    entries.append(("dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3)))
    entries.extend(files)
    return gzip.compress(_cpio(entries), compresslevel=6, mtime=0)


def _manifest_ok(dir: Path) -> Assets | None:
    try:
        meta = json.loads((dir / "manifest.json").read_text())
        assets = Assets(
            kernel=dir / meta["kernel"],
            initrd=dir / meta["initrd"],
            kernel_version=meta["kernel_version"],
            kernel_package=meta["kernel_package"],
            key=meta["key"],
            dir=dir,
        )
    except (OSError, ValueError, KeyError):
        return None
    try:
        if assets.kernel.stat().st_size != meta["kernel_size"] or assets.initrd.stat().st_size != meta["initrd_size"]:
            return None
        os.utime(dir / "manifest.json")  # last used, for _prune
    except OSError:
        return None
    return assets


def _prune(cache: Path, keep: Path) -> None:
    """Drop other recipes' builds unused for two weeks (other checkouts on this host may still use
    newer ones) and builds that died half-way a day ago."""
    now = time.time()
    for entry in cache.iterdir():
        try:
            if entry == keep or not entry.is_dir():
                continue
            if re.fullmatch(r"[0-9a-f]{16}", entry.name):
                used = (entry / "manifest.json").stat().st_mtime if (entry / "manifest.json").exists() else 0
                if now - used > 14 * 86400:
                    shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(".build-") and now - entry.stat().st_mtime > 86400:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def ensure_assets(cache: Path = DEFAULT_CACHE) -> Assets:
    """Install the host packages and build (once, cached by the recipe's hash) the kernel and initramfs."""
    ensure_packages()
    key = _recipe_key()
    final = cache / key
    if (assets := _manifest_ok(final)) is not None:
        return assets
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (assets := _manifest_ok(final)) is not None:
            return assets
        work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache))
        try:
            package = _pick_kernel_package()
            dl = work / "dl"
            dl.mkdir()
            os.chmod(work, 0o755)
            os.chmod(dl, 0o777)  # so apt's sandbox user may write there
            subprocess.run(["apt-get", "-q", "download", package], cwd=dl, check=True, capture_output=True)
            deb = next(dl.glob("*.deb"))
            version = subprocess.run(
                ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
            ).stdout.strip()
            root = work / "root"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            deb.unlink()
            vmlinuz = max((root / "boot").glob("vmlinuz-*"))
            kver = vmlinuz.name.removeprefix("vmlinuz-")
            moddir = next(p for p in (root / "lib/modules" / kver, root / "usr/lib/modules" / kver) if p.is_dir())

            out = work / "out"
            out.mkdir()
            bz = vmlinuz.read_bytes()
            elf = _extract_vmlinux(bz)
            kernel_name = "vmlinux" if elf else "vmlinuz"
            (out / kernel_name).write_bytes(elf or bz)
            initrd = _build_initrd(moddir, kver, Path("/bin/busybox").read_bytes(), work)
            (out / "initrd.img").write_bytes(initrd)
            (out / "config").write_bytes(next((root / "boot").glob("config-*")).read_bytes())
            meta = {
                "key": key,
                "kernel": kernel_name,
                "initrd": "initrd.img",
                "kernel_version": kver,
                "kernel_package": f"{package}={version}",
                "kernel_size": (out / kernel_name).stat().st_size,
                "initrd_size": len(initrd),
                "kernel_sha256": hashlib.sha256(elf or bz).hexdigest(),
                "initrd_sha256": hashlib.sha256(initrd).hexdigest(),
            }
            (out / "manifest.json").write_text(json.dumps(meta, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(cache, keep=final)
    assets = _manifest_ok(final)
    assert assets is not None
    return assets


# --- running ----------------------------------------------------------------------------------


# QEMU runs under this small supervisor, whose stdin is a pipe from the test process: when that
# pipe closes (the test process died, even by SIGKILL) the supervisor kills QEMU. PR_SET_PDEATHSIG
# would be simpler but is not honoured on every sandboxed kernel (it is not on this one).
SUPERVISOR = r"""
import os, select, signal, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.execvp(sys.argv[1], sys.argv[1:])
pidfd = os.pidfd_open(pid)
ready, _, _ = select.select([0, pidfd], [], [])
if pidfd not in ready:
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


JOB_PREFIX = "classroom-vm-"


def _sweep_dead_jobs() -> None:
    """Remove job dirs left behind by test processes that were killed (their QEMU died with them)."""
    for job in Path(tempfile.gettempdir()).glob(JOB_PREFIX + "*"):
        try:
            owner = int((job / "owner").read_text())
        except (OSError, ValueError):
            continue
        if not Path("/proc", str(owner)).exists():
            shutil.rmtree(job, ignore_errors=True)


def _opt(path: Path) -> str:
    """A path inside a QEMU option string (commas doubled)."""
    return str(path).replace(",", ",,")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def run_in_vm(
    command: Sequence[str],
    *,
    cwd: Path,
    timeout: float = 600,
    extra_disks: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    shares: Sequence[Path] = (),
    memory_mb: int = 1024,
    cpus: int = 1,
    assets: Assets | None = None,
) -> VmResult:
    """Boot the VM, run `command` as root in cwd inside the overlay of the host root, power off.

    extra_disks: raw images attached as virtio disks /dev/vda, /dev/vdb, ... in order (their
    writes go to the host files). shares: host directories mounted read-write at the same path
    inside the VM (results such as junit XML come back through them; everything else written
    inside the VM is discarded). env: added to a clean environment (PATH, HOME=/root, LANG,
    VMKIT_IN_VM=1, and CI when set here). cwd must exist inside the VM: /tmp, /run and /dev/shm
    there are fresh and empty, so a host directory under them needs to be one of the shares.
    timeout: wall-clock seconds including the boot; then QEMU is killed (returncode 124).
    """
    assets = assets or ensure_assets()
    qemu = shutil.which("qemu-system-x86_64", path=SBIN_PATH)
    if qemu is None:
        raise RuntimeError("qemu-system-x86_64 is not installed")
    _sweep_dead_jobs()
    job = Path(tempfile.mkdtemp(prefix=JOB_PREFIX))
    proc: subprocess.Popen | None = None
    try:
        (job / "owner").write_text(f"{os.getpid()}\n")
        environment = {
            "PATH": SBIN_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "USER": "root",
            "LOGNAME": "root",
            "SHELL": "/bin/sh",
            "VMKIT_IN_VM": "1",
        }
        if "CI" in os.environ:
            environment["CI"] = os.environ["CI"]
        environment.update(env or {})
        assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
        (job / "job.sh").write_text(
            f"cd -- {shlex.quote(str(cwd))} || exit 125\nexec /usr/bin/env -i {assignments} {shlex.join(command)}\n"
        )
        share_specs = []
        share_args: list[str] = []
        here = Path(cwd).resolve()
        if any(here == Path(h) or Path(h) in here.parents for h in ("/tmp", "/run", "/dev/shm")):
            shares = [*shares, here]  # a checkout under /tmp (as CI may clone) would be hidden by the VM's fresh /tmp
        for i, share in enumerate(shares):
            share = Path(share).resolve()
            if re.search(r"\s", str(share)) or not share.is_dir():
                raise ValueError(f"a share must be an existing directory without blanks in its path: {share}")
            tag = f"share{i}"
            share_specs.append(f"{tag}={share}")
            share_args += ["-virtfs", f"local,path={_opt(share)},mount_tag={tag},security_model=none,multidevs=remap"]
        (job / "vm.conf").write_text(f"NDISKS={len(extra_disks)}\nSHARES={shlex.quote(' '.join(share_specs))}\n")
        disk_args: list[str] = []
        for disk in extra_disks:
            disk_args += ["-drive", f"file={_opt(Path(disk).resolve())},format=raw,if=virtio,cache=unsafe,aio=threads"]
        cmdline = KERNEL_CMDLINE
        argv = [
            qemu,
            "-machine",
            "pc",
            *_accel(),
            "-smp",
            str(cpus),
            "-m",
            str(memory_mb),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{_opt(job / 'console.log')}",
            "-monitor",
            "none",
            "-kernel",
            _opt(assets.kernel),
            "-initrd",
            _opt(assets.initrd),
            "-append",
            cmdline,
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
            f"local,path={_opt(job)},mount_tag=vmjob,security_model=none,multidevs=remap",
            *share_args,
            "-device",
            "virtio-rng-pci",
            *disk_args,
        ]
        start = time.monotonic()
        timed_out = False
        lifeline_r, lifeline_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", SUPERVISOR, *argv],
                stdin=lifeline_r,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            os.close(lifeline_r)
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.close(lifeline_w)  # the supervisor kills QEMU, reaps it and exits
            lifeline_w = -1
            try:
                qemu_out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                qemu_out, _ = proc.communicate()
        finally:
            if lifeline_w >= 0:
                os.close(lifeline_w)
        duration = time.monotonic() - start

        output = _read(job / "output")
        console = _read(job / "console.log")
        qemu_text = qemu_out.decode(errors="replace") if qemu_out else ""
        boot = _read(job / "boot-seconds").strip()
        rc_text = _read(job / "rc").strip()
        vm_error = None
        if rc_text.isdigit():
            returncode = int(rc_text)
        else:
            returncode = 124 if timed_out else 125
            vm_error = (
                f"timed out after {timeout:.0f}s"
                if timed_out
                else _read(job / "vm-error").strip()
                or f"the VM stopped without an exit code (qemu exit {proc.returncode})"
            )
        if returncode != 0:
            output += f"\n--- vmkit: exit {returncode}" + (f" ({vm_error})" if vm_error else "") + " ---\n"
            if qemu_text.strip():
                output += f"--- qemu ---\n{qemu_text}"
            output += f"--- VM console ---\n{console}"
        return VmResult(
            returncode=returncode,
            output=output,
            duration=duration,
            boot_seconds=float(boot) if re.fullmatch(r"[\d.]+", boot) else None,
            console=console,
            timed_out=timed_out,
            vm_error=vm_error,
        )
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(job, ignore_errors=True)


def pytest_in_vm(
    checkout: Path,
    test_file: str,
    expected: int,
    *,
    before: Sequence[str] = (),
    timeout: float = 1200,
    memory_mb: int = 1536,
    assets: Assets | None = None,
) -> VmResult:
    """Run one pytest module inside the VM (``before``: a wrapper command that execs the rest, such as
    tests/vm/nfs_root.sh) and check its junit report, which comes back through a shared directory: exactly
    ``expected`` tests ran and all passed, so a run that silently tested nothing cannot pass."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory(prefix="vm-results-") as results:
        junit = Path(results) / "junit.xml"
        result = run_in_vm(
            [
                *before,
                sys.executable,
                "-m",
                "pytest",
                test_file,
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "addopts=",
                f"--junitxml={junit}",
            ],
            cwd=checkout,
            timeout=timeout,
            shares=[Path(results)],
            memory_mb=memory_mb,
            assets=assets,
        )
        print(result.output[-8000:])
        assert result.returncode == 0, result.output[-8000:]
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        assert int(suite.get("tests")) == expected
        assert int(suite.get("failures")) == int(suite.get("errors")) == int(suite.get("skipped")) == 0
        return result
