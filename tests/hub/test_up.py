"""`reconcile up` / `down`: image, volumes, hub and daemon on one machine without an init system."""

import json
import os
import time

import pytest
import requests

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

        down = room.cli("down")
        assert down.returncode == 0, down.stderr
        assert not alive(state / "hub.pid") and not alive(state / "watch.pid")
        assert not [p for p in os.listdir("/proc") if p.isdigit() and f"--site {state}" in cmdline(p)]
        # the logs came through the rotating writers (host/logpipe.py), which end with what they write for
        assert "JupyterHub" in (state / "hub.log").read_text() and "watching" in (state / "watch.log").read_text()
        pumps = lambda: [p for p in os.listdir("/proc") if p.isdigit()  # noqa: E731
                         and f"reconciler.host.logpipe {state}" in cmdline(p)]
        deadline = time.monotonic() + 10
        while pumps() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pumps()
    finally:
        room.cli("down")
        hub.remove_network()
        cleanup(room)
