"""Handing out an assignment on the real host: real accounts, loop volumes and ext4, the real `reconcile`.

At its release each active student gets their own copy of a course-folder folder in ~/assignments/<name>,
owned by them; their later work is never overwritten; a student added after the release gets theirs; and
the copy is made as the student, so a symlink they plant in their home cannot make root write outside it.
"""

import datetime
import json
import os

import pytest

from hostkit import host_ready

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")


def moment(hours: float) -> str:
    """A release time ``hours`` from now, as a teacher writes it (UTC, the file's default zone)."""
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)
    return f"{when:%Y-%m-%d %H:%M}"


def test_an_assignment_reaches_every_student_as_their_own_files(classroom):
    room = classroom
    room.root.chmod(0o755)  # the course folder's parents are traversable, as on a server
    folder = room.root / "shared" / "hw1"
    (folder / "data").mkdir(parents=True)
    (folder / "exercise.ipynb").write_text('{"cells": []}')
    (folder / "data" / "points.csv").write_text("x,y\n1,2\n")
    for path in (folder / "exercise.ipynb", folder / "data" / "points.csv"):
        path.chmod(0o644)

    later = [{"name": "hw1", "source": "hw1", "release": moment(+48)}]
    room.write([{"username": "ann"}, {"username": "bob"}], admins=[{"username": "tom"}], assignments=later)
    assert room.cli().returncode == 0
    preview = room.cli("--dry-run")
    assert preview.returncode == 0 and "> hw1 is released" in preview.stdout and "(in 1 d 23 h" in preview.stdout

    released = [{"name": "hw1", "source": "hw1", "release": moment(-1)}]
    room.write([{"username": "ann"}, {"username": "bob"}], admins=[{"username": "tom"}], assignments=released)
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
        assert {p.stat().st_uid for p in (copy, copy / "data", copy / "exercise.ipynb")} == {uid}
    assert not (room.paths.home(room.user("tom")) / "assignments").exists()
    ledger = json.loads(room.paths.handouts.read_text())["assignments"]["hw1"]
    assert set(ledger) == {room.user("ann"), room.user("bob")}

    # the student's work is theirs: the course's copy changing, or the student emptying theirs, changes nothing
    ann_copy = room.paths.home(room.user("ann")) / "assignments" / "hw1" / "exercise.ipynb"
    ann_copy.write_text('{"cells": ["my answer"]}')
    (folder / "exercise.ipynb").write_text('{"cells": ["teacher edited"]}')
    (room.paths.home(room.user("bob")) / "assignments" / "hw1" / "data" / "points.csv").unlink()
    assert room.cli("--dry-run").returncode == 0
    assert room.cli().returncode == 0
    assert ann_copy.read_text() == '{"cells": ["my answer"]}'
    assert not (room.paths.home(room.user("bob")) / "assignments" / "hw1" / "data" / "points.csv").exists()

    # students added after the release get theirs in the pass that makes their homes
    room.write(
        [{"username": "ann"}, {"username": "bob"}, {"username": "cat"}, {"username": "dan"}],
        admins=[{"username": "tom"}],
        assignments=released,
    )
    dan = room.user("dan")
    assert room.cli("--dry-run").returncode == 2
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    assert (room.paths.home(room.user("cat")) / "assignments" / "hw1" / "exercise.ipynb").exists()
    assert (room.paths.home(dan) / "assignments" / "hw1").is_dir()

    # a new assignment, and dan has planted a symlink where its copy goes, to a root-owned folder outside his
    # home: his copy fails (it runs as him), nothing is written where the symlink points, the others get theirs
    outside = room.root / "outside"
    outside.mkdir(mode=0o755)
    hw2 = room.root / "shared" / "hw2"
    hw2.mkdir()
    (hw2 / "task.txt").write_text("do it")
    (hw2 / "task.txt").chmod(0o644)
    both = [*released, {"name": "hw2", "source": "hw2", "release": moment(-1)}]
    people = [{"username": short} for short in ("ann", "bob", "cat", "dan")]
    dan_home = room.paths.home(dan)
    os.symlink(outside, dan_home / "assignments" / "hw2")
    room.write(people, admins=[{"username": "tom"}], assignments=both)
    out = room.cli()
    assert out.returncode == 1, out.stdout + out.stderr  # dan's copy failed; everyone else got theirs
    assert dan in out.stderr
    assert list(outside.iterdir()) == []  # root never wrote through his symlink
    for short in ("ann", "bob", "cat"):
        assert (room.paths.home(room.user(short)) / "assignments" / "hw2" / "task.txt").read_text() == "do it"
    assert dan not in json.loads(room.paths.handouts.read_text())["assignments"]["hw2"]
