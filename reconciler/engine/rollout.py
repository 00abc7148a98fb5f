"""`reconcile image rollout`: restart the idle students' servers that run an older image (core/rollout.py decides),
through the hub, so the next time they are used they run the image just built.  One at a time, each stop then
start; a server that fails stays as it was and the others go on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..config.classroom import Classroom
from ..config.site import Site
from ..core.rollout import Rollout, due
from ..host.observe import hub_probes
from . import passes


@dataclass(frozen=True)
class Rolled:
    plan: Rollout
    restarted: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)


def rollout(site: Site, classroom: Classroom, idle: dt.timedelta, dry_run: bool = False) -> Rolled:
    outcome = passes.look(site, classroom, containers=True)
    students = {p.username for p in classroom.students if p.status == "active"}
    plan = due(outcome.current, students, dt.datetime.now(dt.UTC), idle)
    if dry_run or not plan.restart:
        return Rolled(plan)
    client = hub_probes(site, classroom.name).client
    if client is None:
        return Rolled(plan, failed={name: "the hub cannot be asked" for name in plan.restart})
    restarted, failed = [], {}
    for name in plan.restart:
        try:
            client.stop_server(name)
            client.start_server(name)
            restarted.append(name)
        except (RuntimeError, OSError) as exc:
            failed[name] = str(exc)
    return Rolled(plan, tuple(restarted), failed)
