"""Volumes in use: never check, resize or remove a filesystem that is mounted anywhere (issue: live volumes).

A running server's container holds a bind mount of its person's home in a mount namespace of its own.
These tests make that with `unshare -m` + a bind mount + a sleeping process, exactly what the
container does, and check that reconcile leaves such a volume alone (the change waits, exit 4) and
applies the change in the first pass after the holder is gone.  This machine's root lacks
CAP_SYS_RESOURCE, so every resize here is an offline one; online growth is tested in the VM.
"""

import subprocess

import pytest

from hostkit import host_ready
from nskit import Holder
from reconciler.config.sizes import MiB

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")
SIZE = 128 * MiB


@pytest.fixture
def held(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}])
    assert room.cli().returncode == 0
    home = room.paths.home(room.user("ann"))
    (home / "work.txt").write_text("a student's file")
    holder = Holder(home, room.root / "inside")
    try:
        yield room, holder
    finally:
        holder.stop()


def test_raising_the_quota_waits_while_a_server_holds_the_volume(held):
    room, holder = held
    ann = room.user("ann")
    before = holder.size()
    room.write([{"username": "ann", "disk": "256Mi"}, {"username": "bob", "disk": "256Mi"}])

    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and f"~ volume     {ann}" in preview.stdout
    assert "waits:" in preview.stdout and "another mount namespace" in preview.stdout  # seen before any work

    out = room.cli()
    assert out.returncode == 4, out.stdout + out.stderr  # done, except what waits
    assert "waiting: " + ann in out.stderr
    volumes = room.observe().volumes
    assert volumes[ann].fs.size == SIZE and holder.size() == before  # untouched: no fsck, no resize2fs
    assert volumes[room.user("bob")].fs.size == 2 * SIZE  # the others are not held up
    journal = room.paths.journal.read_text()
    assert f'"kind": "volume", "target": "{ann}"' not in journal.split("\n")[-2]  # nothing done, nothing journaled

    again = room.cli()
    assert again.returncode == 4 and "grown" not in again.stderr  # no repeated work while waiting

    holder.stop()
    done = room.cli()
    assert done.returncode == 0, done.stdout + done.stderr
    volume = room.observe().volumes[ann]
    assert volume.size == volume.fs.size == 2 * SIZE
    assert (room.paths.home(ann) / "work.txt").read_text() == "a student's file"
    assert room.cli("--dry-run").returncode == 0


def test_a_shrink_never_runs_on_a_held_volume(held):
    room, holder = held
    ann = room.user("ann")
    room.write([{"username": "ann", "disk": "256Mi"}, {"username": "bob"}])
    holder.stop()
    assert room.cli().returncode == 0  # grown (offline: nothing holds it now)
    holder2 = Holder(room.paths.home(ann), room.root / "inside2")
    try:
        room.write([{"username": "ann", "disk": "128Mi"}, {"username": "bob"}])
        out = room.cli()
        assert out.returncode == 4, out.stdout + out.stderr
        assert room.observe().volumes[ann].fs.size == 2 * SIZE
        assert holder2.size() > SIZE
    finally:
        holder2.stop()
    assert room.cli().returncode == 0
    assert room.observe().volumes[ann].fs.size == SIZE
    assert (room.paths.home(ann) / "work.txt").read_text() == "a student's file"


def test_a_volume_held_after_the_host_unmounted_it_is_not_mounted_twice(held):
    """An admin unmounted the home by hand while the server kept running: no second loop device, no purge."""
    room, holder = held
    ann = room.user("ann")
    home = room.paths.home(ann)
    subprocess.run(["umount", str(home)], check=True)
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and "another mount namespace" in preview.stdout
    out = room.cli()
    assert out.returncode == 4, out.stdout + out.stderr
    loops = subprocess.run(["losetup", "-j", str(room.volumes.image(ann))], capture_output=True, text=True).stdout
    assert len(loops.strip().splitlines()) == 1  # still the one device the holder uses
    holder.stop()
    assert room.cli().returncode == 0
    assert (home / "work.txt").read_text() == "a student's file"
