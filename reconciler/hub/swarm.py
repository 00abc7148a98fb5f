"""Student servers as Docker Swarm services on the workers (site.yaml ``hub.spawner: swarm``).

The same server as on one host (hub/spawner.py's container_settings: the person's UID:GID, their quota,
a read-only root, no capabilities, a pids limit, a bounded /tmp and log), expressed as a service:

- the home and the course folder are Docker volumes of the built-in ``local`` driver, so each worker mounts
  them itself: over NFS from the manager, which keeps the quota volumes and exports each mounted home to the
  workers only (``homes: nfs``, core/exports.py), or as a bind of the path every worker sees (``homes: shared``);
- the container's /etc/passwd, /etc/group (and the https server config) are swarm configs: the files exist
  on the manager only, the swarm carries them to whichever worker runs the server;
- memory and CPU are limits *and* reservations (hub.swarm.reserve_memory / reserve_cpu of the quota), so the
  scheduler spreads the servers over the workers by what they hold; a server no worker has room for fails
  its start within a minute, saying so, instead of waiting for the start timeout;
- the server's port is published on its worker in host mode (the routing mesh needs IPVS, and a published
  port per worker is all the proxy needs): the hub reaches it at the worker's address;
- no restart policy: a server whose worker fails is stopped in the hub's eyes, and its next start lands on a
  healthy worker (a silent restart elsewhere would leave the proxy pointing at the dead one);
- only workers run student servers (``node.role == worker``): the manager holds the hub and the volumes.

Swarm services have no no-new-privileges option before Docker API 1.46; the student image carries no setuid
or setgid program (image/build.py), so there is nothing for it to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

from dockerspawner import SwarmSpawner
from tornado import web

from ..config.classroom import Classroom
from ..config.site import Site
from ..host.containers import LABEL_CLASSROOM, LABEL_USER
from .spawner import IN_CONTAINER, SCHOOL_CA, ClassroomSpawner

NANO = 10**9
# Docker lets a container's processes bind ports below 1024 without any capability; with NFS's sec=sys the
# manager trusts the UIDs a request from a privileged port claims ("secure"), so a student able to send from one
# could claim anyone's UID.  Their servers get the kernel's default back: ports below 1024 need root.
SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "1024"}
UNPLACED_SECONDS = 30  # a task no worker can take for this long fails its start (workers may free up meanwhile)


# How a worker mounts a home from the manager (homes: nfs), as the local driver passes it to mount(2): NFS 4.2 over
# TCP, hard (a manager that reboots makes writes wait, never fail half-way), no device files or setuid programs.
NFS_OPTIONS = "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,nosuid,nodev"


def volume_options(homes: str, manager: str, source: str) -> dict[str, str]:
    """The local driver's options for a home (or the course folder) on a worker."""
    if homes == "nfs":
        return {"type": "nfs", "o": f"addr={manager},{NFS_OPTIONS}", "device": f":{source}"}
    return {"type": "none", "o": "bind", "device": source}  # shared: the same path on every worker


def volume_name(classroom: str, username: str, options: dict[str, str]) -> str:
    """The Docker volume that stands for a person's home (or the course folder) on every worker.  A worker keeps
    a named volume's options from its first use: the options' hash in the name makes a changed one a new volume."""
    digest = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:8]
    return f"jupyter-{classroom}-{username}-{digest}"


def config_name(classroom: str, username: str, name: str, text: str) -> str:
    """Swarm configs are immutable: a changed file is a new config (its content hash in the name)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"jupyter-{classroom}-{username}-{name.replace('_', '-').replace('.', '-')}-{digest}"


def service_spec(
    site: Site,
    classroom: Classroom,
    settings: dict,
    *,
    image: str,
    args: list[str],
    env: dict[str, str],
    configs: dict[str, str],
    port: int,
) -> dict:
    """The whole service (docker-py's create_service keyword arguments) from container_settings(); pure.

    ``configs``: file name (IN_CONTAINER's keys, ca_bundle) -> (id, name) of the swarm config holding it.
    """
    from docker.types import (
        ConfigReference,
        ContainerSpec,
        DriverConfig,
        EndpointSpec,
        Mount,
        Placement,
        Resources,
        RestartPolicy,
        TaskTemplate,
    )

    hub = site.hub
    assert hub is not None and hub.swarm is not None
    member, create, host = settings["member"], settings["create"], settings["host"]
    username = member.username
    mounts = []
    for bind in settings["mounts"]:
        if bind["target"] in IN_CONTAINER.values() or bind["target"] == SCHOOL_CA:
            continue  # files: configs below
        owner = username if bind["target"] == settings["home"] else "_shared"
        options = volume_options(hub.swarm.homes, hub.swarm.address, bind["source"])
        mounts.append(
            Mount(
                target=bind["target"],
                source=volume_name(classroom.name, owner, options),
                type="volume",
                read_only=bind["read_only"],
                no_copy=True,  # never write into a home as root
                driver_config=DriverConfig("local", options),
                labels={LABEL_CLASSROOM: classroom.name},
            )
        )
    mounts.append(Mount(target="/tmp", source=None, type="tmpfs", tmpfs_size=hub.tmp_size, tmpfs_mode=0o1777))
    references = [
        ConfigReference(*configs[name], filename=where, uid="0", gid="0", mode=0o444)
        for name, where in {**IN_CONTAINER, "ca_bundle": SCHOOL_CA}.items()
        if name in configs
    ]
    container = ContainerSpec(
        image,
        args=args,
        env=env,
        user=create["user"],
        workdir=create["working_dir"],
        hostname=create["hostname"],
        labels=create["labels"],
        mounts=mounts,
        groups=host["group_add"] or None,
        read_only=True,
        cap_drop=["ALL"],
        configs=references or None,
        sysctls=dict(SYSCTLS),
    )
    swarm = hub.swarm
    resources = Resources(
        mem_limit=member.memory,
        mem_reservation=int(member.memory * swarm.reserve_memory),
        cpu_limit=int(member.cpu * NANO),
        cpu_reservation=int(member.cpu * swarm.reserve_cpu * NANO) or None,
    )
    resources.setdefault("Limits", {})["Pids"] = host["pids_limit"]  # API 1.41+; docker-py has no argument for it
    log = host["log_config"]
    task = TaskTemplate(
        container,
        resources=resources,
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=["node.role == worker"]),
        log_driver={"Name": log["type"], "Options": log["config"]},
    )
    return {
        "task_template": task,
        "endpoint_spec": EndpointSpec(ports={None: (port, "tcp", "host")}),
        "labels": {LABEL_CLASSROOM: classroom.name, LABEL_USER: username},
    }


def config_texts(site: Site, settings: dict) -> dict[str, str]:
    """The files a server needs from the manager, by IN_CONTAINER name (and ca_bundle)."""
    texts = dict(settings["identity"])
    for bind in settings["mounts"]:
        if bind["target"] == SCHOOL_CA:
            texts["ca_bundle"] = Path(bind["source"]).read_text(encoding="utf-8")
    return texts


class ClassroomSwarmSpawner(ClassroomSpawner, SwarmSpawner):
    """ClassroomSpawner's checks, limits and start slots; a swarm service instead of a container."""

    async def slot_count(self) -> int:
        """Servers boot on the workers: two per CPU the swarm's ready workers have (the manager's own cores
        decide nothing), at least the configured start_slots."""
        nodes = await self.docker("nodes", filters={"role": "worker"})
        cpus = (
            sum(
                node.get("Description", {}).get("Resources", {}).get("NanoCPUs", 0)
                for node in nodes
                if node.get("Status", {}).get("State") == "ready"
            )
            / NANO
        )
        return max(self.start_slots, int(2 * cpus))

    def configure(self, site: Site, classroom: Classroom, settings: dict) -> None:
        self._classroom_site, self._classroom, self._settings = site, classroom, settings

    async def _ensure_configs(self) -> dict[str, tuple[str, str]]:
        """Create the person's configs (content-addressed, so an unchanged file reuses its config); drop old ones
        no service uses any more (remove_object drops them all when the server stops)."""
        classroom, username = self._classroom.name, self.user.name
        texts = config_texts(self._classroom_site, self._settings)
        wanted = {name: config_name(classroom, username, name, text) for name, text in texts.items()}
        existing = {
            c["Spec"]["Name"]: c["ID"]
            for c in await self.docker(
                "configs", filters={"label": [f"{LABEL_CLASSROOM}={classroom}", f"{LABEL_USER}={username}"]}
            )
        }
        ids = {}
        for name, config in wanted.items():
            if config not in existing:
                created = await self.docker(
                    "create_config",
                    config,
                    texts[name].encode(),
                    labels={LABEL_CLASSROOM: classroom, LABEL_USER: username},
                )
                existing[config] = created["ID"]
            ids[name] = (existing[config], config)
        for config, config_id in existing.items():
            if config not in wanted.values():
                with contextlib.suppress(Exception):  # still used by a service being removed: next start
                    await self.docker("remove_config", config_id)
        return ids

    async def remove_object(self):
        """The service, then the person's configs (their name and groups): nothing of theirs stays on the swarm
        while their server is stopped."""
        await super().remove_object()
        for config in await self.docker(
            "configs", filters={"label": [f"{LABEL_CLASSROOM}={self.classroom_name}", f"{LABEL_USER}={self.user.name}"]}
        ):
            # one still attached to the service being removed goes at its next start
            with contextlib.suppress(Exception):
                await self.docker("remove_config", config["ID"])

    async def create_object(self):
        ids = await self._ensure_configs()
        spec = service_spec(
            self._classroom_site,
            self._classroom,
            self._settings,
            image=self.image,
            args=await self.get_command(),
            env=self.get_env(),
            configs=ids,
            port=self.port,
        )
        service = await self.docker("create_service", name=self.service_name, **spec)
        # the manager makes the service's task a moment later: until then there is nothing to wait on
        while not await self.docker("tasks", filters={"service": self.service_name}):
            await asyncio.sleep(0.2)
        return service

    async def poll(self):
        """Running while the task runs (as SwarmSpawner.poll) on a worker that is up: a task on a worker that
        went away stays "running" in the manager's records (nothing restarts it: no restart policy), but the
        server is gone with its worker."""
        task = await self.get_task()  # once: SwarmSpawner's own poll would ask again
        if not task:
            return 0
        if task["Status"]["State"] not in ("running", "starting", "pending", "preparing"):
            return task["Status"].get("Err") or task["Status"]["State"]
        if task.get("NodeID"):
            node = await self.docker("inspect_node", task["NodeID"])
            state = node.get("Status", {}).get("State")
            if state != "ready":
                host = node.get("Description", {}).get("Hostname", task["NodeID"])
                self.log.warning("%s's server was on %s, which is %s", self.user.name, host, state)
                return f"its worker {host} is {state}"
        return None

    async def start_object(self):
        """Wait until the service's task runs (SwarmSpawner's loop, polling every second), failing fast when
        no worker can take it: the swarm keeps such a task pending for ever, the student would wait for the
        start timeout."""
        loop = asyncio.get_running_loop()
        unplaced_since = None
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"service {self.service_name} vanished while starting")
            status = task["Status"]
            state = status["State"].lower()
            if state == "running":
                return
            if state in ("failed", "rejected", "shutdown", "complete", "orphaned", "remove"):
                raise RuntimeError(f"your server could not start on the swarm: {status.get('Err') or state}")
            why = status.get("Err") or status.get("Message") or ""
            if state == "pending" and "no suitable node" in why:
                unplaced_since = unplaced_since or loop.time()
                if loop.time() - unplaced_since > UNPLACED_SECONDS:
                    raise web.HTTPError(
                        503,
                        "No machine of the cluster has room for your server right now "
                        f"({why}). Please tell your teacher.",
                    )
            else:
                unplaced_since = None
            await asyncio.sleep(1)

    async def get_ip_and_port(self):
        """The worker's address and the port published there for this server (host mode)."""
        task = await self.get_task()
        if not task or not task.get("NodeID"):
            raise RuntimeError(f"service {self.service_name} has no task on a node")
        node = await self.docker("inspect_node", task["NodeID"])
        for published in task["Status"].get("PortStatus", {}).get("Ports", []):
            if published.get("TargetPort") == self.port:
                return node["Status"]["Addr"], published["PublishedPort"]
        raise RuntimeError(f"service {self.service_name} publishes no port for {self.port} on its node")
