"""The LVM backend's pure parts: names, the lvs/vgs reports, and plans against LVM snapshots.

The real LVM runs in a VM (test_lvm_vm.py): this kernel has no device-mapper.
"""

import json
from pathlib import Path
from types import MappingProxyType

from driverkit import RecordingRunner

from reconciler.config.site import Paths
from reconciler.config.sizes import MiB
from reconciler.core.actual import Account, Actual, Filesystem, Group, ManifestEntry, Mount
from reconciler.core.desired import Desired as _Desired
from reconciler.core.desired import Member
from reconciler.core.plan import plan
from reconciler.host.volumes import lvm

PATHS = Paths(Path("/s"), Path("/h"))
LAYOUT = lvm.LvmLayout("class")


def Desired(classroom, members, paths):  # noqa: N802 - the same call as before, with the LVM layout
    return _Desired(classroom, members, paths, LAYOUT)


EXTENT = 4 * MiB


def test_lv_names_are_legal_and_reversible():
    assert lvm.lv_name("ann") == "home-ann"
    assert lvm.lv_name("x_tmeta") == "home-x+tmeta"  # LVM reserves _tmeta inside names
    assert lvm.username_of(lvm.lv_name("a_b-c")) == "a_b-c"
    assert lvm.username_of("swap") is None
    assert (
        lvm.lv_name("_shared") == "home-+shared" and lvm.username_of("home-+shared") == "_shared"
    )  # the course folder
    assert LAYOUT.source("ann") == "/dev/class/home-ann"
    assert LAYOUT.mount_options == "nodev,nosuid,noatime"


def report(rows, key="lv"):
    return json.dumps({"report": [{key: rows}]})


LVS = [
    {
        "lv_name": "home-ann",
        "vg_name": "class",
        "lv_size": str(128 * MiB),
        "lv_active": "active",
        "lv_path": "/dev/class/home-ann",
        "lv_tags": "",
        "lv_kernel_major": "253",
        "lv_kernel_minor": "0",
    },
    {
        "lv_name": "home-bob",
        "vg_name": "class",
        "lv_size": str(256 * MiB),
        "lv_active": "",
        "lv_path": "/dev/class/home-bob",
        "lv_tags": "",
        "lv_kernel_major": "-1",
        "lv_kernel_minor": "-1",
    },
    {
        "lv_name": "home-cat",
        "vg_name": "class",
        "lv_size": str(128 * MiB),
        "lv_active": "active",
        "lv_path": "/dev/class/home-cat",
        "lv_tags": "classroom-partial",
        "lv_kernel_major": "253",
        "lv_kernel_minor": "2",
    },
    {
        "lv_name": "root",
        "vg_name": "class",
        "lv_size": "1",
        "lv_active": "active",
        "lv_path": "/dev/class/root",
        "lv_tags": "",
        "lv_kernel_major": "253",
        "lv_kernel_minor": "3",
    },
]


def test_one_lvs_call_builds_every_volume():
    runner = RecordingRunner(
        lambda argv: (
            report(LVS)
            if argv[0] == "lvs"
            else report([{"vg_name": "class", "vg_extent_size": str(EXTENT), "vg_size": "1", "vg_free": "1"}], "vg")
        )
    )
    lvs = lvm.read_lvs("class", runner)
    assert lvm.read_vg("class", runner)["extent"] == EXTENT
    assert [call[0] for call in runner.calls] == ["lvs", "vgs"]
    assert lvm.device_aliases(lvs) == {
        "253:0": "/dev/class/home-ann",
        "253:2": "/dev/class/home-cat",
        "253:3": "/dev/class/root",
    }
    volumes = lvm.volumes_from(lvs, {}, PATHS, superblock=lambda p: Filesystem(128 * MiB, 100 * MiB))
    assert set(volumes) == {"ann", "bob", "cat"}
    assert volumes["ann"].attached and volumes["ann"].complete and volumes["ann"].fs.size == 128 * MiB
    assert not volumes["bob"].attached and volumes["bob"].fs is None and volumes["bob"].size == 256 * MiB
    assert not volumes["cat"].complete


def member(name, disk=128 * MiB, status="active"):
    return Member(name, name.title(), "student", status, 256 * MiB, 1.0, disk)


def snapshot(volumes, mounts=(), manifest=(), accounts=None, today=20000):
    accounts = accounts if accounts is not None else {}
    return Actual(
        accounts=MappingProxyType(accounts),
        groups=MappingProxyType(
            {"c-students": Group("c-students", 2000, frozenset()), "c-teachers": Group("c-teachers", 2001, frozenset())}
        ),
        volumes=MappingProxyType(volumes),
        mounts=MappingProxyType({m.target: m for m in mounts}),
        manifest=MappingProxyType({e.target: e for e in manifest}),
        today=today,
        volume_step=EXTENT,
    )


def account(name, uid, locked=False):
    return Account(
        name,
        uid,
        uid,
        name.title(),
        "c",
        f"/h/{name}",
        "/usr/sbin/nologin",
        frozenset({"c-students"}),
        True,
        locked,
        1 if locked else None,
    )


def test_new_person_gets_an_lv_rounded_to_extents():
    actual = snapshot({})
    result = plan(Desired("c", (member("ann", disk=150 * MiB),), PATHS), actual)
    volume = next(a for a in result.actions if a.kind == "volume")
    assert volume.after.size == 152 * MiB and volume.after.path == "/dev/class/home-ann"
    manifest = next(a for a in result.actions if a.kind == "manifest")
    assert manifest.after == "/dev/class/home-ann /h/ann"


def test_extent_rounding_causes_no_endless_resize():
    volumes = lvm.volumes_from(
        [{**LVS[0], "lv_size": str(152 * MiB)}], {}, PATHS, superblock=lambda p: Filesystem(152 * MiB, 100 * MiB)
    )
    mount = Mount("/h/ann", "/dev/class/home-ann", "ext4", frozenset({"nodev", "nosuid"}), (1001, 1001, 0o700))
    entry = ManifestEntry("/dev/class/home-ann", "/h/ann", "ext4", "nodev,nosuid,noatime")
    actual = snapshot(volumes, [mount], [entry], {"ann": account("ann", 1001)})
    assert plan(Desired("c", (member("ann", disk=150 * MiB),), PATHS), actual).empty


def test_disable_deactivates_after_unmounting_and_reenable_mounts_an_inactive_lv():
    active = lvm.volumes_from([LVS[0]], {}, PATHS, superblock=lambda p: Filesystem(128 * MiB, 100 * MiB))
    mount = Mount("/h/ann", "/dev/class/home-ann", "ext4", frozenset({"nodev", "nosuid"}), (1001, 1001, 0o700))
    entry = ManifestEntry("/dev/class/home-ann", "/h/ann", "ext4", "nodev,nosuid,noatime")
    converged = snapshot(active, [mount], [entry], {"ann": account("ann", 1001)})
    disabled = plan(Desired("c", (member("ann", status="disabled"),), PATHS), converged)
    assert [(a.op, a.kind) for a in disabled.actions] == [
        ("disable", "account"),
        ("disable", "mount"),
        ("disable", "manifest"),
    ]
    # an LV left active without its mount is deactivated (the unmount driver normally does it)
    leftover = snapshot(active, [], [], {"ann": account("ann", 1001, locked=True)})
    assert [
        (a.op, a.kind, a.to_json()["after"])
        for a in plan(Desired("c", (member("ann", status="disabled"),), PATHS), leftover).actions
    ] == [("disable", "volume", {"active": False})]
    inactive = lvm.volumes_from([{**LVS[0], "lv_active": ""}], {}, PATHS)
    reenable = plan(
        Desired("c", (member("ann"),), PATHS), snapshot(inactive, [], [], {"ann": account("ann", 1001, locked=True)})
    )
    assert not reenable.blocked  # an inactive LV's filesystem cannot be read yet: not a problem
    assert [(a.op, a.kind) for a in reenable.actions] == [
        ("update", "account"),
        ("create", "manifest"),
        ("create", "mount"),
        ("create", "ownership"),
    ]


def test_thin_pools_refuse_overcommit_beyond_the_ratio():
    from dataclasses import replace

    from reconciler.core.actions import Policy

    people = tuple(member(n) for n in ("ann", "bob", "cat"))  # 3 x 128 MiB
    actual = replace(snapshot({}), capacity=256 * MiB, capacity_of="the thin pool class/pool")
    refused = plan(Desired("c", people, PATHS), actual, Policy(max_overcommit=1.0)).refused
    assert [n.rule for n in refused] == ["overcommit"] and "384 MiB" in refused[0].message
    assert not plan(Desired("c", people, PATHS), actual, Policy(max_overcommit=1.5)).refused
    assert not plan(Desired("c", people, PATHS), replace(actual, capacity=None)).refused  # thick LVs
