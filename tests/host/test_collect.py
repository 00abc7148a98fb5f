"""Collecting a student's assignment on the real host: real accounts, their loop/ext4 homes mounted, the
collection area's own loop/ext4 volume, the driver called directly (host.collect).

A copy is one instant of the student's work (their home's writes paused: a writer goes on afterwards, and what
was collected is a whole prefix of what it wrote), in nbgrader's layout, root's and the teachers' (students read
nothing of it); a symlink is never followed; names of any bytes arrive as they are; what is over the submission
limit is listed, not collected; a full collection volume leaves nothing behind; the fingerprint sees every
change and nothing else; the ledger counts only the account that has the name now.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostkit import host_ready, wait_for
from reconciler.config.site import COLLECTION_VOLUME
from reconciler.core.actions import Action, CollectFields, Kind, Op
from reconciler.core.actual import Collected
from reconciler.host import collect as collection
from reconciler.host.drivers import Context
from reconciler.host.facts import HostFiles
from reconciler.host.ledger import LedgerDamaged
from reconciler.host.mounts import mount_fs
from reconciler.host.run import Runner, as_user
from reconciler.host.volumes.loop import MOUNT_OPTIONS, LoopBackend

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")

MiB = 1 << 20


class Room:
    """A classroom made by the real `reconcile` (ann and bob students, tom a teacher), with a collection area."""

    def __init__(self, classroom, area_size: int):
        self.room = classroom
        classroom.root.chmod(0o755)  # the area's parents are traversable, as on a server: only its own modes guard it
        classroom.write([{"username": "ann"}, {"username": "bob"}], admins=[{"username": "tom"}])
        done = classroom.cli()
        assert done.returncode == 0, done.stdout + done.stderr
        self.paths = classroom.paths
        self.backend = LoopBackend(self.paths, Runner(), HostFiles())
        self.backend.make_filesystem(COLLECTION_VOLUME, area_size)
        self.area = self.paths.collection_area
        mount_fs(Runner(), self.backend.layout.source(COLLECTION_VOLUME), self.area, MOUNT_OPTIONS)
        actual = classroom.observe()
        self.teachers = actual.groups[f"{classroom.name}-teachers"].gid
        os.chown(self.area, 0, self.teachers)
        os.chmod(self.area, 0o2770)  # as the planner makes it: root and the teachers (who write nbgrader's folders)
        self.uids = {short: actual.accounts[classroom.user(short)].uid for short in ("ann", "bob", "tom")}
        self.gids = {short: actual.accounts[classroom.user(short)].gid for short in ("ann", "bob", "tom")}
        self.ctx = Context(classroom.name, self.paths, self.backend, Runner(), HostFiles())

    def user(self, short: str) -> str:
        return self.room.user(short)

    def home(self, short: str) -> Path:
        return self.paths.home(self.user(short))

    def work(self, short: str, name: str = "hw1", files: dict | None = None) -> Path:
        """~/assignments/<name> of a student with ``files`` (relative path, str or bytes -> content), theirs."""
        folder = self.home(short) / "assignments" / name
        folder.mkdir(parents=True, exist_ok=True)
        for rel, data in (files or {}).items():
            path = os.path.join(os.fsencode(folder), os.fsencode(rel))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        self.chown(short)
        return folder

    def chown(self, short: str) -> None:
        uid, gid = self.uids[short], self.gids[short]
        subprocess.run(["chown", "-R", "-h", f"{uid}:{gid}", str(self.home(short) / "assignments")], check=True)

    def collect(self, short: str, name: str = "hw1", deadline: datetime.datetime | None = None, limit: int = 100 * MiB):
        deadline = deadline or datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        action = Action(
            Op.CREATE,
            Kind.COLLECTION,
            self.user(short),
            after=CollectFields(assignment=name, deadline=deadline.isoformat(), limit=limit),
        )
        return collection.collect(action, self.ctx)

    def submitted(self, short: str, name: str = "hw1") -> Path:
        return self.area / "submitted" / self.user(short) / name

    def manifest(self, short: str, name: str = "hw1") -> dict:
        return json.loads((self.area / "manifests" / name / f"{self.user(short)}.json").read_bytes())

    def ledger(self) -> dict:
        return json.loads(self.paths.collections.read_text())

    def as_person(self, short: str, *argv: str, groups: bool = False) -> subprocess.CompletedProcess:
        uid, gid = self.uids[short], self.gids[short]
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"] if groups else as_user(uid, gid)
        return subprocess.run([*prefix, *argv], capture_output=True)


@pytest.fixture
def room(classroom):
    return Room(classroom, 64 * MiB)


def tree(root: Path) -> dict[bytes, bytes | None]:
    """Relative path -> content (None for folders) of everything below ``root``, names as bytes."""
    found = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, base)
            found[rel] = None if os.path.isdir(path) else open(path, "rb").read()
    return found


def test_on_time_then_unchanged_then_late(room):
    files = {"exercise.ipynb": b'{"cells": []}', "data/points.csv": b"x,y\n1,2\n"}
    room.work("ann", files=files)
    started = datetime.datetime.now(datetime.UTC)
    said = room.collect("ann")
    assert said == "collected: 2 file(s), 21 B, on time", said

    copy = room.submitted("ann")
    assert tree(copy) == {
        b"exercise.ipynb": files["exercise.ipynb"],
        b"data": None,
        b"data/points.csv": files["data/points.csv"],
        b"timestamp.txt": (copy / "timestamp.txt").read_bytes(),
    }
    when = datetime.datetime.strptime((copy / "timestamp.txt").read_text().strip(), "%Y-%m-%d %H:%M:%S.%f %Z")
    assert abs(when.replace(tzinfo=datetime.UTC) - started) < datetime.timedelta(seconds=30)

    manifest = room.manifest("ann")
    assert manifest["status"] == "on time" and manifest["user"] == room.user("ann") and manifest["bytes"] == 21
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        rel: (len(data), hashlib.sha256(data).hexdigest()) for rel, data in files.items()
    }
    assert manifest["skipped"] == [] and manifest["earlier"] is None
    assert manifest["how"].startswith("read with the home's writes paused ")

    # root's and the teachers' group's: folders 0750, files 0640
    area = room.area
    folders = [area / "submitted", copy.parent, copy, copy / "data", area / "manifests", area / "manifests" / "hw1"]
    for path in folders:
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, room.teachers, 0o750), path
    for path in [copy / "exercise.ipynb", copy / "data" / "points.csv", copy / "timestamp.txt"]:
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, room.teachers, 0o640), path
    st = (area / ".staging").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o700)
    assert os.listdir(area / ".staging") == []

    # students read nothing of it (not even with the area itself open to them), teachers read it
    os.chmod(area, 0o2775)
    try:
        for what in (["cat", str(copy / "exercise.ipynb")], ["ls", str(area / "submitted")]):
            assert room.as_person("bob", *what).returncode != 0, what
        assert room.as_person("ann", "cat", str(area / "manifests" / "hw1" / f"{room.user('ann')}.json")).returncode
        assert room.as_person("tom", "cat", str(copy / "exercise.ipynb"), groups=True).stdout == files["exercise.ipynb"]
    finally:
        os.chmod(area, 0o2770)

    entry = room.ledger()["assignments"]["hw1"][room.user("ann")]
    assert entry["uid"] == room.uids["ann"] and entry["status"] == "on time"
    assert (entry["files"], entry["bytes"], entry["skipped"]) == (2, 21, 0)
    assert entry["fingerprint"] == collection.fingerprint(room.home("ann"), "hw1") != collection.MISSING

    # the same folder again: nothing to do
    assert room.collect("ann").startswith("already collected")
    assert not (area / "earlier").exists()

    # changed after the (student's own) deadline: late, the first copy kept under earlier/
    deadline = datetime.datetime.now(datetime.UTC)
    time.sleep(1.1)  # change times may count whole seconds
    with open(room.home("ann") / "assignments" / "hw1" / "exercise.ipynb", "ab") as handle:
        handle.write(b"\n")
    said = room.collect("ann", deadline=deadline)
    assert said.startswith("collected: 2 file(s), 22 B, late (changed ") and "the earlier copy is kept in" in said
    assert (copy / "exercise.ipynb").read_bytes() == files["exercise.ipynb"] + b"\n"
    kept = list((area / "earlier" / "hw1" / room.user("ann")).iterdir())
    assert len(kept) == 1 and (kept[0] / "exercise.ipynb").read_bytes() == files["exercise.ipynb"]
    assert (kept[0] / "timestamp.txt").exists() and kept[0].stat().st_mode & 0o7777 == 0o750
    old = area / "manifests" / "hw1" / "earlier" / f"{room.user('ann')}.{kept[0].name}.json"
    assert json.loads(old.read_text())["status"] == "on time"
    manifest = room.manifest("ann")
    assert manifest["status"] == "late" and manifest["earlier"] == f"earlier/hw1/{room.user('ann')}/{kept[0].name}"
    assert room.ledger()["assignments"]["hw1"][room.user("ann")]["status"] == "late"
    assert collection.read(room.paths.collections, {room.user("ann"): room.uids["ann"]})["hw1"][
        room.user("ann")
    ] == Collected("late", collection.fingerprint(room.home("ann"), "hw1"), entry_at(room, "ann"))

    # changed once more: the late copy it replaces is removed, the first (on-time) copy stays the only earlier one
    time.sleep(1.1)
    with open(room.home("ann") / "assignments" / "hw1" / "exercise.ipynb", "ab") as handle:
        handle.write(b"more\n")
    assert room.collect("ann", deadline=deadline).startswith("collected: 2 file(s)")
    assert (copy / "exercise.ipynb").read_bytes() == files["exercise.ipynb"] + b"\nmore\n"
    assert [p.name for p in (area / "earlier" / "hw1" / room.user("ann")).iterdir()] == [kept[0].name]
    assert room.manifest("ann")["earlier"] == f"earlier/hw1/{room.user('ann')}/{kept[0].name}"


def entry_at(room, short: str) -> str:
    return room.ledger()["assignments"]["hw1"][room.user(short)]["at"]


def test_a_symlink_is_never_followed(room):
    shadow = Path("/etc/shadow").read_bytes()
    # ann's ~/assignments is a symlink to a folder anyone may write (as /tmp is)
    outside = room.room.root / "outside"
    (outside / "hw1").mkdir(parents=True)
    (outside / "hw1" / "answer.txt").write_text("planted")
    home = room.home("ann")
    os.symlink(outside, home / "assignments")
    assert room.collect("ann") == "missing: ~/assignments is a symlink: not followed"
    assert collection.fingerprint(home, "hw1") == collection.MISSING
    assert not room.submitted("ann").exists()
    manifest = room.manifest("ann")
    assert manifest["status"] == "missing" and manifest["why"] == "~/assignments is a symlink: not followed"
    assert manifest["files"] == [] and manifest["newest_change"] is None
    entry = room.ledger()["assignments"]["hw1"][room.user("ann")]
    assert (entry["status"], entry["fingerprint"], entry["files"]) == ("missing", collection.MISSING, 0)

    # bob's files point at /etc/shadow and at /, and his hw2 at his hw1
    folder = room.work("bob", files={"notes.txt": b"mine"})
    os.symlink("/etc/shadow", folder / "x")
    (folder / "sub").mkdir()
    os.symlink("/", folder / "sub" / "root")
    os.symlink(folder, folder.parent / "hw2")
    room.chown("bob")
    said = room.collect("bob")
    assert said == "collected: 1 file(s), 4 B, on time; 2 file(s) not collected (2 symlink)", said
    got = tree(room.submitted("bob"))
    assert set(got) == {b"notes.txt", b"sub", b"timestamp.txt"}
    assert all(shadow not in (data or b"") for data in got.values())
    skipped = {item["path"]: item for item in room.manifest("bob")["skipped"]}
    assert skipped["x"]["kind"] == "symlink" and skipped["x"]["target"] == "/etc/shadow"
    assert skipped["sub/root"]["target"] == "/"
    assert room.collect("bob", "hw2") == "missing: ~/assignments/hw2 is a symlink: not followed"
    assert not room.submitted("bob", "hw2").exists()


def test_names_of_any_bytes_arrive_as_they_are(room):
    names = {
        b"line\nbreak.txt": b"1",
        b"\xff\xfe latin-1 \xe9.txt": b"2",
        b"-rf": b"3",
        b"x" * 251 + b".txt": b"4",  # 255 bytes: the longest name ext4 has
        b" spaced  name ": b"5",
        b"sub\ndir/-n": b"6",
        "ünïcödé.ipynb".encode(): b"7",
    }
    room.work("ann", files=names)
    said = room.collect("ann")
    assert said == "collected: 7 file(s), 7 B, on time", said
    got = tree(room.submitted("ann"))
    assert {rel: data for rel, data in got.items() if data is not None and rel != b"timestamp.txt"} == names
    manifest = json.loads((room.area / "manifests" / "hw1" / f"{room.user('ann')}.json").read_bytes().decode())
    shown = {item["path"] for item in manifest["files"]}
    assert shown == {rel.decode("utf-8", "backslashreplace") for rel in names}
    assert "\\xff\\xfe latin-1 \\xe9.txt" in shown and "line\nbreak.txt" in shown


def test_what_is_over_the_submission_limit_is_listed_not_collected(room):
    big = os.urandom(3 * MiB)
    room.work("ann", files={"a.txt": b"a" * 1000, "big.bin": big, "z.txt": b"z" * 2000})
    said = room.collect("ann", limit=MiB)
    assert said == ("collected: 2 file(s), 2.9 KiB, on time; 1 file(s) not collected (1 over the submission limit)"), (
        said
    )
    assert set(tree(room.submitted("ann"))) == {b"a.txt", b"z.txt", b"timestamp.txt"}
    manifest = room.manifest("ann")
    assert [item["path"] for item in manifest["skipped"]] == ["big.bin"]
    assert manifest["skipped"][0]["why"].startswith("over the submission limit")
    assert manifest["bytes"] == 3000 and room.ledger()["assignments"]["hw1"][room.user("ann")]["skipped"] == 1


def test_a_full_collection_volume_leaves_nothing_behind(classroom):
    room = Room(classroom, 16 * MiB)
    room.work("bob", "hw0", files={"small.txt": b"s"})
    assert room.collect("bob", "hw0").startswith("collected: 1 file(s)")
    ledger = room.paths.collections.read_bytes()
    room.work("ann", files={"one.bin": os.urandom(2 * MiB), "two.txt": b"t"})

    # the volume filled, all but 256 KiB
    filler = room.area / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * MiB)
        except OSError:
            pass
        handle.truncate(max(0, handle.tell() - 256 * 1024))
        os.fsync(handle.fileno())
    with pytest.raises(RuntimeError, match="the next pass tries again"):
        room.collect("ann")
    assert os.listdir(room.area / ".staging") == []
    assert not room.submitted("ann").exists()
    assert not (room.area / "manifests" / "hw1").exists() or os.listdir(room.area / "manifests" / "hw1") == []
    assert room.paths.collections.read_bytes() == ledger

    filler.unlink()  # room again: the next pass collects it
    assert room.collect("ann").startswith("collected: 2 file(s), 2 MiB, on time")


WRITER = r"""
import os, sys, time
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    os.write(log, n.to_bytes(8, "big") + bytes([n % 251]) * 4088)
    n += 1
    time.sleep(0.001)
"""
RECORD = 4096


def records(data: bytes) -> int:
    """How many whole records ``data`` holds, each the one expected at its place (AssertionError otherwise)."""
    assert len(data) % RECORD == 0, f"{len(data)} bytes: a record cut in half"
    for n in range(len(data) // RECORD):
        record = data[n * RECORD : (n + 1) * RECORD]
        assert record == n.to_bytes(8, "big") + bytes([n % 251]) * 4088, f"record {n} is not what was written"
    return len(data) // RECORD


def test_a_student_writing_meanwhile_goes_on_and_the_copy_is_one_instant(room):
    folder = room.work("ann", files={"notes.txt": b"n"})
    log = folder / "log.bin"
    writer = subprocess.Popen(
        [*as_user(room.uids["ann"], room.gids["ann"]), sys.executable, "-I", "-c", WRITER, str(log)],
        start_new_session=True,
    )
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 64 * RECORD, 30, "the student's writes")
        said = room.collect("ann")
        assert said.startswith("collected: 2 file(s)") and said.endswith("on time"), said
        assert writer.poll() is None, "the student's program must go on"
        collected = (room.submitted("ann") / "log.bin").read_bytes()
        count = records(collected)
        assert count >= 64
        size = len(collected)
        wait_for(lambda: log.stat().st_size > size + 16 * RECORD, 30, "the writes after the collection")
        assert log.read_bytes()[:size] == collected
        listed = {item["path"]: item for item in room.manifest("ann")["files"]}
        assert listed["log.bin"]["size"] == size
        assert listed["log.bin"]["sha256"] == hashlib.sha256(collected).hexdigest()
        assert float(room.manifest("ann")["how"].split()[-2]) < 60
    finally:
        if writer.poll() is None:
            os.killpg(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)


def test_the_fingerprint_sees_every_change_and_nothing_else(room):
    folder = room.work("ann", files={"a.txt": b"a", "sub/b.txt": b"b"})
    home = room.home("ann")
    first = collection.fingerprint(home, "hw1")
    assert first == collection.fingerprint(home, "hw1") and len(first) == 32
    # read, listed, as the student and as root: the same
    assert room.as_person("ann", "cat", str(folder / "a.txt"), str(folder / "sub" / "b.txt")).returncode == 0
    assert room.as_person("ann", "ls", "-laR", str(folder)).returncode == 0
    (folder / "sub" / "b.txt").read_bytes()
    assert collection.fingerprint(home, "hw1") == first

    st = (folder / "sub" / "b.txt").stat()
    os.utime(folder / "sub" / "b.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # touch
    touched = collection.fingerprint(home, "hw1")
    assert touched != first
    (folder / "c.txt").write_bytes(b"")
    added = collection.fingerprint(home, "hw1")
    assert added not in (first, touched)
    os.rename(folder / "c.txt", folder / "d.txt")
    assert collection.fingerprint(home, "hw1") not in (first, touched, added)

    # feedback returned into the folder is not the student's work: only the folder's own change time counts it
    (folder / "feedback").mkdir()
    (folder / "feedback" / "a.html").write_text("7/10")
    returned = collection.fingerprint(home, "hw1")
    (folder / "feedback" / "a.html").write_text("8/10 after a regrade")
    (folder / "feedback" / "b.html").write_text("more")
    assert collection.fingerprint(home, "hw1") == returned

    assert collection.fingerprint(home, "hw9") == collection.MISSING
    os.symlink(folder, folder.parent / "hw2")
    assert collection.fingerprint(home, "hw2") == collection.MISSING
    (folder.parent / "hw3").write_text("a file")
    assert collection.fingerprint(home, "hw3") == collection.MISSING
    assert collection.fingerprint(room.home("bob"), "hw1") == collection.MISSING  # no ~/assignments at all


def test_the_ledger_counts_the_account_that_has_the_name_now(tmp_path):
    path = tmp_path / "collections.json"
    assert collection.read(path, {"ann": 1001}) == {}
    entry = {"at": "2026-12-21T23:00:01+00:00", "status": "on time", "fingerprint": "f" * 32}
    data = {
        "format_version": 1,
        "assignments": {
            "hw1": {
                "ann": {"uid": 1001, **entry, "files": 1, "bytes": 1, "skipped": 0},
                "bob": {"uid": 1002, **entry, "status": "missing", "files": 0, "bytes": 0, "skipped": 0},
            }
        },
    }
    path.write_text(json.dumps(data))
    got = collection.read(path, {"ann": 1001, "bob": 2002})  # bob was made again: someone new
    assert got == {"hw1": {"ann": Collected("on time", "f" * 32, "2026-12-21T23:00:01+00:00")}}

    for damaged in ("{not json", json.dumps({"format_version": 2, "assignments": {}}), '{"format_version": 1}'):
        path.write_text(damaged)
        with pytest.raises(LedgerDamaged, match="nothing is collected until it is repaired"):
            collection.read(path, {"ann": 1001})
    data["assignments"]["hw1"]["ann"]["status"] = "whenever"
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerDamaged):
        collection.read(path, {"ann": 1001})


def test_what_a_teacher_plants_in_the_area_is_never_followed(room):
    # teachers write in the area (nbgrader's own folders): a symlink where this driver's folders go, or a folder
    # of theirs there, never lets root write, chown or remove elsewhere
    elsewhere = room.room.root / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, room.area / "submitted")
    room.work("ann", files={"a.txt": b"a"})
    with pytest.raises(RuntimeError, match="submitted in the collection area is not a folder"):
        room.collect("ann")
    assert os.listdir(elsewhere) == [] and os.listdir(room.area / ".staging") == []
    assert not room.paths.collections.exists()

    os.unlink(room.area / "submitted")
    os.mkdir(room.area / "submitted")
    os.chown(room.area / "submitted", room.uids["tom"], room.teachers)
    os.chmod(room.area / "submitted", 0o777)
    assert room.collect("ann").startswith("collected: 1 file(s)")
    st = (room.area / "submitted").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, room.teachers, 0o750)


def test_a_submission_is_bounded_in_entries_and_depth(room, monkeypatch):
    monkeypatch.setattr(collection, "MAX_ENTRIES", 8)
    monkeypatch.setattr(collection, "MAX_DEPTH", 2)
    room.work("ann", files={"a/b/c/deep.txt": b"d", **{f"f{n}.txt": b"f" for n in range(8)}})
    said = room.collect("ann")
    assert said.startswith("collected: ") and "1 nested deeper than 2 folders" in said, said
    assert "1 more than 8 entries" in said, said
    manifest = room.manifest("ann")
    assert {item["path"]: item["kind"] for item in manifest["skipped"]} == {"a/b/c": "folder", "": "more"}
    assert [item["path"] for item in manifest["files"]] == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]
    assert set(tree(room.submitted("ann"))) == {
        b"a",
        b"a/b",
        b"f0.txt",
        b"f1.txt",
        b"f2.txt",
        b"f3.txt",
        b"timestamp.txt",
    }
    # the fingerprint is the collection's, though the walk stopped
    fingerprint = collection.fingerprint(room.home("ann"), "hw1")
    assert room.ledger()["assignments"]["hw1"][room.user("ann")]["fingerprint"] == fingerprint
    (room.home("ann") / "assignments" / "hw1" / "f7.txt").write_bytes(b"changed, beyond the bound")
    assert collection.fingerprint(room.home("ann"), "hw1") == fingerprint  # not looked at
