"""Lessons that start warm, on a real hub: `reconcile prewarm` starts the students' servers before (here: during)
a lesson of classroom.yaml's schedule, the idle culler leaves them alone while the lesson is on and culls them
once it is over.

The lesson is a one-off on today's date, around now, in a time zone where it is far from midnight (UTC, or
UTC+12 around midnight UTC), so the test runs at any hour; the culler looks every 10 s with a 20 s idle
timeout (hub.cull_idle_timeout), so both of its answers come within a minute.
"""

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import pytest

from hostkit import host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready, tear_down, wait_for

pytestmark = pytest.mark.skipif(bool(host_ready() or hub_ready()), reason=str(host_ready() or hub_ready()))
UTC = dt.UTC


def lesson(start: dt.datetime, minutes: int) -> dict:
    """A one-off lesson from ``start`` (aware: its zone is the lesson's) for ``minutes``."""
    end = start + dt.timedelta(minutes=minutes)
    return {"date": start.date().isoformat(), "start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "tz": start.tzinfo.key}


def far_from_midnight(now: dt.datetime) -> dt.datetime:
    """``now`` where a lesson around it and one 30 minutes later fall on one local day: in UTC, or in UTC+12
    (Etc/GMT-12: no summer time) while UTC is near midnight."""
    return now.astimezone(ZoneInfo("UTC" if 2 <= now.hour <= 22 else "Etc/GMT-12"))


def server(hub, username):
    response = hub.api("GET", f"/users/{username}")
    return response.json().get("servers", {}).get("") if response.status_code == 200 else None


@pytest.fixture
def warm_room():
    now = far_from_midnight(dt.datetime.now(UTC).replace(second=0, microsecond=0))
    room, hub = make_classroom(), None
    try:  # set-up inside the cleanup's reach: a failed step leaves nothing behind
        add_hub(room, cull_idle_timeout=20, prewarm={"lead": 0, "pace": 0.5, "idle_memory": "64Mi"})
        on_now = lesson(now - dt.timedelta(minutes=1), 9)  # on now, for a few minutes
        room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}], schedule=[on_now])
        assert room.cli().returncode == 1  # the hub is not up yet: accounts and volumes converge
        hub = Hub(room)
        hub.start()
        yield room, hub, now
    finally:
        tear_down(hub, room)  # the pre-started servers' containers too


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


def test_servers_start_before_the_class_logs_in_and_the_culler_waits_for_the_end(warm_room):
    room, hub, now = warm_room
    ann, bob, cat = (room.user(s) for s in ("ann", "bob", "cat"))
    for short in ("ann", "bob"):  # they used the hub before (cat never did: the hub has no user to start for)
        assert hub.login(room.user(short), password(room, short)) is not None

    warm = room.cli("prewarm", "--wait")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert f"started {ann}'s server" in warm.stdout and f"started {bob}'s server" in warm.stdout
    assert "lesson on:" in warm.stdout and "2 of 2 server(s) running" in warm.stdout
    assert "1 (never logged in: their server starts at the first login)" in warm.stdout
    assert server(hub, cat) is None
    wait_for(lambda: all((server(hub, u) or {}).get("ready") for u in (ann, bob)), 240, "both servers ready")

    # ann logs in for the lesson: her server is already there
    session = hub.login(ann, password(room, "ann"))
    lab = session.get(f"{hub.url}/user/{ann}/lab", timeout=30)
    assert lab.status_code == 200 and "JupyterLab" in lab.text

    # once per lesson: bob stops his server, the pre-warm does not start it again
    assert hub.api("DELETE", f"/users/{bob}/server").status_code in (202, 204)
    wait_for(lambda: server(hub, bob) is None, 60, "bob's server stopped")
    again = room.cli("prewarm")
    assert again.returncode == 0 and f"started {bob}'s server" not in again.stdout, again.stdout
    status = room.cli("status")
    assert "lessons: lesson on:" in status.stdout and "1 of 2 server(s) running" in status.stdout, status.stdout

    # the lesson is on: idle far past the 20 s timeout, the servers stay
    time.sleep(45)
    assert (server(hub, ann) or {}).get("ready"), hub.log.read_text()[-2000:]
    assert "Culling server" not in hub.log.read_text()

    # the lesson moves to later today (what a teacher's edit does): no lesson on, the culler stops idle servers
    later = now + dt.timedelta(minutes=30)
    assert later.date() == now.date()
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}], schedule=[lesson(later, 5)])
    wait_for(lambda: server(hub, ann) is None, 120, "ann's idle server culled once no lesson is on")
    assert f"Culling server {ann}" in hub.log.read_text()
