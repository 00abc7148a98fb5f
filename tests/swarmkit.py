"""A Docker Swarm of real dockerd's on this one machine: a manager and workers, each in a network namespace.

Every node is Debian's own dockerd (the package the tests install), with a data root, exec root, socket,
hostname and network namespace of its own; they join a real swarm over a bridge that lives in a namespace of
its own too (so the host's FORWARD policy never sees their traffic).  This machine reaches them at
10.214.0.1 (the manager's "cluster address" in site.yaml); the nodes have no default route: nothing they do
leaves the machine.  The nodes share the host's mount namespace (only the network is entered), which is what
lets the workers see the manager's homes at the same paths: the stand-in for NFS that this kernel lacks.

Each dockerd runs with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 (what examples/install.sh sets): with no registry,
a worker must use the image it holds instead of trying one at every start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
import contextlib

ROOT = Path("/var/lib/classroom-test-swarm")  # data roots (removed at stop)
RUN = Path("/run/classroom-test-swarm")  # exec roots and sockets
SWITCH = "clsw-switch"
HOST_IF = "clsw-host"
PREFIX = "10.214.0"
HOST_ADDRESS = f"{PREFIX}.1"


def _ip(*argv: str, check: bool = True) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


class Node:
    def __init__(self, name: str, address: str):
        self.name, self.address = name, address
        self.ns = f"clsw-{name}"
        self.socket = RUN / f"{name}.sock"
        self.data, self.exec_root = ROOT / name, RUN / name
        self.proc: subprocess.Popen | None = None
        self.log = RUN / f"{name}.log"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *argv: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(["docker", "-H", self.endpoint, *argv], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(argv)} on {self.name}: {done.stderr.strip()}")
        return done.stdout.strip()

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.endpoint, timeout=60)

    def start(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("-n", self.ns, "link", "add", "eth0", "type", "veth", "peer", "name", self.name, "netns", SWITCH)
        _ip("-n", SWITCH, "link", "set", self.name, "master", "br0", "up")
        _ip("-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _ip("-n", self.ns, "link", "set", "eth0", "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        self.data.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        dockerd = (
            f"hostname {self.name} && exec dockerd --data-root {self.data} --exec-root {self.exec_root} "
            f"--pidfile {RUN / (self.name + '.pid')} -H {self.endpoint} --cgroup-parent clsw-{self.name} "
            "--icc=false"
        )
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        env.pop("DOCKER_HOST", None)
        # only the network namespace is entered: `ip netns exec` would remount /sys without the cgroups
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.ns}", "unshare", "--uts", "sh", "-c", dockerd],
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", self.endpoint, "info"], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd on {self.name} did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        """dockerd stops its containers on SIGTERM; anything of this node still running after it is killed."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in _pids_mentioning(str(self.exec_root)):  # containerd and its shims
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _unmount_below(self.data)
        _unmount_below(self.exec_root)
        _ip("netns", "del", self.ns, check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.data), str(self.exec_root)], capture_output=True)


class Swarm:
    """``Swarm(workers=2, spare=1)``: the manager (mgr, 10.214.0.11), workers w1, w2, ... (10.214.0.12, ...) in
    the swarm, and spare machines (running dockerd, not joined) after them."""

    def __init__(self, workers: int = 2, spare: int = 0):
        self.manager = Node("mgr", f"{PREFIX}.11")
        self.workers = [Node(f"w{i}", f"{PREFIX}.{11 + i}") for i in range(1, workers + 1)]
        self.spare = [Node(f"w{i}", f"{PREFIX}.{11 + i}") for i in range(workers + 1, workers + spare + 1)]

    @property
    def nodes(self) -> list[Node]:
        return [self.manager, *self.workers, *self.spare]

    def start(self) -> None:
        try:
            self.stop()  # what an interrupted run left behind
            RUN.mkdir(parents=True, exist_ok=True)
            _ip("netns", "add", SWITCH)
            _ip("-n", SWITCH, "link", "add", "br0", "type", "bridge")
            _ip("-n", SWITCH, "link", "set", "br0", "up")
            _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", "host", "netns", SWITCH)
            _ip("-n", SWITCH, "link", "set", "host", "master", "br0", "up")
            _ip("addr", "add", f"{HOST_ADDRESS}/24", "dev", HOST_IF)
            _ip("link", "set", HOST_IF, "up")
            for node in self.nodes:
                node.start()
            self.manager.docker("swarm", "init", "--advertise-addr", self.manager.address)
            token = self.manager.docker("swarm", "join-token", "-q", "worker")
            for node in self.workers:
                node.docker("swarm", "join", "--token", token, f"{self.manager.address}:2377")
            deadline = time.monotonic() + 60
            while self.ready_workers() < len(self.workers):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers did not become ready: {self.manager.docker('node', 'ls')}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def ready_workers(self) -> int:
        out = self.manager.docker("node", "ls", "--filter", "role=worker", "--format", "{{.Status}}")
        return sum(1 for line in out.splitlines() if line == "Ready")

    def node_of(self, hostname: str) -> Node:
        return next(node for node in self.nodes if node.name == hostname)

    def stop(self) -> None:
        for node in [*self.spare, *self.workers, self.manager]:
            node.stop()
        _ip("link", "del", HOST_IF, check=False)
        _ip("netns", "del", SWITCH, check=False)
        for leftover in ROOT.glob("*") if ROOT.exists() else []:  # nodes of an earlier run with other names
            _unmount_below(leftover)
        subprocess.run(["rm", "-rf", "--one-file-system", str(ROOT), str(RUN)], capture_output=True)


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                pass
    return out


def _unmount_below(path: Path) -> None:
    """Docker's own mounts (overlays, volumes, netns files) under a node's roots, deepest first, before any rm:
    a volume there may be a bind of a student's home."""
    with open("/proc/self/mountinfo") as handle:
        targets = [line.split()[4] for line in handle]
    for target in sorted(
        (t for t in targets if t == str(path) or t.startswith(str(path) + "/")), key=len, reverse=True
    ):
        subprocess.run(["umount", "-l", target], capture_output=True)
