"""The LVM backend on real LVM, run INSIDE the test VM by test_lvm_vm.py (not collected on the host).

The same behaviours the loop backend is tested for on the host: create, an idempotent second
pass, online grow with data intact, a blocked shrink below what is stored, an allowed offline
shrink, disable keeps the data, re-enable, purge; observe costs one `lvs` and one `vgs`; and a
"reboot" (unmount, deactivate, detach the PV's loop device) followed by `reconcile mount-all`.
Everything runs in-process (`cli.main`): Python starts slowly under TCG.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from nskit import Holder

from reconciler.cli.main import main as cli
from reconciler.config.load import load_site
from reconciler.config.sizes import MiB
from reconciler.core.archive import Manifest
from reconciler.host import observe as host_observe
from reconciler.host.run import Runner
from reconciler.host.volumes import backend_for


def observe(root, run=None):
    """The batch observe of the room at ``root``, with its site's backend (LVM here)."""
    settings = site(root)
    return host_observe.observe(settings.paths, backend_for(settings, run or Runner()))


ROOT = Path("/tmp/lvmclass")
VG = "classvg"
PV_FILE = ROOT / "pv.img"


@pytest.fixture(scope="module")
def room():
    ROOT.mkdir(parents=True, exist_ok=True)
    assert cli(["storage", "init", "--vg", VG, "--file", str(PV_FILE), "--size", "1G"]) == 0
    assert cli(["storage", "init", "--vg", VG, "--file", str(PV_FILE), "--size", "1G"]) == 0  # idempotent
    (ROOT / "site.yaml").write_text(
        yaml.safe_dump(
            {
                "state_dir": "state",
                "homes_dir": "homes",
                "max_disable_fraction": 1.0,
                "volumes": {"backend": "lvm", "vg": VG, "pv_file": str(PV_FILE)},
            }
        )
    )
    return ROOT


def write(root, students):
    doc = {
        "version": 1,
        "name": "lvmc",
        "quotas": {"default": {"memory": "256Mi", "cpu": 1, "disk": "100Mi"}},
        "students": students,
    }
    (root / "classroom.yaml").write_text(yaml.safe_dump(doc))


def reconcile(root, *args):
    return cli(["--site", str(root / "site.yaml"), "-f", str(root / "classroom.yaml"), *args])


def site(root):
    return load_site(root / "site.yaml")


def lvs():
    out = subprocess.run(
        ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size,lv_active", VG],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {lv["lv_name"]: lv for lv in json.loads(out)["report"][0]["lv"]}


def test_create_and_second_pass_changes_nothing(room):
    write(room, [{"username": "ann", "name": "Ann"}, {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"}])
    assert reconcile(room) == 0
    assert reconcile(room, "--dry-run") == 0
    lv = lvs()
    assert int(lv["home-ann"]["lv_size"]) == 100 * MiB
    assert int(lv["home-b+tmeta"]["lv_size"]) == 152 * MiB  # whole 4 MiB extents, planned as such
    paths = site(room).paths
    actual = observe(room)
    assert actual.volumes["b_tmeta"].fs.size == 152 * MiB
    home = paths.home("ann")
    st = os.stat(home)
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (actual.accounts["ann"].uid, "0o700")
    assert actual.mounts[str(home)].source == "/dev/classvg/home-ann"
    assert "/dev/classvg/home-ann" in paths.manifest.read_text()
    (home / "work.txt").write_text("important")


def test_observe_runs_one_lvs_and_one_vgs(room, monkeypatch):
    calls = []

    class Counting(Runner):
        def run(self, argv, *a, **k):
            calls.append(argv[0])
            return super().run(argv, *a, **k)

    observe(room, Counting())
    assert sorted(calls) == ["lvs", "vgs"]


def test_grow_online_keeps_data(room):
    write(
        room,
        [{"username": "ann", "name": "Ann", "disk": "200Mi"}, {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"}],
    )
    assert reconcile(room) == 0
    actual = observe(room)
    assert actual.volumes["ann"].size == actual.volumes["ann"].fs.size == 200 * MiB
    assert str(site(room).paths.home("ann")) in actual.mounts  # stayed mounted: grown online
    assert (site(room).paths.home("ann") / "work.txt").read_text() == "important"
    assert reconcile(room, "--dry-run") == 0


def test_a_held_volume_grows_online_for_its_holder_but_a_shrink_waits(room):
    """A running server (here: a mount namespace with a bind mount) sees its home grow at once; a shrink waits."""
    home = site(room).paths.home("ann")
    holder = Holder(home, ROOT / "inside")
    try:
        before = holder.size()
        write(
            room,
            [
                {"username": "ann", "name": "Ann", "disk": "240Mi"},
                {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"},
            ],
        )
        assert reconcile(room) == 0  # online: lvextend -r on the mounted LV
        assert holder.size() > before + 30 * MiB  # the holder's own statvfs shows the new size
        assert int(lvs()["home-ann"]["lv_size"]) == 240 * MiB
        write(
            room,
            [
                {"username": "ann", "name": "Ann", "disk": "200Mi"},
                {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"},
            ],
        )
        assert reconcile(room) == 4  # a shrink needs it offline: it waits
        assert int(lvs()["home-ann"]["lv_size"]) == 240 * MiB
    finally:
        holder.stop()
    assert reconcile(room) == 0
    assert int(lvs()["home-ann"]["lv_size"]) == 200 * MiB
    assert (home / "work.txt").read_text() == "important"
    assert reconcile(room, "--dry-run") == 0


def test_shrink_below_used_is_blocked_and_an_allowed_one_is_done_offline(room):
    home = site(room).paths.home("ann")
    with open(home / "big.bin", "wb") as handle:
        handle.write(os.urandom(120 * MiB))
    write(
        room,
        [{"username": "ann", "name": "Ann", "disk": "100Mi"}, {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"}],
    )
    assert reconcile(room) == 1  # ann is blocked (her volume keeps its size); nobody else is held up
    assert int(lvs()["home-ann"]["lv_size"]) == 200 * MiB
    (home / "big.bin").unlink()
    assert reconcile(room) == 0
    actual = observe(room)
    assert actual.volumes["ann"].size == actual.volumes["ann"].fs.size == 100 * MiB
    assert (home / "work.txt").read_text() == "important"
    assert reconcile(room, "--dry-run") == 0


def export(room, user, out):
    assert reconcile(room, "export", user, "--out", str(out)) == 0
    newest = max(out.glob(f"{user}-*.manifest.json"), key=os.path.getmtime)
    return Manifest.from_json(newest.read_text())


def test_export_a_mounted_volume_through_a_snapshot_that_is_removed_after(room, tmp_path):
    home = site(room).paths.home("ann")
    holder = Holder(home, tmp_path / "inside")  # a running server holds the home
    try:
        manifest = export(room, "ann", tmp_path / "out")
    finally:
        holder.stop()
    assert manifest.view == "an LVM snapshot of the mounted volume"
    assert {e.path for e in manifest.entries} >= {"work.txt"}
    assert not [name for name in lvs() if name.startswith("export-")]  # the snapshot is gone
    assert not list((site(room).paths.state / "snapshots").iterdir())
    assert reconcile(room, "--dry-run") == 0


def test_disable_deactivates_and_keeps_data_then_reenable(room, tmp_path):
    write(
        room,
        [
            {"username": "ann", "name": "Ann", "status": "disabled"},
            {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"},
        ],
    )
    assert reconcile(room) == 0
    assert lvs()["home-ann"]["lv_active"] == ""
    assert reconcile(room, "--dry-run") == 0  # deactivated in the same pass as the unmount
    manifest = export(room, "ann", tmp_path / "out")  # the unmounted volume, activated for the export only
    assert manifest.view == "the unmounted volume" and "work.txt" in {e.path for e in manifest.entries}
    assert lvs()["home-ann"]["lv_active"] == ""
    assert reconcile(room, "--dry-run") == 0
    write(room, [{"username": "ann", "name": "Ann"}, {"username": "b_tmeta", "name": "Bee", "disk": "150Mi"}])
    assert reconcile(room) == 0
    assert (site(room).paths.home("ann") / "work.txt").read_text() == "important"
    assert reconcile(room, "--dry-run") == 0


def test_reboot_then_mount_all_brings_every_active_volume_back(room):
    paths = site(room).paths
    for user in ("ann", "b_tmeta"):
        subprocess.run(["umount", str(paths.home(user))], check=True)
    subprocess.run(["vgchange", "-an", VG], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "-j", str(PV_FILE)], capture_output=True, text=True).stdout.split(":")[0]
    subprocess.run(["losetup", "-d", loop], check=True)
    assert reconcile(room, "--dry-run") == 1  # the VG is unreachable until mount-all attaches its PV
    assert cli(["mount-all", "--site", str(room / "site.yaml")]) == 0
    assert (paths.home("ann") / "work.txt").read_text() == "important"
    assert reconcile(room, "--dry-run") == 0


def test_purge_needs_the_flag_and_removes_the_lv(room):
    write(room, [{"username": "ann", "name": "Ann"}, {"username": "b_tmeta", "name": "Bee", "status": "purged"}])
    assert reconcile(room) == 3
    assert "home-b+tmeta" in lvs()
    assert reconcile(room, "--allow-destroy") == 0
    assert "home-b+tmeta" not in lvs()
    assert reconcile(room, "--dry-run", "--allow-destroy") == 0


def test_thin_pool_volumes_and_the_overcommit_guard(tmp_path):
    root = Path("/tmp/thinclass")
    root.mkdir(exist_ok=True)
    assert cli(["storage", "init", "--vg", "thinvg", "--file", str(root / "pv.img"), "--size", "512M"]) == 0
    subprocess.run(
        ["lvcreate", "--yes", "--type", "thin-pool", "-L", "200M", "-n", "pool", "thinvg"],
        check=True,
        capture_output=True,
    )
    (root / "site.yaml").write_text(
        yaml.safe_dump(
            {
                "state_dir": "state",
                "homes_dir": "homes",
                "volumes": {"backend": "lvm", "vg": "thinvg", "thin_pool": "pool", "max_overcommit": 2.0},
            }
        )
    )
    write(root, [{"username": f"t{i}", "name": f"T {i}"} for i in range(3)])  # 300 MiB on a 200 MiB pool: 1.5x
    assert reconcile(root) == 0
    assert reconcile(root, "--dry-run") == 0
    out = subprocess.run(
        ["lvs", "--reportformat", "json", "-o", "lv_name,pool_lv", "thinvg"], capture_output=True, text=True, check=True
    ).stdout
    assert {lv["lv_name"]: lv["pool_lv"] for lv in json.loads(out)["report"][0]["lv"]}["home-t0"] == "pool"
    write(root, [{"username": f"t{i}", "name": f"T {i}"} for i in range(5)])  # 500 MiB: over 2x
    assert reconcile(root) == 3
    assert "home-t4" not in subprocess.run(["lvs", "thinvg"], capture_output=True, text=True).stdout
