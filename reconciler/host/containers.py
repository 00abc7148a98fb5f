"""Driver and probe for the students' server containers (Docker).

DockerSpawner starts them with our labels (see hub/spawner.py), so one
filtered list call finds every container of a classroom.  docker-py is
imported only when a container is listed or changed: hosts without a hub never
load it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping

from ..core.actions import Action, Kind, Op
from ..core.actual import Container
from ..core.plan import CPU_PERIOD, cpu_quota
from .drivers import Context, driver

LABEL_USER = "org.classroom.user"
LABEL_CLASSROOM = "org.classroom.classroom"


ACT_TIMEOUT = 30  # seconds a driver's Docker call may take (a container stop waits up to STOP_TIMEOUT in it)
LOOK_TIMEOUT = 5  # seconds an observation's Docker call may take: a Docker that accepts and never answers costs a
# pass this much, once, and the pass goes on without the containers ("Docker is unreachable")


def client(timeout: float = ACT_TIMEOUT):
    import docker  # imported lazily: hosts without a hub never need it

    return docker.from_env(timeout=timeout)


def list_containers(classroom: str, tag: str | None = None) -> Mapping[str, Container] | None:
    """username -> container, in one API call (and one look at the image ``tag`` names now, to tell which servers
    run an older one); None when Docker cannot be reached."""
    try:
        docker = client(LOOK_TIMEOUT)
        found = docker.containers.list(all=True, filters={"label": f"{LABEL_CLASSROOM}={classroom}"})
    except Exception:  # noqa: BLE001 - docker raises many types; the plan reports "unreachable"
        return None
    current = image_id(docker, tag) if tag and found else None
    out = {}
    for item in found:
        user = item.labels.get(LABEL_USER)
        if user:
            config = item.attrs.get("HostConfig", {})
            running = item.status in ("running", "restarting", "created")
            image = item.attrs.get("Image", "")
            out[user] = Container(
                user,
                item.id,
                running,
                int(config.get("Memory") or 0),
                int(config.get("CpuQuota") or 0),
                int(config.get("CpuPeriod") or 0),
                image=image,
                stale=bool(current and image and image != current),
            )
    return MappingProxyType(out)


def image_id(docker, tag: str) -> str | None:
    """The id of the image ``tag`` names now (None: no such image)."""
    try:
        return docker.api.inspect_image(tag)["Id"]
    except Exception:  # noqa: BLE001 - as list_containers
        return None


def list_services(classroom: str) -> Mapping[str, Container] | None:
    """username -> swarm service (hub.spawner: swarm), with the worker each runs on; three calls whatever the
    class size (services, their running tasks, the nodes).  None when the swarm manager cannot be reached."""
    try:
        api = client(LOOK_TIMEOUT).api
        services = api.services(filters={"label": f"{LABEL_CLASSROOM}={classroom}"})
        tasks = api.tasks(filters={"desired-state": "running"}) if services else []
        nodes = (
            {node["ID"]: node.get("Description", {}).get("Hostname", "") for node in api.nodes()} if services else {}
        )
    except Exception:  # noqa: BLE001 - as list_containers
        return None
    where = {task["ServiceID"]: nodes.get(task.get("NodeID", ""), "") for task in tasks}
    out = {}
    for service in services:
        spec = service.get("Spec", {})
        user = spec.get("Labels", {}).get(LABEL_USER)
        if user:
            limits = spec.get("TaskTemplate", {}).get("Resources", {}).get("Limits", {})
            out[user] = Container(
                user,
                service["ID"],
                True,
                int(limits.get("MemoryBytes") or 0),
                int(limits.get("NanoCPUs") or 0),
                NANO_CPUS,
                where.get(service["ID"], ""),
                service=True,
            )
    return MappingProxyType(out)


NANO_CPUS = 10**9  # a service's CPU limit is in billionths of a CPU


def swarm_nodes() -> list[dict] | None:
    """The swarm's machines as the manager knows them (one call); None when it cannot be asked."""
    try:
        listed = client(LOOK_TIMEOUT).api.nodes()
    except Exception:  # noqa: BLE001 - as list_containers
        return None
    return [
        {
            "hostname": n.get("Description", {}).get("Hostname", ""),
            "address": n.get("Status", {}).get("Addr", ""),
            "role": n.get("Spec", {}).get("Role", ""),
            "state": n.get("Status", {}).get("State", ""),
            "availability": n.get("Spec", {}).get("Availability", ""),
        }
        for n in listed
    ]


@driver(Kind.CONTAINER, Op.UPDATE)
def update_limits(action: Action, ctx: Context) -> str:
    """Change a running server's memory (memory+swap equal: no swap) and CPU limits in place."""
    want = action.after.given()
    docker = (ctx.docker or client)()
    found = docker.containers.list(
        filters={"label": [f"{LABEL_CLASSROOM}={ctx.classroom}", f"{LABEL_USER}={action.target}"]}
    )
    if not found:
        return "not running"
    config = found[0].attrs["HostConfig"]
    limits: dict = {}
    if "memory" in want and int(config.get("Memory") or 0) != want["memory"]:
        limits.update(mem_limit=want["memory"], memswap_limit=want["memory"])
    if want.get("cpu") is not None:
        period = int(config.get("CpuPeriod") or 0) or CPU_PERIOD
        quota = cpu_quota(want["cpu"], period)
        if int(config.get("CpuQuota") or 0) != quota:
            limits.update(cpu_quota=quota, cpu_period=period)
    if not limits:
        return "already"
    found[0].update(**limits)
    return "updated"


@driver(Kind.CONTAINER, Op.DISABLE)
def remove_leftover_service(action: Action, ctx: Context) -> str:
    """Remove a person's swarm service that the hub no longer runs; asks the hub again first."""
    hub_user = ctx.need_hub().get_user(action.target)
    if hub_user is not None and (hub_user.get("servers") or {}).get(""):
        return "kept: the hub runs this server again"
    api = (ctx.docker or client)().api
    found = api.services(filters={"label": [f"{LABEL_CLASSROOM}={ctx.classroom}", f"{LABEL_USER}={action.target}"]})
    for service in found:
        api.remove_service(service["ID"])
    for config in api.configs(
        filters={"label": [f"{LABEL_CLASSROOM}={ctx.classroom}", f"{LABEL_USER}={action.target}"]}
    ):
        with contextlib.suppress(Exception):  # the swarm still detaching it from the removed service: next pass
            api.remove_config(config["ID"])
    return "removed" if found else "already"


STOP_TIMEOUT = 10  # seconds a server gets for SIGTERM before Docker kills it (jupyter saves nothing on SIGTERM)


def stop_servers(ctx: Context, username: str) -> str:
    """Stop every server of ``username`` that Docker runs (a container, or a swarm service), without the hub."""
    docker = (ctx.docker or client)()
    labels = [f"{LABEL_CLASSROOM}={ctx.classroom}", f"{LABEL_USER}={username}"]
    running = docker.containers.list(filters={"label": labels})
    for container in running:
        container.stop(timeout=STOP_TIMEOUT)
    services = docker.api.services(filters={"label": labels}) if _swarm_manager(docker) else []
    for service in services:
        docker.api.remove_service(service["ID"])
    return "stopped" if running or services else "not running"


def _swarm_manager(docker) -> bool:
    try:
        return bool(docker.info().get("Swarm", {}).get("ControlAvailable"))
    except Exception:  # noqa: BLE001 - not a manager: no services to look at
        return False


CGROUP_ROOT = Path("/sys/fs/cgroup")


def memory_usage(found: Mapping[str, Container] | None, root: Path = CGROUP_ROOT) -> dict[str, int]:
    """username -> bytes their running server uses, counted as `docker stats` does (less inactive file cache).

    Read straight from each container's cgroup (v1 or v2, cgroupfs or systemd
    driver): a file read per server instead of a Docker stats call, which
    samples for a second or more.
    """
    out = {}
    for username, container in (found or {}).items():
        if not container.running or container.service:  # a swarm service's cgroup is on its worker
            continue
        for directory, current, inactive in (
            (root / "memory" / "docker" / container.id, "memory.usage_in_bytes", "total_inactive_file"),
            (root / "docker" / container.id, "memory.current", "inactive_file"),
            (root / "system.slice" / f"docker-{container.id}.scope", "memory.current", "inactive_file"),
        ):
            try:
                used = int((directory / current).read_text())
                stat = dict(line.split() for line in (directory / "memory.stat").read_text().splitlines())
            except (OSError, ValueError):
                continue
            out[username] = max(0, used - int(stat.get(inactive, 0)))
            break
    return out
