"""One immutable snapshot of the host, read in batch.

/etc/passwd, /etc/group and /etc/shadow are parsed once; the volume backend
observes once (one directory listing and one sysfs listing, or one lvs + one
vgs); /proc/self/mountinfo is read once; the manifest once; with a hub, one
paged listing of its users and one Docker call for the running containers.
No per-person subprocess, so a no-op pass over a thousand students stays well
under a second.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING
from collections.abc import Callable, Mapping, Sequence

from ..config.site import Paths, Site
from ..core.actual import Actual, Container, HubState
from ..core.desired import Handout
from . import disables
from .facts import HostFiles, read_accounts, read_groups, read_manifest, read_shadow
from .ledger import LedgerDamaged

if TYPE_CHECKING:
    from .hubusers import HubClient
    from .volumes.base import VolumeBackend


def observe(
    paths: Paths,
    volumes: VolumeBackend,
    host: HostFiles = HostFiles(),
    hub: Callable[[], HubState] | None = None,
    containers: Callable[[], Mapping[str, Container] | None] | None = None,
    disable_window: float = 86400.0,
    firewall: Callable[[], tuple[str, ...] | None] | None = None,
    exports_file: str | None = None,
    nfs: bool = False,
    assignments: Sequence[Handout] = (),
) -> Actual:
    """Take the snapshot.  Reads each source exactly once; ``hub`` and ``containers`` are one call each.

    ``nfs``: the homes are exported to swarm workers; the export table is read then, or when the classroom's
    ``exports_file`` exists (exports left from before NFS was turned off are withdrawn).
    """
    now = host.clock()
    groups = read_groups(host.etc / "group")
    shadow = read_shadow(host.etc / "shadow")
    accounts = read_accounts(host.etc / "passwd", groups, shadow)
    found = volumes.observe()
    folder = paths.course_folder
    rules = firewall() if firewall else None
    exported = None
    if exports_file is not None and (nfs or Path(exports_file).exists()):
        from . import exports

        exported = exports.observe(paths, Path(exports_file), host)
    folder_exists = folder.is_dir()
    handed_out, handed_out_at, handed_again_at, handouts_blocked, missing = {}, {}, {}, "", frozenset()
    changed: frozenset[str] = frozenset()
    if assignments or paths.handouts.exists():  # a classroom without assignments never loads the driver
        from . import handouts

        missing = frozenset(a.name for a in assignments if not handouts.source_ok(a.source, folder))
        try:
            handed = handouts.read(paths.handouts, {a.username: a.uid for a in accounts.values()})
            handed_out = {name: frozenset(people) for name, people in handed.items()}
            handed_out_at = {
                name: MappingProxyType({u: t[0] for u, t in people.items()}) for name, people in handed.items()
            }
            handed_again_at = {
                name: MappingProxyType({u: t[1] for u, t in people.items()}) for name, people in handed.items()
            }
            changed = frozenset(
                a.name
                for a in assignments
                if handed.get(a.name) and handouts.changed_since(a.source, min(t[0] for t in handed[a.name].values()))
            )
        except LedgerDamaged as exc:
            handouts_blocked = str(exc)
    collected, fingerprints, collections_blocked = _collections(paths, assignments, accounts, found.mounts, now)
    feedback, returned, returns_blocked = _feedback(paths, assignments, accounts, found.mounts, now)
    return Actual(
        accounts=MappingProxyType(accounts),
        groups=MappingProxyType(groups),
        volumes=found.volumes,
        mounts=found.mounts,
        manifest=MappingProxyType(read_manifest(paths.manifest)),
        today=int(now // 86400),
        volume_step=found.step,
        capacity=found.capacity,
        capacity_of=found.capacity_of,
        hub=hub() if hub else None,
        containers=containers() if containers else MappingProxyType({}),
        online_resize=host.can_resize_online(),
        disabled_recently=disables.recent(paths.disables, now - disable_window),
        course_folder_files=str(folder) not in found.mounts and folder_exists and has_entries(folder),
        course_folder_exists=folder_exists,
        exports=exported[0] if exported else None,
        export_lines=exported[1] if exported else None,
        firewall=rules,
        firewall_error="" if rules is not None or firewall is None else "`iptables -S` failed",
        observed_at=datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(timespec="seconds"),
        handed_out=MappingProxyType(handed_out),
        handed_out_at=MappingProxyType(handed_out_at),
        handed_again_at=MappingProxyType(handed_again_at),
        sources_changed=changed,
        sources_missing=missing,
        handouts_blocked=handouts_blocked,
        collected=collected,
        fingerprints=fingerprints,
        collections_blocked=collections_blocked,
        feedback=feedback,
        returned=returned,
        returns_blocked=returns_blocked,
    )


def _collections(
    paths: Paths, assignments: Sequence[Handout], accounts: Mapping, mounts: Mapping, now: float
) -> tuple[Mapping, Mapping, str]:
    """Who was collected (the ledger) and, for the assignments whose late window is open, each collected
    student's folder as it is now (a stat walk of their mounted home, nothing read)."""
    if not any(a.due for a in assignments) and not paths.collections.exists():
        return MappingProxyType({}), MappingProxyType({}), ""  # the driver is never loaded without a due time
    from . import collect

    try:
        collected = collect.read(paths.collections, {a.username: a.uid for a in accounts.values()})
    except LedgerDamaged as exc:
        return MappingProxyType({}), MappingProxyType({}), str(exc)
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    fingerprints = {}
    for work in assignments:
        if work.open_late(moment):
            fingerprints[work.name] = MappingProxyType(
                {
                    user: collect.fingerprint(paths.home(user), work.name)
                    for user in collected.get(work.name, {})
                    if str(paths.home(user)) in mounts
                }
            )
    return (
        MappingProxyType({name: MappingProxyType(people) for name, people in collected.items()}),
        MappingProxyType(fingerprints),
        "",
    )


def _feedback(
    paths: Paths, assignments: Sequence[Handout], accounts: Mapping, mounts: Mapping, now: float
) -> tuple[Mapping, Mapping, str]:
    """Once an assignment's feedback time has come: the feedback teachers wrote for each of our accounts in the
    mounted collection area (a stat walk, by digest), and what each student was last given (the ledger)."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    timed = [a for a in assignments if a.feedback is not None and a.feedback <= moment]
    if not timed:
        return MappingProxyType({}), MappingProxyType({}), ""
    from . import returns

    try:
        returned = returns.read(paths.returns, {a.username: a.uid for a in accounts.values()})
    except LedgerDamaged as exc:
        return MappingProxyType({}), MappingProxyType({}), str(exc)
    written = {}
    if str(paths.collection_area) in mounts:  # never the bare folder below the volume
        students = returns.with_feedback(paths.collection_area) & set(accounts)
        for work in timed:
            found = {user: returns.digest(paths.collection_area, user, work.name) for user in sorted(students)}
            written[work.name] = MappingProxyType({user: d for user, d in found.items() if d is not None})
    return (
        MappingProxyType(written),
        MappingProxyType({name: MappingProxyType(people) for name, people in returned.items()}),
        "",
    )


def has_entries(directory: Path) -> bool:
    """Does the directory hold anything (one directory read, stopped at the first entry)?"""
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is not None
    except (FileNotFoundError, NotADirectoryError):
        return False


@dataclass(frozen=True)
class HubProbes:
    """The hub client (for the drivers) and the two batch probes, when site.yaml has a hub section."""

    client: HubClient | None
    hub: Callable[[], HubState] | None
    containers: Callable[[], Mapping[str, Container] | None] | None
    firewall: Callable[[], tuple[str, ...] | None] | None = None  # one `iptables -S`


NO_HUB = HubProbes(None, None, None)


def hub_probes(site: Site, classroom: str) -> HubProbes:
    if site.hub is None:
        return NO_HUB
    from . import containers, hubusers  # requests and docker load only where a hub is configured

    try:
        client = hubusers.HubClient(
            site.hub.api_endpoint, site.hub.token_file, site.hub.request_timeout, site.hub.sqlite_file
        )
        error = None
    except hubusers.HubUnavailable as exc:
        client, error = None, str(exc)
    from . import firewall
    from .run import Runner

    if site.hub.spawner == "swarm":  # servers on the workers; no students' bridge or chains on this host
        return HubProbes(client, lambda: hubusers.snapshot(client, error), lambda: containers.list_services(classroom))
    return HubProbes(
        client,
        lambda: hubusers.snapshot(client, error),
        lambda: containers.list_containers(classroom, site.hub.image),
        lambda: firewall.observe(Runner()),
    )
