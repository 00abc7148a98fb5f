"""One reconcile pass: observe -> plan -> apply, under the pass lock, one snapshot per pass.

Every entry point goes through here: the `reconcile` command, the watch
daemon, `reconcile status`, the teacher service and planning in CI against a
server's snapshot.  A pass returns an ``Outcome`` (the verdict, the plan, the
desired state and the snapshot it planned against, what applying did); the
engine prints nothing and knows no exit codes: each caller reports the outcome
its own way (``cli.commands.exit_code``, the daemon's status.json, the API).

A pass that changed the host observes it once more before it lets go of the
lock (``Outcome.after``), so what the daemon writes as the server's state is
what the host shows after the change, not what it was before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from collections.abc import Callable, Iterator

from ..config.classroom import Classroom
from ..config.site import Site
from ..core.actions import Action, Kind, Note, Op, Plan, Policy
from ..core.actual import Actual, Disk, from_json
from ..core.desired import Desired, resolve
from ..core import exports
from ..core.firewall import chains
from ..core.plan import plan
from ..core.report import document
from ..credentials import outbox
from ..host import disables, lock
from ..host.containers import client as docker_client
from ..host.drivers import Context
from ..host.facts import HostFiles, disk_space
from ..host.fsutil import private_dir
from ..host.observe import NO_HUB, HubProbes, hub_probes, observe
from ..host.run import Runner
from ..host.volumes import VolumeBackend, backend_for, layout_for, places_for
from .apply import Result, apply
from .journal import Journal

if TYPE_CHECKING:
    from ..core.pass_record import PassRecord


class Verdict(StrEnum):
    CONVERGED = "converged"  # nothing to do, or everything applied
    PENDING = "pending"  # dry run: changes would be made
    BLOCKED = "blocked"  # dry run: some people cannot be converged (see plan.blocked)
    FAILED = "failed"  # some actions failed or people are blocked; the next pass retries
    WAITING = "waiting"  # all done but changes that wait for a volume in use (they apply when it is free)
    INTERRUPTED = "interrupted"  # stopped between actions (SIGTERM)
    REFUSED = "refused"  # a safety guard refused the whole pass: nothing was applied


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    plan: Plan
    desired: Desired
    actual: Actual  # the snapshot the plan was made against
    result: Result | None = None  # None when nothing was applied (dry run, refused, no changes)
    after: Actual | None = None  # observed again after applying (only when something was applied)
    dry_run: bool = False

    @property
    def current(self) -> Actual:
        """The host as last observed."""
        return self.after if self.after is not None else self.actual


def policy(site: Site, allow_destroy: bool = False, allow_mass_disable: bool = False) -> Policy:
    """The operator's flags plus the site's limits."""
    return Policy(
        allow_destroy,
        allow_mass_disable,
        site.max_disable_fraction,
        site.max_overcommit,
        site.resize_running,
        site.mass_disable_window,
    )


def desire(site: Site, classroom: Classroom) -> Desired:
    """classroom.yaml resolved against this site: once per pass."""
    here = site.hub is not None and site.hub.spawner != "swarm"  # servers on this host's Docker
    fence = None
    if site.hub is not None:
        from ..host.firewall import host_networks  # with a hub only

        fence = chains(site.hub, host_networks() if here else ())
    return resolve(classroom, site.paths, layout_for(site), fence, exports.policy(site.hub, classroom.name), here)


def context(
    site: Site,
    desired: Desired,
    run: Runner,
    volumes: VolumeBackend,
    probes: HubProbes = NO_HUB,
    host: HostFiles = HostFiles(),
) -> Context:
    """What the drivers of one pass may touch."""
    return Context(
        classroom=desired.classroom,
        paths=site.paths,
        volumes=volumes,
        run=run,
        host=host,
        members={m.username: m for m in desired.members},
        credentials=outbox.Outbox(site.paths.outbox),
        hub=probes.client,
        docker=docker_client,
        firewall=desired.firewall,
        exports=desired.exports,
        exports_file=exports.exports_file(site.hub, desired.classroom),
    )


@dataclass(frozen=True)
class _Look:
    """One look at the host under the pass lock, and the plan made from it: what a preview shows and what a
    converging pass carries out."""

    desired: Desired
    actual: Actual
    plan: Plan
    volumes: VolumeBackend
    probes: HubProbes
    run: Runner


def _probes(site: Site, classroom: Classroom, containers: bool) -> HubProbes:
    probes = hub_probes(site, classroom.name)
    return probes if containers else HubProbes(probes.client, probes.hub, None, probes.firewall)


def _look(site: Site, desired: Desired, policy: Policy, probes: HubProbes, run: Runner) -> _Look:
    """Observe once, plan, and look closer at the volumes the plan would take offline."""
    volumes = backend_for(site, run)
    actual = _observe(site, desired, volumes, probes)
    the_plan = plan(desired, actual, policy)
    actual, the_plan = _look_closer(desired, actual, the_plan, policy, volumes)
    return _Look(desired, actual, the_plan, volumes, probes, run)


def _observe(site: Site, desired: Desired, volumes: VolumeBackend, probes: HubProbes) -> Actual:
    return observe(
        site.paths,
        volumes,
        hub=probes.hub,
        containers=probes.containers,
        disable_window=site.mass_disable_window,
        firewall=probes.firewall,
        **_nfs(site, desired),
        assignments=desired.handouts,
    )


def verdict(the_plan: Plan, result: Result | None, *, dry_run: bool) -> Verdict:
    """The one place a pass's outcome is named: from its plan, and what applying it did (None: nothing was)."""
    if the_plan.refused:
        return Verdict.REFUSED
    if result is None:
        if dry_run and the_plan.blocked:
            return Verdict.BLOCKED
        return Verdict.PENDING if dry_run and the_plan.actions else Verdict.CONVERGED
    if result.interrupted and "journal" not in result.failed:  # SIGTERM between actions
        return Verdict.INTERRUPTED
    if result.failed:
        return Verdict.FAILED
    return Verdict.WAITING if result.waiting else Verdict.CONVERGED


def preview(
    site: Site,
    classroom: Classroom,
    policy: Policy,
    *,
    on_plan: Callable[[Plan], None] = lambda p: None,
    lock_timeout: float | None = None,
    containers: bool = True,
    locked: bool = True,
) -> Outcome:
    """Observe and plan, changing nothing (a dry run).  Plans are made under the shared pass lock; without it
    (``locked=False``) the preview shows the host as it is right now, even halfway through another pass's apply
    (the teacher page's table)."""
    desired = desire(site, classroom)
    timeout = site.lock_timeout if lock_timeout is None else lock_timeout
    with lock.hold(site.paths.lock, exclusive=False, timeout=timeout) if locked else _unlocked() as held:
        seen = _look(site, desired, policy, _probes(site, classroom, containers), _runner(held))
    on_plan(seen.plan)
    return Outcome(verdict(seen.plan, None, dry_run=True), seen.plan, desired, seen.actual, dry_run=True)


def converge(
    site: Site,
    classroom: Classroom,
    policy: Policy,
    *,
    on_plan: Callable[[Plan], None] = lambda p: None,
    report: Callable[[Action, str, str], None] = lambda a, r, d: None,
    should_stop: Callable[[], bool] = lambda: False,
    lock_timeout: float | None = None,
    observe_after: bool = False,
) -> Outcome:
    """Observe, plan and apply, holding the pass lock throughout.  ``observe_after``: when the pass changed the
    host, observe it once more before letting go of the lock (``Outcome.after``: what the daemon publishes as
    the server's state)."""
    desired = desire(site, classroom)
    probes = _probes(site, classroom, containers=True)
    timeout = site.lock_timeout if lock_timeout is None else lock_timeout
    private_dir(site.state_dir)
    with lock.hold(site.paths.lock, exclusive=True, timeout=timeout) as held:
        run = _runner(held)
        from .end_of_term import clear_stale

        clear_stale(site, run)
        seen = _look(site, desired, policy, probes, run)
        on_plan(seen.plan)
        if seen.plan.refused or (not seen.plan.actions and not seen.plan.blocked):
            return Outcome(verdict(seen.plan, None, dry_run=False), seen.plan, desired, seen.actual)
        result = _apply(site, seen, report, should_stop)
        after = None
        if result.ok and observe_after:
            try:
                after = _observe(site, desired, seen.volumes, probes)
            except Exception:  # noqa: BLE001 - what was applied stands; the next pass observes again
                after = None
        return Outcome(verdict(seen.plan, result, dry_run=False), seen.plan, desired, seen.actual, result, after)


def _runner(held) -> Runner:
    """The pass's commands hold the lock's descriptor (an orphaned mkfs of a killed pass still holds it)."""
    return Runner().holding(held.fd) if held is not None else Runner()


def _apply(
    site: Site, seen: _Look, report: Callable[[Action, str, str], None], should_stop: Callable[[], bool]
) -> Result:
    """Carry the plan out through the drivers, journaling each action; record who was disabled."""
    journal = Journal(
        site.paths.journal,
        time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}",
        max_size=site.journal_max_size,
    )
    try:
        result = apply(
            seen.plan,
            context(site, seen.desired, seen.run, seen.volumes, seen.probes),
            journal,
            should_stop=should_stop,
            report=report,
            workers=site.apply_workers,
        )
    finally:
        journal.close()
    now = time.time()
    gone = [a.target for a in result.done if a.kind is Kind.ACCOUNT and a.op in (Op.DISABLE, Op.DESTROY)]
    try:
        disables.record(site.paths.disables, gone, now, now - site.mass_disable_window)
    except OSError as exc:
        result.failed.setdefault(
            "disables", f"cannot record the disables in {site.paths.disables}: {exc.strerror or exc}"
        )
    return result


def _nfs(site: Site, desired: Desired) -> dict:
    """observe()'s NFS arguments: the classroom's exports file, and whether the homes are exported."""
    return {"exports_file": exports.exports_file(site.hub, desired.classroom), "nfs": desired.exports is not None}


def _look_closer(
    desired: Desired, actual: Actual, the_plan: Plan, flags: Policy, volumes: VolumeBackend
) -> tuple[Actual, Plan]:
    """Before touching volumes offline, find out whether another mount namespace holds them.

    The batch snapshot knows the running servers (their containers hold bind mounts of the homes) but
    not every mount namespace: that takes a scan of /proc, done only for the volumes this plan would
    resize or delete.  Those found held are marked, and the plan made again: their changes wait.
    """
    stopping = {a.target for a in the_plan.actions if a.kind is Kind.SERVER}  # this pass stops their server first;
    suspects = {
        a.target
        for a in the_plan.actions  # the driver still proves the volume free before acting
        if a.kind is Kind.VOLUME and a.op in (Op.UPDATE, Op.DESTROY) and not a.waits
    } - stopping
    known = {user: volume for user, volume in actual.volumes.items() if user in suspects}
    held = volumes.held(suspects, known) if suspects else set()
    if not held:
        return actual, the_plan
    marked = {
        user: dataclasses.replace(volume, held_elsewhere=True) if user in held else volume
        for user, volume in actual.volumes.items()
    }
    actual = dataclasses.replace(actual, volumes=MappingProxyType(marked))
    return actual, plan(desired, actual, flags)


def observe_now(site: Site, classroom: Classroom, roster_changed: float | None = None) -> tuple[Desired, Actual, float]:
    """The host as it is now, without a plan and without the lock (the teacher page's table: it shows the host,
    even halfway through a pass, and never what a pass would do; GET /api/plan plans).  Returns when its host
    part was observed (time.time()).

    ``roster_changed`` (the classroom file's mtime): when the daemon's own snapshot (snapshot.json, written after
    each of its passes) is newer than that and than two resync intervals, its host part (accounts, volumes,
    mounts) is used instead of observing again, since it only changes through passes; the hub's users and the
    containers are always asked now (servers start and stop between passes).  Otherwise a fresh observation.
    """
    desired = desire(site, classroom)
    probes = hub_probes(site, classroom.name)
    if roster_changed is not None:
        found = daemon_snapshot(site, classroom.name, roster_changed)
        if found is not None:
            actual, when = found
            live = {
                "hub": probes.hub() if probes.hub else None,
                "containers": probes.containers() if probes.containers else MappingProxyType({}),
            }
            return desired, dataclasses.replace(actual, **live), when
    when = time.time()
    actual = observe(
        site.paths,
        backend_for(site, Runner()),
        hub=probes.hub,
        containers=probes.containers,
        disable_window=site.mass_disable_window,
        firewall=probes.firewall,
        **_nfs(site, desired),
        assignments=desired.handouts,
    )
    return desired, actual, when


_SNAPSHOTS: dict[Path, tuple[tuple[int, int], str | None, Actual]] = {}


def daemon_snapshot(site: Site, classroom: str, roster_changed: float) -> tuple[Actual, float] | None:
    """The daemon's last snapshot and when it was written, if it saw the roster as it is now and the daemon is
    alive (written within two resync intervals); parsed once per write."""
    path = site.paths.snapshot
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_mtime <= roster_changed or time.time() - info.st_mtime > 2 * site.resync_interval + 5:
        return None
    key = (info.st_mtime_ns, info.st_size)
    known = _SNAPSHOTS.get(path)
    if known is None or known[0] != key:
        try:
            data = json.loads(path.read_text())
            known = (key, data.get("classroom"), from_json(data["observed"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        _SNAPSHOTS[path] = known
    return (known[2], info.st_mtime) if known[1] == classroom else None


def look(
    site: Site, classroom: Classroom, *, lock_timeout: float | None = None, containers: bool = True, locked: bool = True
) -> Outcome:
    """A preview with the site's own policy: the host as it is now and what the next pass would do (status, the
    teacher page)."""
    return preview(site, classroom, policy(site), lock_timeout=lock_timeout, containers=containers, locked=locked)


@contextmanager
def _unlocked() -> Iterator[None]:
    yield None


def plan_offline(site: Site, classroom: Classroom, snapshot: dict, flags: Policy) -> Outcome:
    """A dry run against a server's snapshot (`reconcile status --json`, snapshot.json), touching nothing here.

    The snapshot names the server's paths, volume backend and limits: the plan is the one the server would make.
    """
    actual = from_json(snapshot.get("observed", snapshot))
    server = site
    if "paths" in snapshot:
        server = site.model_copy(
            update={
                "state_dir": Path(snapshot["paths"]["state"]),
                "homes_dir": Path(snapshot["paths"]["homes"]),
                "volumes": Site.model_validate(
                    {"volumes": snapshot["volumes"]} if snapshot.get("volumes") else {}
                ).volumes,
            }
        )
    limits = snapshot.get("policy", {})  # the server's limits; the flags are this command's
    server_policy = dataclasses.replace(
        flags,
        **{
            key: limits[key]
            for key in ("max_disable_fraction", "max_overcommit", "resize_running", "mass_disable_window")
            if key in limits
        },
    )
    desired = desire(server, classroom)
    if "shared" in snapshot.get("paths", {}):
        desired = dataclasses.replace(
            desired, paths=dataclasses.replace(desired.paths, shared=Path(snapshot["paths"]["shared"]))
        )
    the_plan = plan(desired, actual, server_policy)
    if the_plan.refused:
        verdict = Verdict.REFUSED
    else:
        verdict = Verdict.BLOCKED if the_plan.blocked else (Verdict.PENDING if the_plan.actions else Verdict.CONVERGED)
    return Outcome(verdict, the_plan, desired, actual, dry_run=True)


def check_edit(site: Site, before: Classroom, after: Classroom, host: HostFiles = HostFiles()) -> list[Note]:
    """What an edit of classroom.yaml would newly refuse or block, planned against the host as it is now.

    The teacher API and import-csv ask before they write: an edit that would stop the class (a refused
    pass) or a person (a name taken by a system account or group, ...) is answered with the plan's own
    reason and the file stays as it was.  Problems the file already had are not the edit's.
    """
    volumes = backend_for(site, Runner(), host)
    actual = observe(site.paths, volumes, host, disable_window=site.mass_disable_window)
    flags = policy(site)
    was = plan(desire(site, before), actual, flags)
    known = {(n.rule, n.target) for n in (*was.refused, *was.blocked)}
    will = plan(desire(site, after), actual, flags)
    return [n for n in (*will.refused, *will.blocked) if (n.rule, n.target) not in known]


def status_document(site: Site, outcome: Outcome, found_disks: list[Disk] | None = None) -> dict:
    """`reconcile status --json` and snapshot.json: the people and the snapshot, from this outcome."""
    return {
        **document(
            outcome.desired,
            outcome.current,
            outbox.pending(site.paths.outbox),
            policy(site),
            site.volumes.model_dump(mode="json", exclude_none=True),
        ),
        "disks": [disk.to_json() for disk in (disks(site) if found_disks is None else found_disks)],
    }


DOCKER_ROOT = Path("/var/lib/docker")


def last_pass(site: Site) -> PassRecord | None:
    """The daemon's record of its last pass (status.json); None before its first, or when it cannot be read."""
    from ..core.pass_record import PassRecord  # status and the service: a pass never reads its own record

    try:
        return PassRecord.from_json(json.loads(site.paths.pass_record.read_text()))
    except (OSError, ValueError):
        return None


def disks(site: Site) -> list[Disk]:
    """The free space of every filesystem the classroom writes to (statvfs; no command runs)."""
    places = [*places_for(site), ("the state", site.paths.state)]
    if site.hub is not None:
        places += [("Docker's data (images, container logs)", DOCKER_ROOT), ("the shared folder", site.shared_dir)]
    return disk_space(places, site.warn_free_fraction)


def mount_all(site: Site) -> tuple[list[str], dict[str, str]]:
    """At boot: attach the storage (the backend's ``boot``), then mount every manifest entry not yet mounted."""
    from ..host.mounts import mount_all as mount_entries

    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout) as held:
        run = Runner().holding(held.fd)
        volumes = backend_for(site, run)
        attached = volumes.boot()
        return attached, mount_entries(Context(classroom="", paths=site.paths, volumes=volumes, run=run))
