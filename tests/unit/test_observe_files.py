"""The host's parsers (host/facts.py) and the batch observe on fixture files: /etc, mountinfo, sysfs loop devices, ext4 superblocks, the manifest.

Nothing here touches the host: every source is a file under tmp_path (mkfs.ext4
formats a regular file, which needs no root and no loop device).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.config.site import Paths
from reconciler.core.actual import Account, Filesystem, Group, ManifestEntry
from reconciler.core.desired import REQUIRED_MOUNT_FLAGS
from reconciler.host import facts
from reconciler.host import observe as host_observe
from reconciler.host.facts import HostFiles as Host
from reconciler.host.run import Runner
from reconciler.host.volumes import loop


class _Observe:
    """The batch observe with the loop backend, reading the same fixture files."""

    @staticmethod
    def observe(paths: Paths, files: Host):
        return host_observe.observe(paths, loop.LoopBackend(paths, Runner(), files), files)


observe = _Observe()

MiB = 1024**2
DAY = 86400
TODAY = 19_000
IMAGE_SIZE = 32 * MiB
MKFS = shutil.which("mkfs.ext4", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
needs_mkfs = pytest.mark.skipif(MKFS is None, reason="mkfs.ext4 (e2fsprogs) is not installed")

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
alice:x:1001:1001:Alice Smith,,,,classroom=py101:/h/alice:/usr/sbin/nologin
bob:x:1002:1002:Bob Jones,Room 4,555-1234,555-9876,classroom=py101:/h/bob:/usr/sbin/nologin
carol:x:1003:1003:Carol,,,,classroom=other:/h/carol:/bin/bash
svc:x:999:999:Service user:/var/lib/svc:/usr/sbin/nologin
eve:x:1005:1005:Eve,,,,classroom=:/h/eve:/bin/sh
wei:x:1006:1006:Wei,,,,notamarker:/h/wei:/bin/sh
# a comment line
broken:x:abc:1:bad uid:/x:/bin/sh
short:x:1007
noshadow:x:1008:1008:No Shadow,,,,classroom=py101:/h/noshadow:/usr/sbin/nologin
"""

SHADOW = """\
root:*:19000:0:99999:7:::
alice:$y$j9T$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo:19000:0:99999:7:::
bob:!$y$j9T$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo:19000:0:99999:7::1:
carol:!:19000:0:99999:7:::
svc:*:19000::::::
eve:!!:19000::::::
wei::19000:0:99999:7::20000:
"""

GROUP = """\
root:x:0:
py101-students:x:2001:alice,bob
py101-teachers:x:2002:
docker:x:998:bob
alice:x:1001:
bad:x:notanumber:alice
short:x
"""


def write_etc(root: Path) -> Path:
    etc = root / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(PASSWD)
    (etc / "shadow").write_text(SHADOW)
    (etc / "group").write_text(GROUP)
    return etc


def escape(text: str) -> str:
    return text.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def sparse(path: Path, size: int = IMAGE_SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def make_ext4(path: Path, size: int = IMAGE_SIZE, *extra: str) -> Path:
    sparse(path, size)
    subprocess.run(
        [MKFS, "-q", "-F", "-b", "4096", *extra, str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return path


def fake_loop(sys_block: Path, name: str, backing: str | None) -> None:
    device = sys_block / name
    device.mkdir(parents=True)
    if backing is not None:
        (device / "loop").mkdir()
        (device / "loop" / "backing_file").write_text(backing + "\n")


# --- /etc/passwd, /etc/group, /etc/shadow --------------------------------------------------------------


@pytest.fixture
def accounts(tmp_path: Path) -> dict[str, Account]:
    etc = write_etc(tmp_path)
    groups = facts.read_groups(etc / "group")
    return facts.read_accounts(etc / "passwd", groups, facts.read_shadow(etc / "shadow"))


@pytest.mark.parametrize(
    "gecos,expected",
    [
        ("Jane Doe,,,,classroom=python-101", ("Jane Doe", "python-101")),
        ("Jane Doe,Room 1,555,666,classroom=py", ("Jane Doe", "py")),
        ("Jane Doe", ("Jane Doe", None)),
        ("Jane Doe,,,,classroom=", ("Jane Doe", None)),
        ("Jane Doe,,,,other=py", ("Jane Doe", None)),
        ("Jane Doe,classroom=py", ("Jane Doe", None)),  # the marker only counts in the 'other' field
        ("", ("", None)),
    ],
)
def test_parse_gecos(gecos, expected) -> None:
    assert facts.parse_gecos(gecos) == expected


def test_read_groups(tmp_path: Path) -> None:
    groups = facts.read_groups(write_etc(tmp_path) / "group")
    assert set(groups) == {"root", "py101-students", "py101-teachers", "docker", "alice"}
    assert groups["py101-students"] == Group("py101-students", 2001, frozenset({"alice", "bob"}))
    assert groups["py101-teachers"].members == frozenset()
    assert groups["docker"].gid == 998


def test_read_shadow(tmp_path: Path) -> None:
    shadow = facts.read_shadow(write_etc(tmp_path) / "shadow")
    assert shadow["alice"] == ("$y$j9T$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", None)
    assert shadow["bob"] == ("!$y$j9T$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", 1)
    assert shadow["wei"] == ("", 20000)
    assert "noshadow" not in shadow


def test_accounts_parsed_and_malformed_lines_skipped(accounts) -> None:
    assert set(accounts) == {"root", "alice", "bob", "carol", "svc", "eve", "wei", "noshadow"}
    assert accounts["alice"] == Account(
        username="alice",
        uid=1001,
        gid=1001,
        name="Alice Smith",
        classroom="py101",
        home="/h/alice",
        shell="/usr/sbin/nologin",
        groups=frozenset({"py101-students"}),
        has_password=True,
        locked=False,
        expire_day=None,
    )


@pytest.mark.parametrize(
    "username,classroom",
    [
        ("alice", "py101"),
        ("bob", "py101"),
        ("carol", "other"),
        ("svc", None),
        ("eve", None),
        ("wei", None),
        ("root", None),
    ],
)
def test_classroom_marker(accounts, username, classroom) -> None:
    assert accounts[username].classroom == classroom


@pytest.mark.parametrize(
    "username,has_password,locked,expire_day",
    [
        ("alice", True, False, None),  # $y$ hash
        ("bob", True, True, 1),  # usermod --lock --expiredate 1: '!' before the hash
        ("carol", False, True, None),  # '!' alone: locked, no password ever set
        ("svc", False, False, None),  # '*'
        ("eve", False, True, None),  # '!!'
        ("wei", False, False, 20000),  # empty field
        ("noshadow", False, True, None),  # no shadow line at all
    ],
)
def test_password_state(accounts, username, has_password, locked, expire_day) -> None:
    account = accounts[username]
    assert (account.has_password, account.locked, account.expire_day) == (has_password, locked, expire_day)


def test_supplementary_groups_from_etc_group(accounts) -> None:
    assert accounts["alice"].groups == frozenset({"py101-students"})
    assert accounts["bob"].groups == frozenset({"py101-students", "docker"})
    assert accounts["carol"].groups == frozenset()
    # the user's own group has no member list: it is primary, not supplementary
    assert "alice" not in accounts["alice"].groups


def test_missing_etc_files_mean_empty(tmp_path: Path) -> None:
    assert facts.read_groups(tmp_path / "nope") == {}
    assert facts.read_shadow(tmp_path / "nope") == {}
    assert facts.read_accounts(tmp_path / "nope", {}, {}) == {}


def test_account_without_group_file_has_no_groups(tmp_path: Path) -> None:
    etc = write_etc(tmp_path)
    accounts = facts.read_accounts(etc / "passwd", {}, facts.read_shadow(etc / "shadow"))
    assert accounts["bob"].groups == frozenset()
    assert accounts["bob"].locked


# --- sysfs loop devices ---------------------------------------------------------------------------------


def test_read_loops(tmp_path: Path) -> None:
    sys_block = tmp_path / "sys" / "block"
    fake_loop(sys_block, "loop98765", "/s/volumes/alice.img")
    fake_loop(sys_block, "loop98766", "/s/volumes/bob.img (deleted)")
    fake_loop(sys_block, "loop98767", "/s/volumes/with space.img")
    fake_loop(sys_block, "loop98768", None)  # a free loop device: no loop/ directory
    (sys_block / "loop98769" / "loop").mkdir(parents=True)  # no backing_file
    fake_loop(sys_block, "sda", None)
    assert facts.read_loops(sys_block) == {
        "/s/volumes/alice.img": "/dev/loop98765",
        "/s/volumes/bob.img": "/dev/loop98766",
        "/s/volumes/with space.img": "/dev/loop98767",
    }


def test_read_loops_without_sysfs(tmp_path: Path) -> None:
    assert facts.read_loops(tmp_path / "missing") == {}


# --- mountinfo ------------------------------------------------------------------------------------------


def test_read_mounts(tmp_path: Path) -> None:
    homes = tmp_path / "home dir"  # a space in the homes path itself
    (homes / "alice").mkdir(parents=True)
    os.chmod(homes / "alice", 0o700)
    (homes / "tab\there").mkdir()
    os.chmod(homes / "tab\there", 0o750)
    h = escape(str(homes))
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "\n".join(
            [
                "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro",
                f"30 22 0:50 / {h} rw,relatime shared:2 - tmpfs tmpfs rw",
                f"31 30 7:3 / {h}/alice rw,nosuid,nodev,noatime shared:5 - ext4 /dev/loop3 rw",
                f"32 30 8:17 / {h}/with\\040space rw,relatime - ext4 /dev/sdb1 rw",
                f"33 30 8:18 / {h}/tab\\011here rw,nodev master:3 - xfs /dev/sdc1 rw",
                f"34 22 0:51 / {h}2/sibling rw - tmpfs tmpfs rw",
                f"35 31 0:52 / {h}/alice/nested rw - tmpfs tmpfs rw",
                "36 22 0:53 / /elsewhere rw - tmpfs tmpfs rw",
                "garbage line without separator",
                "",
            ]
        )
    )
    loops = {"/s/volumes/alice.img": "/dev/loop3"}
    mounts = facts.read_mounts(mountinfo, loops, under=str(homes))

    assert set(mounts) == {f"{homes}/alice", f"{homes}/with space", f"{homes}/tab\there", f"{homes}/alice/nested"}
    alice = mounts[f"{homes}/alice"]
    assert alice.source == "/s/volumes/alice.img"  # loop device translated back to its image
    assert alice.fstype == "ext4"
    assert alice.options == frozenset({"rw", "nosuid", "nodev", "noatime"})
    assert alice.owner == (os.getuid(), os.getgid(), 0o700)
    spaced = mounts[f"{homes}/with space"]
    assert spaced.source == "/dev/sdb1"
    assert spaced.owner is None  # mount point does not exist in the fixture
    tabbed = mounts[f"{homes}/tab\there"]
    assert tabbed.fstype == "xfs" and tabbed.options == frozenset({"rw", "nodev"})
    assert tabbed.owner == (os.getuid(), os.getgid(), 0o750)


def test_read_mounts_trailing_slash_on_under(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("31 30 7:3 / /h/alice rw - ext4 /dev/loop3 rw\n30 22 0:50 / /h rw - tmpfs tmpfs rw\n")
    assert set(facts.read_mounts(mountinfo, {}, under="/h/")) == {"/h/alice"}
    assert set(facts.read_mounts(mountinfo, {}, under="/h")) == {"/h/alice"}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("/h/plain", "/h/plain"),
        ("/h/a\\040b", "/h/a b"),
        ("/h/a\\011b\\012c", "/h/a\tb\nc"),
        ("/h/back\\134slash", "/h/back\\slash"),
        ("/h/trailing\\04", "/h/trailing\\04"),  # not a full escape: kept as written
    ],
)
def test_unescape(text, expected) -> None:
    assert facts.unescape(text) == expected


def test_escape_round_trips() -> None:
    for text in ("/h/a b", "/h/a\tb\nc\\d", "/h/plain"):
        assert facts.unescape(facts.escape(text)) == text
    assert facts.escape("/h/a b") == "/h/a\\040b"


# --- ext4 superblocks -----------------------------------------------------------------------------------


def _dumpe2fs(path: Path) -> dict[str, str]:
    tool = shutil.which("dumpe2fs", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if tool is None:
        return {}
    out = subprocess.run([tool, "-h", str(path)], check=True, capture_output=True, text=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


@needs_mkfs
@pytest.mark.parametrize("features", [(), ("-O", "64bit"), ("-O", "^64bit")], ids=["default", "64bit", "32bit"])
def test_read_superblock_of_real_ext4(tmp_path: Path, features) -> None:
    image = make_ext4(tmp_path / "a.img", IMAGE_SIZE, *features)
    fs = facts.read_superblock(str(image))
    assert fs is not None
    assert fs.size == IMAGE_SIZE
    assert 0 < fs.free < fs.size
    info = _dumpe2fs(image)
    if info:
        assert fs.size == int(info["Block count"]) * int(info["Block size"])
        assert fs.free == int(info["Free blocks"]) * int(info["Block size"])


@needs_mkfs
def test_read_superblock_follows_resize_of_the_filesystem(tmp_path: Path) -> None:
    image = make_ext4(tmp_path / "a.img", IMAGE_SIZE)
    with open(image, "r+b") as handle:
        handle.truncate(2 * IMAGE_SIZE)  # the image grew, the filesystem did not
    assert image.stat().st_size == 2 * IMAGE_SIZE
    assert facts.read_superblock(str(image)).size == IMAGE_SIZE


def test_read_superblock_of_zero_file_is_none(tmp_path: Path) -> None:
    assert facts.read_superblock(str(sparse(tmp_path / "zero.img"))) is None


def test_read_superblock_of_short_or_missing_file_is_none(tmp_path: Path) -> None:
    short = tmp_path / "short.img"
    short.write_bytes(b"\0" * 1100)
    assert facts.read_superblock(str(short)) is None
    assert facts.read_superblock(str(tmp_path / "missing.img")) is None


def _superblock(blocks_lo: int, free_lo: int, log_block: int, incompat: int, blocks_hi: int, free_hi: int) -> bytes:
    sb = bytearray(1024)
    struct.pack_into("<III", sb, 0x04, blocks_lo, 0, free_lo)
    struct.pack_into("<I", sb, 0x18, log_block)
    struct.pack_into("<H", sb, 0x38, facts.EXT4_MAGIC)
    struct.pack_into("<I", sb, 0x60, incompat)
    struct.pack_into("<I", sb, 0x150, blocks_hi)
    struct.pack_into("<I", sb, 0x158, free_hi)
    return bytes(1024) + bytes(sb)


@pytest.mark.parametrize(
    "incompat,expected",
    [
        (0x80 | 0x40 | 0x2, Filesystem(size=((1 << 32) + 10) * 4096, free=((2 << 32) + 5) * 4096)),
        (0x40 | 0x2, Filesystem(size=10 * 4096, free=5 * 4096)),  # high words ignored without INCOMPAT_64BIT
    ],
)
def test_read_superblock_64bit_fields(tmp_path: Path, incompat, expected) -> None:
    path = tmp_path / "synthetic.img"
    path.write_bytes(_superblock(10, 5, 2, incompat, 1, 2))
    assert facts.read_superblock(str(path)) == expected


def test_read_superblock_wrong_magic(tmp_path: Path) -> None:
    data = bytearray(_superblock(10, 5, 2, 0, 0, 0))
    struct.pack_into("<H", data, 1024 + 0x38, 0xEF54)
    path = tmp_path / "bad.img"
    path.write_bytes(bytes(data))
    assert facts.read_superblock(str(path)) is None


# --- the manifest ---------------------------------------------------------------------------------------


def test_read_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "mounts.fstab"
    manifest.write_text(
        "# written by reconcile\n"
        "\n"
        "/s/volumes/alice.img /h/alice ext4 loop,nodev,nosuid,noatime 0 0\n"
        "/s/volumes/odd\\040name.img /h/odd\\040name ext4 loop 0 0\n"
        "/s/volumes/bob.img /h/bob ext4\n"
        "   # indented comment\n"
        "/s/volumes/carol.img\t/h/carol\text4\tloop,nodev\n"
    )
    assert facts.read_manifest(manifest) == {
        "/h/alice": ManifestEntry("/s/volumes/alice.img", "/h/alice", "ext4", loop.MOUNT_OPTIONS),
        "/h/odd name": ManifestEntry("/s/volumes/odd name.img", "/h/odd name", "ext4", "loop"),
        "/h/carol": ManifestEntry("/s/volumes/carol.img", "/h/carol", "ext4", "loop,nodev"),
    }


def test_read_manifest_missing_is_empty(tmp_path: Path) -> None:
    assert facts.read_manifest(tmp_path / "mounts.fstab") == {}


# --- observe() end to end ---------------------------------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path):
    """A complete fake host: /etc, sysfs, mountinfo, a state dir with images, homes."""
    if MKFS is None:
        pytest.skip("mkfs.ext4 (e2fsprogs) is not installed")
    paths = Paths(tmp_path / "state", tmp_path / "homes")
    volumes = loop.layout(paths).directory
    make_ext4(volumes / "alice.img")  # unmounted, detached
    sparse(volumes / "bob.img.partial")  # creation interrupted
    make_ext4(volumes / "carol.img")  # attached to a loop device and mounted
    sparse(volumes / "dave.img")  # complete but never formatted
    sparse(volumes / "dave.img.partial")  # a leftover partial next to it
    make_ext4(volumes / "gina.img")  # mounted straight from the image path
    (volumes / "notes.txt").write_text("not an image")
    os.symlink(volumes / "alice.img", volumes / "link.img")
    (volumes / "dir.img").mkdir()

    for name in ("carol", "gina"):
        (paths.homes / name).mkdir(parents=True)
        os.chmod(paths.homes / name, 0o700)

    sys_block = tmp_path / "sys" / "block"
    fake_loop(sys_block, "loop98765", str(volumes / "carol.img"))
    fake_loop(sys_block, "loop98766", str(volumes / "gone.img") + " (deleted)")
    fake_loop(sys_block, "loop98767", None)

    h = escape(str(paths.homes))
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "\n".join(
            [
                "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
                f"40 22 7:98765 / {h}/carol rw,nosuid,nodev,noatime shared:50 - ext4 /dev/loop98765 rw",
                f"41 22 7:1 / {h}/gina rw,noatime shared:51 - ext4 {escape(str(volumes / 'gina.img'))} rw",
                f"42 22 8:17 / {h}/odd\\040one rw - ext4 /dev/sdb1 rw",
                f"43 22 0:50 / {h}x/not-ours rw - tmpfs tmpfs rw",
            ]
        )
        + "\n"
    )
    paths.manifest.write_text(
        f"{volumes}/carol.img {paths.homes}/carol ext4 {loop.MOUNT_OPTIONS} 0 0\n"
        f"{volumes}/alice.img {paths.homes}/alice ext4 {loop.MOUNT_OPTIONS} 0 0\n"
    )
    etc = write_etc(tmp_path)
    clock = TODAY * DAY + DAY - 1  # last second of the day
    return paths, Host(etc=etc, mountinfo=mountinfo, sys_block=sys_block, clock=lambda: clock)


def test_observe_end_to_end(host) -> None:
    paths, fake = host
    actual = observe.observe(paths, fake)
    volumes = loop.layout(paths).directory

    assert actual.today == TODAY
    assert actual.volume_step == loop.VOLUME_STEP
    assert set(actual.accounts) == {"root", "alice", "bob", "carol", "svc", "eve", "wei", "noshadow"}
    assert actual.accounts["bob"].groups == frozenset({"py101-students", "docker"})
    assert actual.groups["py101-teachers"].gid == 2002

    assert set(actual.volumes) == {"alice", "bob", "carol", "dave", "gina"}
    alice = actual.volumes["alice"]
    assert (alice.path, alice.complete, alice.size, alice.loop) == (str(volumes / "alice.img"), True, IMAGE_SIZE, None)
    assert alice.fs is not None and alice.fs.size == IMAGE_SIZE
    assert alice.used == alice.fs.size - alice.fs.free
    assert 0 < alice.allocated < IMAGE_SIZE  # mkfs wrote metadata only

    bob = actual.volumes["bob"]
    assert (bob.path, bob.complete, bob.fs, bob.used, bob.allocated) == (
        str(volumes / "bob.img.partial"),
        False,
        None,
        None,
        0,
    )

    dave = actual.volumes["dave"]
    assert (dave.path, dave.complete, dave.fs) == (str(volumes / "dave.img"), True, None)

    carol = actual.volumes["carol"]
    assert carol.loop == "/dev/loop98765"
    assert carol.path == str(volumes / "carol.img")

    assert set(actual.mounts) == {f"{paths.homes}/carol", f"{paths.homes}/gina", f"{paths.homes}/odd one"}
    carol_mount = actual.mounts[f"{paths.homes}/carol"]
    assert carol_mount.source == str(volumes / "carol.img")
    assert carol_mount.options >= REQUIRED_MOUNT_FLAGS
    assert carol_mount.owner == (os.getuid(), os.getgid(), 0o700)
    gina_mount = actual.mounts[f"{paths.homes}/gina"]
    assert gina_mount.source == str(volumes / "gina.img")
    assert not gina_mount.options >= REQUIRED_MOUNT_FLAGS

    assert set(actual.manifest) == {f"{paths.homes}/carol", f"{paths.homes}/alice"}
    assert actual.manifest[f"{paths.homes}/alice"] == ManifestEntry(
        str(volumes / "alice.img"), f"{paths.homes}/alice", "ext4", loop.MOUNT_OPTIONS
    )


def test_observe_mounted_volume_used_comes_from_statvfs(host) -> None:
    """While mounted, ``used`` is what df reports for the mount point, not the (lagging) superblock."""
    paths, fake = host
    target = str(paths.homes / "gina")

    def df_used() -> int:
        vfs = os.statvfs(target)
        return (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize

    low = df_used()
    gina = observe.observe(paths, fake).volumes["gina"]
    high = df_used()
    assert gina.fs is not None
    superblock_used = gina.fs.size - gina.fs.free
    slack = 64 * MiB  # other processes may write to the same filesystem meanwhile
    assert min(low, high) - slack <= gina.used <= max(low, high) + slack
    if abs(low - superblock_used) > 2 * slack:
        assert gina.used != superblock_used


def test_observe_without_volumes_or_manifest(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state", tmp_path / "homes")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    actual = observe.observe(
        paths, Host(etc=tmp_path / "no-etc", mountinfo=mountinfo, sys_block=tmp_path / "no-sys", clock=lambda: 0.0)
    )
    assert actual.today == 0
    for part in (actual.accounts, actual.groups, actual.volumes, actual.mounts, actual.manifest):
        assert dict(part) == {}


def test_observe_snapshot_is_immutable(host) -> None:
    paths, fake = host
    actual = observe.observe(paths, fake)
    for part in (actual.accounts, actual.groups, actual.volumes, actual.mounts, actual.manifest):
        assert isinstance(part, MappingProxyType)
        with pytest.raises(TypeError):
            part["intruder"] = None  # type: ignore[index]
        with pytest.raises(TypeError):
            del part[next(iter(part))]  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        actual.today = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        actual.accounts["alice"].locked = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        actual.volumes["alice"].size = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        actual.accounts["alice"].groups.add("wheel")  # type: ignore[attr-defined]


def test_observe_reads_the_clock_once_per_snapshot(host) -> None:
    paths, _ = host
    calls = []

    def clock() -> float:
        calls.append(1)
        return (TODAY + 5) * DAY

    fake = dataclasses.replace(host[1], clock=clock)
    assert observe.observe(paths, fake).today == TODAY + 5
    assert len(calls) == 1


def test_passwd_is_split_on_newlines_only(tmp_path: Path) -> None:
    """A GECOS field holding U+2028 (written before names were checked) must not split the line."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "ann:x:1001:1001:Ann\u2028Smith,,,,classroom=c:/h/ann:/usr/sbin/nologin\n"
        "bob:x:1002:1002:Bob,,,,classroom=c:/h/bob:/usr/sbin/nologin\n"
    )
    (etc / "shadow").write_text("ann:!$y$x:19000:0:99999:7::1:\nbob:$y$x:19000:0:99999:7:::\n")
    accounts = facts.read_accounts(etc / "passwd", {}, facts.read_shadow(etc / "shadow"))
    assert set(accounts) == {"ann", "bob"}
    assert accounts["ann"].classroom == "c" and accounts["ann"].locked and accounts["ann"].expire_day == 1


def test_observe_reads_our_nfs_exports_from_the_kernel_table_and_the_file(host) -> None:
    """hub.swarm.homes: nfs: one read of etab and one of the classroom's exports file; an admin's own exports and
    paths that are not a home or the course folder are not ours.  The snapshot survives its JSON form."""
    from reconciler.core.actual import from_json, to_json

    paths, fake = host
    options = "rw,sync,root_squash,no_subtree_check,mountpoint,sec=sys"
    etab = paths.state.parent / "etab"
    etab.write_text(
        f"{paths.homes}/carol\t10.0.5.11({options})\n{paths.homes}/carol\t10.0.5.12({options})\n"
        f"/srv/backups\t10.0.9.9(ro)\n{paths.homes}/carol/deeper\t10.0.5.11({options})\n"
    )
    file = paths.state.parent / "classroom-py101.exports"
    file.write_text(f"# header\n{paths.homes}/carol 10.0.5.11({options})\n/srv/backups 10.0.9.9(ro)\n")
    fake = dataclasses.replace(fake, nfs_etab=etab)
    actual = host_observe.observe(
        paths, loop.LoopBackend(paths, Runner(), fake), fake, exports_file=str(file), nfs=True
    )
    assert dict(actual.exports) == {
        f"{paths.homes}/carol": {"10.0.5.11": frozenset(options.split(",")), "10.0.5.12": frozenset(options.split(","))}
    }
    assert dict(actual.export_lines) == {f"{paths.homes}/carol": f"{paths.homes}/carol 10.0.5.11({options})"}
    assert from_json(to_json(actual)) == actual
    # NFS off and no file of ours: the table is not even read
    off = host_observe.observe(
        paths, loop.LoopBackend(paths, Runner(), fake), fake, exports_file=str(paths.state.parent / "none.exports")
    )
    assert off.exports is None and off.export_lines is None


def test_nfs_clients_with_files_open_hold_a_volume(tmp_path: Path) -> None:
    """nfsd's client table (its format as a Debian 6.1 kernel writes it, seen in tests/vm/vm_nfs_inside.py):
    a worker with a file open on loop1's filesystem holds that volume, wherever it has it mounted."""
    client = tmp_path / "proc" / "fs" / "nfsd" / "clients" / "20"
    client.mkdir(parents=True)
    (client / "info").write_text('clientid: 0x4dc3171e6b0eadfb\naddress: "10.77.2.2:720"\nstatus: confirmed\n')
    (client / "states").write_text(
        '- 0x00000001fbad0e6b1e17c34d01000000: { type: open, access: -w, deny: --, superblock: "07:01:12", '
        'filename: "/bob.txt", owner: "open id:\\x00" }\n'
        '- 0x00000002fbad0e6b1e17c34d01000000: { type: open, access: r-, deny: --, superblock: "fd:0a:99", '
        'filename: "/x", owner: "open id:\\x01" }\n'
    )
    (tmp_path / "proc" / "self" / "ns").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "ns" / "mnt").symlink_to("mnt:[1]")
    files = Host(proc=tmp_path / "proc")
    assert files.holders_by_device({"7:1", "7:2", "253:10"}) == {
        "7:1": ["NFS client 10.77.2.2 (files open)"],
        "253:10": ["NFS client 10.77.2.2 (files open)"],
    }
    assert files.holders({"7:2"}) == []
    assert Host(proc=tmp_path / "nowhere").nfs_holders({"7:1"}) == {}
