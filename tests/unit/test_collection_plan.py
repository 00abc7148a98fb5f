"""Collecting assignments across time (golden plans with the snapshot's clock): the due time, extensions, the
late window, students added or removed meanwhile, the collection area's own volume, and classroom.yaml's
validation of due times."""

from __future__ import annotations

import dataclasses
import datetime
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from test_plan_golden import ALICE, BOB, TEACHERS, converged, image, loop, member
from test_plan_golden import desired as desired_of

from reconciler.config.load import InvalidFile, check_classroom
from reconciler.config.site import Site
from reconciler.config.yamlsrc import load
from reconciler.core.actions import CollectFields, Kind
from reconciler.core.actual import Collected, ManifestEntry, Mount
from reconciler.core.desired import Handout, resolve
from reconciler.core.plan import plan
from reconciler.core.render import render_text

ROME = ZoneInfo("Europe/Rome")
GiB = 1024**3
RELEASE = datetime.datetime(2026, 12, 14, 9, 0, tzinfo=ROME)
DUE = datetime.datetime(2026, 12, 21, 23, 59, tzinfo=ROME)
LATE = datetime.datetime(2026, 12, 23, 23, 59, tzinfo=ROME)
HW1 = Handout("hw1", "/shared/hw1", RELEASE, DUE, LATE, {"bob": datetime.timedelta(days=2)})
AREA, AREA_PATH = "_collected", "/collected"
HANDED = MappingProxyType({"hw1": frozenset({"alice", "bob"})})


def desired(*people, assignments=(HW1,), disk=2 * GiB):
    return dataclasses.replace(desired_of(*people), handouts=tuple(assignments), collection_disk=disk)


def with_area(actual, size=2 * GiB):
    vol = dataclasses.replace(next(iter(actual.volumes.values())), username=AREA, path=image(AREA), size=size)
    vol = dataclasses.replace(vol, fs=dataclasses.replace(vol.fs, size=size), loop="/dev/loop8")
    owner = (0, actual.groups[TEACHERS].gid, 0o2770)
    return dataclasses.replace(
        actual,
        volumes=MappingProxyType({**actual.volumes, AREA: vol}),
        mounts=MappingProxyType(
            {
                **actual.mounts,
                AREA_PATH: Mount(
                    AREA_PATH, image(AREA), "ext4", frozenset({"rw", "nodev", "nosuid", "noatime"}), owner
                ),
            }
        ),
        manifest=MappingProxyType(
            {**actual.manifest, AREA_PATH: ManifestEntry(image(AREA), AREA_PATH, "ext4", loop.MOUNT_OPTIONS)}
        ),
    )


def at(actual, moment, **changes):
    changes.setdefault("handed_out", HANDED)
    return dataclasses.replace(actual, observed_at=moment.astimezone(datetime.UTC).isoformat(), **changes)


def ready(moment, **changes):
    return at(with_area(converged(ALICE, BOB)), moment, **changes)


def collects(the_plan):
    return [
        (a.target, a.after.assignment, a.after.deadline, a.waits) for a in the_plan.actions if a.kind is Kind.COLLECTION
    ]


def record(status="on time", fingerprint="f1", at="2026-12-21T23:00:00+00:00"):
    return Collected(status, fingerprint, at)


BOB_AT_HIS = "2026-12-23T23:00:00+00:00"  # collected at his extended due time (12-23 23:59 CET)


def test_the_collection_area_is_made_once_something_is_due_and_collection_waits_for_its_mount():
    the_plan = plan(desired(ALICE, BOB), at(converged(ALICE, BOB), DUE + datetime.timedelta(minutes=1)))
    area = [
        (a.op.value, a.kind.value, a.after if isinstance(a.after, str) else None)
        for a in the_plan.actions
        if a.target == AREA
    ]
    assert [step[:2] for step in area] == [
        ("create", "volume"),
        ("create", "filesystem"),
        ("create", "manifest"),
        ("create", "mount"),
        ("create", "ownership"),
    ]
    assert area[-1][2] == f"root:{TEACHERS} 2770"  # teachers read, students have no way in
    assert collects(the_plan) == [
        (
            "alice",
            "hw1",
            DUE.isoformat(),
            "the collection area's volume is mounted in this pass first: collected at the next",
        )
    ]
    assert plan(desired(ALICE, BOB, assignments=(), disk=None), converged(ALICE, BOB)).actions == ()  # no area


def test_before_the_due_time_nothing_is_collected_and_the_plan_says_when():
    the_plan = plan(desired(ALICE, BOB), ready(DUE - datetime.timedelta(days=1, hours=2)))
    assert the_plan.actions == ()
    assert [n.message for n in the_plan.upcoming] == [
        "hw1 is due 2026-12-21 23:59 CET (in 1 d 2 h); 1 student(s) with an extension later"
    ]


def test_at_the_due_time_each_student_is_collected_once_and_an_extension_waits():
    moment = DUE + datetime.timedelta(minutes=5)
    the_plan = plan(desired(ALICE, BOB), ready(moment))
    assert collects(the_plan) == [("alice", "hw1", DUE.isoformat(), "")]
    step = next(a for a in the_plan.actions if a.kind is Kind.COLLECTION)
    assert step.after == CollectFields(assignment="hw1", deadline=DUE.isoformat(), limit=HW1.limit)
    assert step.reason == "hw1 was due 2026-12-21 23:59 CET: a copy of ~/assignments/hw1 into the collection area"
    notes = [n.message for n in the_plan.upcoming]
    assert notes[0] == "hw1: 1 extension(s) still running; bob's is collected 2026-12-23 23:59 CET (in 1 d 23 h)"
    assert notes[1].startswith("late work for hw1 is collected until 2026-12-25 23:59 CET")
    done = ready(moment, collected=MappingProxyType({"hw1": MappingProxyType({"alice": record()})}))
    assert collects(plan(desired(ALICE, BOB), done)) == []  # a second pass collects nothing new
    text = render_text(the_plan)
    assert "hw1 was due 2026-12-21 23:59 CET" in text


def test_bob_is_collected_at_the_end_of_his_extension():
    moment = DUE + datetime.timedelta(days=2, minutes=1)
    done = MappingProxyType({"hw1": MappingProxyType({"alice": record()})})
    the_plan = plan(desired(ALICE, BOB), ready(moment, collected=done))
    assert collects(the_plan) == [("bob", "hw1", (DUE + datetime.timedelta(days=2)).isoformat(), "")]
    assert "with bob's extension of 2 d" in next(a.reason for a in the_plan.actions if a.kind is Kind.COLLECTION)


def test_work_changed_in_the_late_window_is_collected_again_and_after_it_never():
    done = MappingProxyType({"hw1": MappingProxyType({"alice": record(), "bob": record(at=BOB_AT_HIS)})})
    changed = MappingProxyType({"hw1": MappingProxyType({"alice": "f2", "bob": "f1"})})
    inside = ready(LATE - datetime.timedelta(hours=1), collected=done, fingerprints=changed)
    the_plan = plan(desired(ALICE, BOB), inside)
    assert collects(the_plan) == [("alice", "hw1", DUE.isoformat(), "")]
    assert next(a.reason for a in the_plan.actions if a.kind is Kind.COLLECTION) == (
        "hw1: ~/assignments/hw1 changed since it was collected (on time); "
        "late work is collected until 2026-12-23 23:59 CET"
    )
    after = ready(LATE + datetime.timedelta(minutes=1), collected=done, fingerprints=changed)
    assert collects(plan(desired(ALICE, BOB), after)) == []  # alice's window closed; bob's (extended) is open
    bob_changed = MappingProxyType({"hw1": MappingProxyType({"bob": "f9"})})
    later = ready(LATE + datetime.timedelta(hours=1), collected=done, fingerprints=bob_changed)
    assert [c[0] for c in collects(plan(desired(ALICE, BOB), later))] == ["bob"]


def test_late_work_changing_all_the_time_is_copied_every_ten_minutes_and_in_the_last_minute():
    moment = LATE - datetime.timedelta(hours=3)
    stamp = moment.astimezone(datetime.UTC).isoformat()
    changed = MappingProxyType({"hw1": MappingProxyType({"alice": "f2"})})
    first = MappingProxyType({"hw1": MappingProxyType({"alice": record("on time", at=stamp)})})
    at_once = ready(moment + datetime.timedelta(minutes=1), collected=first, fingerprints=changed)
    assert [c[0] for c in collects(plan(desired(ALICE), at_once))] == ["alice"]  # the first late change: at once
    just = MappingProxyType({"hw1": MappingProxyType({"alice": record("late", at=stamp)})})
    soon = ready(moment + datetime.timedelta(minutes=4), collected=just, fingerprints=changed)
    assert collects(plan(desired(ALICE), soon)) == []  # collected 4 minutes ago: not yet again
    ten = ready(moment + datetime.timedelta(minutes=10), collected=just, fingerprints=changed)
    assert [c[0] for c in collects(plan(desired(ALICE), ten))] == ["alice"]
    last = ready(LATE - datetime.timedelta(seconds=30), collected=just, fingerprints=changed)
    assert [c[0] for c in collects(plan(desired(ALICE), last))] == ["alice"]  # the window's last minute


def test_a_folder_deleted_in_the_late_window_keeps_what_was_collected():
    from reconciler.core.actual import NO_FOLDER

    done = MappingProxyType({"hw1": MappingProxyType({"alice": record()})})
    gone = MappingProxyType({"hw1": MappingProxyType({"alice": NO_FOLDER})})
    assert (
        collects(plan(desired(ALICE), ready(LATE - datetime.timedelta(hours=1), collected=done, fingerprints=gone)))
        == []
    )
    never = MappingProxyType({"hw1": MappingProxyType({"alice": record("missing", NO_FOLDER)})})
    made = MappingProxyType({"hw1": MappingProxyType({"alice": "f3"})})  # missing at the due time, made since
    late = ready(LATE - datetime.timedelta(hours=1), collected=never, fingerprints=made)
    assert [c[0] for c in collects(plan(desired(ALICE), late))] == ["alice"]


def test_without_a_late_window_changes_after_the_due_time_are_not_collected():
    no_late = Handout("hw1", "/shared/hw1", RELEASE, DUE)
    done = MappingProxyType({"hw1": MappingProxyType({"alice": record(), "bob": record(at=BOB_AT_HIS)})})
    changed = MappingProxyType({"hw1": MappingProxyType({"alice": "f2"})})
    assert (
        collects(
            plan(
                desired(ALICE, BOB, assignments=(no_late,)),
                ready(DUE + datetime.timedelta(hours=1), collected=done, fingerprints=changed),
            )
        )
        == []
    )


def test_a_student_who_gets_their_copy_after_the_due_time_waits_for_an_extension_and_removed_ones_never():
    carol = member("carol")
    moment = DUE + datetime.timedelta(hours=1)
    done = MappingProxyType({"hw1": MappingProxyType({"alice": record()})})
    the_plan = plan(desired(ALICE, carol), ready(moment, collected=done))
    kinds = [(a.kind, a.target) for a in the_plan.actions if a.target == "carol"]
    assert kinds[-1] == (Kind.HANDOUT, "carol") and (Kind.COLLECTION, "carol") not in kinds
    assert "hw1: carol got their copy after their due time: not collected until an extension gives them one" in (
        " ".join(n.message for n in the_plan.upcoming)
    )
    given = MappingProxyType({"hw1": MappingProxyType({"carol": moment.astimezone(datetime.UTC).isoformat()})})
    handed = MappingProxyType({"hw1": frozenset({"alice", "bob", "carol"})})
    next_pass = ready(moment, collected=done, handed_out=handed, handed_out_at=given)
    assert collects(plan(desired(ALICE, carol), next_pass)) == []  # still not: her due time came before her copy
    extended = dataclasses.replace(HW1, extensions={"carol": datetime.timedelta(days=2)})
    later = dataclasses.replace(next_pass, observed_at=(DUE + datetime.timedelta(days=2, minutes=1)).isoformat())
    assert [c[0] for c in collects(plan(desired(ALICE, carol, assignments=(extended,)), later))] == ["carol"]
    assert "bob" not in [c[0] for c in collects(the_plan)]  # removed from the file: disabled, not collected
    disabled = plan(desired(ALICE, member("bob", status="disabled")), ready(moment, collected=done))
    assert collects(disabled) == []


def test_a_damaged_ledger_or_a_broken_area_blocks_collection_only():
    moment = DUE + datetime.timedelta(hours=1)
    damaged = plan(desired(ALICE, BOB), ready(moment, collections_blocked="collections.json cannot be read"))
    assert collects(damaged) == []
    assert [(n.target, n.message) for n in damaged.blocked] == [
        ("assignment hw1", "nothing is collected: collections.json cannot be read")
    ]
    unformatted = with_area(converged(ALICE, BOB))
    broken_volume = dataclasses.replace(unformatted.volumes[AREA], fs=None, readable=True)
    broken = at(
        dataclasses.replace(unformatted, volumes=MappingProxyType({**unformatted.volumes, AREA: broken_volume})), moment
    )
    the_plan = plan(desired(ALICE, BOB), broken)
    assert collects(the_plan) == [] and {n.target for n in the_plan.blocked} == {AREA, "assignment hw1"}


def test_the_area_is_kept_when_no_assignment_is_due_any_more():
    the_plan = plan(desired(ALICE, BOB, assignments=(), disk=None), with_area(converged(ALICE, BOB)))
    assert the_plan.actions == ()


SITE = Site()


def check(text):
    return check_classroom(load(text, "classroom.yaml"), SITE)


BASE = """version: 1
name: cs101
timezone: Europe/Rome
students:
  - {username: alice, name: Alice, quota: default, memory: 1Gi, cpu: 1, disk: 1Gi}
assignments:
"""


def test_due_times_extensions_and_the_area_size_reach_the_desired_state():
    classroom = check(
        BASE
        + "  - {name: hw1, source: hw1, release: 2026-12-14 09:00, due: 2026-12-21 23:59, late_until: 2026-12-23 23:59, "
        "extensions: {alice: 1d 12h}, max_submission: 5Mi}\n"
    )
    handout = resolve(classroom, desired_of().paths, desired_of().volumes).handouts[0]
    assert handout.due == DUE and handout.late_until == LATE and handout.limit == 5 * 1024**2
    assert handout.deadline("alice") == DUE + datetime.timedelta(days=1, hours=12)
    assert classroom.collection_size == 2 * GiB  # the default once something is due
    assert check(BASE + "  - {name: hw1, source: hw1, release: 2026-12-14 09:00}\n").collection_size is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("due: 2026-12-14 08:00", "assignments[0].due: hw1 is due before (or at) its release"),
        (
            "due: 2026-12-21 23:59, late_until: 2026-12-21 10:00",
            "assignments[0].late_until: late_until is not after the due time",
        ),
        ("late_until: 2026-12-23 23:59", "assignments[0].late_until: late_until needs a due time to follow"),
        (
            "due: 2026-12-21 23:59, extensions: {zed: 2d}",
            "assignments[0].extensions.zed: 'zed' is not a student of this classroom",
        ),
        (
            "due: 2026-12-21 23:59, extensions: {alice: 2 days}",
            "is not a length of time: write e.g. 2d, 36h, 1d 12h or 90m",
        ),
    ],
)
def test_bad_due_times_are_refused_with_the_line(line, problem):
    with pytest.raises(InvalidFile) as caught:
        check(BASE + f"  - {{name: hw1, source: hw1, release: 2026-12-14 09:00, {line}}}\n")
    text = str(caught.value)
    assert problem in text and "classroom.yaml:7" in text, text


def test_the_daemon_wakes_at_due_times_extensions_and_just_before_a_late_window_closes(tmp_path):
    from reconciler.cli.watch import Daemon
    from reconciler.core.actions import Plan, Policy
    from reconciler.engine.passes import Outcome, Verdict

    now = datetime.datetime.now(datetime.UTC)
    work = Handout(
        "hw1",
        "/x",
        now - datetime.timedelta(days=3),
        now - datetime.timedelta(days=1),
        now + datetime.timedelta(seconds=300),
        {"bob": datetime.timedelta(seconds=100) + datetime.timedelta(days=1)},
    )
    assert work.moments()[0] == work.release and len(work.moments()) == 5
    daemon = Daemon(Site.model_validate({"state_dir": str(tmp_path)}), tmp_path / "classroom.yaml", Policy())
    outcome = Outcome(Verdict.CONVERGED, Plan("cs101"), desired(ALICE, BOB, assignments=(work,)), converged(ALICE))
    daemon._wake_for_releases(outcome)
    assert 95 < daemon.wake_in <= 101  # bob's extended due time, before the late window's end (in 298 s)
    alone = dataclasses.replace(work, extensions={})
    daemon.wake_in = None
    daemon._wake_for_releases(dataclasses.replace(outcome, desired=desired(ALICE, assignments=(alone,))))
    assert 293 < daemon.wake_in <= 299  # just before late_until: work changed until then is collected


FEEDBACK = DUE + datetime.timedelta(days=5)
GRADED = dataclasses.replace(HW1, feedback=FEEDBACK)


def gives(the_plan):
    return [(a.target, a.after.digest, a.reason) for a in the_plan.actions if a.kind is Kind.FEEDBACK]


def test_feedback_is_returned_from_its_time_once_per_version_and_only_where_written():
    done = MappingProxyType({"hw1": MappingProxyType({"alice": record(), "bob": record(at=BOB_AT_HIS)})})
    before = plan(
        desired(ALICE, BOB, assignments=(GRADED,)), ready(FEEDBACK - datetime.timedelta(hours=2), collected=done)
    )
    assert gives(before) == []
    assert "feedback on hw1 is returned 2026-12-26 23:59 CET (in 2 h)" in [n.message for n in before.upcoming]
    written = MappingProxyType({"hw1": MappingProxyType({"alice": "d1"})})  # none written for bob yet
    moment = FEEDBACK + datetime.timedelta(minutes=1)
    the_plan = plan(desired(ALICE, BOB, assignments=(GRADED,)), ready(moment, collected=done, feedback=written))
    assert gives(the_plan) == [
        ("alice", "d1", "feedback on hw1 returned from 2026-12-26 23:59 CET: ~/assignments/hw1/feedback, read-only")
    ]
    given = MappingProxyType({"hw1": MappingProxyType({"alice": "d1"})})
    same = ready(moment, collected=done, feedback=written, returned=given)
    assert gives(plan(desired(ALICE, BOB, assignments=(GRADED,)), same)) == []  # returned once
    regenerated = MappingProxyType({"hw1": MappingProxyType({"alice": "d2"})})
    again = ready(moment, collected=done, feedback=regenerated, returned=given)
    assert [g[2] for g in gives(plan(desired(ALICE, BOB, assignments=(GRADED,)), again))] == [
        "feedback on hw1 written again since it was returned: ~/assignments/hw1/feedback, read-only"
    ]
    blocked = plan(
        desired(ALICE, BOB, assignments=(GRADED,)),
        ready(moment, collected=done, feedback=written, returns_blocked="feedback.json cannot be read"),
    )
    assert gives(blocked) == [] and ("feedback on hw1", "no feedback is returned: feedback.json cannot be read") in [
        (n.target, n.message) for n in blocked.blocked
    ]


def test_feedback_needs_a_due_time_before_it():
    with pytest.raises(InvalidFile) as caught:
        check(BASE + "  - {name: hw1, source: hw1, release: 2026-12-14 09:00, feedback: 2026-12-20 09:00}\n")
    assert "assignments[0].feedback: feedback is returned after a due time: add due" in str(caught.value)
    with pytest.raises(InvalidFile) as caught:
        check(
            BASE + "  - {name: hw1, source: hw1, release: 2026-12-14 09:00, due: 2026-12-21 23:59, "
            "feedback: 2026-12-20 09:00}\n"
        )
    assert "feedback is returned after the due time, not before" in str(caught.value)


def test_the_report_shows_where_each_student_stands():
    from reconciler.core.assignments import render_report, report

    done = MappingProxyType({"hw1": MappingProxyType({"alice": record("late")})})
    written = MappingProxyType({"hw1": MappingProxyType({"alice": "d1"})})
    actual = ready(FEEDBACK + datetime.timedelta(hours=1), collected=done, feedback=written)
    found = report(desired(ALICE, BOB, assignments=(GRADED,)), actual)
    assert found[0]["stage"] == "feedback returned"
    assert found[0]["submissions"] == {"on time": 0, "late": 1, "missing": 0, "not yet": 1}
    assert [(r["username"], r["submission"], r["feedback"]) for r in found[0]["students"]] == [
        ("alice", "late", "written"),
        ("bob", None, None),
    ]
    text = render_report(found)
    assert "alice                late; feedback written, not returned yet" in text
    assert "bob                  not collected yet (extended to 2026-12-23 23:59 CET)" in text
    assert render_report([]) == "no assignments in classroom.yaml"


def test_an_extension_given_after_the_collection_collects_again_at_the_new_due_time():
    done = MappingProxyType({"hw1": MappingProxyType({"alice": record(), "bob": record()})})  # both at DUE
    no_ext = dataclasses.replace(HW1, extensions={})
    assert (
        collects(
            plan(desired(ALICE, BOB, assignments=(no_ext,)), ready(DUE + datetime.timedelta(hours=1), collected=done))
        )
        == []
    )
    extended = dataclasses.replace(HW1, extensions={"bob": datetime.timedelta(days=1)})
    during = plan(
        desired(ALICE, BOB, assignments=(extended,)), ready(DUE + datetime.timedelta(hours=1), collected=done)
    )
    assert collects(during) == []  # his new due time has not come
    after = plan(
        desired(ALICE, BOB, assignments=(extended,)), ready(DUE + datetime.timedelta(days=1, minutes=1), collected=done)
    )
    assert collects(after) == [("bob", "hw1", (DUE + datetime.timedelta(days=1)).isoformat(), "")]
    assert (
        "bob's due time moved to 2026-12-22 23:59 CET after it was collected: collected again"
        in after.actions[-1].reason
    )
