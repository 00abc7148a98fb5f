"""The pre-warm before a lesson: core.schedule decides, this starts the servers through the hub and remembers who
was pre-started for which lesson (<state>/prewarm.json), so that the daemon and `reconcile prewarm` agree and
nobody is started twice for one lesson.

The host facts it needs come from the pass's own snapshot (the hub's users, running or not, and when each was
last active) and one read of /proc/meminfo (with the swarm spawner the servers run on the workers, whose
scheduler places them by their reservations: no cap here); a start is one POST to the hub, which spawns as for
a login.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from ..config.classroom import Classroom
from ..config.site import Site
from ..core.actual import Actual
from ..core.desired import Desired
from ..core.rollout import parse_time
from ..core.schedule import Step, Student, current_or_next, step
from ..host import lock
from ..host.facts import HostFiles
from ..host.fsutil import write_atomic

UTC = dt.UTC


@dataclass
class Outcome:
    step: Step
    started: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        s = self.step
        return {
            "phase": s.phase,
            "text": s.text,
            "lesson_start": s.lesson.start.isoformat() if s.lesson else None,
            "lesson_end": s.lesson.end.isoformat() if s.lesson else None,
            "window": s.window.isoformat() if s.window else None,
            "wanted": s.wanted,
            "running": s.running,
            "skipped": dict(s.skipped),
            "started": self.started,
            "failed": self.failed,
        }


USED_AFTER = dt.timedelta(minutes=2)  # a server active this long after its start was used by its student


def used(site: Site, actual: Actual, keep: bool = True) -> dict[str, str]:
    """When each student last really used their server, kept in <state>/usage.json from what each pass sees.

    The hub's own last_activity cannot tell: it is also set when a server starts or stops, so a pre-started
    server (and the culler stopping it) would count.  A running server's own last activity well after its
    start can: an idle pre-started server shows none."""
    try:
        record = json.loads(site.paths.usage.read_text())
    except (OSError, ValueError):
        record = {}
    changed = False
    for name, user in actual.hub_users.items():
        started, active = parse_time(user.server_started), parse_time(user.server_activity)
        if started and active and active - started >= USED_AFTER and active.isoformat() > record.get(name, ""):
            record[name] = active.isoformat()
            changed = True
    if changed and keep:
        write_atomic(site.paths.usage, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def students(desired: Desired, actual: Actual, usage: dict[str, str] | None = None) -> list[Student]:
    """The active students as the pre-warm sees them, from the pass's snapshot and the usage record."""
    users, usage = actual.hub_users, usage or {}
    return [
        Student(
            m.username,
            m.username in users,
            m.username in users and users[m.username].running,
            parse_time(usage.get(m.username)),
        )
        for m in desired.members
        if m.status == "active" and m.role == "student"
    ]


def _started(site: Site, lesson_start: str) -> set[str]:
    try:
        record = json.loads(site.paths.prewarm.read_text())
    except (OSError, ValueError):
        return set()
    return set(record.get("started", [])) if record.get("lesson") == lesson_start else set()


def _remember(site: Site, lesson_start: str, started: set[str]) -> None:
    write_atomic(site.paths.prewarm, json.dumps({"lesson": lesson_start, "started": sorted(started)}) + "\n")


def look(
    site: Site,
    classroom: Classroom,
    desired: Desired,
    actual: Actual,
    now: dt.datetime,
    host: HostFiles = HostFiles(),
    keep: bool = False,
) -> Step:
    """What the pre-warm would do now (status shows it; nothing is started, and with ``keep`` the usage seen in
    this snapshot is recorded)."""
    assert site.hub is not None
    settings = site.hub.prewarm
    if site.hub.spawner == "swarm":  # the servers run on the workers: the swarm places them by their reservations
        fit = len(desired.members)
    else:
        available = host.memory_available()
        fit = 0 if available is None else available // settings.idle_memory
    lesson = current_or_next(classroom.schedule, now)
    started = _started(site, lesson.start.isoformat()) if lesson is not None else set()
    usage = used(site, actual, keep) if settings.who == "recent" else {}
    return step(now, classroom.schedule, settings, students(desired, actual, usage), fit, started)


def run(
    site: Site,
    classroom: Classroom,
    desired: Desired,
    actual: Actual,
    client,
    now: dt.datetime | None = None,
    host: HostFiles = HostFiles(),
) -> Outcome:
    """One pre-warm step: start the server that is due (at most one: the pace), remember it."""
    now = now or dt.datetime.now(UTC)
    decided = look(site, classroom, desired, actual, now, host, keep=True)
    outcome = Outcome(decided)
    if not decided.start or decided.lesson is None:
        return outcome
    if client is None:
        outcome.failed = {name: "the hub API is not available" for name in decided.start}
        return outcome
    lesson_start = decided.lesson.start.isoformat()
    # the daemon and `reconcile prewarm` may both step: one at a time, each seeing what the other started
    with lock.hold(site.paths.prewarm.with_suffix(".lock"), exclusive=True, timeout=site.lock_timeout):
        started = _started(site, lesson_start)
        for username in decided.start:
            if username in started:
                continue
            try:
                client.start_server(username)
            except Exception as exc:  # noqa: BLE001 - one student's start never stops the others'
                outcome.failed[username] = str(exc)
            else:
                outcome.started.append(username)
            started.add(username)  # once per lesson, whatever happened: a failing start is not retried in a loop
        _remember(site, lesson_start, started)
    return outcome
