"""The driver registry: one function per (kind, op), registered next to its code.

    @driver(Kind.VOLUME, Op.UPDATE)
    def resize(action: Action, ctx: Context) -> str: ...

A driver re-checks its target just before acting (the snapshot may be seconds
old), does nothing when the work is already done, and returns a short word for
the journal ("created", "already", ...).  Everything it touches comes from the
Context: the runner for commands and ownership changes, ``HostFiles`` for its
re-checks, the volume backend chosen once from site.yaml, the hub and Docker
clients.  So a test can hand a driver a recording runner and fixture files and
check the exact commands it emits, without root (tests/driverkit.py).

The modules that register drivers are listed in ``MODULES``; ``table()``
imports them and returns the complete registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol
from collections.abc import Callable, Mapping

from ..config.site import Paths
from ..core.actions import Action, Kind, Op
from ..core.desired import Member
from ..core.exports import ExportPolicy
from ..core.firewall import Chain
from .facts import HostFiles
from .run import Runner
from .volumes.base import VolumeBackend

Driver = Callable[[Action, "Context"], str]
_DRIVERS: dict[tuple[Kind, Op], Driver] = {}
MODULES = (
    "accounts",
    "mounts",
    "volumes.drivers",
    "containers",
    "hubusers",
    "firewall",
    "exports",
    "handouts",
    "collect",
    "returns",
)


class Busy(RuntimeError):
    """The target is in use (a volume mounted in a running server): the driver left it untouched; it waits."""


class CredentialStore(Protocol):
    """Where new passwords wait for delivery (reconciler.credentials.outbox.Outbox)."""

    def issue(self, username: str, name: str, emails: tuple[str, ...], reason: str) -> str:
        """Generate a password, keep it for delivery, and return it (to be set through chpasswd's stdin)."""
        ...

    def discard(self, username: str) -> None: ...


class HubApi(Protocol):
    """The hub's REST API as the drivers use it (reconciler.host.hubusers.HubClient)."""

    def stop_server(self, name: str) -> str: ...

    def delete_user(self, name: str) -> str: ...

    def get_user(self, name: str) -> dict | None: ...


@dataclass(frozen=True)
class Context:
    """What one pass's drivers may touch."""

    classroom: str
    paths: Paths
    volumes: VolumeBackend
    run: Runner
    host: HostFiles = field(default_factory=HostFiles)
    members: Mapping[str, Member] = field(default_factory=dict)
    credentials: CredentialStore | None = None
    hub: HubApi | None = None
    docker: Callable[[], Any] | None = None  # a docker client factory (imported lazily: hosts without a hub)
    firewall: Mapping[str, Chain] = field(default_factory=dict)  # the students' chains this site wants
    exports: ExportPolicy | None = None  # the homes over NFS for the swarm's workers (hub.swarm.homes: nfs)
    exports_file: str | None = None  # the classroom's exports file (withdrawals happen with NFS off too)

    def member(self, username: str) -> Member | None:
        return self.members.get(username)

    def need_hub(self) -> HubApi:
        if self.hub is None:
            raise RuntimeError("the hub API is not available")
        return self.hub


def driver(kind: Kind, op: Op) -> Callable[[Driver], Driver]:
    """Register the decorated function as the driver of ``op`` on ``kind``."""

    def register(fn: Driver) -> Driver:
        if (kind, op) in _DRIVERS:
            raise RuntimeError(
                f"two drivers for {op} {kind}: {_DRIVERS[(kind, op)].__qualname__} and {fn.__qualname__}"
            )
        _DRIVERS[(kind, op)] = fn
        return fn

    return register


def table() -> Mapping[tuple[Kind, Op], Driver]:
    """Every registered driver (importing the modules that register them)."""
    for name in MODULES:
        importlib.import_module(f"{__package__}.{name}")
    return dict(_DRIVERS)


def carry_out(action: Action, ctx: Context) -> str:
    found = table().get((action.kind, action.op))
    if found is None:
        raise RuntimeError(f"no driver for {action.op} {action.kind}")
    return found(action, ctx)
