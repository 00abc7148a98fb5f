"""Driver golden tests: facts in, commands out, no root (tests/driverkit.py).

Each case gives a driver a host made of files (/etc, mountinfo, sysfs, the
state dir) and a recording runner, and checks the exact commands and
ownership changes it would make, or that it makes none.  The real commands run
in tests/host/ (real users, loop devices, ext4) and, for LVM, in the VM.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from driverkit import FakeHost, FixedCredentials, RecordingRunner, e2fsprogs, failed

from reconciler.config.site import LvmVolumes
from reconciler.core.actions import (
    JOURNAL_ONLY,
    OPS_BY_KIND,
    AccountFields,
    Action,
    ContainerFields,
    FilesystemFields,
    Kind,
    Op,
    VolumeFields,
)
from reconciler.core.desired import Member
from reconciler.host import drivers
from reconciler.host.mounts import mount_all
from reconciler.host.accounts import NotOurs
from reconciler.host.drivers import Busy
from reconciler.host.facts import read_superblock
from reconciler.host.facts import read_manifest
from reconciler.host.volumes import lvm
from reconciler.host.volumes.loop import MOUNT_OPTIONS

MiB = 1024**2
ANN = Member("ann", "Ann Example", "student", "active", 256 * MiB, 1.0, 128 * MiB, ("ann@example.org",))
MKFS = shutil.which("mkfs.ext4", path="/usr/sbin:/usr/bin:/sbin:/bin")


def run(action: Action, ctx) -> str:
    return drivers.carry_out(action, ctx)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path).add_group("py101-students", 2000).add_group("py101-teachers", 2001)


def image(host: FakeHost, user: str = "ann") -> Path:
    return host.paths.state / "volumes" / f"{user}.img"


def home(host: FakeHost, user: str = "ann") -> Path:
    return host.paths.home(user)


def make_image(host: FakeHost, size: int = 128 * MiB, user: str = "ann") -> Path:
    """A real ext4 image (mkfs.ext4 formats a regular file without root), as the loop backend makes it."""
    path = image(host, user)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    subprocess.run([MKFS, "-q", "-F", "-b", "4096", "-m", "0", str(path)], check=True)
    return path


# --- the registry ---------------------------------------------------------------------------------


def test_every_planned_action_has_exactly_one_driver():
    planned = {(kind, op) for kind, ops in OPS_BY_KIND.items() for op in ops} - JOURNAL_ONLY
    assert set(drivers.table()) == planned


def test_a_second_driver_for_the_same_action_is_refused():
    with pytest.raises(RuntimeError, match="two drivers"):
        drivers.driver(Kind.GROUP, Op.CREATE)(lambda action, ctx: "again")


# --- accounts --------------------------------------------------------------------------------------


def test_group_create(host):
    runner = RecordingRunner()
    assert run(Action(Op.CREATE, Kind.GROUP, "py101-new"), host.context(runner)) == "created"
    assert runner.calls == [("groupadd", "py101-new")]
    assert run(Action(Op.CREATE, Kind.GROUP, "py101-students"), host.context(runner)) == "exists"
    assert len(runner.calls) == 1


def test_account_create_is_one_useradd_with_the_marker(host):
    runner = RecordingRunner()
    want = AccountFields(name="Ann Example", group="py101-students", home=str(home(host)), shell="/usr/sbin/nologin")
    assert run(Action(Op.CREATE, Kind.ACCOUNT, "ann", after=want), host.context(runner)) == "created"
    assert runner.calls == [
        (
            "useradd",
            "--key",
            "SUB_UID_COUNT=0",
            "--key",
            "SUB_GID_COUNT=0",
            "--comment",
            "Ann Example,,,,classroom=py101",
            "--home-dir",
            str(home(host)),
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            "--groups",
            "py101-students",
            "ann",
        )
    ]


def test_account_create_when_it_exists(host):
    runner = RecordingRunner()
    want = AccountFields(name="Ann", group="py101-students", home="/h/ann", shell="/usr/sbin/nologin")
    host.person("ann", 1001)
    assert run(Action(Op.CREATE, Kind.ACCOUNT, "ann", after=want), host.context(runner)) == "exists"
    host.passwd.append("bob:x:1002:1002:Bob Other,,,:/home/bob:/bin/bash")  # not ours: never touched
    with pytest.raises(NotOurs):
        run(Action(Op.CREATE, Kind.ACCOUNT, "bob", after=want), host.context(runner))
    assert runner.calls == []


def test_a_new_password_goes_through_stdin_and_the_store_never_argv(host):
    runner, store = RecordingRunner(), FixedCredentials()
    host.person("ann", 1001, password="!")
    ctx = host.context(runner, members=[ANN], credentials=store)
    assert run(Action(Op.CREATE, Kind.PASSWORD, "ann", after="generated, to the outbox"), ctx) == "set"
    assert runner.calls == [("chpasswd", "--crypt-method", "SHA512", f"<stdin 'ann:{store.secret}\\n'>")]
    assert store.issued == ["ann"]
    assert not any(store.secret in arg for call in runner.calls for arg in call[:-1])


def test_an_existing_password_is_kept(host):
    runner, store = RecordingRunner(), FixedCredentials()
    host.person("ann", 1001)
    ctx = host.context(runner, members=[ANN], credentials=store)
    assert run(Action(Op.CREATE, Kind.PASSWORD, "ann", after="generated, to the outbox"), ctx) == "already set"
    assert runner.calls == [] and store.issued == []


@pytest.mark.parametrize(
    "before,after,person,expected",
    [
        (
            AccountFields(name="Ann"),
            AccountFields(name="Ann Example"),
            {},
            ("usermod", "--comment", "Ann Example,,,,classroom=py101", "ann"),
        ),
        (
            AccountFields(groups=("docker",)),
            AccountFields(groups=("py101-students",)),
            {"groups": ["docker"]},
            ("usermod", "--groups", "py101-students", "ann"),
        ),
        (
            AccountFields(login="disabled"),
            AccountFields(login="enabled"),
            {"password": "!$y$hash", "expire": "1"},
            ("usermod", "--unlock", "--expiredate", "", "ann"),
        ),
        (
            AccountFields(login="half-disabled (locked or expired)"),
            AccountFields(login="enabled"),
            {"expire": "19000"},
            ("usermod", "--expiredate", "", "ann"),
        ),
        (
            AccountFields(home="/home/ann", shell="/bin/bash"),
            AccountFields(home="/x/ann", shell="/usr/sbin/nologin"),
            {},
            ("usermod", "--home", "/x/ann", "ann"),
        ),  # the shell is already right: only the home changes
    ],
)
def test_account_update_is_one_usermod(host, before, after, person, expected):
    runner = RecordingRunner()
    host.person("ann", 1001, name="Ann", **person)
    assert run(Action(Op.UPDATE, Kind.ACCOUNT, "ann", before=before, after=after), host.context(runner)) == "updated"
    assert runner.calls == [expected]


def test_account_update_already_done(host):
    runner = RecordingRunner()
    host.person("ann", 1001, name="Ann Example", groups=["py101-students"])
    for after in (
        AccountFields(name="Ann Example"),
        AccountFields(groups=("py101-students",)),
        AccountFields(login="enabled"),
    ):
        assert run(Action(Op.UPDATE, Kind.ACCOUNT, "ann", after=after), host.context(runner)) == "already"
    assert runner.calls == []


def test_account_disable_locks_and_expires_once(host):
    runner = RecordingRunner()
    host.person("ann", 1001).person("bob", 1002, password="!$y$hash", expire="1")
    action = Action(
        Op.DISABLE, Kind.ACCOUNT, "ann", before=AccountFields(login="enabled"), after=AccountFields(login="disabled")
    )
    assert run(action, host.context(runner)) == "disabled"
    assert run(Action(Op.DISABLE, Kind.ACCOUNT, "bob"), host.context(runner)) == "already"
    assert run(Action(Op.DISABLE, Kind.ACCOUNT, "cat"), host.context(runner)) == "absent"
    assert runner.calls == [("usermod", "--lock", "--expiredate", "1", "ann")]


def test_account_destroy_deletes_the_user_and_the_waiting_password(host):
    runner, store = RecordingRunner(), FixedCredentials()
    host.person("ann", 1001)
    assert run(Action(Op.DESTROY, Kind.ACCOUNT, "ann"), host.context(runner, credentials=store)) == "deleted"
    assert runner.calls == [("userdel", "ann")] and store.discarded == ["ann"]


# --- manifest, mounts, ownership -----------------------------------------------------------------


def test_manifest_entries_are_written_and_removed_without_commands(host):
    runner = RecordingRunner()
    assert run(Action(Op.CREATE, Kind.MANIFEST, "ann", after="x"), host.context(runner)) == "written"
    assert run(Action(Op.CREATE, Kind.MANIFEST, "ann", after="x"), host.context(runner)) == "already"
    entry = read_manifest(host.paths.manifest)[str(home(host))]
    assert (entry.source, entry.options) == (str(image(host)), MOUNT_OPTIONS)
    assert run(Action(Op.DISABLE, Kind.MANIFEST, "ann", before="x"), host.context(runner)) == "written"
    assert read_manifest(host.paths.manifest) == {}
    assert runner.calls == []


def test_mount_prepares_a_root_owned_mount_point_then_mounts_the_image(host):
    runner = RecordingRunner()
    image(host).parent.mkdir(parents=True)
    image(host).write_bytes(b"")
    assert run(Action(Op.CREATE, Kind.MOUNT, "ann", after=str(home(host))), host.context(runner)) == "mounted"
    assert runner.calls == [
        ("chown", "0:0", str(home(host))),
        ("chmod", "0000", str(home(host))),
        ("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image(host)), str(home(host))),
    ]


def test_mount_detaches_a_stale_loop_device_first(host):
    runner = RecordingRunner()
    image(host).parent.mkdir(parents=True)
    image(host).write_bytes(b"")
    host.loops[str(image(host))] = "loop7"  # attached but not mounted: a second device would corrupt the ext4
    run(Action(Op.CREATE, Kind.MOUNT, "ann", after=str(home(host))), host.context(runner))
    assert runner.calls[0] == ("losetup", "--detach", host.device("loop7"))
    assert runner.calls[-1][0] == "mount"


def test_mount_refuses_a_missing_image_or_a_foreign_mount(host):
    runner = RecordingRunner()
    with pytest.raises(RuntimeError, match="does not exist"):
        run(Action(Op.CREATE, Kind.MOUNT, "ann", after="x"), host.context(runner))
    host.mounted("/dev/sdz1", home(host))
    with pytest.raises(RuntimeError, match="already has /dev/sdz1 mounted"):
        run(Action(Op.CREATE, Kind.MOUNT, "ann", after="x"), host.context(runner))
    assert runner.calls == []


def test_unmount_then_detach(host):
    runner = RecordingRunner()
    host.loops[str(image(host))] = "loop3"
    host.mounted(host.device("loop3"), home(host))  # mountinfo names the loop device: read back as the image
    assert run(Action(Op.DISABLE, Kind.MOUNT, "ann", before=str(home(host))), host.context(runner)) == "unmounted"
    assert runner.calls == [("umount", str(home(host))), ("losetup", "--detach", host.device("loop3"))]


def test_unmount_leaves_a_foreign_mount_alone(host):
    runner = RecordingRunner()
    host.mounted("/dev/sdz1", home(host))
    with pytest.raises(RuntimeError, match="leaving it alone"):
        run(Action(Op.DISABLE, Kind.MOUNT, "ann", before="x"), host.context(runner))
    assert runner.calls == []


def test_unmount_busy_says_why(host):
    runner = RecordingRunner({"umount": failed("umount", "target is busy", 32)})
    host.mounted(str(image(host)), home(host))
    with pytest.raises(RuntimeError, match="is their server still running"):
        run(Action(Op.DISABLE, Kind.MOUNT, "ann", before="x"), host.context(runner))


def test_remount_restores_the_flags(host):
    runner = RecordingRunner()
    host.mounted(str(image(host)), home(host), options="rw")
    assert (
        run(Action(Op.UPDATE, Kind.MOUNT, "ann", before="rw", after="nodev,nosuid"), host.context(runner))
        == "remounted"
    )
    assert runner.calls == [("mount", "-o", "remount,nodev,nosuid", str(home(host)))]


def test_ownership_goes_to_the_account_only_on_the_mounted_volume(host):
    runner = RecordingRunner()
    host.person("ann", 1001)
    home(host).mkdir(parents=True)
    with pytest.raises(RuntimeError, match="not mounted"):
        run(Action(Op.CREATE, Kind.OWNERSHIP, "ann", after="ann:ann 0700"), host.context(runner))
    host.mounted(str(image(host)), home(host))
    assert run(Action(Op.CREATE, Kind.OWNERSHIP, "ann", after="ann:ann 0700"), host.context(runner)) == "set"
    assert runner.calls == [("chown", "1001:1001", str(home(host))), ("chmod", "0700", str(home(host)))]


def test_the_course_folder_goes_to_root_and_the_teachers_group_setgid(host):
    OWNER = "root:py101-teachers 2775"  # as the plan names it (core.desired.Desired.course_folder)
    runner = RecordingRunner()
    folder = host.paths.course_folder
    folder.mkdir(parents=True)
    with pytest.raises(RuntimeError, match="not mounted"):  # never the bare mount point on the host's disk
        run(Action(Op.CREATE, Kind.OWNERSHIP, "_shared", after=OWNER), host.context(runner))
    host.mounted(str(host.paths.state / "volumes" / "_shared.img"), folder)
    assert run(Action(Op.CREATE, Kind.OWNERSHIP, "_shared", after=OWNER), host.context(runner)) == "set"
    assert runner.calls == [("chown", "0:2001", str(folder)), ("chmod", "2775", str(folder))]


def test_an_owner_the_host_does_not_have_changes_nothing(host):
    runner = RecordingRunner()
    host.person("ann", 1001)
    home(host).mkdir(parents=True)
    host.mounted(str(image(host)), home(host))
    for owner, problem in (("bob:bob 0700", "bob has no account"), ("ann:nogroup 0700", "nogroup does not exist")):
        with pytest.raises(RuntimeError, match=problem):
            run(Action(Op.CREATE, Kind.OWNERSHIP, "ann", after=owner), host.context(runner))
    assert runner.calls == []


def test_mount_all_finds_the_course_folder_by_its_mount_point(host):
    runner = RecordingRunner()
    image = host.paths.state / "volumes" / "_shared.img"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"")
    run(Action(Op.CREATE, Kind.MANIFEST, "_shared", after="x"), host.context(runner))
    assert read_manifest(host.paths.manifest)[str(host.paths.course_folder)].source == str(image)
    assert mount_all(host.context(runner)) == {"_shared": "mounted"}
    assert runner.calls[-1] == ("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(host.paths.course_folder))


# --- loop volumes -------------------------------------------------------------------------------------


def test_volume_create_is_a_sparse_partial_image(host):
    runner = RecordingRunner()
    assert (
        run(Action(Op.CREATE, Kind.VOLUME, "ann", after=VolumeFields(size=128 * MiB, path="x")), host.context(runner))
        == "created"
    )
    partial = image(host).with_name("ann.img.partial")
    assert partial.stat().st_size == 128 * MiB and partial.stat().st_blocks == 0
    assert runner.calls == [("chmod", "0700", str(image(host).parent))]


def test_filesystem_create_formats_the_partial_image_then_renames_it(host):
    runner = RecordingRunner()
    ctx = host.context(runner)
    run(Action(Op.CREATE, Kind.VOLUME, "ann", after=VolumeFields(size=128 * MiB, path="x")), ctx)
    assert (
        run(Action(Op.CREATE, Kind.FILESYSTEM, "ann", after=FilesystemFields(fstype="ext4", size=128 * MiB)), ctx)
        == "formatted"
    )
    partial = image(host).with_name("ann.img.partial")
    assert runner.calls[-1] == ("mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-L", "ann", str(partial))
    assert image(host).exists() and not partial.exists()


GROW = Action(
    Op.UPDATE, Kind.VOLUME, "ann", before=VolumeFields(size=128 * MiB, used=0), after=VolumeFields(size=256 * MiB)
)
SHRINK = Action(
    Op.UPDATE, Kind.VOLUME, "ann", before=VolumeFields(size=256 * MiB, used=0), after=VolumeFields(size=128 * MiB)
)
needs_mkfs = pytest.mark.skipif(MKFS is None, reason="mkfs.ext4 (e2fsprogs) is not installed")


def mounted_image(host: FakeHost, size: int = 128 * MiB) -> str:
    """ann's image, mounted at her home through loop3 (mountinfo names the device, as the kernel's does)."""
    make_image(host, size)
    host.loops[str(image(host))] = "loop3"
    host.alive.add("loop3")
    host.mounted(host.device("loop3"), home(host), device="7:3")
    return host.device("loop3")


@needs_mkfs
def test_grow_online_when_mounted(host):
    loop3 = mounted_image(host)
    runner = RecordingRunner(e2fsprogs)
    assert run(GROW, host.context(runner)) == "grown online"
    assert runner.calls == [("losetup", "--set-capacity", loop3), ("resize2fs", loop3)]
    assert image(host).stat().st_size == 256 * MiB and read_superblock(str(image(host))).size == 256 * MiB


@needs_mkfs
def test_a_resize_the_kernel_does_not_show_is_a_failure(host):
    mounted_image(host)
    runner = RecordingRunner()  # resize2fs "succeeds" but changes nothing
    with pytest.raises(RuntimeError, match="resize2fs succeeded but .* holds 134217728 bytes, not 268435456"):
        run(GROW, host.context(runner))


@needs_mkfs
def test_grow_falls_back_offline_when_the_kernel_denies_online_resizing(host):
    loop3 = mounted_image(host)
    denied = failed("resize2fs", "resize2fs: Permission denied to resize filesystem")

    def answer(argv):
        if list(argv) == ["resize2fs", loop3]:
            return denied
        if argv[0] == "umount":
            host.alive.discard("loop3")  # unmounted here and held nowhere else: the superblock is released
            host.files()
        return e2fsprogs(argv)

    runner = RecordingRunner(answer)
    assert run(GROW, host.context(runner)) == "grown offline"
    img, mnt = str(image(host)), str(home(host))
    assert runner.calls == [
        ("losetup", "--set-capacity", loop3),
        ("resize2fs", loop3),
        ("umount", mnt),
        ("losetup", "--detach", loop3),
        ("e2fsck", "-f", "-p", img),
        ("resize2fs", img, f"{256 * 1024}K"),
        ("losetup", "--detach", loop3),  # attach: the (fake) device still shows as attached
        ("chown", "0:0", mnt),
        ("chmod", "0000", mnt),
        ("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, img, mnt),
    ]
    assert read_superblock(img).size == 256 * MiB


@needs_mkfs
def test_an_offline_resize_takes_a_loop_device_the_kernel_freed_meanwhile_for_detached(host):
    """After the unmount, mount's autoclear frees the loop device on its own; when that lands between our look
    and `losetup --detach` (ENXIO), the device is gone as wanted and the resize goes on."""
    loop3 = mounted_image(host)
    denied = failed("resize2fs", "resize2fs: Permission denied to resize filesystem")
    raced = []

    def answer(argv):
        if list(argv) == ["resize2fs", loop3]:
            return denied
        if argv[0] == "umount":
            host.alive.discard("loop3")
            host.files()
        if list(argv) == ["losetup", "--detach", loop3] and not raced:
            raced.append(True)
            del host.loops[str(image(host))]  # autoclear won the race
            host.files()
            return failed("losetup", f"losetup: {loop3}: detach failed: No such device or address")
        return e2fsprogs(argv)

    assert run(GROW, host.context(RecordingRunner(answer))) == "grown offline" and raced
    assert read_superblock(str(image(host))).size == 256 * MiB


@needs_mkfs
def test_offline_work_never_starts_while_a_running_server_holds_the_volume(host):
    """The container's mount namespace has a bind mount of the home: nothing is unmounted, checked or resized."""
    mounted_image(host)
    host.namespaces[4242] = ("mnt:[4026532999]", ["7:3"], "jupyterhub-sing")
    runner = RecordingRunner(lambda argv: failed("resize2fs", "Permission denied") if argv[0] == "resize2fs" else "")
    with pytest.raises(Busy, match=r"mounted by pid 4242 \(jupyterhub-sing\)"):
        run(GROW, host.context(runner))
    assert [c[0] for c in runner.calls] == ["losetup", "resize2fs"]  # the online attempt, then nothing
    runner = RecordingRunner(e2fsprogs)
    make_image(host, 256 * MiB)
    with pytest.raises(Busy):
        run(SHRINK, host.context(runner))
    assert runner.calls == [] and read_superblock(str(image(host))).size == 256 * MiB


@needs_mkfs
def test_offline_work_stops_if_the_filesystem_outlives_the_unmount(host):
    """Unmounted here, still alive (a namespace the scan could not read): mounted again, nothing checked."""
    loop3 = mounted_image(host, 256 * MiB)
    runner = RecordingRunner(e2fsprogs)
    with pytest.raises(Busy, match="still mounted in another mount namespace"):
        run(SHRINK, host.context(runner))
    mnt = str(home(host))
    assert runner.calls == [
        ("umount", mnt),
        ("chown", "0:0", mnt),
        ("chmod", "0000", mnt),
        ("mount", "-t", "ext4", "-o", "nodev,nosuid,noatime", loop3, mnt),
    ]


def test_a_second_loop_device_is_never_attached_to_a_live_filesystem(host):
    runner = RecordingRunner()
    image(host).parent.mkdir(parents=True)
    image(host).write_bytes(b"")
    host.loops[str(image(host))] = "loop7"
    host.alive.add("loop7")  # mounted in a container although the host has no mount of it
    with pytest.raises(Busy, match="a second loop device would corrupt it"):
        run(Action(Op.CREATE, Kind.MOUNT, "ann", after=str(home(host))), host.context(runner))
    with pytest.raises(Busy):
        run(Action(Op.DESTROY, Kind.VOLUME, "ann"), host.context(runner))
    assert runner.calls == [] and image(host).exists()


@needs_mkfs
def test_shrink_never_cuts_an_image_the_filesystem_still_fills(host):
    """The recording runner does not really run resize2fs: the filesystem keeps its size, so the image must stay."""
    make_image(host, 256 * MiB)
    runner = RecordingRunner()
    with pytest.raises(RuntimeError, match="the image is not cut"):
        run(SHRINK, host.context(runner))
    assert image(host).stat().st_size == 256 * MiB
    assert runner.calls == [("e2fsck", "-f", "-p", str(image(host))), ("resize2fs", str(image(host)), f"{128 * 1024}K")]


def test_volume_detach_and_destroy(host):
    runner = RecordingRunner()
    image(host).parent.mkdir(parents=True)
    image(host).write_bytes(b"data")
    host.loops[str(image(host))] = "loop9"
    with pytest.raises(RuntimeError, match="still in use"):
        run(Action(Op.DESTROY, Kind.VOLUME, "ann"), host.context(runner))
    assert (
        run(
            Action(
                Op.DISABLE,
                Kind.VOLUME,
                "ann",
                before=VolumeFields(loop=host.device("loop9")),
                after=VolumeFields(loop=None),
            ),
            host.context(runner),
        )
        == "detached"
    )
    assert runner.calls == [("losetup", "--detach", host.device("loop9"))]
    host.loops.clear()
    assert run(Action(Op.DESTROY, Kind.VOLUME, "ann"), host.context(runner)) == "deleted"
    assert not image(host).exists()


# --- LVM volumes -------------------------------------------------------------------------------------------

LV = {
    "lv_name": "home-ann",
    "vg_name": "class",
    "lv_size": str(128 * MiB),
    "lv_active": "active",
    "lv_path": "/dev/class/home-ann",
    "lv_tags": "",
    "lv_kernel_major": "253",
    "lv_kernel_minor": "0",
}


def lvm_context(host: FakeHost, lvs: list[dict], thin_pool: str | None = None):
    import json

    def answer(argv):
        if argv[0] == "lvs":
            return json.dumps({"report": [{"lv": lvs}]})
        return e2fsprogs(argv)

    runner = RecordingRunner(answer)
    settings = LvmVolumes(backend="lvm", vg="class", thin_pool=thin_pool)
    ctx = host.context(runner, volumes=lvm.LvmBackend(settings, host.paths, runner, host.files()))
    return runner, ctx


def test_lvm_create_thick_and_thin(host):
    runner, ctx = lvm_context(host, [])
    run(Action(Op.CREATE, Kind.VOLUME, "a_b", after=VolumeFields(size=128 * MiB, path="x")), ctx)
    assert runner.calls[-1] == (
        "lvcreate",
        "--yes",
        "--wipesignatures",
        "y",
        "--zero",
        "y",
        "--addtag",
        "classroom-partial",
        "-L",
        f"{128 * MiB}b",
        "-n",
        "home-a+b",
        "class",
    )
    runner, ctx = lvm_context(host, [], thin_pool="pool")
    run(Action(Op.CREATE, Kind.VOLUME, "ann", after=VolumeFields(size=128 * MiB, path="x")), ctx)
    assert runner.calls[-1] == (
        "lvcreate",
        "--yes",
        "--thin",
        "-V",
        f"{128 * MiB}b",
        "--addtag",
        "classroom-partial",
        "-n",
        "home-ann",
        "class/pool",
    )


def test_lvm_filesystem_only_on_a_partial_lv(host):
    runner, ctx = lvm_context(host, [{**LV, "lv_tags": "classroom-partial", "lv_active": ""}])
    run(Action(Op.CREATE, Kind.FILESYSTEM, "ann", after=FilesystemFields(fstype="ext4", size=128 * MiB)), ctx)
    assert [c for c in runner.calls if c[0] != "lvs"] == [
        ("lvchange", "-ay", "/dev/class/home-ann"),
        ("mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-L", "ann", "/dev/class/home-ann"),
        ("lvchange", "--deltag", "classroom-partial", "/dev/class/home-ann"),
    ]
    runner, ctx = lvm_context(host, [LV])
    assert (
        run(Action(Op.CREATE, Kind.FILESYSTEM, "ann", after=FilesystemFields(fstype="ext4", size=1)), ctx) == "exists"
    )


@needs_mkfs
def test_lvm_grow_online_and_shrink_unmounted(host):
    lv_file = str(make_image(host, 128 * MiB, "lv-ann"))  # a file stands in for /dev/class/home-ann
    lv = {**LV, "lv_path": lv_file}
    host.mounted("/dev/class/home-ann", home(host), device="253:0")
    runner, ctx = lvm_context(host, [lv])
    assert run(GROW, ctx) == "grown online"
    assert [c for c in runner.calls if c[0] != "lvs"] == [
        ("lvextend", "--yes", "-L", f"{256 * MiB}b", lv_file),
        ("resize2fs", lv_file),
    ]
    assert read_superblock(lv_file).size == 256 * MiB
    runner, ctx = lvm_context(host, [{**lv, "lv_size": str(256 * MiB)}])
    assert run(SHRINK, ctx) == "shrunk"
    mnt = str(home(host))
    assert [c for c in runner.calls if c[0] != "lvs"] == [
        ("umount", mnt),
        ("lvreduce", "--yes", "-r", "-L", f"{128 * MiB}b", lv_file),
        ("chown", "0:0", mnt),
        ("chmod", "0000", mnt),
        ("mount", "-t", "ext4", "-o", "nodev,nosuid,noatime", "/dev/class/home-ann", mnt),
    ]
    assert read_superblock(lv_file).size == 128 * MiB


@needs_mkfs
def test_lvm_finishes_a_grow_whose_filesystem_resize_failed(host):
    """lvextend reached the size but resize2fs was denied (no CAP_SYS_RESOURCE): offline now, never "already"."""
    lv_file = str(make_image(host, 128 * MiB, "lv-ann"))
    import os

    os.truncate(lv_file, 256 * MiB)  # the LV is already 256 MiB, its filesystem still 128 MiB
    host.online_resize = False
    runner, ctx = lvm_context(host, [{**LV, "lv_path": lv_file, "lv_size": str(256 * MiB)}])
    assert run(GROW, ctx) == "grown offline"
    assert [c for c in runner.calls if c[0] != "lvs"] == [("e2fsck", "-f", "-p", lv_file), ("resize2fs", lv_file)]
    assert read_superblock(lv_file).size == 256 * MiB


def test_lvm_shrink_waits_while_another_namespace_holds_the_lv(host):
    host.mounted("/dev/class/home-ann", home(host), device="253:0")
    host.namespaces[77] = ("mnt:[4026532100]", ["253:0"], "jupyterhub-sing")
    runner, ctx = lvm_context(host, [{**LV, "lv_size": str(256 * MiB)}])
    with pytest.raises(Busy, match="pid 77"):
        run(SHRINK, ctx)
    assert [c for c in runner.calls if c[0] != "lvs"] == []


def test_lvm_destroy_refuses_while_mounted(host):
    host.mounted("/dev/class/home-ann", home(host), device="253:0")
    runner, ctx = lvm_context(host, [LV])
    with pytest.raises(RuntimeError, match="still mounted"):
        run(Action(Op.DESTROY, Kind.VOLUME, "ann"), ctx)
    assert [c for c in runner.calls if c[0] != "lvs"] == []


# --- servers and hub users ---------------------------------------------------------------------------


class RecordingHub:
    """The hub client's side of the drivers (the real API is exercised in tests/hub/)."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def stop_server(self, name: str) -> str:
        self.calls.append(("stop", name))
        return "stopped"

    def delete_user(self, name: str) -> str:
        self.calls.append(("delete", name))
        return "deleted"


def test_hub_drivers_call_the_api_and_need_a_client(host):
    import dataclasses

    hub = RecordingHub()
    ctx = dataclasses.replace(host.context(RecordingRunner()), hub=hub)
    run(Action(Op.DISABLE, Kind.SERVER, "ann", before="running", after="stopped"), ctx)
    run(Action(Op.DISABLE, Kind.HUB_USER, "ann"), ctx)
    assert hub.calls == [("stop", "ann"), ("delete", "ann")]
    with pytest.raises(RuntimeError, match="hub API is not available"):
        run(Action(Op.DISABLE, Kind.HUB_USER, "ann"), host.context(RecordingRunner()))


def test_container_memory_is_updated_in_place(host):
    import dataclasses

    class Container:
        attrs = {"HostConfig": {"Memory": 256 * MiB, "CpuQuota": 100_000, "CpuPeriod": 100_000}}
        updates: list[dict] = []

        def update(self, **limits):
            self.updates.append(limits)

    class Containers:
        def list(self, filters):
            assert filters == {"label": ["org.classroom.classroom=py101", "org.classroom.user=ann"]}
            return [Container()]

    class Docker:
        containers = Containers()

    ctx = dataclasses.replace(host.context(RecordingRunner()), docker=lambda: Docker())
    action = Action(
        Op.UPDATE,
        Kind.CONTAINER,
        "ann",
        before=ContainerFields(memory=256 * MiB),
        after=ContainerFields(memory=512 * MiB),
    )
    assert run(action, ctx) == "updated"
    assert Container.updates == [{"mem_limit": 512 * MiB, "memswap_limit": 512 * MiB}]
    assert run(dataclasses.replace(action, after=ContainerFields(memory=256 * MiB)), ctx) == "already"
    cpu = Action(Op.UPDATE, Kind.CONTAINER, "ann", before=ContainerFields(cpu=1.0), after=ContainerFields(cpu=0.5))
    assert run(cpu, ctx) == "updated"
    assert Container.updates[-1] == {"cpu_quota": 50_000, "cpu_period": 100_000}
    assert run(dataclasses.replace(cpu, after=ContainerFields(cpu=1.0)), ctx) == "already"


def test_a_leftover_swarm_service_is_removed_unless_the_hub_runs_it_again(host):
    """The driver asks the hub first (a start between observing and acting keeps its new service), then removes
    the person's services and configs by our labels."""
    import dataclasses

    class Api:
        calls: list[tuple] = []

        def services(self, filters):
            assert filters == {"label": ["org.classroom.classroom=py101", "org.classroom.user=ann"]}
            return [{"ID": "svc1"}]

        def configs(self, filters):
            assert filters == {"label": ["org.classroom.classroom=py101", "org.classroom.user=ann"]}
            return [{"ID": "cfg1"}, {"ID": "cfg2"}]

        def remove_service(self, service_id):
            self.calls.append(("remove_service", service_id))

        def remove_config(self, config_id):
            self.calls.append(("remove_config", config_id))

    class Docker:
        api = Api()

    class Hub(RecordingHub):
        server: dict = {}

        def get_user(self, name):
            return {"name": name, "servers": self.server}

    hub = Hub()
    ctx = dataclasses.replace(host.context(RecordingRunner()), hub=hub, docker=lambda: Docker())
    action = Action(Op.DISABLE, Kind.CONTAINER, "ann", before=ContainerFields(memory=256 * MiB))
    assert run(action, ctx) == "removed"
    assert Api.calls == [("remove_service", "svc1"), ("remove_config", "cfg1"), ("remove_config", "cfg2")]
    Api.calls.clear()
    Hub.server = {"": {"ready": False, "pending": "spawn"}}  # the person pressed start meanwhile
    assert run(action, ctx) == "kept: the hub runs this server again" and Api.calls == []


# --- NFS exports (hub.swarm.homes: nfs) --------------------------------------------------------------

WORKERS = ("10.0.5.11", "10.0.5.12")
# etab as exportfs writes it (read from a real nfsd in tests/vm/vm_nfs_inside.py): every option spelled out
ETAB_OPTIONS = (
    "rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,"
    "no_pnfs,mountpoint,anonuid=65534,anongid=65534,sec=sys,rw,secure,root_squash,no_all_squash"
)


def nfs_context(host: FakeHost, runner: RecordingRunner):
    import dataclasses

    from reconciler.core.exports import ExportPolicy

    file = host.root / "exports.d" / "classroom-py101.exports"
    return dataclasses.replace(
        host.context(runner), exports=ExportPolicy(WORKERS, str(file)), exports_file=str(file)
    ), file


def exportfs(host: FakeHost):
    """Answer exportfs as the kernel's table would change: -o adds or replaces a client's line, -u drops it."""

    def answer(argv):
        if argv[0] != "exportfs":
            return ""
        client, _, path = argv[-1].partition(":")
        lines = [
            line
            for line in (host.root / "etab").read_text().splitlines()
            if line.split("\t")[0] != path or not line.split("\t")[1].startswith(client + "(")
        ]
        if argv[1] != "-u":
            lines.append(f"{path}\t{client}({ETAB_OPTIONS})")
        (host.root / "etab").write_text("".join(line + "\n" for line in lines))
        return ""

    return answer


def test_a_mounted_home_is_written_to_the_exports_file_then_exported_to_each_worker(host):
    home = host.paths.home("ann")
    host.mounted(str(image(host)), home)
    runner = RecordingRunner(exportfs(host))
    ctx, file = nfs_context(host, runner)
    assert drivers.carry_out(Action(Op.CREATE, Kind.EXPORT, "ann", after=",".join(WORKERS)), ctx) == "exported"
    options = "rw,sync,root_squash,sec=sys,no_subtree_check,mountpoint"
    assert runner.calls == [("exportfs", "-i", "-o", options, f"{w}:{home}") for w in WORKERS]
    assert f"{home} 10.0.5.11({options}) 10.0.5.12({options})\n" in file.read_text()
    assert file.stat().st_mode & 0o777 == 0o644
    runner.calls.clear()
    assert drivers.carry_out(Action(Op.CREATE, Kind.EXPORT, "ann", after=",".join(WORKERS)), ctx) == "already"
    assert runner.calls == []


def test_a_home_without_its_volume_mounted_is_never_exported(host):
    runner = RecordingRunner(exportfs(host))
    ctx, file = nfs_context(host, runner)
    with pytest.raises(RuntimeError, match="no volume mounted"):
        drivers.carry_out(Action(Op.CREATE, Kind.EXPORT, "ann", after=",".join(WORKERS)), ctx)
    assert runner.calls == [] and not file.exists()


def test_a_worker_removed_from_site_yaml_loses_the_export(host):
    home = host.paths.home("ann")
    host.mounted(str(image(host)), home)
    host.etab = [f"{home}\t{w}({ETAB_OPTIONS})" for w in (*WORKERS, "10.0.5.13")]
    runner = RecordingRunner(exportfs(host))
    ctx, _ = nfs_context(host, runner)
    assert drivers.carry_out(Action(Op.UPDATE, Kind.EXPORT, "ann", before="x", after="y"), ctx) == "exported"
    assert runner.calls[-1] == ("exportfs", "-u", f"10.0.5.13:{home}")


def test_withdrawing_unexports_every_client_then_drops_the_line(host):
    home, other = host.paths.home("ann"), host.paths.home("bob")
    host.etab = [f"{home}\t{w}({ETAB_OPTIONS})" for w in WORKERS] + [f"{other}\t{WORKERS[0]}({ETAB_OPTIONS})"]
    runner = RecordingRunner(exportfs(host))
    ctx, file = nfs_context(host, runner)
    file.parent.mkdir()
    file.write_text(f"{home} 10.0.5.11(rw)\n{other} 10.0.5.11(rw)\n")
    assert drivers.carry_out(Action(Op.DISABLE, Kind.EXPORT, "ann", before="x"), ctx) == "withdrawn"
    assert runner.calls == [("exportfs", "-u", f"{w}:{home}") for w in WORKERS]
    assert str(home) not in file.read_text() and str(other) in file.read_text()
    assert drivers.carry_out(Action(Op.DISABLE, Kind.EXPORT, "bob", before="x"), ctx) == "withdrawn"
    assert not file.exists()  # nothing left to export: no empty file
    runner.calls.clear()
    assert drivers.carry_out(Action(Op.DISABLE, Kind.EXPORT, "bob", before="x"), ctx) == "already"
    assert runner.calls == []


def test_an_export_the_kernel_does_not_show_is_not_claimed(host):
    host.mounted(str(image(host)), host.paths.home("ann"))
    runner = RecordingRunner({"exportfs": ""})  # exits 0, changes nothing
    ctx, _ = nfs_context(host, runner)
    with pytest.raises(RuntimeError, match="the kernel's table shows nothing"):
        drivers.carry_out(Action(Op.CREATE, Kind.EXPORT, "ann", after="x"), ctx)


def test_exportfs_missing_says_what_to_install(host):
    host.mounted(str(image(host)), host.paths.home("ann"))
    runner = RecordingRunner({"exportfs": FileNotFoundError("exportfs")})
    ctx, _ = nfs_context(host, runner)
    with pytest.raises(RuntimeError, match="apt install nfs-kernel-server"):
        drivers.carry_out(Action(Op.CREATE, Kind.EXPORT, "ann", after="x"), ctx)


def test_the_course_folder_without_a_volume_is_exported_without_the_mountpoint_option(host):
    folder = host.paths.course_folder
    folder.mkdir(parents=True)
    runner = RecordingRunner(exportfs(host))
    ctx, _ = nfs_context(host, runner)
    drivers.carry_out(Action(Op.CREATE, Kind.EXPORT, "_shared", after="x"), ctx)
    assert runner.calls[0] == (
        "exportfs",
        "-i",
        "-o",
        "rw,sync,root_squash,sec=sys,no_subtree_check",
        f"{WORKERS[0]}:{folder}",
    )
