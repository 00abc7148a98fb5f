"""Typed, frozen actions: what a Plan is made of and what the drivers carry out.

An Action is (op, kind, target) plus what is there now (``before``), what
will be (``after``), why, and two flags.  ``op`` and ``kind`` are enums; the
pairs that exist are listed in ``OPS_BY_KIND``, and each kind has its own
payload type for ``before``/``after``: a frozen record (``AccountFields``,
``VolumeFields`` ...) for the kinds whose driver needs data (a volume's size
is an int field, not a dict lookup), the text the plan shows for the kinds
whose driver needs only the target.  Construction checks all of it with
exceptions, so the checks hold under ``python -O`` too.

A record is partial: only the fields given belong to the action, in the order
the class declares them; ``to_json()`` is the plan's wire format (JSON plans,
the journal, the teacher API).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from collections.abc import Mapping
from typing import Any, ClassVar


class InvalidAction(ValueError):
    """An action that no driver could carry out as described (a programming error, never user input)."""


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DISABLE = "disable"  # reversible: files and data stay
    DESTROY = "destroy"  # deletes data: only with --allow-destroy


class Kind(StrEnum):
    GROUP = "group"
    ACCOUNT = "account"
    PASSWORD = "password"
    VOLUME = "volume"
    FILESYSTEM = "filesystem"
    MANIFEST = "manifest"
    MOUNT = "mount"
    OWNERSHIP = "ownership"
    CONTAINER = "container"
    SERVER = "server"
    HUB_USER = "hub-user"
    FIREWALL = "firewall"  # one of our iptables chains for the students' bridge (core.firewall)
    EXPORT = "export"  # a home exported over NFS to the swarm's workers (core.exports)
    ROSTER = "roster"  # an edit of classroom.yaml (teacher API, import): journaled, never planned
    ARCHIVE = "archive"  # a person's files exported (create) or restored (update): journaled, never planned
    HANDOUT = "handout"  # an assignment's copy given to a student at its release (core.assignments)
    COLLECTION = "collection"  # a student's assignment copied into the collection area at its deadline
    FEEDBACK = "feedback"  # teachers' feedback on an assignment returned into a student's home, read-only


class _Unset:
    _instance: ClassVar[_Unset | None] = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()  # a field that is not part of this action (None is a value: "no loop device")


@dataclass(frozen=True)
class Fields:
    """A partial record: the fields given, each checked against ``TYPES``."""

    TYPES: ClassVar[Mapping[str, tuple[type, ...]]] = {}

    def __post_init__(self) -> None:
        given = self.given()
        if not given:
            raise InvalidAction(f"{type(self).__name__} with no fields")
        for name, value in given.items():
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            allowed = self.TYPES[name]
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise InvalidAction(
                    f"{type(self).__name__}.{name} must be {' or '.join(t.__name__ for t in allowed)}, not {value!r}"
                )
            if isinstance(value, tuple) and not all(isinstance(item, str) for item in value):
                raise InvalidAction(f"{type(self).__name__}.{name} must hold strings, not {value!r}")

    def given(self) -> dict[str, Any]:
        """The fields that are part of the action, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not UNSET}

    def to_json(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.given().items()}


NoneType = type(None)


@dataclass(frozen=True)
class AccountFields(Fields):
    TYPES: ClassVar = {
        "name": (str,),
        "group": (str,),
        "home": (str,),
        "shell": (str,),
        "groups": (tuple,),
        "login": (str,),
        "uid": (int,),
    }
    name: str = UNSET
    group: str = UNSET  # the classroom group a new account joins
    home: str = UNSET
    shell: str = UNSET
    groups: tuple[str, ...] = UNSET  # supplementary groups, exactly
    login: str = UNSET  # enabled / disabled / half-disabled (locked or expired)
    uid: int = UNSET


@dataclass(frozen=True)
class VolumeFields(Fields):
    TYPES: ClassVar = {
        "size": (int,),
        "path": (str,),
        "used": (int, NoneType),
        "loop": (str, NoneType),
        "active": (bool,),
    }
    size: int = UNSET  # bytes
    path: str = UNSET
    used: int | None = UNSET
    loop: str | None = UNSET  # the loop device holding an image
    active: bool = UNSET  # a logical volume's activation


@dataclass(frozen=True)
class FilesystemFields(Fields):
    TYPES: ClassVar = {"fstype": (str,), "size": (int,)}
    fstype: str = UNSET
    size: int = UNSET


@dataclass(frozen=True)
class ContainerFields(Fields):
    TYPES: ClassVar = {"memory": (int,), "cpu": (float, int, NoneType)}
    memory: int = UNSET  # the cgroup memory limit, bytes
    cpu: float | None = UNSET  # CPUs (None: no limit)


@dataclass(frozen=True)
class HandoutFields(Fields):
    TYPES: ClassVar = {"assignment": (str,), "source": (str,)}
    assignment: str = UNSET  # its name: the folder ~/assignments/<name>
    source: str = UNSET  # the folder in the course folder it is copied from


@dataclass(frozen=True)
class CollectFields(Fields):
    TYPES: ClassVar = {"assignment": (str,), "deadline": (str,), "limit": (int,)}
    assignment: str = UNSET  # its name: the folder ~/assignments/<name>
    deadline: str = UNSET  # the student's own deadline (ISO 8601, aware): changed after it, the work is late
    limit: int = UNSET  # bytes: the files of one submission that fit (in walk order) are collected, the rest listed


@dataclass(frozen=True)
class FeedbackFields(Fields):
    TYPES: ClassVar = {"assignment": (str,), "digest": (str,), "limit": (int,)}
    assignment: str = UNSET  # its name: returned into ~/assignments/<name>/feedback
    digest: str = UNSET  # of the feedback folder as planned: the driver returns it only if it is still that
    limit: int = UNSET  # bytes it may write into the student's home (the assignment's max_submission)


@dataclass(frozen=True)
class HubUserFields(Fields):
    TYPES: ClassVar = {"admin": (bool,)}
    admin: bool = UNSET


# The operations that exist for each kind, and the payload each kind carries (before and after).
OPS_BY_KIND: Mapping[Kind, frozenset[Op]] = MappingProxyType(
    {
        Kind.GROUP: frozenset({Op.CREATE}),
        Kind.ACCOUNT: frozenset({Op.CREATE, Op.UPDATE, Op.DISABLE, Op.DESTROY}),
        Kind.PASSWORD: frozenset({Op.CREATE, Op.UPDATE}),  # update: a reset or a slip handed out (journal only)
        Kind.VOLUME: frozenset({Op.CREATE, Op.UPDATE, Op.DISABLE, Op.DESTROY}),
        Kind.FILESYSTEM: frozenset({Op.CREATE}),
        Kind.MANIFEST: frozenset({Op.CREATE, Op.UPDATE, Op.DISABLE}),
        Kind.MOUNT: frozenset({Op.CREATE, Op.UPDATE, Op.DISABLE}),
        Kind.OWNERSHIP: frozenset({Op.CREATE, Op.UPDATE}),
        Kind.CONTAINER: frozenset({Op.UPDATE, Op.DISABLE}),  # disable: a swarm service the hub left behind
        Kind.SERVER: frozenset({Op.DISABLE}),
        Kind.HUB_USER: frozenset({Op.DISABLE}),
        Kind.FIREWALL: frozenset({Op.CREATE, Op.UPDATE}),
        Kind.EXPORT: frozenset({Op.CREATE, Op.UPDATE, Op.DISABLE}),
        Kind.ROSTER: frozenset({Op.CREATE, Op.UPDATE}),
        Kind.ARCHIVE: frozenset({Op.CREATE, Op.UPDATE}),
        Kind.HANDOUT: frozenset({Op.CREATE}),
        Kind.COLLECTION: frozenset({Op.CREATE}),
        Kind.FEEDBACK: frozenset({Op.CREATE}),
    }
)
PAYLOADS: Mapping[Kind, tuple[type, ...]] = MappingProxyType(
    {
        Kind.GROUP: (),
        Kind.ACCOUNT: (AccountFields,),
        Kind.PASSWORD: (str,),  # what happens to the secret, never the secret
        Kind.VOLUME: (VolumeFields,),
        Kind.FILESYSTEM: (FilesystemFields, str),  # str: "unfinished image"
        Kind.MANIFEST: (str,),  # the fstab line's source and target / options, as shown
        Kind.MOUNT: (str,),  # the mount point, or its options
        Kind.OWNERSHIP: (str,),  # "user:group mode"
        Kind.CONTAINER: (ContainerFields,),
        Kind.SERVER: (str,),  # running / stopped
        Kind.HUB_USER: (HubUserFields,),
        Kind.FIREWALL: (str,),  # how many rules, as shown; the rules themselves come from site.yaml
        Kind.EXPORT: (str,),  # the clients it is exported to, as shown; the options come from core.exports
        Kind.ROSTER: (Mapping,),  # the person's entry as written in classroom.yaml
        Kind.ARCHIVE: (str,),  # the archive's path; a restore's target folder
        Kind.HANDOUT: (HandoutFields,),
        Kind.COLLECTION: (CollectFields,),
        Kind.FEEDBACK: (FeedbackFields,),
    }
)
# Kinds that only the journal records (edits by people); plan() never emits them and no driver exists.
JOURNAL_ONLY = frozenset(
    {
        (Kind.ROSTER, Op.CREATE),
        (Kind.ROSTER, Op.UPDATE),
        (Kind.PASSWORD, Op.UPDATE),
        (Kind.ARCHIVE, Op.CREATE),
        (Kind.ARCHIVE, Op.UPDATE),
    }
)


def freeze(value: Any) -> Any:
    """Make a free-form value immutable (dicts become read-only mappings, lists tuples)."""
    if isinstance(value, (dict, MappingProxyType)):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-ready form of a payload."""
    if isinstance(value, Fields):
        return value.to_json()
    if isinstance(value, MappingProxyType):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


@dataclass(frozen=True)
class Action:
    op: Op
    kind: Kind
    target: str  # a username, or a group name for Kind.GROUP
    before: Any = None
    after: Any = None
    reason: str = ""
    destructive: bool = False  # deletes data: true for every Op.DESTROY, and only for those
    drift: bool = False  # repairs a change made outside reconcile
    waits: str = ""  # why it cannot be done now (a running server holds the volume): not applied, shown

    def __post_init__(self) -> None:
        try:
            op, kind = Op(self.op), Kind(self.kind)
        except ValueError as exc:
            raise InvalidAction(str(exc)) from None
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "kind", kind)
        if op not in OPS_BY_KIND[kind]:
            raise InvalidAction(f"there is no {op} for a {kind}")
        if not isinstance(self.target, str) or not self.target:
            raise InvalidAction(f"{op} {kind}: the target must be a name, not {self.target!r}")
        if not isinstance(self.waits, str):
            raise InvalidAction(f"{op} {kind} {self.target}: waits must be the reason, as text")
        if self.destructive and op is not Op.DESTROY:
            raise InvalidAction(f"{op} {kind} {self.target}: only destroy deletes data")
        object.__setattr__(self, "destructive", op is Op.DESTROY)  # and destroy always does
        allowed = PAYLOADS[kind]
        for side in ("before", "after"):
            value = getattr(self, side)
            if value is None:
                continue
            if not allowed or not isinstance(value, allowed):
                names = " or ".join(t.__name__ for t in allowed) or "nothing"
                raise InvalidAction(f"{op} {kind} {self.target}: {side} must be {names}, not {value!r}")
            if isinstance(value, Mapping):
                object.__setattr__(self, side, freeze(value))

    def to_json(self) -> dict:
        return {
            "op": str(self.op),
            "kind": str(self.kind),
            "target": self.target,
            "before": thaw(self.before),
            "after": thaw(self.after),
            "reason": self.reason,
            "destructive": self.destructive,
            "drift": self.drift,
            **({"waits": self.waits} if self.waits else {}),
        }


@dataclass(frozen=True)
class Note:
    """A refused guard (stops the whole pass) or a blocked person (stops only them)."""

    rule: str
    target: str
    message: str

    def to_json(self) -> dict:
        return {"rule": self.rule, "target": self.target, "message": self.message}


@dataclass(frozen=True)
class Policy:
    """The operator's flags for this pass, with the site's limits."""

    allow_destroy: bool = False
    allow_mass_disable: bool = False
    max_disable_fraction: float = 0.2
    max_overcommit: float = 1.0  # thin pools: volumes may add up to this times the pool
    resize_running: str = "wait"  # a volume held by a running server: "wait" until it stops, or "restart" it
    mass_disable_window: float = 86400.0  # seconds over which disables count together (for the message)


@dataclass(frozen=True)
class Plan:
    classroom: str
    actions: tuple[Action, ...] = ()
    refused: tuple[Note, ...] = ()
    blocked: tuple[Note, ...] = ()
    summary: Mapping[str, int] = field(default_factory=dict)
    upcoming: tuple[Note, ...] = ()  # what falls due later (an assignment's release): shown, nothing to do yet

    def __post_init__(self) -> None:
        counts = {"create": 0, "change": 0, "disable": 0, "destroy": 0}
        for action in self.actions:
            counts["change" if action.op is Op.UPDATE else str(action.op)] += 1
        object.__setattr__(self, "summary", MappingProxyType(counts))

    @property
    def empty(self) -> bool:
        return not self.actions and not self.blocked and not self.refused

    @property
    def waiting(self) -> tuple[Action, ...]:
        """Actions that cannot be done now (see Action.waits): shown, not applied, retried every pass."""
        return tuple(a for a in self.actions if a.waits)

    def to_json(self) -> dict:
        return {
            "format_version": 1,
            "classroom": self.classroom,
            "actions": [a.to_json() for a in self.actions if not a.drift],
            "drift": [a.to_json() for a in self.actions if a.drift],
            "refused": [n.to_json() for n in self.refused],
            "blocked": [n.to_json() for n in self.blocked],
            "summary": dict(self.summary),
            **({"upcoming": [n.to_json() for n in self.upcoming]} if self.upcoming else {}),
        }
