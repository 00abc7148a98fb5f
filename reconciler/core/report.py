"""What each person has on the host, from one snapshot: the `reconcile status` table and its JSON.

Pure: the snapshot, the desired state and the waiting credentials come in as
arguments.  The same rows feed the status command, snapshot.json and the
teacher page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping
from urllib.parse import urlencode

from ..config.site import COLLECTION_VOLUME, SHARED_VOLUME
from ..config.sizes import format_size
from .actions import Policy
from .actual import Actual, login_state, to_json
from .desired import Desired


@dataclass(frozen=True)
class PersonRow:
    """One person as the host has them, from one snapshot: a line of `reconcile status`, a row of snapshot.json's
    people, and what the teacher page's row is made from."""

    username: str
    role: str | None  # student / teacher; None: no longer in the file
    status: str  # as the file says: active, disabled, archived, purged; "removed" when no longer in it
    account: str  # enabled / disabled / half-disabled / missing
    uid: int | None
    volume_size: int | None
    volume_used: int | None
    mounted: bool
    credentials: str | None  # see credentials_state
    server: str | None  # running / stopped; None: no hub, or it cannot be asked
    node: str | None = None  # the swarm worker a running server is on
    stale_image: bool = False  # the running server has an older image than hub.image names now

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PersonRow:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def rows(desired: Desired, actual: Actual, pending_credentials: Mapping[str, dict]) -> list[PersonRow]:
    """One row per person in the file, then anyone we manage who is no longer in it."""
    listed = [(m.username, m.role, m.status) for m in desired.members]
    known = {name for name, _, _ in listed}
    extra = sorted(
        a.username for a in actual.accounts.values() if a.classroom == desired.classroom and a.username not in known
    )
    extra += sorted(set(actual.volumes) - known - set(extra) - {SHARED_VOLUME, COLLECTION_VOLUME})
    out = []
    for username, role, wanted in listed + [(name, None, "removed") for name in extra]:
        account = actual.accounts.get(username)
        volume = actual.volumes.get(username)
        mount = actual.mounts.get(str(desired.paths.home(username)))
        out.append(
            PersonRow(
                username=username,
                role=role,
                status=wanted,
                account=login_state(account, actual.today),
                uid=account.uid if account else None,
                volume_size=volume.size if volume else None,
                volume_used=volume.used if volume else None,
                mounted=mount is not None,
                credentials=credentials_state(pending_credentials.get(username), held=wanted != "active"),
                server=_server(actual, username),
                node=_node(actual, username),
                stale_image=_stale(actual, username),
            )
        )
    return out


def course_folder(desired: Desired, actual: Actual) -> dict:
    """The course folder: its own volume (classroom.yaml's shared_disk) and how full it is, or the host's disk."""
    path = desired.paths.home(SHARED_VOLUME)
    volume = actual.volumes.get(SHARED_VOLUME)
    mount = actual.mounts.get(str(path))
    return {
        "path": str(path),
        "volume_size": volume.size if volume else None,
        "volume_used": volume.used if volume else None,
        "mounted": mount is not None,
        "wanted_size": desired.shared_disk,
    }


def material_link(public_url: str, url: str, branch: str, folder: str) -> str:
    """The one link for the whole class that pulls the course material into each student's own home (nbgitpuller
    through the hub's user-redirect, so it works for whoever clicks it) and opens it in JupyterLab."""
    query = urlencode({"repo": url, "branch": branch, "targetpath": folder, "urlpath": f"lab/tree/{folder}"})
    return f"{public_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def render_course_folder(folder: dict) -> str:
    if folder["volume_size"] is None:
        if folder["wanted_size"] is None:
            return f"course folder: {folder['path']} (on the disk below it; shared_disk gives it a volume of its own)"
        return f"course folder: {folder['path']} (its volume of {format_size(folder['wanted_size'])} is not made yet)"
    state = "" if folder["mounted"] else ", NOT MOUNTED"
    return (
        f"course folder: {folder['path']} on its own volume: {format_size(folder['volume_used'])} used of "
        f"{format_size(folder['volume_size'])}{state}"
    )


def credentials_state(item: Mapping[str, Any] | None, held: bool = False) -> str | None:
    """None: nothing waiting; "pending"; "slip" (no e-mail: print it); "failed (N): error" (will retry);
    "held" (the person is not active: never sent or printed while so)."""
    if item is None:
        return None
    if held:
        return "held (not active: not sent or printed)"
    if not item["emails"]:
        return "slip"
    if item["attempts"]:
        return f"failed ({item['attempts']}x): {item['last_error']}"
    return "pending"


def _server(actual: Actual, username: str) -> str | None:
    """running / stopped from the hub; None when no hub is configured or it could not be asked."""
    if actual.hub is None or actual.hub.users is None:
        return None
    user = actual.hub.users.get(username)
    return "running" if user is not None and user.running else "stopped"


def _stale(actual: Actual, username: str) -> bool:
    """Does the person's running server run an older image than hub.image names now (a restart gets the new one)?"""
    container = (actual.containers or {}).get(username)
    return container is not None and container.running and container.stale


def _node(actual: Actual, username: str) -> str | None:
    """The swarm worker a running server is on (None on one server, or while it is not placed)."""
    container = (actual.containers or {}).get(username)
    return container.node or None if container is not None and container.running else None


def server_text(row: PersonRow) -> str:
    """running, stopped, "running on <worker>" (swarm), or - (hub unknown)."""
    if row.server is None:
        return "-"
    text = f"{row.server} on {row.node}" if row.node else row.server
    return text + " (old image: restart)" if row.stale_image and row.server == "running" else text


def render(people: list[PersonRow]) -> str:
    servers = [server_text(row) for row in people]
    width = max([8, *map(len, servers)])
    header = (
        f"{'USERNAME':<16} {'ROLE':<8} {'STATUS':<9} {'ACCOUNT':<13} {'VOLUME':>9} {'USED':>9} {'MOUNTED':<7} "
        f"{'SERVER':<{width}} CREDENTIALS"
    )
    lines = [header]
    for row, server in zip(people, servers, strict=True):
        lines.append(
            f"{row.username:<16} {row.role or '-':<8} {row.status:<9} {row.account:<13} "
            f"{format_size(row.volume_size):>9} {format_size(row.volume_used):>9} "
            f"{'yes' if row.mounted else 'no':<7} {server:<{width}} "
            f"{row.credentials or '-'}"
        )
    return "\n".join(lines)


def document(
    desired: Desired,
    actual: Actual,
    pending_credentials: Mapping[str, dict],
    policy: Policy,
    volumes: Mapping[str, Any],
) -> dict:
    """`reconcile status --json` and snapshot.json: people, plus the raw snapshot, so CI can plan against it.

    ``volumes`` is site.yaml's volumes section, so a plan made elsewhere names the same sources.
    """
    return {
        "format_version": 1,
        "classroom": desired.classroom,
        "people": [row.to_json() for row in rows(desired, actual, pending_credentials)],
        "paths": {
            "state": str(desired.paths.state),
            "homes": str(desired.paths.homes),
            "shared": str(desired.paths.course_folder),
        },
        "course_folder": course_folder(desired, actual),
        "volumes": dict(volumes),
        "policy": {
            "max_disable_fraction": policy.max_disable_fraction,
            "max_overcommit": policy.max_overcommit,
            "resize_running": policy.resize_running,
            "mass_disable_window": policy.mass_disable_window,
        },
        "observed": to_json(actual),
    }


def render_swarm(nodes: list[dict] | None, workers: list[str]) -> list[str]:
    """`reconcile status` with hub.spawner: swarm: each machine of the swarm, and the workers site.yaml names that
    are not in it (``workers``: their addresses)."""
    if nodes is None:
        return ["swarm: the manager cannot be asked (is this Docker a swarm manager? DOCKER_HOST?)"]
    lines = []
    for node in sorted(nodes, key=lambda n: (n["role"] != "manager", n["hostname"])):
        usable = node["state"] == "ready" and node["availability"] == "active"
        lines.append(
            f"swarm: {node['role']} {node['hostname']} ({node['address']}): {node['state']}, "
            f"{node['availability']}{'' if usable or node['role'] == 'manager' else '  NOT USABLE'}"
        )
    present = {node["address"] for node in nodes}
    lines += [
        f"swarm: worker {address} is in site.yaml but not in the swarm (examples/install.sh --worker)"
        for address in workers
        if address not in present
    ]
    return lines


def render_exports(desired: Desired, actual: Actual) -> list[str]:
    """`reconcile status` with homes over NFS: which mounted homes the workers can mount, and which not yet."""
    if desired.exports is None:
        return []
    mounted = [target for target in actual.mounts if desired.paths.volume_of(target) is not None]
    table = actual.exports or {}
    missing = sorted(
        target
        for target in mounted
        if not desired.exports.export(target).in_force(table.get(target))
        and not desired.exports.export(target, mountpoint=False).in_force(table.get(target))
    )
    line = (
        f"homes over NFS: {len(mounted) - len(missing)} of {len(mounted)} mounted volumes exported to "
        f"{', '.join(desired.exports.clients)}"
    )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        line += f"; not exported: {shown} (the next pass exports them)"
    return [line]
