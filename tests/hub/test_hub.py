"""Hub users in the reconcile loop, against a real JupyterHub with PAM and configurable-http-proxy.

No student server is started here (that needs the student image: see
test_e2e.py); these tests cover logins, the teachers' role (never hub admin),
disabling, demotion, a hub that is down, and the refusal to spawn on an
unmounted home.
"""

import json
import sqlite3
import stat
import subprocess

import pytest
import requests

from hostkit import host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready, tear_down, xsrf

pytestmark = pytest.mark.skipif(bool(host_ready() or hub_ready()), reason=str(host_ready() or hub_ready()))


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


@pytest.fixture
def hubroom():
    room, hub = make_classroom(), None
    try:  # set-up inside the cleanup's reach
        add_hub(room)
        room.write(
            [{"username": "ann"}, {"username": "bob"}, {"username": "cat"}],
            admins=[{"username": "tea"}, {"username": "tib"}],
        )
        first = room.cli()  # the hub is not running yet: its part fails, accounts and volumes converge
        assert first.returncode == 1, first.stdout + first.stderr
        assert "hub" in first.stderr
        hub = Hub(room)
        hub.start()
        yield room, hub
    finally:
        tear_down(hub, room)


def admin_of(hub, username):
    response = hub.api("GET", f"/users/{username}")
    return response.json()["admin"] if response.status_code == 200 else None


def groups_of(hub, username):
    return hub.api("GET", f"/users/{username}").json()["groups"]


def test_login_with_generated_password_and_teachers_are_no_hub_admins(hubroom):
    room, hub = hubroom
    assert room.cli("--dry-run").returncode == 0  # the hub part converges once the hub is up
    sessions = {}
    for short in ("ann", "tea", "tib"):
        sessions[short] = hub.login(room.user(short), password(room, short))
        assert sessions[short] is not None
    assert hub.login(room.user("bob"), "not-the-password") is None
    ann, tea, tib = room.user("ann"), room.user("tea"), room.user("tib")
    assert admin_of(hub, tea) is False and admin_of(hub, ann) is False
    assert groups_of(hub, tea) == [f"{room.name}-teachers"] and groups_of(hub, ann) == [f"{room.name}-students"]
    # the hub's database commits to a write-ahead log (hub.config.HubDatabase), its files root's alone
    database = room.paths.state / "jupyterhub.sqlite"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as reading:
        assert reading.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for path in (database, database.with_name("jupyterhub.sqlite-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # what a teacher can do on the hub, with a token of their own: the students, and nothing of hub admin
    made = sessions["tea"].post(
        f"{hub.url}/hub/api/users/{tea}/tokens",
        headers=xsrf(sessions["tea"]),
        json={"note": "class script"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    as_teacher = {"Authorization": f"token {made.json()['token']}"}

    def call(method, path, **kw):
        return requests.request(method, f"{hub.url}/hub/api{path}", headers=as_teacher, timeout=10, **kw)

    assert {u["name"] for u in call("GET", "/users").json()} == {ann}  # students only: not tea, not tib
    assert call("GET", f"/users/{ann}").status_code == 200
    assert call("GET", f"/users/{tib}").status_code == 404  # another teacher is not even visible
    assert call("POST", f"/users/{tib}/tokens", json={}).status_code in (403, 404)  # no token for a colleague
    assert call("POST", f"/users/{ann}/tokens", json={}).status_code == 403  # nor for a student
    assert call("PATCH", f"/users/{ann}", json={"admin": True}).status_code == 403  # no admin:users
    assert call("POST", "/users", json={"usernames": ["mallory"]}).status_code == 403
    assert call("POST", "/shutdown").status_code == 403
    page = sessions["tea"].get(f"{hub.url}/hub/admin", timeout=10)
    assert page.status_code == 403, page.status_code  # the hub's admin page is not theirs

    # a host account outside the classroom's groups cannot log in, even with the right password
    outsider = room.user("out")
    subprocess.run(["useradd", "--no-create-home", outsider], check=True)
    subprocess.run(["chpasswd"], input=f"{outsider}:Outsider-pass-123\n", text=True, check=True)
    assert hub.login(outsider, "Outsider-pass-123") is None


def test_disable_removes_hub_user_and_login_is_refused_then_reenable(hubroom):
    room, hub = hubroom
    ann = room.user("ann")
    assert hub.login(ann, password(room, "ann"))
    assert admin_of(hub, ann) is False

    room.write(
        [{"username": "ann", "status": "disabled"}, {"username": "bob"}, {"username": "cat"}],
        admins=[{"username": "tea"}, {"username": "tib"}],
    )
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and "- hub-user" in preview.stdout
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    assert admin_of(hub, ann) is None
    assert hub.login(ann, password(room, "ann")) is None  # PAM refuses the locked, expired account

    room.write(
        [{"username": "ann"}, {"username": "bob"}, {"username": "cat"}],
        admins=[{"username": "tea"}, {"username": "tib"}],
    )
    assert room.cli().returncode == 0
    assert hub.login(ann, password(room, "ann")) is not None


def test_demoted_teacher_loses_the_teacher_role(hubroom):
    room, hub = hubroom
    tea = room.user("tea")
    assert hub.login(tea, password(room, "tea"))
    assert groups_of(hub, tea) == [f"{room.name}-teachers"]
    room.write(
        [{"username": "ann"}, {"username": "bob"}, {"username": "cat"}, {"username": "tea"}],
        admins=[{"username": "tib"}],
    )
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    assert hub.login(tea, password(room, "tea"))  # the Unix groups are mirrored at every login
    assert groups_of(hub, tea) == [f"{room.name}-students"] and admin_of(hub, tea) is False
    assert room.cli("--dry-run").returncode == 0


def test_hub_down_still_converges_accounts_and_reports_failure(hubroom):
    room, hub = hubroom
    ann = room.user("ann")
    assert hub.login(ann, password(room, "ann"))
    hub.stop()
    room.write(
        [{"username": "ann", "status": "disabled"}, {"username": "bob"}, {"username": "cat"}],
        admins=[{"username": "tea"}, {"username": "tib"}],
    )
    out = room.cli()
    assert out.returncode == 1
    assert "hub API" in out.stdout and "unreachable" in out.stdout
    assert room.observe().accounts[ann].locked  # the host part was applied anyway
    hub.start()
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and "- hub-user" in preview.stdout  # the next pass finishes it
    assert room.cli().returncode == 0
    assert admin_of(hub, ann) is None


def test_spawn_refused_with_a_clear_message_when_home_is_not_mounted(hubroom):
    room, hub = hubroom
    bob = room.user("bob")
    session = hub.login(bob, password(room, "bob"))
    assert session is not None
    subprocess.run(["umount", str(room.paths.home(bob))], check=True)
    response = session.post(f"{hub.url}/hub/api/users/{bob}/server", headers=xsrf(session), timeout=30)
    assert response.status_code == 503, response.text
    assert "home volume is not mounted" in response.json()["message"]
    assert (
        subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=org.classroom.user={bob}"], capture_output=True, text=True
        ).stdout.strip()
        == ""
    )
