"""Collecting an assignment with the real `reconcile` on the real host: the collection area's own volume (root's
and the teachers', nothing for students), each student collected once at their own due time (extensions), work
changed in the late window collected again and marked late with the first copy kept, `reconcile assignments`."""

import datetime
import json
import os
import stat
import subprocess
import time

import pytest

from hostkit import host_ready

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")


def stamp(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"  # UTC, the file's default zone, to the second


def test_an_assignment_is_collected_at_each_students_due_time_and_late_work_again(classroom):
    room = classroom
    room.root.chmod(0o755)
    source = room.root / "shared" / "hw1"
    source.mkdir(parents=True)
    (source / "exercise.ipynb").write_text('{"cells": []}')
    source.chmod(0o755)
    (source / "exercise.ipynb").chmod(0o644)
    now = datetime.datetime.now(datetime.UTC)
    due = now + datetime.timedelta(seconds=6)
    work = {
        "name": "hw1",
        "source": "hw1",
        "release": stamp(now - datetime.timedelta(hours=1)),
        "due": stamp(due),
        "late_until": stamp(now + datetime.timedelta(days=2)),
        "extensions": {room.user("bob"): "3d"},
    }
    people = [{"username": "ann"}, {"username": "bob"}]
    teachers = [{"username": "tom"}]
    room.write(people, admins=teachers, assignments=[work], collection_disk="128Mi")

    first = room.cli()  # accounts, homes, the handouts and the collection area; nothing due yet
    assert first.returncode == 0, first.stdout + first.stderr
    area = room.root / "collected"
    info = os.stat(area)
    teachers_gid = room.observe().groups[f"{room.name}-teachers"].gid
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, teachers_gid, 0o2770)
    assert any(line.split()[4] == str(area) for line in open("/proc/self/mountinfo"))  # its own volume
    ann, bob = room.user("ann"), room.user("bob")
    denied = subprocess.run(
        ["setpriv", f"--reuid={ann}", f"--regid={ann}", "--clear-groups", "ls", str(area)], capture_output=True
    )
    assert denied.returncode != 0  # students have no way in

    time.sleep(max(0.0, (due - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1)
    preview = room.cli("--dry-run")
    assert preview.stdout.count("+ collection") == 1 and ann in preview.stdout, preview.stdout  # bob: extended
    assert "1 extension(s) still running" in preview.stdout and "late work for hw1 is collected until" in preview.stdout
    second = room.cli()
    assert second.returncode == 0, second.stdout + second.stderr
    submitted = area / "submitted" / ann / "hw1"
    assert (submitted / "exercise.ipynb").read_text() == '{"cells": []}'
    assert (submitted / "timestamp.txt").read_text().strip().endswith(" UTC")
    manifest = json.loads((area / "manifests" / "hw1" / f"{ann}.json").read_text())
    assert manifest["status"] == "on time" and [f["path"] for f in manifest["files"]] == ["exercise.ipynb"]
    assert not (area / "submitted" / bob).exists()
    again = room.cli("--dry-run")
    assert again.returncode == 0 and "+ collection" not in again.stdout, again.stdout  # nothing new to collect

    (room.paths.home(ann) / "assignments" / "hw1" / "exercise.ipynb").write_text('{"cells": ["late answer"]}')
    late = room.cli("--dry-run")
    assert "changed since it was collected (on time)" in late.stdout, late.stdout
    assert room.cli().returncode == 0
    assert (submitted / "exercise.ipynb").read_text() == '{"cells": ["late answer"]}'
    assert json.loads((area / "manifests" / "hw1" / f"{ann}.json").read_text())["status"] == "late"
    kept = list((area / "earlier" / "hw1" / ann).iterdir())
    assert len(kept) == 1 and (kept[0] / "exercise.ipynb").read_text() == '{"cells": []}'  # the first copy stays
    assert room.cli("--dry-run").returncode == 0
    # late work that keeps changing is copied again at most every ten minutes (or in the window's last minute)
    (room.paths.home(ann) / "assignments" / "hw1" / "exercise.ipynb").write_text('{"cells": ["later still"]}')
    assert room.cli("--dry-run").returncode == 0

    shown = room.cli("assignments", "--json")
    assert shown.returncode == 0, shown.stderr
    hw1 = json.loads(shown.stdout)["assignments"][0]
    assert hw1["stage"] == "late window open" and hw1["handed_out"] == 2
    assert hw1["submissions"] == {"on time": 0, "late": 1, "missing": 0, "not yet": 1}
    text = room.cli("assignments").stdout
    assert f"{bob}" in text and "not collected yet (extended to" in text and "late" in text
    status = room.cli("status").stdout
    assert "assignment hw1: handed out 2; on time 0, late 1, missing 0, not collected yet 1" in status, status


def as_student(user: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "sh", "-c", command],
        capture_output=True,
        text=True,
    )


def test_feedback_reaches_each_student_read_only_and_never_through_a_symlink(classroom):
    room = classroom
    room.root.chmod(0o755)
    source = room.root / "shared" / "hw1"
    source.mkdir(parents=True)
    (source / "exercise.ipynb").write_text("{}")
    source.chmod(0o755)
    (source / "exercise.ipynb").chmod(0o644)
    now = datetime.datetime.now(datetime.UTC)
    work = {
        "name": "hw1",
        "source": "hw1",
        "release": stamp(now - datetime.timedelta(hours=3)),
        "due": stamp(now - datetime.timedelta(hours=2)),
        "feedback": stamp(now - datetime.timedelta(hours=1)),
    }
    room.write([{"username": "ann"}, {"username": "bob"}], assignments=[work], collection_disk="128Mi")
    assert room.cli().returncode in (0, 4)  # the area is mounted in this pass: collected and returned at the next
    ann, bob = room.user("ann"), room.user("bob")
    area = room.root / "collected"
    written = area / "feedback" / ann / "hw1"
    written.mkdir(parents=True)
    (written / "exercise.html").write_text("<p>7/10</p>")
    (written / "notes").mkdir()
    (written / "notes" / "more.txt").write_text("see me")
    (written / "secret").symlink_to("/etc/shadow")
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "+ feedback" in out.stdout and bob not in [
        line.split()[2] for line in out.stdout.splitlines() if "+ feedback" in line
    ]
    given = room.paths.home(ann) / "assignments" / "hw1" / "feedback"
    assert (given / "exercise.html").read_text() == "<p>7/10</p>" and (given / "notes" / "more.txt").exists()
    assert not os.path.lexists(given / "secret")  # a symlink in the area is never followed, nor copied
    modes = {p.name: (p.stat().st_uid, stat.S_IMODE(p.stat().st_mode)) for p in (given, given / "exercise.html")}
    assert modes == {"feedback": (0, 0o555), "exercise.html": (0, 0o444)}
    assert as_student(ann, f"cat {given}/exercise.html").stdout == "<p>7/10</p>"
    assert as_student(ann, f"echo 10/10 > {given}/exercise.html").returncode != 0  # read-only for them
    assert room.cli("--dry-run").returncode == 0  # returned once

    (written / "exercise.html").write_text("<p>8/10 after a regrade</p>")
    again = room.cli()
    assert again.returncode == 0 and "written again since it was returned" in again.stdout, again.stdout
    assert (given / "exercise.html").read_text() == "<p>8/10 after a regrade</p>"
    assert [p.name for p in given.parent.iterdir() if p.name.startswith(".")] == []  # no staging, no old copy

    # a feedback folder the student made is theirs: never replaced, that return waits and says why
    subprocess.run(["rm", "-rf", str(given)], check=True)
    assert as_student(ann, f"mkdir {given} && echo mine > {given}/exercise.html").returncode == 0
    (written / "exercise.html").write_text("<p>9/10</p>")
    theirs = room.cli()
    assert theirs.returncode != 0 and "the student's own" in theirs.stdout + theirs.stderr
    assert (given / "exercise.html").read_text().strip() == "mine"
