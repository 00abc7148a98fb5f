"""The desired state: classroom.yaml with every quota resolved, plus where things go on the host.

Also the conventions every person's account and home follow, which the planner
checks and the drivers apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Mapping

from ..config.classroom import ROLES, Classroom, group_name
from ..config.site import Paths
from .exports import ExportPolicy
from .firewall import Chain

SHELL = "/usr/sbin/nologin"  # students log in to the hub, never to a shell on the host
HOME_MODE = 0o700
SHARED_MODE = 0o2775  # the course folder: root and the teachers' group (setgid), students read
REQUIRED_MOUNT_FLAGS = frozenset({"nodev", "nosuid"})


class VolumeLayout(Protocol):
    """Where a volume backend keeps a person's volume: the pure part of a backend (host.volumes)."""

    @property
    def mount_options(self) -> str: ...

    def source(self, username: str) -> str:
        """What is mounted at the person's home (an image file, a device path)."""
        ...


@dataclass(frozen=True)
class Member:
    """One person with the quota resolved: what the host should have for them."""

    username: str
    name: str
    role: str  # "student" | "teacher"
    status: str  # "active" | "disabled" | "archived" | "purged"
    memory: int
    cpu: float
    disk: int
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Desired:
    classroom: str
    members: tuple[Member, ...]
    paths: Paths
    volumes: VolumeLayout
    shared_disk: int | None = None  # the course folder's own volume (classroom.yaml), None = as it is
    firewall: Mapping[str, Chain] = field(default_factory=dict)  # the students' chains (with a hub), by key
    exports: ExportPolicy | None = None  # the homes over NFS for swarm workers (hub.swarm.homes: nfs)
    servers_here: bool = False  # the students' servers run on this host's Docker (a hub, not the swarm spawner)

    @property
    def groups(self) -> dict[str, str]:
        return {role: group_name(self.classroom, role) for role in ROLES}

    def member(self, username: str) -> Member | None:
        return next((m for m in self.members if m.username == username), None)


def resolve(
    classroom: Classroom,
    paths: Paths,
    volumes: VolumeLayout,
    firewall: Mapping[str, Chain] | None = None,
    exports: ExportPolicy | None = None,
    servers_here: bool = False,
) -> Desired:
    """Apply named quotas and inline overrides; the classroom must already be validated."""
    members = []
    for role, people in (("teacher", classroom.admins), ("student", classroom.students)):
        for person in people:
            base = classroom.quotas.get(person.quota)  # None only when all three are inline
            members.append(
                Member(
                    username=person.username,
                    name=person.name,
                    role=role,
                    status=person.status,
                    memory=person.memory or base.memory,  # type: ignore[union-attr]
                    cpu=person.cpu or base.cpu,  # type: ignore[union-attr]
                    disk=person.disk or base.disk,  # type: ignore[union-attr]
                    emails=tuple(person.email),
                )
            )
    return Desired(
        classroom.name,
        tuple(members),
        paths,
        volumes,
        classroom.shared_disk,
        dict(firewall or {}),
        exports,
        servers_here,
    )
