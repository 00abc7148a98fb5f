"""Processes without an init system (host/supervisor.py) and the daemon's liveness (host/liveness.py), with real
processes, signals and sockets.  No root."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from hostkit import wait_for

from reconciler.host import liveness

pytestmark = pytest.mark.unit


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# A component that starts a grandchild in a session of its own (as JupyterHub starts its services), records both
# pids, and then either exits at once (CRASH set) or waits.
COMPONENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
print("started", flush=True)
with open(sys.argv[1], "a") as out:
    out.write(f"{os.getpid()} {child.pid}\\n")
if os.environ.get("CRASH") and len(open(sys.argv[1]).read().splitlines()) < 3:
    sys.exit(3)
time.sleep(600)
"""


def test_a_component_that_dies_is_started_again_and_down_stops_every_tree(tmp_path):
    pids = tmp_path / "pids"
    spec = tmp_path / "supervisor.spec.json"
    spec.write_text(
        json.dumps(
            {"components": [{"name": "flaky", "argv": ["env", "CRASH=1", sys.executable, "-c", COMPONENT, str(pids)]}]}
        )
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "reconciler.host.supervisor", str(spec)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # it exits twice with 3 and is started again each time (after 1 s, then 2 s), then stays up
        wait_for(lambda: pids.exists() and len(pids.read_text().splitlines()) == 3, what="two restarts")
        status = wait_for(
            lambda: (
                (tmp_path / "supervisor.json").exists()
                and json.loads((tmp_path / "supervisor.json").read_text())["components"]["flaky"]["pid"]
                and json.loads((tmp_path / "supervisor.json").read_text())
            ),
            what="the status",
        )
        flaky = status["components"]["flaky"]
        assert flaky["restarts"] == 2 and flaky["last_exit"].endswith("exit 3")
        assert int((tmp_path / "flaky.pid").read_text()) == flaky["pid"]
        # a component added to the spec is started on SIGHUP
        spec.write_text(
            json.dumps(
                {
                    "components": [
                        {"name": "flaky", "argv": ["env", "CRASH=1", sys.executable, "-c", COMPONENT, str(pids)]},
                        {"name": "second", "argv": [sys.executable, "-c", COMPONENT, str(tmp_path / "second-pids")]},
                    ]
                }
            )
        )
        supervisor.send_signal(signal.SIGHUP)
        wait_for(lambda: (tmp_path / "second-pids").exists(), what="the added component")
        every = [
            int(p)
            for line in (pids.read_text() + (tmp_path / "second-pids").read_text()).splitlines()
            for p in line.split()
        ]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        # the running components and what they started in sessions of their own are gone (the crashed
        # components' own grandchildren were stopped when they ended)
        assert all(gone(pid) for pid in every), [p for p in every if not gone(p)]
        assert not (tmp_path / "flaky.pid").exists() and not (tmp_path / "second.pid").exists()
        log = tmp_path / "flaky.log"  # its output went through the rotating log writer
        assert wait_for(lambda: log.exists() and log.read_text().count("started") == 3, what="the log")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


ORPHAN = """
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c",
    "from reconciler.host.liveness import die_with_parent; import time; die_with_parent(); "
    "open(%r, 'w').write('ready'); time.sleep(600)"])
print(grandchild.pid, flush=True)
time.sleep(600)
"""


def test_a_hub_service_ends_with_the_hub_even_a_hub_killed_outright(tmp_path):
    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN % str(ready)], stdout=subprocess.PIPE, text=True)
    grandchild = int(parent.stdout.readline())
    try:
        wait_for(ready.exists, what="the service to ask for its parent's death signal")
        parent.kill()  # SIGKILL: no chance to stop its children
        parent.wait()
        wait_for(lambda: gone(grandchild), what="the service to end with its parent")
    finally:
        if not gone(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_the_heartbeat_says_whether_the_daemon_runs(tmp_path):
    path = tmp_path / "heartbeat.json"
    assert liveness.look(path) == {"running": False, "heard": None, "pid": None, "pass_started": None}
    assert "not running" in liveness.describe(liveness.look(path))
    liveness.beat(path, pass_started=None)
    now = liveness.look(path)
    assert now["running"] and now["pid"] == os.getpid() and now["heard"] < liveness.STALE
    assert path.stat().st_mode & 0o777 == 0o600
    later = liveness.look(path, now=time.time() + liveness.STALE + 1)
    assert not later["running"] and "NOT RUNNING" in liveness.describe(later)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"pid": int(dead.stdout), "time": time.time()}))
    assert not liveness.look(path)["running"]  # a fresh heartbeat from a process that is gone


def test_systemd_hears_ready_and_the_watchdog(tmp_path, monkeypatch):
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert liveness.notify("READY=1", "STATUS=watching")
        assert server.recv(1024) == b"READY=1\nSTATUS=watching"
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert not liveness.notify("WATCHDOG=1")  # not under systemd: nothing to tell


def test_a_docker_that_accepts_and_never_answers_is_given_up_on(tmp_path, monkeypatch):
    """The pass's look at the containers: a Docker socket that accepts and never answers is reported as
    unreachable (None: the plan says so and goes on without the container part), and every connection the
    look opened is closed by it -- after containers.LOOK_TIMEOUT, not held for the pass's lock time."""
    import threading

    from reconciler.host import containers

    address = str(tmp_path / "docker.sock")
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(address)
    hung.listen(8)
    accepted, closed = [], []

    def serve():
        while True:
            try:
                conn, _ = hung.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(
                target=lambda c=conn: (c.recv(65536), c.recv(65536), closed.append(c)), daemon=True
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{address}")
    monkeypatch.setattr(containers, "LOOK_TIMEOUT", 0.5)  # the unit tier runs in seconds
    try:
        assert containers.list_containers("py101", "classroom-student:latest") is None
        assert containers.list_services("py101") is None and containers.swarm_nodes() is None
        wait_for(lambda: len(closed) == len(accepted) > 0, what="the look to let go of every connection")
    finally:
        hung.close()
        for conn in accepted:
            conn.close()
