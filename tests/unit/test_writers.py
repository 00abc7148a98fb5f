"""Writers of classroom.yaml that race: real processes writing in place and by rename, and the teacher API's
writes in threads, on a real file.  No root: the files are the test's own.

What must hold: a file being written in place is never read as the roster; no writer renames over bytes it did
not read (an editor's saves all survive); If-Match makes a write a compare-and-swap on the version the client
read; and a teacher reaches students only -- never another teacher's password, files or entry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from driverkit import FakeHost

from reconciler.config import settled
from reconciler.config import load
from reconciler.config.load import FileBusy, load_site, read_bytes
from reconciler.credentials import outbox
from reconciler.host import fsutil
from reconciler.host.fsutil import replace_if_unchanged
from reconciler.roster import edit
from reconciler.service import teacher

pytestmark = pytest.mark.unit

ROSTER = """\
# Python 101
version: 1
name: py101
quotas:
  default: {memory: 1Gi, cpu: 1, disk: 1Gi}
admins:
  - username: tea
    name: Tea Cher
  - username: tia
    name: Tia Cher
students:
""" + "".join(f"  - username: s{i:02d}\n    name: Student {i}\n" for i in range(20))

# A slow in-place writer, as scp or `cat > classroom.yaml` is: truncate, write the first part, say so, wait for a
# line on stdin, write the rest, close.
IN_PLACE = """
import sys
path, cut = sys.argv[1], int(sys.argv[2])
whole = sys.stdin.buffer.readline().decode().rstrip("\\n").replace("\\\\n", "\\n")
with open(path, "w") as out:
    out.write(whole[:cut]); out.flush()
    print("half", flush=True)
    sys.stdin.readline()
    out.write(whole[cut:])
"""


@pytest.fixture
def room(tmp_path):
    (tmp_path / "classroom.yaml").write_text(ROSTER)
    site = load_site(None).model_copy(update={"state_dir": tmp_path / "state", "hub": None})
    return teacher.Room(site, tmp_path / "classroom.yaml", FakeHost(tmp_path / "host").files())


class SlowWriter:
    """A process holding the file open for writing with only ``cut`` characters of ``whole`` in it."""

    def __init__(self, path, whole: str, cut: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", IN_PLACE, str(path), str(cut)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc.stdin.write(whole.replace("\n", "\\n") + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "half\n"

    def finish(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def usernames(path) -> list[str]:
    data = yaml.safe_load(path.read_text())
    return [p["username"] for section in ("admins", "students") for p in data.get(section) or []]


def leftovers(path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]


def test_a_file_being_written_in_place_is_not_read_until_it_is_closed(room):
    whole = ROSTER + "  - username: new\n    name: New One\n"
    cut = whole.index("  - username: s05")  # valid YAML: 15 students missing
    writer = SlowWriter(room.file, whole, cut)
    try:
        with pytest.raises(FileBusy) as busy:
            read_bytes(room.file, wait=0.1)
        assert f"pid {writer.proc.pid} (python" in str(busy.value)  # who holds it, for the log and the page
        found = {}
        reader = threading.Thread(target=lambda: found.setdefault("data", read_bytes(room.file, wait=30)))
        reader.start()
        time.sleep(0.2)  # the reader is waiting; nothing it could read now is whole
        assert "data" not in found
        writer.finish()
        reader.join(timeout=30)
        assert found["data"].decode() == whole
    finally:
        writer.kill()


def test_an_api_write_during_a_copy_waits_for_it_and_keeps_everyone(room):
    """The reported loss: the API read half a file, added its change and renamed it over the copy."""
    whole = ROSTER + "  - username: new\n    name: New One\n"
    writer = SlowWriter(room.file, whole, whole.index("  - username: s08"))
    try:
        with ThreadPoolExecutor(1) as pool:
            adding = pool.submit(teacher.add_student, room, "tea", {"username": "late", "name": "Late Comer"})
            time.sleep(0.3)
            assert not adding.done()  # waits for the copy to finish
            writer.finish()
            adding.result(timeout=30)
    finally:
        writer.kill()
    names = usernames(room.file)
    assert [f"s{i:02d}" for i in range(20)] == [n for n in names if n.startswith("s")]
    assert "new" in names and "late" in names and not leftovers(room.file)


def test_a_write_while_the_file_stays_open_for_writing_changes_nothing(room, monkeypatch):
    monkeypatch.setattr(edit, "read_version", lambda path: load.read_version(path, wait=0.1))
    writer = SlowWriter(room.file, ROSTER, len(ROSTER) - 10)
    try:
        with pytest.raises(FileBusy):  # the API answers 503 with Retry-After
            teacher.add_student(room, "tea", {"username": "x1", "name": "X"})
    finally:
        writer.finish()
    assert room.file.read_text() == ROSTER and not leftovers(room.file)


def test_an_editors_saves_all_survive_the_apis_writes(room):
    """30 saves by rename (an editor) race 20 teacher-API writers: every save is still in the file at the end.

    Each API write is a compare-and-swap on the bytes it read, so when the editor saved in between, the API's
    change is made again on the editor's version instead of renaming over it.  (The editor itself is no
    compare-and-swap: vim warns when the file changed since it was read; our writers must never need that.)"""
    stop = threading.Event()

    def editor():
        for n in range(30):
            text = room.file.read_text()
            tmp = room.file.with_name(f".classroom.yaml.swp{n}")
            tmp.write_text(text + f"  - username: e{n:02d}\n    name: Editor {n}\n")
            os.replace(tmp, room.file)
            time.sleep(0.02)  # a hand edit a keystroke apart: far faster than any teacher saves
        stop.set()

    def api(i: int) -> int:
        count = 0
        while not stop.is_set():
            teacher.change_student(room, "tea", f"s{i:02d}", {"name": f"Renamed {count}"})
            count += 1
        return count

    with ThreadPoolExecutor(21) as pool:
        writes = [pool.submit(api, i) for i in range(20)]
        pool.submit(editor).result(timeout=120)
        done = sum(w.result(timeout=120) for w in writes)
    assert done >= 20  # the API wrote while the editor saved
    names = usernames(room.file)
    assert [f"e{n:02d}" for n in range(30)] == [n for n in names if n.startswith("e")]
    assert not leftovers(room.file)


def test_if_match_is_a_compare_and_swap_on_the_version_read(room):
    version = room.etag()
    assert version == edit.etag(room.file.read_bytes())
    first = teacher.change_student(room, "tea", "s01", {"name": "First"}, expect={version})
    assert first.etag == edit.etag(room.file.read_bytes()) != version
    before = room.file.read_bytes()
    for stale in ({version}, {"not-a-version"}, set()):
        with pytest.raises(edit.Stale) as refused:
            teacher.change_student(room, "tea", "s01", {"name": "Second"}, expect=stale)
        assert refused.value.status == 412 and refused.value.current == first.etag
    assert room.file.read_bytes() == before

    # 20 teachers send the same version at once: one change is written, 19 are told to read again
    def patch(i: int) -> str:
        try:
            teacher.change_student(room, "tea", "s02", {"name": f"Winner {i}"}, expect={first.etag})
            return "written"
        except edit.Stale:
            return "stale"

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(patch, range(20)))
    assert results.count("written") == 1 and results.count("stale") == 19


def test_a_teacher_reaches_students_only(room):
    """No teacher prints, resets, exports or changes another teacher's credentials or entry: one rule (reach)."""
    box = outbox.Outbox(room.site.paths.outbox)
    secrets = {name: box.issue(name, name.capitalize(), (), "new account") for name in ("tia", "tea", "s01")}
    html, items = teacher.render_slips(room, everyone=True)
    assert [i["username"] for i in items] == ["s01"]
    assert secrets["s01"] in html and secrets["tia"] not in html and secrets["tea"] not in html
    # whatever a client sends back as "printed", another teacher's password stays in the outbox
    forged = [{"username": "tia", "password": secrets["tia"]}, *items]
    assert teacher.hand_out(room, "tea", forged) == ["s01"]
    assert sorted(outbox.pending(room.site.paths.outbox)) == ["tea", "tia"]
    for attempt in (
        lambda: teacher.reset_and_deliver(room, "tea", "tia"),
        lambda: teacher.student_download(room, "tea", "tia"),
        lambda: teacher.change_student(room, "tea", "tia", {"email": "mine@example.org"}),
        lambda: teacher.disable_student(room, "tea", "tia"),
    ):
        with pytest.raises(teacher.Refused) as refused:
            attempt()
        assert refused.value.status == 409 and "tia is a teacher" in refused.value.message
    assert teacher.reach(room.classroom()) == {f"s{i:02d}" for i in range(20)}


def test_the_swap_puts_back_a_version_it_did_not_read(tmp_path, monkeypatch):
    path = tmp_path / "classroom.yaml"
    path.write_text("one\n")
    seen = settled.read(path)
    tmp = tmp_path / "editor.tmp"
    tmp.write_text("two\n")
    os.replace(tmp, path)  # an editor saved after we read
    assert not replace_if_unchanged(path, "ours\n", seen, 0o644)
    assert path.read_text() == "two\n" and sorted(p.name for p in tmp_path.iterdir()) == ["classroom.yaml"]
    seen = settled.read(path)
    with open(path, "a") as in_place:  # the version we read, but somebody is writing into it right now
        in_place.write("three\n")
        in_place.flush()
        assert not replace_if_unchanged(path, "ours\n", seen, 0o644)
    assert path.read_text() == "two\nthree\n"
    # a save in the instant between the check and the swap (made to happen there): put back, nothing lost
    seen = settled.read(path)
    checked = fsutil._is

    def then_an_editor_saves(where, version):
        same = checked(where, version)
        if where == path:  # the check before the swap passed; now the editor's rename lands
            (tmp_path / "editor.tmp").write_text("four\n")
            os.replace(tmp_path / "editor.tmp", path)
        return same

    monkeypatch.setattr(fsutil, "_is", then_an_editor_saves)
    assert not replace_if_unchanged(path, "ours\n", seen, 0o644)
    monkeypatch.undo()
    assert path.read_text() == "four\n" and sorted(p.name for p in tmp_path.iterdir()) == ["classroom.yaml"]
    seen = settled.read(path)
    assert replace_if_unchanged(path, "ours\n", seen, 0o640)
    assert path.read_text() == "ours\n" and path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classroom.yaml"]
