"""`reconcile up` / `reconcile down`: the whole classroom on one machine, without an init system.

For development and for trying it out: build the image, mount the volumes,
start the hub and the daemon in the background (pid files and logs in
<state_dir>), run one pass, and say where to go.  On a server, the systemd
units do the same (examples/systemd).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from . import image, lock, mounts, outbox, spec


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return None if state == "Z" else pid  # a zombie has exited; only its parent has not reaped it yet


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (JupyterHub starts its services in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_tree(pid: int, grace: float = 20.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever of it and its descendants is left."""
    below = descendants(pid)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_running(p) for p in [pid, *below]):
        time.sleep(0.2)
    for target in [pid, *below]:
        if _running(target):
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


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
        subprocess.Popen(["dockerd"], stdout=open("/var/log/dockerd.log", "ab"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    for _ in range(60):
        try:
            docker.from_env().ping()
            return
        except Exception:  # noqa: BLE001
            time.sleep(1)
    raise SystemExit("dockerd did not come up; see /var/log/dockerd.log")


def _spawn(name: str, argv: list[str], state: Path) -> int:
    pid_file = state / f"{name}.pid"
    pid = _alive(pid_file)
    if pid:
        print(f"{name}: already running (pid {pid})")
        return pid
    log = open(state / f"{name}.log", "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    print(f"{name}: started (pid {proc.pid}, log {state / f'{name}.log'})")
    return proc.pid


def _wait_for_hub(url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise SystemExit(f"the hub did not answer at {url} within {timeout:g}s:\n{tail}")


def up(site: spec.Site, classroom_file: Path) -> int:
    from . import engine
    from .cli import run_pass

    classroom = spec.load_classroom(classroom_file, site)
    if site.hub is None:
        raise SystemExit("site.yaml has no hub: section; `reconcile up` runs the hub (see examples/site.yaml)")
    state = site.state_dir
    state.mkdir(parents=True, exist_ok=True)
    effective = spec.write_effective(site, state / "site.effective.yaml")
    ensure_docker()
    if image.report(site.hub.image, state / "image-cache", False) != 0:
        return 1
    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout):
        mounts.mount_all(site.paths)
    me = [sys.executable, "-m", "reconciler", "--site", str(effective)]
    _spawn("hub", [*me[:3], "hub", "--site", str(effective), "-f", str(classroom_file.resolve())], state)
    _wait_for_hub(site.hub.public_url, state / "hub.log")
    code = run_pass(site, classroom, engine.policy(site), dry_run=False,
                    as_json=False)
    _spawn("watch", [*me[:3], "watch", "--site", str(effective), "-f", str(classroom_file.resolve())], state)
    waiting = outbox.pending(site.paths.outbox)
    print()
    print(f"JupyterHub: {site.hub.public_url}")
    print(f"Teacher page: {site.hub.public_url.rstrip('/')}/services/classroom/ (teachers only)")
    if waiting:
        print(f"{len(waiting)} new password(s) wait in {site.paths.outbox}/ (root only). "
              f"Print them: reconcile credentials slips --all --out slips.html")
    print(f"Edit {classroom_file}: the daemon applies every save.  Stop everything: reconcile down")
    return code


def down(site: spec.Site, classroom_file: Path) -> int:
    """Stop the daemon, the hub (with its proxy and culler) and the students' servers; files stay."""
    for name in ("watch", "hub"):
        pid_file = site.state_dir / f"{name}.pid"
        pid = _alive(pid_file)
        if pid is None:
            print(f"{name}: not running")
            continue
        stop_tree(pid)
        pid_file.unlink(missing_ok=True)
        print(f"{name}: stopped")
    try:
        import docker

        from .containers import LABEL_CLASSROOM

        name = spec.load_classroom(classroom_file, site).name
        found = docker.from_env().containers.list(all=True, filters={"label": f"{LABEL_CLASSROOM}={name}"})
    except Exception as exc:  # noqa: BLE001 - nothing more to stop when Docker or the file is gone
        print(f"student servers: not checked ({type(exc).__name__})")
        return 0
    for container in found:
        container.remove(force=True)
    print(f"student servers: {len(found)} stopped")
    return 0
