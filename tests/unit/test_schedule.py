"""Lessons that start warm (core/schedule.py): the calendar, and what the pre-warm does at a given moment.

Pure: every case gives the time.  Europe/Rome changes to winter time on 2026-10-25 (03:00 CEST -> 02:00 CET):
a 09:00 lesson is 07:00 UTC before and 08:00 UTC after.
"""

import datetime as dt
import os

import pytest

from reconciler.config.classroom import Lesson
from reconciler.config.load import InvalidFile, load_classroom
from reconciler.config.site import Prewarm, Site
from reconciler.core.schedule import (
    NEVER_LOGGED_IN,
    Student,
    current_or_next,
    in_lesson,
    occurrences,
    recent_start,
    step,
)

UTC = dt.UTC
WEEKLY = Lesson(days=["mon", "wed"], start="09:00", end="10:40", tz="Europe/Rome")
ONCE = Lesson(date=dt.date(2026, 12, 5), start="14:00", end="16:00", tz="Europe/Rome")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_weekly_lessons_follow_summer_time():
    found = occurrences([WEEKLY], at("2026-10-19 00:00"), at("2026-10-29 00:00"))
    assert [(o.start, o.end) for o in found] == [
        (at("2026-10-19 07:00"), at("2026-10-19 08:40")),  # Monday, CEST
        (at("2026-10-21 07:00"), at("2026-10-21 08:40")),
        (at("2026-10-26 08:00"), at("2026-10-26 09:40")),  # Monday after the change, CET
        (at("2026-10-28 08:00"), at("2026-10-28 09:40")),
    ]
    assert found[2].text == "Mon 2026-10-26 09:00-10:40 Europe/Rome"


def test_current_or_next_lesson():
    schedule = [WEEKLY, ONCE]
    assert current_or_next(schedule, at("2026-12-01 12:00")).start == at("2026-12-02 08:00")  # Wednesday
    assert current_or_next(schedule, at("2026-12-02 08:30")).start == at("2026-12-02 08:00")  # on now
    assert current_or_next(schedule, at("2026-12-03 00:00")).start == at("2026-12-05 13:00")  # the one-off Saturday
    assert current_or_next([ONCE], at("2026-12-06 00:00")) is None  # past
    assert current_or_next([], at("2026-12-06 00:00")) is None
    assert in_lesson(schedule, at("2026-12-02 09:39")) is not None
    assert in_lesson(schedule, at("2026-12-02 09:40")) is None  # ends at 10:40 Rome = 09:40 UTC


def test_recent_start_counts_lessons_back():
    now = at("2026-12-09 06:00")  # Wednesday before the lesson
    assert recent_start([WEEKLY], now, 1) == at("2026-12-07 08:00")
    assert recent_start([WEEKLY], now, 2) == at("2026-12-02 08:00")
    assert recent_start([WEEKLY], now, 3) == at("2026-11-30 08:00")
    assert recent_start([ONCE], at("2026-12-05 12:00"), 3) is None  # no lesson yet


SETTINGS = Prewarm(lead=600, pace=2.0)
LESSON = at("2026-12-02 08:00")  # Wednesday 09:00 Rome


def students(n: int, running=(), in_hub=True) -> list[Student]:
    return [Student(f"s{i:02d}", in_hub=in_hub, running=f"s{i:02d}" in running) for i in range(n)]


def test_before_the_window_nothing_starts_and_the_daemon_wakes_when_it_opens():
    # 30 servers at 2 s: the window opens 600 + 60 s before the start
    got = step(LESSON - dt.timedelta(seconds=700), [WEEKLY], SETTINGS, students(30), fit=100)
    assert (got.phase, got.start, got.wanted) == ("waiting", (), 30)
    assert got.window == LESSON - dt.timedelta(seconds=660) and got.wake == 40
    assert got.text == "next lesson: Wed 2026-12-02 09:00-10:40 Europe/Rome; pre-warm of 30 server(s) from 08:49"


def test_in_the_window_one_server_at_a_time_paced():
    now = LESSON - dt.timedelta(seconds=605)  # 3 servers: the window opened 606 s before
    got = step(now, [WEEKLY], SETTINGS, students(3, running={"s00"}), fit=100, started={"s00"})
    assert (got.phase, got.start, got.wake, got.running) == ("warming", ("s01",), 2.0, 1)
    last = step(now, [WEEKLY], SETTINGS, students(3, running={"s00", "s01"}), fit=100, started={"s00", "s01"})
    assert (last.start, last.wake) == (("s02",), None)
    done = step(now, [WEEKLY], SETTINGS, students(3, running={"s00", "s01", "s02"}), fit=100)
    assert done.start == () and done.text.endswith("3 of 3 server(s) running")


def test_memory_caps_the_pre_warm_and_says_so():
    got = step(LESSON - dt.timedelta(seconds=100), [WEEKLY], SETTINGS, students(5), fit=2)
    assert got.start == ("s00",)
    assert got.skipped == {
        "s02": "not enough memory for another idle server now",
        "s03": "not enough memory for another idle server now",
        "s04": "not enough memory for another idle server now",
    }
    assert "not pre-started: 3 (not enough memory for another idle server now)" in got.text
    assert step(LESSON, [WEEKLY], SETTINGS, students(2), fit=0).start == ()


def test_never_logged_in_and_once_per_lesson():
    people = [*students(2), Student("new", in_hub=False, running=False)]
    got = step(LESSON + dt.timedelta(minutes=5), [WEEKLY], SETTINGS, people, fit=10, started={"s00"})
    assert got.phase == "lesson" and got.start == ("s01",)  # s00 was pre-started and stopped since: left alone
    assert got.skipped == {"new": NEVER_LOGGED_IN}


def test_only_recent_users_with_who_recent():
    settings = Prewarm(who="recent", recent_lessons=1)
    people = [
        Student("came", True, False, at("2026-11-30 08:30")),
        Student("away", True, False, at("2026-11-20 08:30")),
    ]
    got = step(LESSON - dt.timedelta(seconds=600), [WEEKLY], settings, people, fit=10)
    assert got.start == ("came",) and got.skipped == {"away": "did not use the hub in the last 1 lessons"}


def test_no_schedule_no_pre_warm():
    assert step(LESSON, [], SETTINGS, students(3), fit=10).phase == "none"


@pytest.mark.parametrize(
    "entry, message",
    [
        ("{days: [mon], start: '10:00', end: '09:00'}", "end 09:00 is not after start 10:00"),
        ("{days: [mon], start: '9:00', end: '10:00'}", "schedule[0].start: String should match pattern"),
        ("{days: [mon], date: 2026-12-01, start: '09:00', end: '10:00'}", "either days (weekly) or a date"),
        ("{start: '09:00', end: '10:00'}", "either days (weekly) or a date"),
        ("{days: [monday], start: '09:00', end: '10:00'}", "schedule[0].days[0]: Input should be 'mon'"),
        ("{days: [mon], start: '09:00', end: '10:00', tz: Mars/Olympus}", "'Mars/Olympus' is not a time zone"),
    ],
)
def test_a_bad_lesson_is_refused_with_its_line(tmp_path, entry, message):
    path = tmp_path / "classroom.yaml"
    path.write_text(f"version: 1\nname: py\nschedule:\n  - {entry}\n")
    with pytest.raises(InvalidFile) as info:
        load_classroom(path, Site())
    assert message in str(info.value) and ":4:" in str(info.value), str(info.value)


def test_the_culler_leaves_servers_alone_during_a_lesson(tmp_path):
    """hub/culler.py's arbiter: during a lesson nothing is culled; outside, the classic idle check.  The schedule is
    read again when the file changes; an invalid file keeps the schedule last read."""
    from reconciler.hub.culler import Lessons, arbiter

    path = tmp_path / "classroom.yaml"
    path.write_text(
        "version: 1\nname: py\nschedule:\n  - {days: [wed], start: '09:00', end: '10:40', tz: Europe/Rome}\n"
    )
    lessons = Lessons(path, Site(), every=0)
    now = {"t": at("2026-12-02 08:30")}  # Wednesday 09:30 in Rome
    decide = arbiter(lessons.current, clock=lambda: now["t"])
    idle = dict(inactive=dt.timedelta(hours=2), inactive_limit=3600, server={})
    assert decide(**idle) is False
    assert decide(inactive=dt.timedelta(minutes=5), inactive_limit=3600, server={}) is False
    now["t"] = at("2026-12-02 10:00")  # after the lesson
    assert decide(**idle) is True
    assert decide(inactive=dt.timedelta(minutes=5), inactive_limit=3600, server={}) is False
    path.write_text("version: 1\nname: py\nschedule:\n  - {days: [wed], start: '10:00', end: '12:00', tz: UTC}\n")
    os.utime(path, (1, 1))  # a new mtime, whatever the clock's resolution
    assert decide(**idle) is False  # the new schedule: a lesson is on again
    path.write_text("version: 1\nname: py\nschedule: [{days: [nope]}]\n")
    os.utime(path, (2, 2))
    assert decide(**idle) is False  # invalid: the schedule last read stays
