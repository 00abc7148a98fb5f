"""The classroom on a Docker Swarm: reconcile + a real JupyterHub on the manager, servers on two workers.

Real parts: three of Debian's dockerd's in network namespaces of their own, joined in a real swarm
(tests/swarmkit.py); the student image loaded onto the workers by `reconcile image push-nodes`; PAM logins,
configurable-http-proxy, the hub's SwarmSpawner subclass.  One stand-in, said here and in the README: this
machine's kernel has no NFS, so the workers see the manager's homes through the shared mount namespace (each
home is a `local` Docker volume binding the same path) instead of over NFS.

The tests run in file order on one class of six and one hub (a JupyterLab start costs seconds of CPU here).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from hostkit import cleanup, host_ready, make_classroom
from hubkit import ARTIFACTS, Hub, add_hub, hub_ready, server_of, start_server, stop_server, xsrf
from imagekit import TAG, build_test_image, image_unavailable
from reconciler.config.sizes import MiB
from swarmkit import HOST_ADDRESS, Swarm

REASON = host_ready() or hub_ready() or image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))

MEMORY, CPU, PIDS = 256 * MiB, 0.5, 128
NAMES = ["ann", "bob", "cat", "dan", "eve", "fay"]


def reconcile(room, *args, docker_host=None, timeout=600):
    """The real CLI; ``docker_host``: the swarm manager, as DOCKER_HOST names it on a real manager."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    if not args:  # a pass
        argv = [sys.executable, "-m", "reconciler", "--site", str(room.site), "-f", str(room.file)]
    elif args[0] == "image":
        argv = [sys.executable, "-m", "reconciler", *args, "--site", str(room.site)]
    else:
        argv = [sys.executable, "-m", "reconciler", *args, "--site", str(room.site), "-f", str(room.file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def env():
    build_test_image()
    swarm = Swarm(workers=2, spare=1)  # the spare joins with examples/install.sh --worker
    swarm.start()
    room = make_classroom()
    hub = None
    try:
        add_hub(
            room,
            image=TAG,
            pids_limit=PIDS,
            tmp_size="32Mi",
            spawner="swarm",
            swarm={
                "address": HOST_ADDRESS,
                "homes": "shared",
                "workers": [{"address": w.address, "docker": w.endpoint} for w in swarm.workers],
            },
        )
        room.quotas = {"default": {"memory": "256Mi", "cpu": CPU, "disk": "64Mi"}}
        room.write([{"username": n} for n in NAMES])
        done = reconcile(room, docker_host=swarm.manager.endpoint)  # the host part; the hub is not up yet
        assert "6 new password(s)" in done.stdout + done.stderr, done.stdout + done.stderr
        hub = Hub(room)
        hub.start(env={**os.environ, "DOCKER_HOST": swarm.manager.endpoint})  # every test can run on its own
        yield room, swarm, hub
    finally:
        if hub is not None:
            hub.stop()
            if hub.log.exists():  # kept for a failed run
                ARTIFACTS.mkdir(exist_ok=True)
                shutil.copy(hub.log, ARTIFACTS / "swarm-hub.log")
        swarm.stop()  # first: the workers' volumes bind the homes
        cleanup(room)


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


def services(swarm, room) -> dict[str, dict]:
    """username -> the service as the manager reports it, with its running task's worker."""
    client = swarm.manager.client()
    found = client.api.services(filters={"label": f"org.classroom.classroom={room.name}"})
    nodes = {n["ID"]: n["Description"]["Hostname"] for n in client.api.nodes()}
    out = {}
    for service in found:
        tasks = client.api.tasks(filters={"service": service["ID"], "desired-state": "running"})
        service["node"] = nodes.get(tasks[0].get("NodeID")) if tasks else None
        out[service["Spec"]["Labels"]["org.classroom.user"]] = service
    return out


def in_server(swarm, service, script: str) -> subprocess.CompletedProcess:
    """Run a shell script inside the person's running server, on its worker, as the server's own user."""
    node = swarm.node_of(service["node"])
    (container,) = node.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.id={service['ID']}").split()
    return subprocess.run(
        ["docker", "-H", node.endpoint, "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )


def servers_up(env) -> None:
    """Every student's server running on the swarm (the image pushed, the missing ones started): a test that needs
    them says so, instead of counting on an earlier test having started them."""
    room, swarm, hub = env
    assert reconcile(room, "image", "push-nodes").returncode == 0
    missing = [n for n in NAMES if room.user(n) not in services(swarm, room)]
    sessions = {n: hub.login(room.user(n), password(room, n)) for n in missing}
    assert all(sessions.values())
    with ThreadPoolExecutor(max(1, len(missing))) as pool:
        list(pool.map(lambda n: start_server(hub, sessions[n], room.user(n), timeout=400), missing))


def test_push_nodes_loads_the_image_onto_every_worker_once(env):
    room, swarm, _ = env
    for worker in swarm.workers:  # whatever an earlier test pushed: none of the workers holds it now
        subprocess.run(["docker", "-H", worker.endpoint, "image", "rm", "-f", TAG], capture_output=True)
    first = reconcile(room, "image", "push-nodes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.split("\n")[:2] == [f"{w.address}: loaded" for w in swarm.workers]
    ours = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", TAG], capture_output=True, text=True, check=True
    ).stdout.strip()
    for worker in swarm.workers:
        assert worker.docker("image", "inspect", "--format", "{{.Id}}", TAG) == ours
    again = reconcile(room, "image", "push-nodes")
    assert again.returncode == 0 and again.stdout.split("\n")[:2] == [f"{w.address}: already" for w in swarm.workers]


def test_six_logins_spread_over_both_workers_with_their_limits(env):
    room, swarm, hub = env
    servers_up(env)
    found = services(swarm, room)
    assert set(found) == {room.user(n) for n in NAMES}
    assert {s["node"] for s in found.values()} == {"w1", "w2"}, {u: s["node"] for u, s in found.items()}
    for username, service in found.items():
        spec = service["Spec"]["TaskTemplate"]
        limits, reserved = spec["Resources"]["Limits"], spec["Resources"]["Reservations"]
        assert limits == {"MemoryBytes": MEMORY, "NanoCPUs": int(CPU * 1e9), "Pids": PIDS}
        assert reserved == {"MemoryBytes": MEMORY // 4, "NanoCPUs": int(CPU * 0.05 * 1e9)}
        container = spec["ContainerSpec"]
        uid = int(subprocess.run(["id", "-u", username], capture_output=True, text=True).stdout)
        assert container["User"].split(":")[0] == str(uid)
        assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"]
        assert spec["Placement"]["Constraints"] == ["node.role == worker"]
        assert service["Spec"]["EndpointSpec"]["Ports"][0]["PublishMode"] == "host"
    ann = found[room.user("ann")]
    inside = in_server(
        swarm,
        ann,
        "id -un; grep CapEff /proc/self/status; touch /etc/x 2>&1; "
        "find / -xdev -perm /6000 -type f 2>/dev/null | wc -l; "
        "python3 -c 'import socket; socket.socket().bind((\"0.0.0.0\", 111))' 2>&1 | tail -1; "
        "echo written on a worker > ~/note.txt",
    )
    lines = inside.stdout.splitlines()
    assert lines[0] == room.user("ann")  # the swarm config's /etc/passwd names the person
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
    assert "Read-only file system" in lines[2]
    assert lines[3] == "0"  # no setuid or setgid program to gain privileges with
    # no privileged port either (Docker's default lets anyone bind them): NFS's sec=sys trusts those
    assert "Permission denied" in lines[4], lines
    home = room.paths.homes / room.user("ann") / "note.txt"  # on the manager's quota volume
    assert home.read_text() == "written on a worker\n" and home.stat().st_uid == uid_of(room.user("ann"))
    status = reconcile(room, "status", docker_host=swarm.manager.endpoint)
    assert status.returncode == 0, status.stderr
    for username, service in found.items():
        line = next(line for line in status.stdout.splitlines() if line.startswith(username))
        assert f"running on {service['node']}" in line
    for worker in swarm.workers:
        assert f"swarm: worker {worker.name} ({worker.address}): ready, active" in status.stdout


def uid_of(username: str) -> int:
    return int(subprocess.run(["id", "-u", username], capture_output=True, text=True, check=True).stdout)


def test_a_quota_volume_fills_from_the_worker(env):
    room, swarm, _ = env
    servers_up(env)
    bob = services(swarm, room)[room.user("bob")]
    full = in_server(swarm, bob, 'dd if=/dev/zero of="$HOME/big" bs=1M count=200 2>&1; rm -f "$HOME/big"')
    assert "No space left on device" in full.stdout, full.stdout + full.stderr


def test_a_stopped_worker_s_student_starts_again_on_the_other_with_their_files(env):
    room, swarm, hub = env
    servers_up(env)
    found = services(swarm, room)
    ann = room.user("ann")
    (Path(room.paths.homes) / ann / "note.txt").write_text("written on a worker\n")  # whoever wrote it before
    lost = swarm.node_of(found[ann]["node"])
    session = hub.login(ann, password(room, "ann"))
    lost.stop()  # the machine goes away with its servers (dockerd stops their containers)
    deadline = time.monotonic() + 120  # the hub notices at its next poll of the service
    while (server_of(hub, session, ann) or {}).get("ready"):
        assert time.monotonic() < deadline, "the hub still believes ann's server runs on a stopped worker"
        time.sleep(2)
    status = reconcile(room, "status", docker_host=swarm.manager.endpoint)
    assert f"swarm: worker {lost.name} ({lost.address}): down, active  NOT USABLE" in status.stdout, status.stdout
    start_server(hub, session, ann, timeout=300)
    moved = services(swarm, room)[ann]
    assert moved["node"] != lost.name
    assert in_server(swarm, moved, "cat ~/note.txt").stdout == "written on a worker\n"
    stop_server(hub, session, ann)


def test_a_server_no_worker_has_room_for_fails_fast_saying_so(env):
    """A quota whose reservation no worker can hold: the swarm would keep the task pending for ever."""
    room, swarm, hub = env
    doc = yaml.safe_load(room.file.read_text())
    doc["students"].append({"username": room.user("gus"), "name": "Gus", "memory": "400Gi"})
    room.file.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = reconcile(room, docker_host=swarm.manager.endpoint)
    assert done.returncode == 0, done.stdout + done.stderr
    session = hub.login(room.user("gus"), password(room, "gus"))
    response = session.post(f"{hub.url}/hub/api/users/{room.user('gus')}/server", headers=xsrf(session), timeout=60)
    assert response.status_code == 202, response.text
    # the event: the hub gives the start up and says why (the guard only keeps a hung start from hanging the run)
    deadline = time.monotonic() + 600
    while "No machine of the cluster has room for your server" not in hub.log.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"the start neither failed nor said why:\n{hub.log.read_text()[-3000:]}")
        time.sleep(1)
    while server_of(hub, session, room.user("gus")):  # and the hub no longer counts the server
        assert time.monotonic() < deadline, "the failed start is still counted as a server"
        time.sleep(0.5)
    assert room.user("gus") not in services(swarm, room)  # nothing left pending on the swarm


def test_a_disabled_student_s_service_is_gone(env):
    room, swarm, hub = env
    if room.user("fay") not in services(swarm, room):
        servers_up(env)  # fay's server, at least, runs before she is disabled
    # first the hub's own poll (every 30 s) must have seen the servers that went with the stopped worker
    up = {node.name for node in swarm.workers if node.proc is not None and node.proc.poll() is None}
    stale = {user for user, service in services(swarm, room).items() if service["node"] not in up}
    deadline = time.monotonic() + 120
    while any((u.get("servers") or {}).get("") for u in hub.api("GET", "/users").json() if u["name"] in stale):
        assert time.monotonic() < deadline, f"the hub still runs servers of {stale} on a stopped worker"
        time.sleep(2)
    doc = yaml.safe_load(room.file.read_text())
    for person in doc["students"]:
        if person["username"] == room.user("fay"):
            person["status"] = "disabled"
    room.file.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = reconcile(room, docker_host=swarm.manager.endpoint)
    assert done.returncode == 0, done.stdout + done.stderr
    left = services(swarm, room)
    assert room.user("fay") not in left
    # nor her name and groups: the swarm configs go with the service
    assert not swarm.manager.client().api.configs(filters={"label": f"org.classroom.user={room.user('fay')}"})
    assert hub.api("GET", f"/users/{room.user('fay')}").status_code == 404
    # the servers that went down with the stopped worker left their services; the pass removed them, and only
    # those: every service left is a server the hub runs
    running = {u["name"] for u in hub.api("GET", "/users").json() if (u.get("servers") or {}).get("")}
    assert set(left) == running, (set(left), running)
    assert bool(stale) == ("a swarm service with no server running in the hub" in done.stdout), done.stdout


def test_install_worker_mode_sets_the_docker_up_and_joins(env, tmp_path):
    """examples/install.sh --worker on a machine with Docker running (the spare node): no registry pulls, no
    traffic between servers on its bridge, joined to the manager's swarm; a second run changes nothing."""
    room, swarm, _ = env
    (spare,) = swarm.spare
    token = swarm.manager.docker("swarm", "join-token", "-q", "worker")
    environment = {
        **os.environ,
        "DOCKER_HOST": spare.endpoint,
        "MANAGER": swarm.manager.address,
        "JOIN_TOKEN": token,
        "SKIP_APT": "1",
        "SYSTEMD_DIR": str(tmp_path / "systemd"),
        "DOCKER_ETC": str(tmp_path / "docker"),
    }
    script = [str(Path(__file__).resolve().parents[2] / "examples" / "install.sh"), "--worker"]
    first = subprocess.run(["bash", *script], env=environment, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    dropin = tmp_path / "systemd" / "docker.service.d" / "classroom-worker.conf"
    assert dropin.read_text() == "[Service]\nEnvironment=DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1\n"
    assert json.loads((tmp_path / "docker" / "daemon.json").read_text()) == {"icc": False}
    assert "joining the swarm of 10.214.0.11" in first.stdout
    deadline = time.monotonic() + 60
    while f"{spare.name} Ready worker" not in swarm.manager.docker(
        "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{if .ManagerStatus}}manager{{else}}worker{{end}}"
    ):
        assert time.monotonic() < deadline, swarm.manager.docker("node", "ls")
        time.sleep(0.5)
    assert shutil.which("systemd-analyze"), "tests/bootstrap.sh installs systemd's systemd-analyze"
    unit = tmp_path / "systemd" / "docker.service"  # the drop-in's unit, as Debian's docker.io ships it
    unit.write_text("[Unit]\nDescription=Docker\n[Service]\nExecStart=/usr/sbin/dockerd\n")
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path / 'systemd'}:"},
    )
    assert verify.returncode == 0, verify.stderr
    again = subprocess.run(["bash", *script], env=environment, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "in a swarm already" in again.stdout and "wrote" not in again.stdout
