#!/usr/bin/env python3
"""Spawn -> ready for one student: the reconciler's hub config against a plain DockerSpawner config.

Not a pytest test (nothing here asserts on time).  Needs root, dockerd, configurable-http-proxy and
the student image (tests/imagekit.py, cached).  One throw-away classroom with one student (memory
256Mi, cpu 1, disk 128Mi), converged by one `reconcile` pass; then two hubs side by side, each
with its own ports, database and Docker network:

  (a) `reconcile hub` (tests/hubkit.py): ClassroomSpawner, hardened container, admission control;
  (b) `python -m jupyterhub -f <tmp>/jupyterhub_config.py`, a plain config like the seed's: PAM
      with allowed_groups = the classroom's groups, DockerSpawner with the same image (pull_policy
      never), a plain bind of the same home volume, use_internal_ip on a plain bridge this script
      creates, remove=True, user "uid:gid" via extra_create_kwargs, notebook_dir and HOME.

The student logs in to both through the login form.  After one untimed warm-up start on each, runs
alternate a, b, a, b, ...: POST /hub/api/users/<name>/server, then follow the spawn page's progress
stream until ready (the same client code for both); the server is stopped (and its container gone)
between runs.  Prints each run, both medians and the ratio reconciler / plain (target <= 1.05).

Everything is removed in a finally (also on Ctrl-C / SIGTERM): both hubs' processes, containers,
both networks (and the reconciler's firewall chain), the classroom; then it checks nothing is left.

    .venv/bin/python tests/bench/bench_spawn.py [--runs 5] [--settle 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hubbench as hb  # noqa: E402  (puts tests/ on sys.path)

import docker  # noqa: E402
import requests  # noqa: E402

from hostkit import cleanup, make_classroom  # noqa: E402
from hubkit import Hub, add_hub, free_port, xsrf  # noqa: E402
from imagekit import TAG, build_test_image  # noqa: E402

from reconciler.hub.launch import proxy_env  # noqa: E402
from reconciler.config.classroom import group_name  # noqa: E402

TARGET_RATIO = 1.05

PLAIN_CONFIG = """\
# A plain JupyterHub + DockerSpawner configuration, like the seed's (written by bench_spawn.py).
c.JupyterHub.bind_url = "{public_url}"
c.JupyterHub.hub_ip = "{gateway}"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"

c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {groups!r}

c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.Spawner.default_url = "/lab"
c.DockerSpawner.image = "{image}"
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.prefix = "{prefix}"
c.DockerSpawner.network_name = "{network}"
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.volumes = {{"{homes}/{{username}}": "/home/{{username}}"}}
c.DockerSpawner.notebook_dir = "/home/{{username}}"
c.DockerSpawner.extra_create_kwargs = {{"user": "{uid}:{gid}"}}
c.DockerSpawner.environment = {{"HOME": "/home/{user}"}}
"""


class PlainHub(Hub):
    """`python -m jupyterhub -f <dir>/jupyterhub_config.py` in its own process group, cwd <dir>."""

    def __init__(self, workdir: Path, url: str):
        self.dir, self.url = workdir, url
        self.log = workdir / "hub.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")]

    def start(self, timeout: float = 90) -> None:
        # NODE_PATH=/usr/share/nodejs for Debian's proxy
        super().start(timeout, cwd=self.dir, env={**os.environ, **proxy_env()})


def login(url: str, username: str, password: str) -> requests.Session:
    """The real /hub/login form with its XSRF token (as hubkit.Hub.login, for any hub URL)."""
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=10)
    response = session.post(
        f"{url}/hub/login?next=",
        data={"username": username, "password": password, "_xsrf": xsrf(session)["X-XSRFToken"]},
        allow_redirects=False,
        timeout=30,
    )
    if response.status_code != 302:
        raise RuntimeError(f"{username} could not log in to {url}: HTTP {response.status_code}")
    return session


def make_plain_network(name: str) -> str:
    """A plain Docker bridge (default options); returns its gateway."""
    client = docker.from_env()
    network = client.networks.create(name, driver="bridge")
    network.reload()
    return network.attrs["IPAM"]["Config"][0]["Gateway"]


def remove_plain_network(name: str) -> None:
    for network in docker.from_env().networks.list(names=[name]):
        network.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per config (default 5, at least 5)")
    parser.add_argument("--settle", type=float, default=3, help="seconds of rest between runs (default 3)")
    args = parser.parse_args()
    args.runs = max(args.runs, 5)
    reason = hb.cannot_run()
    if reason:
        print(f"cannot run here: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, hb.on_sigterm)
    print(f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    build_test_image()

    room = make_classroom()
    add_hub(room, image=TAG)
    room.quotas = {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}}
    room.write([{"username": "s1"}])
    user = room.user("s1")
    plain_net = f"clsrm-{room.name}-plain"
    plain_prefix = f"jupyter-{room.name}-plain"
    hub_a = Hub(room)
    hub_b: PlainHub | None = None
    made_net = False
    times: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    throttle: dict[str, list[float]] = {"a": [], "b": []}
    # (POST -> container started, -> server logs "is running at", -> the hub says ready)
    split: dict[str, list[tuple[float, float, float]]] = {"a": [], "b": []}
    warm: dict[str, float | None] = {}
    error = ""
    print(f"classroom {room.name}, student {user}, in {room.root}", flush=True)
    try:
        ran = room.cli(timeout=600)
        if not hb.host_converged(ran):
            raise RuntimeError(f"reconcile exited {ran.returncode}: {(ran.stdout + ran.stderr)[-1500:]}")
        print(f"reconcile: exit {ran.returncode}{hb.hub_not_up_note(ran)}", flush=True)

        hub_a.start(timeout=120)
        gateway = make_plain_network(plain_net)
        made_net = True
        workdir = room.root / "plain"
        workdir.mkdir()
        account = pwd.getpwnam(user)
        public_url = f"http://127.0.0.1:{free_port()}"
        (workdir / "jupyterhub_config.py").write_text(
            PLAIN_CONFIG.format(
                public_url=public_url,
                gateway=gateway,
                hub_port=free_port(),
                proxy_port=free_port(),
                groups={group_name(room.name, "student"), group_name(room.name, "teacher")},
                image=TAG,
                prefix=plain_prefix,
                network=plain_net,
                homes=room.paths.homes,
                uid=account.pw_uid,
                gid=account.pw_gid,
                user=user,
            )
        )
        hub_b = PlainHub(workdir, public_url)
        hub_b.start()
        print(
            f"(a) reconcile hub at {hub_a.url}; (b) plain hub at {hub_b.url} (network {plain_net}, gateway {gateway})",
            flush=True,
        )

        password = hb.password(room, user)
        hubs = {
            "a": (hub_a, login(hub_a.url, user, password), f"jupyter-{room.name}-{user}"),
            "b": (hub_b, login(hub_b.url, user, password), f"{plain_prefix}-{user}"),
        }

        def one(kind: str) -> tuple[float, float | None]:
            hub, session, name = hubs[kind]
            outcome = hb.spawn_and_wait(
                hub.url, session, user, 300, hub_alive=lambda: hub.proc is not None and hub.proc.poll() is None
            )
            if not outcome.ok:
                raise RuntimeError(
                    f"({kind}) {outcome.failure}; events {outcome.events}\n{hb.hub_log_excerpt(hub.log, 40)}"
                )
            cid = hb.container_id(name=name)
            used = hb.cpu_seconds(cid) if cid else None
            begun = hb.started_at(cid) if cid else None
            running = hb.listening_at(cid) if cid else None
            if begun is not None and running is not None:
                split[kind].append((begun - outcome.t_sent, running - begun, outcome.t_ready - running))
            held = hb.throttled(cid) if cid else None
            if held:
                throttle[kind].append(held)
            hb.stop_and_wait(hub.url, session, user, container_name=name)
            time.sleep(args.settle)
            return outcome.ready_s, used

        for kind in ("a", "b"):
            warm[kind], _ = one(kind)
            print(f"  warm-up ({kind}): {warm[kind]:.2f} s (not counted)", flush=True)
        for i in range(args.runs):
            for kind in ("a", "b"):
                seconds, used = one(kind)
                times[kind].append(seconds)
                if used is not None:
                    cpu[kind].append(used)
                print(
                    f"  run {i + 1}/{args.runs} ({kind}): spawn -> ready {seconds:.2f} s"
                    + (f", container CPU {used:.2f} s" if used is not None else "")
                    + f"; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    except KeyboardInterrupt:
        error = "interrupted"
        print("\ninterrupted; cleaning up", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        error = f"{type(exc).__name__}: {exc}"
    finally:
        problems = hb.shielded(teardown, room, hub_a, hub_b, plain_net if made_net else None, plain_prefix)

    print("\n" + "=" * 100)
    print(
        f"spawn -> ready (POST /hub/api/users/<name>/server -> ready on the progress stream), one student, "
        f"image {TAG}, memory 256Mi / cpu 1"
    )
    if error:
        print(f"ERROR: {error}")
    for kind, label in (("a", "reconciler (`reconcile hub`, ClassroomSpawner)"), ("b", "plain DockerSpawner config")):
        if times[kind]:
            print(
                f"  ({kind}) {label}: median {statistics.median(times[kind]):.2f} s over {len(times[kind])} runs "
                f"[{', '.join(f'{t:.2f}' for t in times[kind])}]"
                + (f"; container CPU-s at ready median {statistics.median(cpu[kind]):.2f}" if cpu[kind] else "")
                + (f"; warm-up {warm[kind]:.2f} s" if warm.get(kind) else "")
                + (f"; CFS-throttled {sum(throttle[kind]):.2f} s in all" if throttle[kind] else "")
            )
            if len(times[kind]) > 1:
                print(
                    f"      mean {statistics.fmean(times[kind]):.2f} s, min {min(times[kind]):.2f} s, "
                    f"stdev {statistics.stdev(times[kind]):.2f} s"
                )
            timed = split[kind][-len(times[kind]) :]  # the warm-up's is first
            if timed:
                print(
                    f"      split, medians: POST -> container started {statistics.median(t[0] for t in timed):.2f} s, "
                    f"-> the server logs 'is running at' {statistics.median(t[1] for t in timed):.2f} s, "
                    f"-> the hub says ready {statistics.median(t[2] for t in timed):.2f} s (the hub's polling)"
                )
    if times["a"] and times["b"]:
        pairs = [a - b for a, b in zip(times["a"], times["b"], strict=False)]
        print(
            f"  paired (run i of a minus run i of b): median {statistics.median(pairs):+.2f} s; "
            f"ratio of the means {statistics.fmean(times['a']) / statistics.fmean(times['b']):.3f}"
        )
        ratio = statistics.median(times["a"]) / statistics.median(times["b"])
        print(
            f"  ratio reconciler / plain = {ratio:.3f} (target <= {TARGET_RATIO}) -> "
            f"{'MET' if ratio <= TARGET_RATIO else 'MISSED'}"
        )
    print(
        "cleanup: "
        + (
            "; ".join(problems)
            if problems
            else "nothing of ours left (containers, clsrm networks, hub/proxy processes, users, mounts)"
        )
    )
    print(f"load at the end: {os.getloadavg()[0]:.2f}")
    return 130 if error == "interrupted" else (0 if not error and not problems else 1)


def teardown(room, hub_a: Hub, hub_b: PlainHub | None, plain_net: str | None, plain_prefix: str) -> list[str]:
    print(f"cleanup {room.name} ...", flush=True)
    prefixes = (f"jupyter-{room.name}",)  # both hubs' containers (b's are jupyter-<name>-plain-<user>)
    steps = [("stop hub (a)", hub_a.stop)]
    if hub_b is not None:
        steps.append(("stop hub (b)", hub_b.stop))
    steps += [
        ("stop a proxy or culler left behind", lambda: hb.kill_ours((room.root,))),
        ("remove containers", lambda: hb.remove_containers(room.name, prefixes)),
        ("remove (a)'s bridge and firewall chain", hub_a.remove_network),
    ]
    if plain_net:
        steps.append(("remove (b)'s network", lambda: remove_plain_network(plain_net)))
    steps.append(("remove the classroom", lambda: cleanup(room)))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - go on; the check below reports
            print(f"cleanup: {what} failed: {type(exc).__name__}: {exc}", flush=True)
    time.sleep(0.5)
    problems, others = hb.verify_clean(room, prefixes, (room.root,))
    if problems:
        time.sleep(2)
        hb.remove_containers(room.name, prefixes)
        cleanup(room)
        problems, others = hb.verify_clean(room, prefixes, (room.root,))
    print(
        f"cleanup check {room.name}: "
        + (
            "; ".join(problems)
            if problems
            else "clean (no containers, clsrm networks, hub/proxy processes, users, mounts of ours)"
        ),
        flush=True,
    )
    for note in others:
        print(f"note, not ours (another run on this host): {note}", flush=True)
    return problems


if __name__ == "__main__":
    sys.exit(main())
