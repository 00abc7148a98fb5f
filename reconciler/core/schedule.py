"""Lessons that start warm: when classroom.yaml's lessons are, and which servers to pre-start now.  Pure: the time
is always an argument (an aware datetime), never read here.

Before each lesson the daemon starts the students' servers one at a time, ``pace`` seconds apart, so that the
last is up ``lead`` seconds before the lesson starts: the pre-warm window opens at
``start - lead - pace * wanted``.  Never more than fit in the host's available memory at the idle footprint
(the caller says how many more fit), never anyone the hub has not met yet (a student who never logged in has no
hub user to start a server for: theirs starts at the first login), and each person at most once per lesson (a
student who stops their server, or whose server is culled after the lesson, is not started again).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping, Sequence

from ..config.classroom import DAYS, Lesson
from ..config.site import Prewarm

UTC = dt.UTC
WEEK = dt.timedelta(days=7)


@dataclass(frozen=True)
class Occurrence:
    """One lesson on the calendar, its times in UTC."""

    start: dt.datetime
    end: dt.datetime
    lesson: Lesson

    @property
    def text(self) -> str:
        """How a teacher reads it: "Mon 2026-12-07 09:00-10:40 Europe/Rome"."""
        local = self.start.astimezone(self.lesson.zone)
        return f"{local:%a %Y-%m-%d} {self.lesson.start}-{self.lesson.end} {self.lesson.tz}"


def _at(day: dt.date, hhmm: str, lesson: Lesson) -> dt.datetime:
    hour, minute = (int(part) for part in hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=lesson.zone).astimezone(UTC)


def occurrences(schedule: Iterable[Lesson], since: dt.datetime, until: dt.datetime) -> list[Occurrence]:
    """Every lesson that overlaps [since, until), in order of start."""
    found = []
    for lesson in schedule:
        if lesson.date is not None:
            days = [lesson.date]
        else:
            first = since.astimezone(lesson.zone).date() - dt.timedelta(days=1)
            span = (until - since).days + 3
            wanted = {DAYS.index(day) for day in lesson.days or ()}
            days = [d for d in (first + dt.timedelta(days=i) for i in range(span)) if d.weekday() in wanted]
        for day in days:
            start, end = _at(day, lesson.start, lesson), _at(day, lesson.end, lesson)
            if end > since and start < until:
                found.append(Occurrence(start, end, lesson))
    return sorted(found, key=lambda o: (o.start, o.end))


def _split(schedule: Sequence[Lesson]) -> tuple[list[Lesson], list[Lesson]]:
    return [lesson for lesson in schedule if lesson.date is None], [lesson for lesson in schedule if lesson.date]


def current_or_next(schedule: Sequence[Lesson], now: dt.datetime) -> Occurrence | None:
    """The lesson on now, else the next one (weekly lessons repeat within a week; one-off dates may be later).
    Weekly lessons are looked for over eight days only, one-off dates directly: the idle culler asks this for
    every server it looks at."""
    weekly, once = _split(schedule)
    found = occurrences(weekly, now, now + WEEK + dt.timedelta(days=1))
    found += [
        o
        for lesson in once
        for o in occurrences([lesson], now, _at(lesson.date, lesson.end, lesson) + dt.timedelta(seconds=1))
    ]
    return min(found, key=lambda o: (o.start, o.end)) if found else None


def recent_start(schedule: Sequence[Lesson], now: dt.datetime, lessons: int) -> dt.datetime | None:
    """The start of the ``lessons``-th most recent lesson before now (the earliest there is, if fewer)."""
    weekly, once = _split(schedule)
    found = occurrences(weekly, now - WEEK * (lessons + 1), now)
    found += [o for lesson in once for o in occurrences([lesson], _at(lesson.date, lesson.start, lesson), now)]
    past = sorted((o for o in found if o.start < now), key=lambda o: (o.start, o.end))
    if not past:
        return None
    return past[-lessons].start if len(past) >= lessons else past[0].start


@dataclass(frozen=True)
class Student:
    """What the pre-warm needs to know of one active student."""

    username: str
    in_hub: bool  # the hub knows them (they logged in once)
    running: bool  # their server is running or starting
    last_activity: dt.datetime | None = None


@dataclass(frozen=True)
class Step:
    """What to do now, and what to say about it."""

    phase: str  # "none" (no lesson ahead), "waiting" (window not open), "warming", "lesson"
    lesson: Occurrence | None = None
    window: dt.datetime | None = None  # when the pre-warm window opens
    start: tuple[str, ...] = ()  # start these servers now
    skipped: Mapping[str, str] = field(default_factory=dict)  # username -> why not pre-started
    wanted: int = 0  # servers this lesson should find running
    running: int = 0  # of them, running now
    wake: float | None = None  # seconds until the daemon should look again (None: its usual interval)

    @property
    def text(self) -> str:
        if self.phase == "none" or self.lesson is None:
            return "no lesson in the schedule"
        head = f"next lesson: {self.lesson.text}" if self.phase != "lesson" else f"lesson on: {self.lesson.text}"
        if self.phase == "waiting" and self.window is not None:
            body = f"pre-warm of {self.wanted} server(s) from {self.window.astimezone(self.lesson.lesson.zone):%H:%M}"
        else:
            body = f"{self.running} of {self.wanted} server(s) running"
        if self.skipped:
            reasons: dict[str, int] = {}
            for why in self.skipped.values():
                reasons[why] = reasons.get(why, 0) + 1
            body += "; not pre-started: " + "; ".join(f"{n} ({why})" for why, n in sorted(reasons.items()))
        return f"{head}; {body}"


NEVER_LOGGED_IN = "never logged in: their server starts at the first login"
NOT_RECENT = "did not use the hub in the last {n} lessons"


def step(
    now: dt.datetime,
    schedule: Sequence[Lesson],
    settings: Prewarm,
    students: Sequence[Student],
    fit: int,
    started: Iterable[str] = (),
) -> Step:
    """The pre-warm at ``now``: which servers to start (at most one: pace), given that ``fit`` more idle servers
    fit in memory and ``started`` were already pre-started for this lesson."""
    lesson = current_or_next(schedule, now)
    if lesson is None:
        return Step("none")
    skipped: dict[str, str] = {}
    since = recent_start(schedule, now, settings.recent_lessons) if settings.who == "recent" else None
    wanted = []
    for student in sorted(students, key=lambda s: s.username):
        if not student.in_hub:
            skipped[student.username] = NEVER_LOGGED_IN
        elif since is not None and (student.last_activity is None or student.last_activity < since):
            skipped[student.username] = NOT_RECENT.format(n=settings.recent_lessons)
        else:
            wanted.append(student)
    running = sum(1 for s in wanted if s.running)
    window = lesson.start - dt.timedelta(seconds=settings.lead + settings.pace * len(wanted))
    base = dict(lesson=lesson, window=window, wanted=len(wanted), running=running)
    if now < window:
        return Step("waiting", skipped=skipped, wake=(window - now).total_seconds(), **base)
    phase = "lesson" if now >= lesson.start else "warming"
    done = set(started)
    todo = [s.username for s in wanted if not s.running and s.username not in done]
    room = max(fit, 0)
    for username in todo[room:]:
        skipped[username] = "not enough memory for another idle server now"
    todo = todo[:room]
    return Step(phase, start=tuple(todo[:1]), skipped=skipped, wake=settings.pace if len(todo) > 1 else None, **base)


def in_lesson(schedule: Sequence[Lesson], now: dt.datetime) -> Occurrence | None:
    """The lesson going on at ``now``, if any (the idle culler leaves servers alone then)."""
    lesson = current_or_next(schedule, now)
    return lesson if lesson is not None and lesson.start <= now < lesson.end else None
