"""The desired state: classroom.yaml with every quota resolved, plus where things go on the host.

Also the conventions every person's account and home follow, which the planner
checks and the drivers apply.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Mapping

from ..config.classroom import ROLES, Classroom, group_name
from ..config.sizes import format_size
from ..config.site import COLLECTION_VOLUME, SHARED_VOLUME, Paths
from .actions import VolumeFields
from .actual import Volume
from .exports import ExportPolicy
from .firewall import Chain

SHELL = "/usr/sbin/nologin"  # students log in to the hub, never to a shell on the host
HOME_MODE = 0o700
SHARED_MODE = 0o2775  # the course folder: root and the teachers' group (setgid), students read
COLLECTION_MODE = 0o2770  # the collection area: root and the teachers' group (setgid), students nothing
REQUIRED_MOUNT_FLAGS = frozenset({"nodev", "nosuid"})


class VolumeLayout(Protocol):
    """Where a volume backend keeps a person's volume: the pure part of a backend (host.volumes)."""

    @property
    def mount_options(self) -> str: ...

    def source(self, username: str) -> str:
        """What is mounted at the person's home (an image file, a device path)."""
        ...

    def release(self, volume: Volume) -> Release:
        """How the plan words letting go of an unmounted volume's device (a loop device, an active LV)."""
        ...


@dataclass(frozen=True)
class Release:
    """The step that lets go of an unmounted volume's device, as the backend words it."""

    before: VolumeFields
    after: VolumeFields
    reason: str


@dataclass(frozen=True)
class Owner:
    """Who a volume's root belongs to, by name (the driver resolves the names on the host when it acts: an
    account made in the same pass has no uid at planning time), and its mode."""

    user: str
    group: str
    mode: int

    @property
    def text(self) -> str:
        """As the plan shows it, and as the ownership step carries it to its driver: ``ann:ann 0700``."""
        return f"{self.user}:{self.group} {self.mode:04o}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        names, _, mode = text.partition(" ")
        user, _, group = names.partition(":")
        if not (user and group and mode.isdigit()):
            raise ValueError(f"not an owner (user:group mode): {text!r}")
        return cls(user, group, int(mode, 8))


@dataclass(frozen=True)
class VolumeSpec:
    """One volume the plan converges, whatever it holds: a person's home, the course folder, and the volumes to
    come.  Their steps are the same (volume, filesystem, resize, manifest, mount, owner, export); the spec says
    which volume, where it goes, whose it is and how its steps are worded."""

    key: str  # the steps' target: whose volume it is (a username, SHARED_VOLUME)
    mount_point: str
    source: str  # what the backend mounts there (an image, a device)
    quota: int  # the size asked for, bytes (the volume is that rounded up to the backend's step)
    owner: Owner
    what: str  # in its steps' reasons: "home", "course folder"
    who: str  # in notes about it: "ann", "the course folder"
    why: str  # why a new one is made: "disk quota 1 GiB"
    in_every_server: bool = False  # every running server holds it (a bind mount), not only its owner's


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
class Handout:
    """An assignment of classroom.yaml: at ``release`` each active student gets their own copy of ``source``; at
    ``due`` (plus their extension) it is collected, and again until ``late_until`` when changed since."""

    name: str  # the folder ~/assignments/<name>
    source: str  # the folder in the course folder, as a host path
    release: datetime.datetime  # aware: the file's time zone applied
    due: datetime.datetime | None = None
    late_until: datetime.datetime | None = None
    extensions: Mapping[str, datetime.timedelta] = field(default_factory=dict)
    limit: int = 100 * 1024**2  # bytes of one submission
    feedback: datetime.datetime | None = None  # from when teachers' feedback is returned to the students
    rerelease: datetime.datetime | None = None  # handed out again: only what each student never had

    def deadline(self, user: str) -> datetime.datetime | None:
        """When ``user``'s work is collected: the due time plus their extension."""
        return None if self.due is None else self.due + self.extensions.get(user, datetime.timedelta())

    def late_end(self, user: str) -> datetime.datetime | None:
        """Until when ``user``'s changed work is collected again (late): late_until plus their extension."""
        if self.late_until is None:
            return None
        return self.late_until + self.extensions.get(user, datetime.timedelta())

    def moments(self) -> list[datetime.datetime]:
        """When a pass should run for it: the release, the due time and each extended one, and just before each
        late window closes (work changed until then is still collected)."""
        shifts = {datetime.timedelta(), *self.extensions.values()}
        found = [self.release, *([self.rerelease] if self.rerelease is not None else [])]
        if self.due is not None:
            found += [self.due + shift for shift in shifts]
        if self.late_until is not None:
            found += [self.late_until + shift - datetime.timedelta(seconds=2) for shift in shifts]
        if self.feedback is not None:
            found.append(self.feedback)
            closes = self.late_until or self.due
            if closes is not None:  # a student whose window outlasts the feedback time gets theirs when it closes
                found += [closes + s + datetime.timedelta(seconds=1) for s in shifts if closes + s > self.feedback]
        return sorted(found)

    def open_late(self, now: datetime.datetime) -> bool:
        """Is the late window open for anyone now (from the due time to the latest extended late_until)?"""
        if self.due is None or self.late_until is None or now < self.due:
            return False
        return now <= self.late_until + max(self.extensions.values(), default=datetime.timedelta())


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
    handouts: tuple[Handout, ...] = ()
    collection_disk: int | None = None  # the collection area's volume (collection_disk, or the default once due)

    @property
    def groups(self) -> dict[str, str]:
        return {role: group_name(self.classroom, role) for role in ROLES}

    def member(self, username: str) -> Member | None:
        return next((m for m in self.members if m.username == username), None)

    def home(self, member: Member) -> VolumeSpec:
        """The person's home: their own volume, theirs alone (0700)."""
        user = member.username
        return VolumeSpec(
            user,
            str(self.paths.home(user)),
            self.volumes.source(user),
            member.disk,
            Owner(user, user, HOME_MODE),
            "home",
            user,
            f"disk quota {format_size(member.disk)}",
        )

    def course_folder(self, quota: int) -> VolumeSpec:
        """The course folder's own volume (classroom.yaml's shared_disk): root's and the teachers' group's
        (setgid: teachers write, students read), open in every running server."""
        return VolumeSpec(
            SHARED_VOLUME,
            str(self.paths.home(SHARED_VOLUME)),
            self.volumes.source(SHARED_VOLUME),
            quota,
            Owner("root", self.groups["teacher"], SHARED_MODE),
            "course folder",
            "the course folder",
            f"course folder: shared_disk {format_size(quota)}",
            in_every_server=True,
        )

    def collection(self, quota: int) -> VolumeSpec:
        """The collection area's own volume: root's and the teachers' group's (setgid: teachers read the
        submissions and write nbgrader's own folders beside them); students have no way in."""
        return VolumeSpec(
            COLLECTION_VOLUME,
            str(self.paths.home(COLLECTION_VOLUME)),
            self.volumes.source(COLLECTION_VOLUME),
            quota,
            Owner("root", self.groups["teacher"], COLLECTION_MODE),
            "collection area",
            "the collection area",
            f"collection area: collection_disk {format_size(quota)}",
            in_every_server=True,
        )


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
    handouts = tuple(
        Handout(
            a.name,
            str(paths.course_folder / a.source),
            classroom.moment(a.release),
            classroom.moment(a.due) if a.due else None,
            classroom.moment(a.late_until) if a.late_until else None,
            dict(a.extensions),
            a.max_submission,
            classroom.moment(a.feedback) if a.feedback else None,
            classroom.moment(a.rerelease) if a.rerelease else None,
        )
        for a in classroom.assignments
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
        handouts,
        classroom.collection_size,
    )
