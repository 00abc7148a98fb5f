"""End of term on the real host: export while a server writes, archive, restore (issue: ecosystem, §3).

Real loop volumes, real ext4, real users; a "running server" is a process in a mount namespace of its own with
a bind mount of the home (tests/nskit.Holder), writing all the while.  Archives are read back with GNU tar
and zstd as well as by the manifest check, restores run as the student through setpriv.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from hostkit import host_ready
from nskit import Holder
from reconciler.core.archive import Manifest

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")

RECORD = 4096
WRITER = r"""
import os, sys, time
home = sys.argv[1]
log = os.open(os.path.join(home, "log.bin"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    os.write(log, n.to_bytes(8, "big") + bytes([n % 251]) * 4088)
    n += 1
    if n % 8 == 0:
        with open(os.path.join(home, ".counter.tmp"), "w") as handle:
            handle.write(str(n))
        os.rename(os.path.join(home, ".counter.tmp"), os.path.join(home, "counter.txt"))
    time.sleep(0.001)  # a few MiB a second: the 128 MiB volume lasts the test
"""


def members(archive: Path) -> dict[str, bytes | None]:
    """Every member of a .tar.zst as GNU tar and zstd read it: regular files' content, None for the rest."""
    raw = subprocess.run(["zstd", "-dcq", str(archive)], capture_output=True, check=True).stdout
    out: dict[str, bytes | None] = {}
    import io

    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            data = tar.extractfile(member) if member.isreg() else None
            out[name] = data.read() if data is not None else None
    return out


def tree(root: Path) -> dict[str, tuple]:
    """path -> (kind, mode, sha256 or link target) of everything below root but lost+found."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if not (rel == "." and d == "lost+found")]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            key = os.path.normpath(os.path.join(rel, name))
            if stat.S_ISLNK(st.st_mode):
                found[key] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[key] = ("dir", stat.S_IMODE(st.st_mode))
            elif not stat.S_ISREG(st.st_mode):
                found[key] = ("other", stat.S_IMODE(st.st_mode))
            elif st.st_size > 1 << 30:  # a sparse giant: its length and its blocks, not 64 GiB of reading
                found[key] = ("file", stat.S_IMODE(st.st_mode), st.st_size)
            else:
                found[key] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return found


@pytest.fixture
def room(classroom):
    classroom.write([{"username": "ann"}, {"username": "bob"}])
    done = classroom.cli()
    assert done.returncode == 0, done.stdout + done.stderr
    return classroom


def leftovers(room) -> list[str]:
    """Views, copies and loop devices an export may have left behind."""
    scratch = room.paths.state / "snapshots"
    found = [str(p) for p in scratch.iterdir()] if scratch.exists() else []
    with open("/proc/self/mountinfo") as handle:
        found += [line.split()[4] for line in handle if str(scratch) in line]
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += [line for line in losetup.splitlines() if str(scratch) in line]
    return found


def test_export_while_the_server_writes_is_consistent_and_the_server_goes_on(room):
    ann = room.user("ann")
    home = room.paths.home(ann)
    (home / "notebook.ipynb").write_text('{"cells": []}')
    holder = Holder(home, room.root / "inside")
    writer = subprocess.Popen(
        ["nsenter", "-t", str(holder.proc.pid), "-m", sys.executable, "-c", WRITER, str(holder.inside)],
        start_new_session=True,
    )
    out = room.root / "out"
    try:
        time.sleep(1.0)  # it has written a few MiB
        done = room.cli("export", ann, "--out", str(out))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "verified" in done.stdout and "writes paused" in done.stdout
        before = (home / "log.bin").stat().st_size
        time.sleep(0.5)
        assert (home / "log.bin").stat().st_size > before, "the server's writes must go on after the export"
        assert writer.poll() is None
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait()
        holder.stop()

    archives = sorted(out.glob("*.tar.zst"))
    assert [a.name for a in archives] == [f"{ann}-{time.strftime('%Y%m%d', time.gmtime())}.tar.zst"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and stat.S_IMODE(archives[0].stat().st_mode) == 0o600
    files = members(archives[0])
    log = files["log.bin"]
    assert log and len(log) % RECORD == 0, "a torn copy: the log ends inside a record"
    records = len(log) // RECORD
    for i in range(records):  # every record whole and in order: one instant of the filesystem
        chunk = log[i * RECORD : (i + 1) * RECORD]
        assert int.from_bytes(chunk[:8], "big") == i and chunk[8:] == bytes([i % 251]) * 4088, f"record {i}"
    assert int(files["counter.txt"]) <= records  # the counter is written after the records it counts
    assert files["notebook.ipynb"] == b'{"cells": []}'

    manifest = Manifest.from_json(
        archives[0].with_name(archives[0].name.replace(".tar.zst", ".manifest.json")).read_text()
    )
    entry = {e.path: e for e in manifest.entries}["log.bin"]
    assert entry.size == len(log) and entry.sha256 == hashlib.sha256(log).hexdigest()
    assert manifest.archive_sha256 == hashlib.sha256(archives[0].read_bytes()).hexdigest()
    assert "lost+found" not in files
    assert leftovers(room) == []


def test_a_killed_export_never_leaves_a_home_frozen(room):
    """The writes of a frozen filesystem cannot even be killed; the thaw must not depend on the exporter living."""
    home = room.paths.home(room.user("ann"))
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom reconciler.host.tarball import writes_paused\n"
        "from reconciler.host.run import Runner\n"
        "with writes_paused(Path(sys.argv[1]), Runner()):\n    print('frozen', flush=True)\n    time.sleep(600)\n"
    )
    exporter = subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True)
    writer = None
    try:
        assert exporter.stdout.readline().strip() == "frozen"
        writer = subprocess.Popen(["sh", "-c", f"echo after > '{home}/after.txt'"])
        time.sleep(0.5)
        assert writer.poll() is None, "the home is frozen: the write waits"
        exporter.kill()  # SIGKILL: no finally, no atexit
        exporter.wait()
        deadline = time.monotonic() + 10
        while writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.poll() == 0, "the guard must thaw the home when the exporter dies"
        assert (home / "after.txt").read_text() == "after\n"
    finally:
        subprocess.run(["fsfreeze", "--unfreeze", str(home)], capture_output=True)  # never leave it frozen
        if exporter.poll() is None:
            exporter.kill()
        if writer is not None:
            writer.wait(timeout=30)


def fill(home: Path, uid: int, gid: int) -> None:
    """Files as a student has them: modes, an executable, a private folder, links, a sparse file, a fifo."""
    (home / "work").mkdir(mode=0o750)
    (home / "work" / "analysis.py").write_text("print('hello')\n")
    os.chmod(home / "work" / "analysis.py", 0o754)
    (home / "private").mkdir(mode=0o700)
    (home / "private" / "notes.md").write_bytes(os.urandom(200_000))
    os.chmod(home / "private" / "notes.md", 0o600)
    (home / "work" / "latest").symlink_to("analysis.py")
    os.link(home / "private" / "notes.md", home / "private" / "notes-hardlink.md")
    with open(home / "huge.sparse", "wb") as handle:  # 64 GiB long on a 128 MiB volume: never read whole
        handle.truncate(64 << 30)
        handle.seek(1 << 20)
        handle.write(b"the only data")
    os.mkfifo(home / "pipe", 0o640)
    for dirpath, dirnames, filenames in os.walk(home):
        dirnames[:] = [d for d in dirnames if d != "lost+found"]
        for name in dirnames + filenames + ["."]:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def test_restore_round_trips_bytes_and_permissions_into_another_home_as_its_owner(room):
    ann, bob = room.user("ann"), room.user("bob")
    source, target = room.paths.home(ann), room.paths.home(bob)
    owner = pwd.getpwnam(ann)
    fill(source, owner.pw_uid, owner.pw_gid)
    out = room.root / "out"
    exported = room.cli("export", ann, "--out", str(out))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "the unmounted volume" not in exported.stdout  # ann is active: a copy with writes paused
    archive = next(out.glob("*.tar.zst"))
    manifest = Manifest.from_json(next(out.glob("*.manifest.json")).read_text())
    sparse = {e.path: e for e in manifest.entries}["huge.sparse"]
    assert sparse.size == 64 << 30 and sparse.sha256 is None and sparse.allocated < 1 << 20
    assert archive.stat().st_size < 1 << 20  # the holes are not in the archive

    done = room.cli("restore", bob, "--from", str(archive), "--into", "from-ann")
    assert done.returncode == 0, done.stdout + done.stderr
    restored = target / "from-ann"
    assert tree(restored) == tree(source)
    big = restored / "huge.sparse"
    assert big.stat().st_size == 64 << 30 and big.stat().st_blocks * 512 < 1 << 20  # sparse again
    with open(big, "rb") as handle:
        handle.seek(1 << 20)
        assert handle.read(13) == b"the only data"
    assert (restored / "private" / "notes.md").stat().st_ino == (
        restored / "private" / "notes-hardlink.md"
    ).stat().st_ino
    assert stat.S_ISFIFO((restored / "pipe").lstat().st_mode)
    bob_uid = pwd.getpwnam(bob).pw_uid
    owners = {p.lstat().st_uid for p in [restored, *restored.rglob("*")]}
    assert owners == {bob_uid}, "restored files belong to the person restored into, never root or ann"

    again = room.cli("restore", bob, "--from", str(archive), "--into", "from-ann")
    assert again.returncode == 1 and "already exists" in again.stderr and "nothing was restored" in again.stderr


def test_restore_into_the_home_adds_and_never_overwrites(room):
    ann = room.user("ann")
    home = room.paths.home(ann)
    owner = pwd.getpwnam(ann)
    (home / "essay.txt").write_text("first draft\n")
    (home / "data.csv").write_text("a,b\n1,2\n")
    for name in ("essay.txt", "data.csv"):
        os.chown(home / name, owner.pw_uid, owner.pw_gid)
    out = room.root / "out"
    assert room.cli("export", ann, "--out", str(out)).returncode == 0
    archive = next(out.glob("*.tar.zst"))

    (home / "data.csv").unlink()  # lost by mistake
    (home / "essay.txt").write_text("second draft, better\n")  # changed since
    refused = room.cli("restore", ann, "--from", str(archive))
    assert refused.returncode == 1 and "essay.txt" in refused.stderr and "--into" in refused.stderr
    assert not (home / "data.csv").exists() and (home / "essay.txt").read_text() == "second draft, better\n"

    (home / "essay.txt").write_text("first draft\n")  # the same again: nothing to lose
    done = room.cli("restore", ann, "--from", str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "data.csv").read_text() == "a,b\n1,2\n" and (home / "data.csv").stat().st_uid == owner.pw_uid


def test_restore_refuses_a_damaged_archive_and_one_that_does_not_fit(room):
    ann, bob = room.user("ann"), room.user("bob")
    home = room.paths.home(ann)
    (home / "big.bin").write_bytes(os.urandom(60 << 20))
    (room.paths.home(bob) / "own.bin").write_bytes(os.urandom(60 << 20))  # bob's 128 MiB volume has ~40 MiB left
    out = room.root / "out"
    assert room.cli("export", ann, "--out", str(out)).returncode == 0
    archive = next(out.glob("*.tar.zst"))

    too_big = room.cli("restore", bob, "--from", str(archive), "--into", "ann")
    assert too_big.returncode == 1 and "raise the person's disk quota" in too_big.stderr
    assert not (room.paths.home(bob) / "ann").exists()

    damaged = out / "copy.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(data)
    (out / "copy.manifest.json").write_bytes(next(out.glob(f"{ann}-*.manifest.json")).read_bytes())
    refused = room.cli("restore", ann, "--from", str(damaged), "--into", "again")
    assert refused.returncode == 1 and "damaged or replaced" in refused.stderr
    assert not (home / "again").exists()


def test_a_crafted_archive_can_do_nothing_the_student_could_not(room):
    """A restore runs tar as the student.  Their own link out of the home (tar follows a directory link that is
    already there) leads nowhere they may write: as root it would plant a setuid file in a root-only folder."""
    ann = room.user("ann")
    owner = pwd.getpwnam(ann)
    victim = room.root / "root-only"
    victim.mkdir(mode=0o755)
    (room.paths.home(ann) / "escape").symlink_to(victim)
    os.chown(room.paths.home(ann) / "escape", owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    import io

    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"owned"
        member = tarfile.TarInfo("./escape/pwned")
        member.size, member.mode = len(data), 0o4755
        tar.addfile(member, io.BytesIO(data))
    archive = room.root / "out" / "crafted.tar.zst"
    archive.parent.mkdir()
    archive.write_bytes(
        subprocess.run(["zstd", "-q", "-c"], input=crafted.getvalue(), capture_output=True, check=True).stdout
    )
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = {
        "format": 1,
        "user": ann,
        "created": "2026-12-01T00:00:00+00:00",
        "view": "crafted",
        "archive": {"file": archive.name, "bytes": archive.stat().st_size, "sha256": digest},
        "volume_size": None,
        "files": 1,
        "content_bytes": 5,
        "entries": [
            {
                "path": "escape/pwned",
                "kind": "file",
                "mode": "4755",
                "size": 5,
                "allocated": 8192,
                "sha256": hashlib.sha256(b"owned").hexdigest(),
            }
        ],
    }
    (archive.parent / "crafted.manifest.json").write_text(json.dumps(manifest))
    done = room.cli("restore", ann, "--from", str(archive))
    assert list(victim.iterdir()) == [], done.stdout + done.stderr
    assert done.returncode == 1 and "Permission denied" in done.stderr, done.stderr


def test_archive_exports_the_archived_then_disables_them_once(room):
    ann, bob = room.user("ann"), room.user("bob")
    (room.paths.home(ann) / "thesis.tex").write_text("\\documentclass{article}")
    room.write([{"username": "ann", "status": "archived"}, {"username": "bob"}])
    out = room.root / "archives"
    done = room.cli("archive", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{ann}: {out}/{ann}-" in done.stdout and "verified" in done.stdout
    assert bob not in done.stdout.split("verified")[0]
    assert "status: archived" in done.stdout  # the pass disabled ann
    actual = room.observe()
    assert str(room.paths.home(ann)) not in actual.mounts
    assert "thesis.tex" in members(next(out.glob("*.tar.zst")))

    again = room.cli("archive", "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already archived" in again.stdout and len(list(out.glob("*.tar.zst"))) == 1

    fresh = room.cli("export", ann, "--out", str(out))  # the unmounted volume, read-only; a second name that day
    assert fresh.returncode == 0 and "the unmounted volume" in fresh.stdout, fresh.stdout + fresh.stderr
    assert len(list(out.glob("*.tar.zst"))) == 2
    status = room.cli("status")
    assert "archived" in status.stdout
    assert leftovers(room) == []


def test_export_refuses_to_fill_the_disk_it_writes_to(room):
    ann = room.user("ann")
    (room.paths.home(ann) / "data.bin").write_bytes(os.urandom(8 << 20))
    small = room.root / "small.img"
    subprocess.run(["truncate", "-s", "300M", str(small)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(small)], check=True)
    out = room.root / "small"
    out.mkdir()
    subprocess.run(["mount", "-o", "loop", str(small), str(out)], check=True)
    try:
        filler = out / "filler"
        free = os.statvfs(out).f_bavail * os.statvfs(out).f_frsize
        with open(filler, "wb") as handle:  # leave a little more than the reserve free: not enough for 8 MiB
            handle.truncate(0)
            os.posix_fallocate(handle.fileno(), 0, free - (258 << 20))
        done = room.cli("export", ann, "--out", str(out / "archives"))
        assert done.returncode == 1 and "must stay free" in done.stderr, done.stdout + done.stderr
        assert list((out / "archives").iterdir()) == []  # no partial archive left
    finally:
        subprocess.run(["umount", str(out)], check=True)
    assert leftovers(room) == []


def test_a_view_left_by_a_killed_export_is_cleared_by_the_next_pass(room):
    """A view (a read-only mount of a copy) that a SIGKILLed export leaves would keep a second loop device on the
    volume; the next applying pass clears it while no export runs."""
    ann = room.user("ann")
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom reconciler.config.load import load_site\n"
        "from reconciler.host.volumes import backend_for\n"
        "site = load_site(Path(sys.argv[1]))\nscratch = site.paths.state / 'snapshots'\n"
        "scratch.mkdir(mode=0o700, exist_ok=True)\nbackend_for(site).open_view(sys.argv[2], scratch)\n"
        "print('open', flush=True)\ntime.sleep(600)\n"
    )
    exporter = subprocess.Popen([sys.executable, "-c", code, str(room.site), ann], stdout=subprocess.PIPE, text=True)
    try:
        assert exporter.stdout.readline().strip() == "open"
    finally:
        exporter.kill()
        exporter.wait()
    assert leftovers(room), "the killed export left its view"
    done = room.cli()
    assert done.returncode == 0, done.stdout + done.stderr
    assert leftovers(room) == []
    (room.paths.home(ann) / "still.txt").write_text("writable")  # the home itself untouched, thawed, mounted
