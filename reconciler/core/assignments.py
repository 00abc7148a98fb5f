"""Assignments in the plan: at its release, every active student gets their own copy (pure: the time is the
snapshot's, ``Actual.observed_at``).

A copy is handed out once per student (the ledger of who got what is part of the snapshot): never again over
their work, whatever they did with it since; a student added after the release gets theirs at their first
pass.  An assignment whose source is missing blocks that assignment alone.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from .actions import Action, HandoutFields, Kind, Note, Op
from .actual import Actual
from .desired import Desired, Handout

COURSE_FOLDER_FIRST = "the course folder's volume is mounted in this pass first: handed out at the next"


def when(moment: datetime.datetime) -> str:
    """As a teacher reads it, in the file's own time zone: 2026-12-14 09:00 CET."""
    return f"{moment:%Y-%m-%d %H:%M} {moment.tzname() or ''}".rstrip()


def after(now: datetime.datetime, moment: datetime.datetime) -> str:
    """How long until ``moment``: "in 2 d 3 h", "in 45 min"."""
    minutes = max(0, int((moment - now).total_seconds() // 60))
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins and not days else ""]
    return "in " + (" ".join(p for p in parts if p) or "less than a minute")


def observed(actual: Actual) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(actual.observed_at) if actual.observed_at else None


def handouts(
    desired: Desired, actual: Actual, ready: Iterable[str], course_folder_busy: bool
) -> tuple[list[Action], list[Note], list[Note]]:
    """The copies due now for the students in ``ready`` (active, their home mounted by the end of their own
    steps), the assignments blocked, and the releases still to come.  Nothing without the snapshot's time."""
    now = observed(actual)
    if now is None or not desired.handouts:
        return [], [], []
    if actual.handouts_blocked:
        return [], [Note("blocked", "assignments", actual.handouts_blocked)], []
    steps: list[Action] = []
    blocked: list[Note] = []
    upcoming: list[Note] = []
    students = sorted(ready)
    for handout in sorted(desired.handouts, key=lambda h: (h.release, h.name)):
        if handout.release > now:
            missing = (
                f"; its source {handout.source} is not a folder in the course folder yet"
                if handout.name in actual.sources_missing
                else ""
            )
            upcoming.append(
                Note(
                    "release",
                    handout.name,
                    f"{handout.name} is released {when(handout.release)} ({after(now, handout.release)}){missing}",
                )
            )
            continue
        if handout.name in actual.sources_missing:
            blocked.append(
                Note(
                    "blocked",
                    f"assignment {handout.name}",
                    f"its source {handout.source} is not a folder in the course folder: nobody gets it until it is",
                )
            )
            continue
        got = actual.handed_out.get(handout.name, frozenset())
        steps += [_copy(handout, user, course_folder_busy) for user in students if user not in got]
    return steps, blocked, upcoming


def _copy(handout: Handout, user: str, course_folder_busy: bool) -> Action:
    return Action(
        Op.CREATE,
        Kind.HANDOUT,
        user,
        after=HandoutFields(assignment=handout.name, source=handout.source),
        reason=f"{handout.name} released {when(handout.release)}: their own copy in ~/assignments/{handout.name}",
        waits=COURSE_FOLDER_FIRST if course_folder_busy else "",
    )
