"""`reconcile up` / `down`: image, volumes, hub and daemon on one machine without an init system."""

import json
import os
import signal
import time

import pytest
import requests

import hostkit
from hostkit import cleanup, host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready
from imagekit import TAG, build_test_image, image_unavailable

REASON = host_ready() or hub_ready() or image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))


def alive(pid_file):
    try:
        pid = int(pid_file.read_text())
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError):
        return False


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as handle:
            return handle.read().replace("\0", " ")
    except OSError:
        return ""


def ours(room):
    """The hub's managed services for this classroom (they run with -f and its file, in sessions of their own)."""
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit()
        and ("reconciler api" in cmdline(p) or "reconciler.hub.culler" in cmdline(p))
        and str(room.file) in environ_or_cmdline(p)
    ]


def environ_or_cmdline(pid):
    try:
        with open(f"/proc/{pid}/environ") as handle:
            return handle.read() + cmdline(pid)
    except OSError:
        return cmdline(pid)


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def supervised(state):
    return json.loads((state / "supervisor.json").read_text())["components"]


def wait_for(predicate, timeout=60, what="condition"):
    """hostkit's, where a file being replaced or a service still starting means "not yet"."""
    return hostkit.wait_for(predicate, timeout, what, 0.2, (OSError, ValueError, KeyError, requests.RequestException))


def test_up_brings_everything_and_down_stops_it():
    build_test_image()
    room = make_classroom()
    add_hub(room, image=TAG)
    room.write([{"username": "ann"}, {"username": "bob"}])
    hub = Hub(room)
    try:
        out = room.cli("up")
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"JupyterHub: {hub.url}" in out.stdout and "2 new password(s)" in out.stdout
        state = room.paths.state
        assert alive(state / "hub.pid") and alive(state / "watch.pid")
        password = json.loads((room.paths.outbox / f"{room.user('ann')}.json").read_text())["password"]
        assert hub.login(room.user("ann"), password) is not None
        deadline = time.monotonic() + 30
        while not (state / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert json.loads((state / "status.json").read_text())["result"] == "converged"
        assert f"Teacher page: {hub.url}/services/classroom/" in out.stdout
        teacher_api = f"{hub.url}/services/classroom/api/students"
        while requests.get(teacher_api, timeout=10).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)  # the proxy answers 503 until the hub's managed service listens
        assert requests.get(teacher_api, timeout=10).status_code == 403  # up, and refusing the anonymous
        again = room.cli("up")  # idempotent: nothing started twice
        assert again.returncode == 0 and "already running" in again.stdout

        # the hub killed outright: its services end with it (no stale one keeps the port), the supervisor starts
        # it again, and the new teacher service answers
        services = ours(room)
        assert services, "the hub's teacher service and culler"
        os.kill(int((state / "hub.pid").read_text()), signal.SIGKILL)
        wait_for(lambda: all(gone(pid) for pid in services), what="the old hub's services to end")
        wait_for(lambda: supervised(state)["hub"]["restarts"] == 1 and alive(state / "hub.pid"), what="a new hub")
        wait_for(
            lambda: requests.get(teacher_api, timeout=10).status_code == 403, timeout=90, what="the new teacher service"
        )
        assert "killed by SIGKILL" in supervised(state)["hub"]["last_exit"]
        # the daemon killed outright: `status` says so at once, and the supervisor starts it again
        daemon = int((state / "watch.pid").read_text())
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: supervised(state)["watch"]["restarts"] == 1, what="a new daemon")
        wait_for(lambda: "daemon: running" in room.cli("status").stdout, timeout=60, what="the new daemon's heartbeat")

        down = room.cli("down")
        assert down.returncode == 0, down.stderr
        assert not alive(state / "hub.pid") and not alive(state / "watch.pid")
        assert not [p for p in os.listdir("/proc") if p.isdigit() and f"--site {state}" in cmdline(p)]
        assert not ours(room) and not alive(state / "supervisor.pid")  # the services and the supervisor too
        assert "daemon: not running" in room.cli("status").stdout
        # the logs came through the rotating writers (host/logpipe.py), which end with what they write for
        assert "JupyterHub" in (state / "hub.log").read_text() and "watching" in (state / "watch.log").read_text()
        pumps = lambda: [
            p
            for p in os.listdir("/proc")
            if p.isdigit()  # noqa: E731
            and f"reconciler.host.logpipe {state}" in cmdline(p)
        ]
        deadline = time.monotonic() + 10
        while pumps() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pumps()
    finally:
        room.cli("down")
        hub.remove_network()
        cleanup(room)
