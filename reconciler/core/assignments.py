"""Assignments in the plan: at its release, every active student gets their own copy; at its due time (plus
their extension) that copy is collected (pure: the time is the snapshot's, ``Actual.observed_at``).

A copy is handed out once per student (the ledger of who got what is part of the snapshot): never again over
their work, whatever they did with it since; a student added after the release gets theirs at their first
pass.  An assignment whose source is missing blocks that assignment alone.

A student's work is collected once at their deadline (a student without a home mounted yet, or disabled, at
their first pass after it), then, until the late window closes, again whenever their folder changed since
(the snapshot's fingerprints, taken only while a late window is open): the driver marks it late.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from .actions import Action, CollectFields, FeedbackFields, HandoutFields, Kind, Note, Op
from .actual import NO_FOLDER, Actual
from .desired import Desired, Handout

COURSE_FOLDER_FIRST = "the course folder's volume is mounted in this pass first: handed out at the next"
AREA_FIRST = "the collection area's volume is mounted in this pass first: collected at the next"


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
        again = handout.rerelease
        if again is not None and again <= now:
            when_given = actual.handed_again_at.get(handout.name, {})
            steps += [
                _copy(handout, user, course_folder_busy, again=True)
                for user in students
                if user in got
                and datetime.datetime.fromisoformat(when_given.get(user) or "1970-01-01T00:00+00:00") < again
            ]
        elif again is not None:
            upcoming.append(
                Note("release", handout.name, f"{handout.name} is handed out again {when(again)} ({after(now, again)})")
            )
        elif handout.name in actual.sources_changed:
            upcoming.append(
                Note(
                    "release",
                    handout.name,
                    f"{handout.name}'s source changed after it was handed out: students keep their copies as they are; "
                    "`rerelease: <time>` gives each the files they never had",
                )
            )
    return steps, blocked, upcoming


def _copy(handout: Handout, user: str, course_folder_busy: bool, again: bool = False) -> Action:
    reason = f"{handout.name} released {when(handout.release)}: their own copy in ~/assignments/{handout.name}"
    if again:
        reason = f"{handout.name} handed out again {when(handout.rerelease)}: only the files they never had"  # type: ignore[arg-type]
    return Action(
        Op.CREATE,
        Kind.HANDOUT,
        user,
        after=HandoutFields(assignment=handout.name, source=handout.source),
        reason=reason,
        waits=COURSE_FOLDER_FIRST if course_folder_busy else "",
    )


def collections(
    desired: Desired,
    actual: Actual,
    ready: Iterable[str],
    area_problem: str | None,
    area_mounting: bool,
    handing: Iterable[Action] = (),
) -> tuple[list[Action], list[Note], list[Note]]:
    """The submissions to collect now from the students in ``ready``, the assignments blocked, and the deadlines
    and late windows still to come.  A student whose copy comes (``handing``: this pass's handouts) or came after
    their due time is not collected at it: that due time was never theirs (an extension gives them one)."""
    late_copies = {  # first copies only: a copy handed out again changes nobody's due time
        (a.after.assignment, a.target) for a in handing if a.target not in actual.handed_out.get(a.after.assignment, ())
    }
    now = observed(actual)
    due_ones = sorted((h for h in desired.handouts if h.due is not None), key=lambda h: (h.due, h.name))
    if now is None or not due_ones:
        return [], [], []
    students = sorted(ready)
    steps: list[Action] = []
    blocked: list[Note] = []
    upcoming: list[Note] = []
    for work in due_ones:
        upcoming += _still_to_come(work, now, students)
        late = [u for u in students if (work.deadline(u) or now) <= now]
        if not late:
            continue
        if actual.collections_blocked or area_problem:
            why = actual.collections_blocked or f"the collection area cannot be used: {area_problem}"
            blocked.append(Note("blocked", f"assignment {work.name}", f"nothing is collected: {why}"))
            continue
        got = actual.collected.get(work.name, {})
        now_like = actual.fingerprints.get(work.name, {})
        given = actual.handed_out_at.get(work.name, {})
        after_due = [
            user
            for user in late
            if user not in got and ((work.name, user) in late_copies or _given_after(given.get(user), work, user))
        ]
        if after_due:
            upcoming.append(
                Note(
                    "due",
                    work.name,
                    f"{work.name}: {', '.join(after_due)} got their copy after their due time: not collected until an "
                    f"extension gives them one (extensions: {{{after_due[0]}: 2d}})",
                )
            )
        for user in late:
            record = got.get(user)
            if user in after_due:
                continue
            if record is None:
                steps.append(_collect(work, user, _due_reason(work, user), area_mounting))
                continue
            deadline = work.deadline(user)
            if datetime.datetime.fromisoformat(record.at) < deadline:  # type: ignore[operator]
                moved = f"{work.name}: {user}'s due time moved to {when(deadline)} after it was collected: "  # type: ignore[arg-type]
                steps.append(_collect(work, user, moved + "collected again", area_mounting))
                continue
            end = work.late_end(user)
            changed = now_like.get(user)
            if changed == NO_FOLDER and record.status != "missing":
                continue  # the folder is gone: what was collected stays what was handed in
            if end is not None and now <= end and changed is not None and changed != record.fingerprint:
                if not _recollect_now(record, now, end):
                    continue
                reason = f"{work.name}: ~/assignments/{work.name} changed since it was collected ({record.status}); "
                steps.append(_collect(work, user, reason + f"late work is collected until {when(end)}", area_mounting))
    return steps, blocked, upcoming


def _given_after(at: str | None, work: Handout, user: str) -> bool:
    """Did ``user`` get their copy (at ``at``, from the handout ledger, to the second) after their due time?"""
    return bool(at) and datetime.datetime.fromisoformat(at) > work.deadline(user)  # type: ignore[arg-type,operator]


RECOLLECT_EVERY = datetime.timedelta(minutes=10)  # late work changing all the time is copied at most this often


def _recollect_now(record, now: datetime.datetime, end: datetime.datetime) -> bool:
    """The first late change is collected at once; late work that keeps changing is collected again at most every
    RECOLLECT_EVERY (a notebook saved every minute is not copied, nor its home paused, every pass), and always in
    the late window's last minute (the daemon wakes just before it closes)."""
    if record.status != "late":
        return True
    since = now - datetime.datetime.fromisoformat(record.at)
    return since >= RECOLLECT_EVERY or end - now <= datetime.timedelta(minutes=1)


def _due_reason(work: Handout, user: str) -> str:
    extra = work.extensions.get(user)
    extended = f" with {user}'s extension of {_span(extra)}" if extra else ""
    return (
        f"{work.name} was due {when(work.deadline(user))}{extended}: "  # type: ignore[arg-type]
        f"a copy of ~/assignments/{work.name} into the collection area"
    )


def _span(delta: datetime.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    return " ".join(
        p for p in (f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min" if mins else "") if p
    )


def _still_to_come(work: Handout, now: datetime.datetime, students: list[str]) -> list[Note]:
    """The assignment's next collection (its due time, or the earliest running extension) and its late window."""
    notes = []
    waiting = sorted((work.deadline(u), u) for u in students if work.deadline(u) > now)  # type: ignore[operator]
    if waiting and work.due > now:  # type: ignore[operator]
        extended = sum(1 for _, u in waiting if u in work.extensions)
        more = f"; {extended} student(s) with an extension later" if extended else ""
        notes.append(Note("due", work.name, f"{work.name} is due {when(work.due)} ({after(now, work.due)}){more}"))  # type: ignore[arg-type]
    elif waiting:
        first, user = waiting[0]
        notes.append(
            Note(
                "due",
                work.name,
                f"{work.name}: {len(waiting)} extension(s) still running; {user}'s is collected {when(first)} "
                f"({after(now, first)})",
            )
        )
    if work.open_late(now):
        end = max(work.late_end(u) for u in [*students, ""])  # type: ignore[type-var]
        notes.append(
            Note("late", work.name, f"late work for {work.name} is collected until {when(end)} ({after(now, end)})")
        )
    return notes


def _collect(work: Handout, user: str, reason: str, area_mounting: bool) -> Action:
    deadline = work.deadline(user)
    return Action(
        Op.CREATE,
        Kind.COLLECTION,
        user,
        after=CollectFields(assignment=work.name, deadline=deadline.isoformat(), limit=work.limit),  # type: ignore[union-attr]
        reason=reason,
        waits=AREA_FIRST if area_mounting else "",
    )


def returns(
    desired: Desired, actual: Actual, ready: Iterable[str], area_problem: str | None, area_mounting: bool
) -> tuple[list[Action], list[Note], list[Note]]:
    """Feedback to return now: from an assignment's ``feedback`` time, each student in ``ready`` whose feedback
    folder in the collection area (nbgrader's feedback/<student>/<name>/) is not what they were last given."""
    now = observed(actual)
    timed = sorted((h for h in desired.handouts if h.feedback is not None), key=lambda h: (h.feedback, h.name))
    if now is None or not timed:
        return [], [], []
    students = sorted(ready)
    steps: list[Action] = []
    blocked: list[Note] = []
    upcoming: list[Note] = []
    for work in timed:
        if work.feedback > now:  # type: ignore[operator]
            upcoming.append(
                Note(
                    "feedback",
                    work.name,
                    f"feedback on {work.name} is returned {when(work.feedback)} ({after(now, work.feedback)})",  # type: ignore[arg-type]
                )
            )
            continue
        if actual.returns_blocked or area_problem:
            why = actual.returns_blocked or f"the collection area cannot be used: {area_problem}"
            blocked.append(Note("blocked", f"feedback on {work.name}", f"no feedback is returned: {why}"))
            continue
        written = actual.feedback.get(work.name, {})
        given = actual.returned.get(work.name, {})
        for user in students:
            digest = written.get(user)
            if digest is None or given.get(user) == digest:
                continue  # none written for them yet, or they have this one
            closes = work.late_end(user) or work.deadline(user)
            if closes is not None and now <= closes:
                continue  # their (extended) window is still open: feedback in their folder would count as work
            again = "written again since it was returned" if user in given else f"returned from {when(work.feedback)}"  # type: ignore[arg-type]
            steps.append(
                Action(
                    Op.CREATE,
                    Kind.FEEDBACK,
                    user,
                    after=FeedbackFields(assignment=work.name, digest=digest, limit=work.limit),
                    reason=f"feedback on {work.name} {again}: ~/assignments/{work.name}/feedback, read-only",
                    waits=AREA_FIRST.replace("collected", "returned") if area_mounting else "",
                )
            )
    return steps, blocked, upcoming


# --- what a teacher reads: `reconcile assignments` ---------------------------------------------------------


def report(desired: Desired, actual: Actual) -> list[dict]:
    """Each assignment as the snapshot shows it: its times, where it stands, and each active student's copy and
    submission (JSON-ready; ``render_report`` words it)."""
    now = observed(actual)
    students = [m.username for m in desired.members if m.role == "student" and m.status == "active"]
    out = []
    for work in sorted(desired.handouts, key=lambda h: (h.release, h.name)):
        got = actual.handed_out.get(work.name, frozenset())
        collected = actual.collected.get(work.name, {})
        changed = actual.fingerprints.get(work.name, {})
        rows = []
        for user in students:
            record = collected.get(user)
            deadline = work.deadline(user)
            rows.append(
                {
                    "username": user,
                    "handed_out": user in got,
                    "deadline": deadline.isoformat() if deadline else None,
                    "deadline_shown": when(deadline) if deadline else None,
                    "submission": record.status if record else None,
                    "collected_at": record.at if record else None,
                    "changed_since": bool(record and changed.get(user) not in (None, record.fingerprint)),
                    "feedback": _feedback_state(actual, work.name, user),
                }
            )
        counts = {
            status: sum(1 for r in rows if r["submission"] == status) for status in ("on time", "late", "missing")
        }
        counts["not yet"] = sum(1 for r in rows if r["submission"] is None)
        out.append(
            {
                "name": work.name,
                "stage": _stage(work, now),
                "shown": {key: when(moment) for key, moment in _moments(work).items()},  # in the file's zone
                "release": work.release.isoformat(),
                "due": work.due.isoformat() if work.due else None,
                "late_until": work.late_until.isoformat() if work.late_until else None,
                "feedback": work.feedback.isoformat() if work.feedback else None,
                "extensions": {user: int(delta.total_seconds()) for user, delta in sorted(work.extensions.items())},
                "source_missing": work.name in actual.sources_missing,
                "handed_out": sum(1 for r in rows if r["handed_out"]),
                "submissions": counts,
                "students": rows,
            }
        )
    return out


def counts(desired: Desired, actual: Actual) -> dict[str, dict[str, int]]:
    """Per assignment: copies handed out, submissions by verdict, feedback returned (status.json, the metrics)."""
    out = {}
    for item in report(desired, actual):
        out[item["name"]] = {
            "handed_out": item["handed_out"],
            **item["submissions"],
            "feedback_returned": sum(1 for row in item["students"] if row["feedback"] == "returned"),
        }
    return out


def _moments(work: Handout) -> dict[str, datetime.datetime]:
    found = {"release": work.release, "due": work.due, "late_until": work.late_until, "feedback": work.feedback}
    return {key: moment for key, moment in found.items() if moment is not None}


def _feedback_state(actual: Actual, name: str, user: str) -> str | None:
    """returned (what they have is what teachers wrote), "written" (not returned yet), or None (none written)."""
    written = actual.feedback.get(name, {}).get(user)
    given = actual.returned.get(name, {}).get(user)
    if given is not None and given == written:
        return "returned"
    return "written" if written is not None else ("returned" if given is not None else None)


def _stage(work: Handout, now: datetime.datetime | None) -> str:
    if now is None:
        return "unknown"
    if now < work.release:
        return "not released"
    if work.due is None:
        return "released (never collected)"
    if now < work.due:
        return "released"
    if work.feedback is not None and now >= work.feedback:
        return "feedback returned"
    if work.open_late(now):
        return "late window open"
    return (
        "collected"
        if not work.extensions or all(now >= work.deadline(u) for u in work.extensions)
        else "extensions running"
    )  # type: ignore[operator]


_TIMES = (("release", "released"), ("due", "due"), ("late_until", "late until"), ("feedback", "feedback"))


def render_report(assignments: list[dict]) -> str:
    if not assignments:
        return "no assignments in classroom.yaml"
    lines = []
    for item in assignments:
        times = [f"{label} {item['shown'][key]}" for key, label in _TIMES if item[key]]
        lines.append(f"{item['name']}: {item['stage']} ({', '.join(times)})")
        if item["source_missing"]:
            lines.append("  its source is not a folder in the course folder")
        counts = item["submissions"]
        total = len(item["students"])
        lines.append(
            f"  handed out {item['handed_out']}/{total}"
            + (
                f"; on time {counts['on time']}, late {counts['late']}, missing {counts['missing']}, "
                f"not collected yet {counts['not yet']}"
                if item["due"]
                else ""
            )
        )
        for row in item["students"]:
            if not item["due"]:
                continue
            state = row["submission"] or "not collected yet"
            extra = f" (extended to {row['deadline_shown']})" if row["username"] in item["extensions"] else ""
            since = "; changed since: collected again, late, at the next pass" if row["changed_since"] else ""
            feedback = {"returned": "; feedback returned", "written": "; feedback written, not returned yet"}
            lines.append(f"  {row['username']:<20} {state}{extra}{since}{feedback.get(row['feedback'], '')}")
    return "\n".join(lines)
