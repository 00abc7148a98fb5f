"""Course material through git (classroom.yaml's course_repo), on a real hub: the class link pulls the repository
into a student's own home with nbgitpuller (in the student image), and a later pull brings the teacher's new files
while keeping the student's own changes.

The repository is served over HTTP by `git http-backend` (git's own smart HTTP, as a CGI of Python's http.server:
nbgitpuller clones shallow, which the "dumb" protocol cannot) on a test host in a network namespace of our own, at a
documentation address that stands in for the internet (tests/nskit.NetHost).
"""

import json
import pwd
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from hostkit import host_ready, make_classroom
from hubkit import add_hub, first_login_with_server, hub_ready, running_hub, wait_for
from imagekit import image_unavailable
from nskit import NetHost

REASON = host_ready() or hub_ready() or image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))


def git(*args, cwd):
    return subprocess.run(
        ["git", "-c", "user.name=Teacher", "-c", "user.email=t@school.example", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )


BACKEND = """#!/bin/sh
# http.server runs a CGI as nobody: the repository is root's, so git must be told it is safe to read
export GIT_PROJECT_ROOT="$(dirname "$(dirname "$0")")" GIT_HTTP_EXPORT_ALL=1 HOME=/nonexistent
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
exec git http-backend
"""


@pytest.fixture
def material(tmp_path):
    work = tmp_path / "work"
    served = Path(tempfile.mkdtemp(prefix="classroom-test-git-"))  # below /tmp: nobody (the CGI) can reach it
    served.chmod(0o755)
    work.mkdir()
    (served / "cgi-bin").mkdir()
    (served / "cgi-bin" / "git").write_text(BACKEND)
    git("init", cwd=work)
    (work / "README.md").write_text("# Python 101\n")
    (work / "week1.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    git("add", ".", cwd=work)
    git("commit", "-m", "week 1", cwd=work)
    git("clone", "--bare", str(work), str(served / "material.git"), cwd=tmp_path)
    readable(served)
    far = NetHost(secrets.token_hex(2), octet=78, directory=served, cgi=True)
    try:
        yield work, served / "material.git", f"http://{far.public}:{far.port}/cgi-bin/git/material.git"
    finally:
        far.stop()
        shutil.rmtree(served)


def readable(served: Path) -> None:
    for path in served.rglob("*"):
        path.chmod(0o755 if path.is_dir() or path.name == "git" else 0o644)


def read_events(response) -> list[dict]:
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            events.append(json.loads(line[5:]))
            if events[-1].get("phase") in ("finished", "error"):
                break
    return events


def test_the_class_link_pulls_the_material_into_a_home_and_keeps_the_students_changes(material):
    work, bare, url = material
    room = make_classroom()
    add_hub(room)
    room.write([{"username": "ann"}], course_repo={"url": url, "branch": "main", "folder": "material"})
    with running_hub(room) as hub:
        ann = room.user("ann")
        session = first_login_with_server(hub, room, "ann")

        status = room.cli("status")
        link = next(line for line in status.stdout.splitlines() if line.startswith("course material:")).split()[-1]
        assert link.startswith(f"{hub.url}/hub/user-redirect/git-pull?")
        query = dict(urllib.parse.parse_qsl(link.split("?", 1)[1]))
        assert query == {"repo": url, "branch": "main", "targetpath": "material", "urlpath": "lab/tree/material"}

        page = session.get(link, timeout=60)  # the class link: the hub sends each student to their own server
        assert page.status_code == 200 and f"/user/{ann}/git-pull" in page.url, page.url

        def pull() -> list[dict]:
            api = f"{hub.url}/user/{ann}/git-pull/api?" + urllib.parse.urlencode(
                {"repo": url, "branch": "main", "targetpath": "material"}
            )
            with session.get(api, stream=True, timeout=120) as response:  # what the page's script calls
                assert response.status_code == 200, response.text
                return read_events(response)

        events = pull()
        assert events[-1]["phase"] == "finished", events
        home = room.paths.home(ann)
        assert (home / "material" / "README.md").read_text() == "# Python 101\n"
        uid = pwd.getpwnam(ann).pw_uid
        assert {p.stat().st_uid for p in (home / "material").rglob("*")} == {uid}  # the student's own files

        # the student writes in the material; the teacher adds week 2
        with open(home / "material" / "README.md", "a") as handle:
            handle.write("my notes\n")
        (work / "week2.ipynb").write_text((work / "week1.ipynb").read_text())
        git("add", ".", cwd=work)
        git("commit", "-m", "week 2", cwd=work)
        git("push", str(bare), "main", cwd=work)
        readable(bare.parent)

        events = pull()
        assert events[-1]["phase"] == "finished", events
        assert (home / "material" / "week2.ipynb").exists()
        assert (home / "material" / "README.md").read_text() == "# Python 101\nmy notes\n"  # kept

        # pull_at_start: the next start brings week 3 before JupyterLab answers, no link clicked
        room.write(
            [{"username": "ann"}],
            course_repo={"url": url, "branch": "main", "folder": "material", "pull_at_start": True},
        )
        (work / "week3.ipynb").write_text((work / "week1.ipynb").read_text())
        git("add", ".", cwd=work)
        git("commit", "-m", "week 3", cwd=work)
        git("push", str(bare), "main", cwd=work)
        readable(bare.parent)
        assert hub.api("DELETE", f"/users/{ann}/server").status_code in (202, 204)
        wait_for(lambda: not hub.api("GET", f"/users/{ann}").json().get("servers"), 60, "ann's server stopped")
        assert hub.api("POST", f"/users/{ann}/server").status_code in (201, 202)
        wait_for(
            lambda: (hub.api("GET", f"/users/{ann}").json().get("servers", {}).get("") or {}).get("ready"),
            240,
            "ann's server ready again",
        )
        assert (home / "material" / "week3.ipynb").exists()
        assert (home / "material" / "README.md").read_text() == "# Python 101\nmy notes\n"
