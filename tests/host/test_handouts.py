"""Handing out an assignment on the real host: real accounts, loop volumes and ext4, the real `reconcile`.

At its release each active student gets their own copy of a course-folder folder in ~/assignments/<name>,
owned by them, with the usual modes; what only teachers may read stays back; their later work is never
overwritten; a student added after the release gets theirs; a symlink a student plants in their home is never
written through; and a copy that does not fit their disk leaves nothing half-made behind.
"""

import datetime
import json
import os
import stat
import time

import pytest

from hostkit import host_ready

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")


def moment(hours: float) -> str:
    """A release time ``hours`` from now, as a teacher writes it (UTC, the file's default zone)."""
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)
    return f"{when:%Y-%m-%d %H:%M}"


def material(folder, files: dict[str, tuple[str, int]]) -> None:
    for name, (text, mode) in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)


def test_an_assignment_reaches_every_student_as_their_own_files(classroom):
    room = classroom
    room.root.chmod(0o755)  # the course folder's parents are traversable, as on a server
    shared = room.root / "shared"
    material(
        shared / "hw1",
        {
            "exercise.ipynb": ('{"cells": []}', 0o444),  # the teacher's master copy, read-only
            "data/points.csv": ("x,y\n1,2\n", 0o644),
            "run.sh": ("#!/bin/sh\n", 0o755),
            "solutions.ipynb": ('{"answers": 42}', 0o600),  # teachers only: never handed out
        },
    )
    people = [{"username": "ann"}, {"username": "bob"}]
    later = [{"name": "hw1", "source": "hw1", "release": moment(+48)}]
    room.write(people, admins=[{"username": "tom"}], assignments=later)
    assert room.cli().returncode == 0
    preview = room.cli("--dry-run")
    assert preview.returncode == 0 and "> hw1 is released" in preview.stdout and "(in 1 d 23 h" in preview.stdout

    released = [{"name": "hw1", "source": "hw1", "release": moment(-1)}]
    room.write(people, admins=[{"username": "tom"}], assignments=released)
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and preview.stdout.count("+ handout") == 2, preview.stdout  # not the teacher
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    for short in ("ann", "bob"):
        user = room.user(short)
        copy = room.paths.home(user) / "assignments" / "hw1"
        uid = room.observe().accounts[user].uid
        assert (copy / "exercise.ipynb").read_text() == '{"cells": []}'
        assert (copy / "data" / "points.csv").read_text() == "x,y\n1,2\n"
        assert not (copy / "solutions.ipynb").exists()
        made = [copy.parent, copy, copy / "data", copy / "exercise.ipynb", copy / "run.sh"]
        assert {p.stat().st_uid for p in made} == {uid}
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in made[1:]}
        assert modes == {"hw1": 0o755, "data": 0o755, "exercise.ipynb": 0o644, "run.sh": 0o755}
        assert not list(copy.parent.glob(".*"))  # no staging folder left
    assert not (room.paths.home(room.user("tom")) / "assignments").exists()
    ledger = json.loads(room.paths.handouts.read_text())["assignments"]["hw1"]
    assert set(ledger) == {room.user("ann"), room.user("bob")}

    # the student's work is theirs: the course's copy changing, or the student emptying theirs, changes nothing
    ann_copy = room.paths.home(room.user("ann")) / "assignments" / "hw1" / "exercise.ipynb"
    ann_copy.write_text('{"cells": ["my answer"]}')
    (shared / "hw1" / "exercise.ipynb").chmod(0o644)
    (shared / "hw1" / "exercise.ipynb").write_text('{"cells": ["teacher edited"]}')
    (room.paths.home(room.user("bob")) / "assignments" / "hw1" / "data" / "points.csv").unlink()
    preview = room.cli("--dry-run")
    assert preview.returncode == 0 and "hw1's source changed after it was handed out" in preview.stdout, preview.stdout
    assert room.cli().returncode == 0
    assert ann_copy.read_text() == '{"cells": ["my answer"]}'
    assert not (room.paths.home(room.user("bob")) / "assignments" / "hw1" / "data" / "points.csv").exists()

    # an explicit rerelease: each student gets the files they never had (or removed), nothing of theirs replaced
    (shared / "hw1" / "extra.txt").write_text("new")
    (shared / "hw1" / "extra.txt").chmod(0o644)
    time.sleep(1.1)  # the rerelease (to the second) after every copy handed out so far
    again = [{**released[0], "rerelease": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S}"}]
    room.write(people, admins=[{"username": "tom"}], assignments=again)
    out = room.cli()
    assert out.returncode == 0 and out.stdout.count("only the files they never had") == 2, out.stdout + out.stderr
    assert ann_copy.read_text() == '{"cells": ["my answer"]}'
    for short in ("ann", "bob"):
        assert (room.paths.home(room.user(short)) / "assignments" / "hw1" / "extra.txt").read_text() == "new"
    assert (room.paths.home(room.user("bob")) / "assignments" / "hw1" / "data" / "points.csv").exists()
    assert "+ handout" not in room.cli("--dry-run").stdout  # once
    released = again

    # students added after the release get theirs in the pass that makes their homes
    people += [{"username": short} for short in ("cat", "dan", "eve")]
    room.write(people, admins=[{"username": "tom"}], assignments=released)
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    for short in ("cat", "dan", "eve"):
        assert (room.paths.home(room.user(short)) / "assignments" / "hw1" / "exercise.ipynb").exists()

    # symlinks planted by students to a folder anyone may write (as /tmp is): dan's where hw2's copy goes, eve's
    # in place of her whole ~/assignments.  Their copies fail, nothing is written there, the others get theirs
    outside = room.root / "outside"
    outside.mkdir()
    outside.chmod(0o1777)
    dan, eve = room.paths.home(room.user("dan")), room.paths.home(room.user("eve"))
    os.symlink(outside, dan / "assignments" / "hw2")
    os.rename(eve / "assignments", eve / "assignments.mine")
    os.symlink(outside, eve / "assignments")
    material(shared / "hw2", {"task.txt": ("do it", 0o644)})
    both = [*released, {"name": "hw2", "source": "hw2", "release": moment(-1)}]
    room.write(people, admins=[{"username": "tom"}], assignments=both)
    out = room.cli()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "assignments/hw2 is not a folder" in out.stderr and "~/assignments is not a folder" in out.stderr
    assert list(outside.iterdir()) == []
    for short in ("ann", "bob", "cat"):
        assert (room.paths.home(room.user(short)) / "assignments" / "hw2" / "task.txt").read_text() == "do it"
    got = json.loads(room.paths.handouts.read_text())["assignments"]["hw2"]
    assert set(got) == {room.user(short) for short in ("ann", "bob", "cat")}

    # more than a student's disk holds (128 MiB): nobody gets half of it, and nothing half-made stays
    (dan / "assignments" / "hw2").unlink()
    os.unlink(eve / "assignments")
    os.rename(eve / "assignments.mine", eve / "assignments")
    (shared / "hw3").mkdir()
    with open(shared / "hw3" / "dataset.bin", "wb") as handle:
        handle.truncate(200 * 2**20)  # sparse here; a real 200 MiB once copied
    (shared / "hw3" / "dataset.bin").chmod(0o644)
    three = [*both, {"name": "hw3", "source": "hw3", "release": moment(-1)}]
    room.write(people, admins=[{"username": "tom"}], assignments=three)
    out = room.cli()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "the copy could not be made" in out.stderr
    for short in ("ann", "bob", "cat", "dan", "eve"):
        folder = room.paths.home(room.user(short)) / "assignments"
        assert not (folder / "hw3").exists() and not list(folder.glob(".hw3*")), short
    assert "hw3" not in json.loads(room.paths.handouts.read_text())["assignments"]
    for short in ("dan", "eve"):  # their symlinks gone, the next pass gave them hw2 after all
        assert (room.paths.home(room.user(short)) / "assignments" / "hw2" / "task.txt").read_text() == "do it"
