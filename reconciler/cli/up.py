"""`reconcile up` / `reconcile down`: the whole classroom on one machine, without an init system.

For development and for trying it out: build the image, mount the volumes,
start the hub and the daemon in the background under a supervisor that
restarts whichever stops (host/supervisor.py; pid files and logs in
<state_dir>, each log rotated at 10 MiB with 5 kept: host/logpipe.py), run
one pass, and say where to go.  On a server, the systemd units do the same
(examples/systemd).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..config.load import load_classroom
from ..config.site import Site
from ..credentials import outbox
from ..engine import passes
from ..host.containers import LABEL_CLASSROOM
from ..host.facts import alive
from ..host.fsutil import private_dir, write_atomic
from . import progress
from .commands import classroom_path, run_pass, site_of
from .parser import command


def up_command(args: argparse.Namespace) -> int:
    site = site_of(args, applies=True)
    return up(site, classroom_path(args, site), progress.of(args))


def down_command(args: argparse.Namespace) -> int:
    site = site_of(args, applies=True)
    started_with = site.state_dir / UP_CLASSROOM  # the file `up` ran with, unless -f names another
    classroom_file = (
        classroom_path(args, site)
        if getattr(args, "file", None) or not started_with.exists()
        else Path(started_with.read_text().strip())
    )
    return down(site, classroom_file)


UP_CLASSROOM = "up.classroom"  # in the state directory: the classroom file `reconcile up` ran with


def ensure_docker() -> None:
    """Start dockerd in the background when it is not running and no init system will."""
    import docker

    try:
        docker.from_env().ping()
        return
    except Exception:  # noqa: BLE001 - any failure means: not reachable
        pass
    if Path("/proc/1/comm").read_text().strip() == "systemd":
        subprocess.run(["systemctl", "start", "docker"], check=True)
    else:
        print("starting dockerd in the background (log: /var/log/dockerd.log)")
        with open("/var/log/dockerd.log", "ab") as log:  # dockerd has its own copy of the descriptor
            subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(60):
        try:
            docker.from_env().ping()
            return
        except Exception:  # noqa: BLE001
            time.sleep(1)
    raise SystemExit("dockerd did not come up; see /var/log/dockerd.log")


SPEC = "supervisor.spec.json"  # in the state directory: what the supervisor runs (host/supervisor.py)


def _supervise(state: Path, components: dict[str, list[str]]) -> None:
    """Have the supervisor run ``components`` (started when it is not running; told with SIGHUP when it is)."""
    write_atomic(state / SPEC, json.dumps({"components": [{"name": n, "argv": a} for n, a in components.items()]}))
    pid = alive(state / "supervisor.pid")
    if pid:
        os.kill(pid, signal.SIGHUP)
        return
    from ..host.supervisor import start_logged  # psutil: `up` and `down` alone load it

    proc, _ = start_logged("supervisor", [sys.executable, "-m", "reconciler.host.supervisor", str(state / SPEC)], state)
    print(f"supervisor: started (pid {proc.pid}, log {state / 'supervisor.log'}); it restarts what stops")


def _running(state: Path, name: str, timeout: float = 30) -> int:
    """Wait until the supervisor has started ``name``; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = alive(state / f"{name}.pid")
        if pid:
            return pid
        time.sleep(0.1)
    raise SystemExit(f"{name} was not started; see {state / 'supervisor.log'}")


def _wait_for_hub(url: str, log: Path, timeout: float = 90, progress=lambda text: None) -> None:
    import requests

    deadline = time.monotonic() + timeout
    said = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - said >= 5:
            progress(f"waiting for the hub to answer at {url} (log: {log})")
            said = time.monotonic()
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise SystemExit(f"the hub did not answer at {url} within {timeout:g}s:\n{tail}")


def up(site: Site, classroom_file: Path, progress=lambda text: None) -> int:
    classroom = load_classroom(classroom_file, site)
    if site.hub is None:
        raise SystemExit("site.yaml has no hub: section; `reconcile up` runs the hub (see examples/site.yaml)")
    state = site.state_dir
    private_dir(state)
    from ..hub.launch import write_effective  # `up` alone needs the hub's and the image's code
    from ..image import build

    effective = write_effective(site, state / "site.effective.yaml")
    write_atomic(state / UP_CLASSROOM, f"{classroom_file.resolve()}\n")
    ensure_docker()
    progress("the student image")
    if build.report(site.hub.image, state / "image-cache", False, progress, site.image, site.pins_file) != 0:
        return 1
    progress("mounting the volumes in the manifest")
    passes.mount_all(site)
    me = [sys.executable, "-m", "reconciler"]
    hub = [*me, "hub", "--site", str(effective), "-f", str(classroom_file.resolve())]
    daemon = [*me, "watch", "--site", str(effective), "-f", str(classroom_file.resolve())]
    before = {name: alive(state / f"{name}.pid") for name in ("hub", "watch")}
    # the hub first, one pass in this terminal (its output is the user's), then the daemon
    _supervise(state, {"hub": hub, **({"watch": daemon} if before["watch"] else {})})
    for name, pid in before.items():
        if pid:
            print(f"{name}: already running (pid {pid})")
    print(f"hub: pid {_running(state, 'hub')}, log {state / 'hub.log'}")
    _wait_for_hub(site.hub.public_url, state / "hub.log", progress=progress)
    code = run_pass(site, classroom, passes.policy(site), dry_run=False, as_json=False)
    _supervise(state, {"hub": hub, "watch": daemon})
    print(f"watch: pid {_running(state, 'watch')}, log {state / 'watch.log'}")
    waiting = outbox.pending(site.paths.outbox)
    print()
    print(f"JupyterHub: {site.hub.public_url}")
    print(f"Teacher page: {site.hub.public_url.rstrip('/')}/services/classroom/ (teachers only)")
    if waiting:
        print(
            f"{len(waiting)} new password(s) wait in {site.paths.outbox}/ (root only). "
            f"Print them: reconcile credentials slips --all --out slips.html"
        )
    print(f"Edit {classroom_file}: the daemon applies every save.  Stop everything: reconcile down")
    return code


def down(site: Site, classroom_file: Path) -> int:
    """Stop the supervisor, the daemon, the hub (with its proxy and services) and the students' servers; files
    stay."""
    import psutil

    from ..host.supervisor import stop_tree

    supervisor = alive(site.state_dir / "supervisor.pid")
    if supervisor:  # it stops its components itself, each as a whole tree, then ends
        os.kill(supervisor, signal.SIGTERM)
        try:
            psutil.Process(supervisor).wait(timeout=90)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            stop_tree(supervisor)
        (site.state_dir / "supervisor.pid").unlink(missing_ok=True)
        print("supervisor: stopped")
    for name in ("watch", "hub"):
        pid_file = site.state_dir / f"{name}.pid"
        pid = alive(pid_file)
        if pid is None:
            print(f"{name}: not running")
            continue
        stop_tree(pid)
        pid_file.unlink(missing_ok=True)
        print(f"{name}: stopped")
    try:
        import docker

        name = load_classroom(classroom_file, site).name
        found = docker.from_env().containers.list(all=True, filters={"label": f"{LABEL_CLASSROOM}={name}"})
    except Exception as exc:  # noqa: BLE001 - nothing more to stop when Docker or the file is gone
        print(f"student servers: not checked ({type(exc).__name__})")
        return 0
    for container in found:
        container.remove(force=True)
    print(f"student servers: {len(found)} stopped")
    return 0


def register(sub) -> None:
    command(
        sub,
        "up",
        up_command,
        "everything on this machine: image, volumes, hub and daemon in the background, one pass",
    )
    command(sub, "down", down_command, "stop the hub and the daemon started by `reconcile up`")
