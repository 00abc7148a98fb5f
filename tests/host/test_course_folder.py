"""The course folder on a volume of its own (classroom.yaml's shared_disk), on real loop devices and ext4.

Course material must not fill the host's disk: the folder gets a quota volume that reconcile makes,
mounts (root and the teachers' group, setgid 2775), lists in the mount manifest, resizes and reports
like a person's home.  Every running server holds a bind mount of it, made here by a `Holder` (a
mount namespace of its own, as a container has): an offline resize then waits for all of them.
"""

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from hostkit import host_ready
from nskit import Holder
from reconciler.config.sizes import MiB
from reconciler.host import facts

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")
SHARED = "_shared"


def mounted_at(path: Path) -> bool:
    return any(facts.unescape(line.split()[4]) == str(path) for line in open("/proc/self/mountinfo"))


def test_the_course_folder_lives_on_its_own_volume(classroom):
    room = classroom
    folder = room.root / "shared"  # <homes>/../shared: the default course folder
    room.write([{"username": "ann"}], admins=[{"username": "tom"}], shared_disk="128Mi")
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and f"+ volume     {SHARED}" in preview.stdout, preview.stdout
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr

    assert mounted_at(folder)
    volume = room.observe().volumes[SHARED]
    assert volume.size == volume.fs.size == 128 * MiB
    st = folder.stat()
    teachers = facts.read_groups(Path("/etc/group"))[f"{room.name}-teachers"]
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, teachers.gid, 0o2775)
    assert f"{room.paths.state}/volumes/{SHARED}.img {folder} ext4" in room.paths.manifest.read_text()

    # material that does not fit fills the folder's volume, never the host's disk
    with pytest.raises(OSError) as full, open(folder / "dataset.bin", "wb") as handle:
        for _ in range(160):
            handle.write(b"\0" * MiB)
            handle.flush()
            os.fsync(handle.fileno())
    assert full.value.errno == errno.ENOSPC
    (folder / "dataset.bin").unlink()
    (folder / "lesson1.ipynb").write_text("{}")

    status = room.cli("status")
    assert f"course folder: {folder} on its own volume" in status.stdout, status.stdout
    assert SHARED not in status.stdout.split("course folder")[0]  # not a person in the table
    assert room.cli("--dry-run").returncode == 0

    # at boot: mount-all mounts it again like every home
    subprocess.run(["umount", str(folder)], check=True)
    assert room.cli("mount-all").returncode == 0
    assert mounted_at(folder) and (folder / "lesson1.ipynb").read_text() == "{}"

    # raised while two servers hold the folder: the offline resize (room.cli runs without CAP_SYS_RESOURCE, so
    # online growth is refused on any host) waits for both, and applies in the first pass after they stop
    room.write([{"username": "ann"}], admins=[{"username": "tom"}], shared_disk="256Mi")
    holders = []
    try:  # each holder made inside the cleanup's reach: one failing to start leaves the other stopped
        for _ in range(2):
            holders.append(Holder(folder, Path(tempfile.mkdtemp(prefix="reconcile-holder-"))))
        before = holders[0].size()
        out = room.cli()
        assert out.returncode == 4, out.stdout + out.stderr  # it waited, untouched
        assert f"waiting: {SHARED}" in out.stderr
        assert room.observe().volumes[SHARED].fs.size == 128 * MiB
        assert all(holder.size() == before for holder in holders)
    finally:
        for holder in holders:
            holder.stop()
            holder.inside.rmdir()
    assert room.cli().returncode == 0
    volume = room.observe().volumes[SHARED]
    assert volume.size == volume.fs.size == 256 * MiB
    assert (folder / "lesson1.ipynb").read_text() == "{}"

    # removing shared_disk keeps the volume (it holds the course's files): nothing to do
    room.write([{"username": "ann"}], admins=[{"username": "tom"}])
    assert room.cli("--dry-run").returncode == 0
    assert mounted_at(folder)


def test_files_already_in_the_folder_block_only_the_folder(classroom):
    room = classroom
    folder = room.root / "shared"
    folder.mkdir()
    (folder / "notes.md").write_text("written before the folder had a volume")
    room.write([{"username": "ann"}], shared_disk="128Mi")
    out = room.cli()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "already holds files on the host's disk" in out.stdout + out.stderr
    assert not mounted_at(folder) and (folder / "notes.md").exists()  # nothing hidden under a mount
    assert room.observe().accounts[room.user("ann")]  # the class itself converged

    os.rename(folder, room.root / "shared.old")
    assert room.cli().returncode == 0
    assert mounted_at(folder)
