"""The whole teaching cycle with real nbgrader (0.9, in its own venv: tests/bootstrap.sh) on the real host.

The teacher's nbgrader course directory is the collection area, as the how-to says: the teacher (as their own
uid, with the teachers' group) writes a notebook with graded cells and runs ``nbgrader generate_assignment``,
puts the student version in the course folder, and `reconcile` hands it out.  One student solves it (as their
uid), one hands in the starter.  At the due time `reconcile` collects both; ``nbgrader autograde`` grades what was
collected, unchanged (2 of 2 points and 0), ``nbgrader generate_feedback`` writes the feedback, and `reconcile`
returns it: each student reads their own, and cannot change it.
"""

import datetime
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from hostkit import host_ready

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")

VENV = Path(__file__).resolve().parents[2] / ".venv-nbgrader"


def stamp(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def notebook() -> dict:
    def cell(kind: str, source: str, meta: dict, n: int) -> dict:
        found = {"cell_type": kind, "id": f"c{n}", "metadata": {"nbgrader": {"schema_version": 3, **meta}}}
        found["source"] = source
        if kind == "code":
            found |= {"outputs": [], "execution_count": None}
        return found

    solution = "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION\n"
    tests = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            cell("code", solution, {"grade": False, "solution": True, "locked": False, "grade_id": "add"}, 0),
            cell("code", tests, {"grade": True, "solution": False, "locked": True, "points": 2, "grade_id": "t"}, 1),
        ],
    }


def as_user(user: str, argv: list[str], *, groups: str = "", home: Path | None = None, cwd: Path | None = None):
    env = {"PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": str(home or "/nonexistent"), "LANG": "C.UTF-8"}
    ids = [f"--reuid={user}", f"--regid={user}", f"--groups={groups}" if groups else "--clear-groups"]
    return subprocess.run(
        ["setpriv", *ids, *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False
    )


def test_nbgrader_grades_what_reconcile_collected_and_its_feedback_goes_back(classroom):
    assert (VENV / "bin" / "nbgrader").exists(), "tests/bootstrap.sh installs nbgrader in .venv-nbgrader"
    room = classroom
    room.root.chmod(0o755)
    (room.root / "shared").mkdir(mode=0o755)
    now = datetime.datetime.now(datetime.UTC)
    work = {"name": "hw1", "source": "hw1", "release": stamp(now - datetime.timedelta(hours=1))}
    work["due"] = stamp(now + datetime.timedelta(days=1))
    people, teachers = [{"username": "ann"}, {"username": "bob"}], [{"username": "tom"}]
    room.write(people, admins=teachers, assignments=[work], collection_disk="128Mi")
    made = room.cli()  # accounts, homes, the course folder's group, the collection area; the source is missing
    assert made.returncode in (0, 1), made.stdout + made.stderr
    ann, bob, tom = (room.user(s) for s in ("ann", "bob", "tom"))
    teachers_gid = str(room.observe().groups[f"{room.name}-teachers"].gid)
    area, shared, tom_home = room.root / "collected", room.root / "shared", room.paths.home(tom)
    os.chown(shared, 0, int(teachers_gid))
    shared.chmod(0o2775)

    # the teacher, in the collection area as their nbgrader course directory
    source = area / "source" / "hw1"
    assert as_user(tom, ["mkdir", "-p", str(source)], groups=teachers_gid).returncode == 0
    (source / "exercise.ipynb").write_text(json.dumps(notebook()))
    generated = as_user(tom, ["nbgrader", "generate_assignment", "hw1"], groups=teachers_gid, home=tom_home, cwd=area)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    copied = as_user(tom, ["cp", "-r", str(area / "release" / "hw1"), str(shared / "hw1")], groups=teachers_gid)
    assert copied.returncode == 0, copied.stderr
    assert "NotImplementedError" in (shared / "hw1" / "exercise.ipynb").read_text()  # the student version

    handed = room.cli()
    assert handed.returncode == 0 and handed.stdout.count("+ handout") == 2, handed.stdout + handed.stderr
    solve = (
        "import json, sys; p = sys.argv[1]; nb = json.load(open(p)); "
        "nb['cells'][0]['source'] = 'def add(a, b):\\n    return a + b\\n'; json.dump(nb, open(p, 'w'))"
    )
    mine = room.paths.home(ann) / "assignments" / "hw1" / "exercise.ipynb"
    assert as_user(ann, ["python3", "-c", solve, str(mine)]).returncode == 0  # ann solves it, as herself

    time.sleep(2.1)  # the due time (to the second) after her save
    work["due"] = stamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1))
    room.write(people, admins=teachers, assignments=[work], collection_disk="128Mi")
    collected = room.cli()
    assert collected.returncode == 0 and collected.stdout.count("+ collection") == 2, collected.stdout
    for user in (ann, bob):
        assert (area / "submitted" / user / "hw1" / "timestamp.txt").exists()

    graded = as_user(tom, ["nbgrader", "autograde", "hw1", "--create"], groups=teachers_gid, home=tom_home, cwd=area)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    scores = as_user(
        tom,
        [
            "python",
            "-c",
            "from nbgrader.api import Gradebook; import sys\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            "    print({s: gb.find_submission('hw1', s).score for s in sys.argv[1:]})",
            ann,
            bob,
        ],
        groups=teachers_gid,
        home=tom_home,
        cwd=area,
    )
    assert scores.returncode == 0, scores.stderr
    assert scores.stdout.strip() == repr({ann: 2.0, bob: 0.0})
    feedback = as_user(tom, ["nbgrader", "generate_feedback", "hw1"], groups=teachers_gid, home=tom_home, cwd=area)
    assert feedback.returncode == 0, feedback.stdout + feedback.stderr

    work["feedback"] = stamp(datetime.datetime.now(datetime.UTC))
    room.write(people, admins=teachers, assignments=[work], collection_disk="128Mi")
    time.sleep(1)
    returned = room.cli()
    assert returned.returncode == 0 and returned.stdout.count("+ feedback") == 2, returned.stdout + returned.stderr
    for user, score in ((ann, "2.0 / 2.0"), (bob, "0.0 / 2.0")):
        page = room.paths.home(user) / "assignments" / "hw1" / "feedback" / "exercise.html"
        info = page.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o444)
        read = as_user(user, ["cat", str(page)])
        assert read.returncode == 0 and f"Score: {score}" in read.stdout, (user, score)
        assert as_user(user, ["sh", "-c", f"echo x >> {page}"]).returncode != 0
    other = room.paths.home(bob) / "assignments" / "hw1" / "feedback" / "exercise.html"
    assert as_user(ann, ["cat", str(other)]).returncode != 0  # nobody reads another student's feedback
    assert as_user(ann, ["ls", str(area)]).returncode != 0  # nor the collection area
