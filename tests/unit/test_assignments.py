"""Assignments across time: the pure planner with the snapshot's clock (golden plans), classroom.yaml's
validation of them, and the driver's exact commands (made as the student, never over their files)."""

from __future__ import annotations

import dataclasses
import datetime
import json
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest
from driverkit import FakeHost, RecordingRunner
from test_plan_golden import ALICE, BOB, PATHS, converged, member
from test_plan_golden import desired as desired_of

from reconciler.config.classroom import Classroom
from reconciler.config.load import InvalidFile, check_classroom
from reconciler.config.site import Site
from reconciler.config.yamlsrc import load
from reconciler.core.actions import Action, HandoutFields, Kind, Op
from reconciler.core.desired import Handout, resolve
from reconciler.core.plan import plan
from reconciler.core.render import render_text
from reconciler.host import handouts
from reconciler.host.ledger import LedgerDamaged
from reconciler.host.drivers import carry_out

ROME = ZoneInfo("Europe/Rome")
RELEASE = datetime.datetime(2026, 12, 14, 9, 0, tzinfo=ROME)
HW1 = Handout("hw1", "/s/shared/hw1", RELEASE)


def at(actual, moment: datetime.datetime, **changes):
    return dataclasses.replace(actual, observed_at=moment.astimezone(datetime.UTC).isoformat(), **changes)


def desired(*people, assignments=(HW1,)):
    return dataclasses.replace(desired_of(*people), handouts=tuple(assignments))


def copies(the_plan):
    return [(a.target, a.after.assignment, a.waits) for a in the_plan.actions if a.kind is Kind.HANDOUT]


def test_before_the_release_nothing_is_handed_out_and_the_plan_says_when():
    the_plan = plan(desired(ALICE, BOB), at(converged(ALICE, BOB), RELEASE - datetime.timedelta(days=2, hours=3)))
    assert copies(the_plan) == [] and not the_plan.actions
    assert [n.message for n in the_plan.upcoming] == ["hw1 is released 2026-12-14 09:00 CET (in 2 d 3 h)"]
    assert "  > hw1 is released 2026-12-14 09:00 CET (in 2 d 3 h)" in render_text(the_plan)
    assert the_plan.to_json()["upcoming"][0]["target"] == "hw1"


def test_at_the_release_every_active_student_gets_a_copy_once():
    actual = at(converged(ALICE, BOB), RELEASE)
    the_plan = plan(desired(ALICE, BOB), actual)
    assert copies(the_plan) == [("alice", "hw1", ""), ("bob", "hw1", "")]
    step = the_plan.actions[0]
    assert step.after == HandoutFields(assignment="hw1", source="/s/shared/hw1")
    assert step.reason == "hw1 released 2026-12-14 09:00 CET: their own copy in ~/assignments/hw1"
    done = dataclasses.replace(actual, handed_out=MappingProxyType({"hw1": frozenset({"alice", "bob"})}))
    assert plan(desired(ALICE, BOB), done).actions == ()  # handed out: never again over their work
    assert "upcoming" not in plan(desired(ALICE, BOB), done).to_json()


def test_a_student_added_after_the_release_gets_theirs_after_their_home_is_mounted():
    carol = member("carol")
    actual = at(converged(ALICE, BOB), RELEASE + datetime.timedelta(days=3))
    actual = dataclasses.replace(actual, handed_out=MappingProxyType({"hw1": frozenset({"alice", "bob"})}))
    the_plan = plan(desired(ALICE, BOB, carol), actual)
    kinds = [(a.kind, a.target) for a in the_plan.actions if a.target == "carol"]
    assert kinds[-1] == (Kind.HANDOUT, "carol")  # after her account, volume, mount and ownership
    assert (Kind.MOUNT, "carol") in kinds and (Kind.OWNERSHIP, "carol") in kinds
    assert copies(the_plan) == [("carol", "hw1", "")]


def test_teachers_and_people_who_are_not_active_get_nothing():
    teacher = member("tina", role="teacher")
    gone = member("dave", status="disabled")
    actual = at(converged(ALICE, teacher), RELEASE)
    assert copies(plan(desired(ALICE, teacher, gone), actual)) == [("alice", "hw1", "")]


def test_a_missing_source_blocks_that_assignment_alone():
    hw2 = Handout("hw2", "/s/shared/hw2", RELEASE)
    actual = at(converged(ALICE), RELEASE, sources_missing=frozenset({"hw1"}))
    the_plan = plan(desired(ALICE, assignments=(HW1, hw2)), actual)
    assert copies(the_plan) == [("alice", "hw2", "")]
    assert [(n.target, n.message) for n in the_plan.blocked] == [
        ("assignment hw1", "its source /s/shared/hw1 is not a folder in the course folder: nobody gets it until it is")
    ]


def test_a_home_that_is_not_mounted_yet_gets_its_copy_when_it_is():
    held = dataclasses.replace(converged(ALICE, mount_alice=None), observed_at="")
    actual = at(held, RELEASE)
    volume = dataclasses.replace(actual.volumes["alice"], held_elsewhere=True)  # its mount waits this pass
    actual = dataclasses.replace(actual, volumes=MappingProxyType({"alice": volume}))
    assert copies(plan(desired(ALICE), actual)) == []


def test_without_the_snapshot_time_nothing_depends_on_it():
    """An old snapshot (`--observed` from before this field) plans no handouts rather than guessing the time."""
    assert plan(desired(ALICE), converged(ALICE)).actions == ()


def test_the_file_time_zone_follows_summer_time():
    room = Classroom.model_validate(
        {
            "version": 1,
            "name": "py101",
            "timezone": "Europe/Rome",
            "students": [{"username": "alice", "name": "Alice", "memory": "1Gi", "cpu": 1, "disk": "1Gi"}],
            "assignments": [
                {"name": "winter", "source": "w", "release": "2026-12-14 09:00"},
                {"name": "summer", "source": "s", "release": "2026-07-14 09:00"},
                {"name": "utc", "source": "u", "release": "2026-07-14T09:00+00:00"},
            ],
        }
    )
    found = {h.name: h for h in resolve(room, PATHS, desired_of().volumes).handouts}
    assert found["winter"].release.utcoffset() == datetime.timedelta(hours=1)
    assert found["summer"].release.utcoffset() == datetime.timedelta(hours=2)
    assert found["utc"].release.utcoffset() == datetime.timedelta(0)
    assert found["winter"].source == str(PATHS.course_folder / "w")


def check(text: str):
    return check_classroom(load(text, "classroom.yaml"), Site())


BASE = """version: 1
name: py101
quotas: {default: {memory: 512Mi, cpu: 1, disk: 1Gi}}
students:
  - {username: alice, name: Alice}
"""


def test_classroom_yaml_names_each_bad_assignment_with_its_line():
    bad = (
        BASE
        + """assignments:
  - {name: hw1, source: hw1, release: 2026-12-14 09:00}
  - {name: hw1, source: ../etc, release: 2026-12-14}
  - {name: "bad name", source: hw3, release: tomorrow}
timezone: Mars/Olympus
"""
    )
    with pytest.raises(InvalidFile) as caught:
        check(bad)
    said = "\n".join(map(str, caught.value.problems))
    assert "classroom.yaml:8:" in said and "assignment 'hw1' is already at assignments[0]" in said
    assert "'../etc' must name a folder inside the course folder" in said
    assert "2026-12-14 has no time of day" in said
    assert "'tomorrow' is not a date and time" in said
    assert "'bad name' is not a folder name" in said and "'Mars/Olympus' is not a time zone" in said
    good = check(BASE + "assignments:\n  - {name: hw1, source: week2/lab, release: 2026-12-14 09:00}\n")
    assert good.assignments[0].release == datetime.datetime(2026, 12, 14, 9, 0)


# --- the driver ------------------------------------------------------------------------------------


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path).add_group("py101-students", 2000).add_group("py101-teachers", 2001)


def test_the_driver_refuses_a_bare_mount_point_and_a_source_outside_the_course_folder(host, tmp_path):
    """What the driver checks before it writes anything (the copy itself, as root into a student's home, is
    tested on the real host: tests/host/test_handouts.py)."""
    runner = RecordingRunner()
    host.person("alice", 1001)
    home = host.paths.home("alice")
    home.mkdir(parents=True)
    source = host.paths.course_folder / "hw1"
    source.mkdir(parents=True)
    action = Action(Op.CREATE, Kind.HANDOUT, "alice", after=HandoutFields(assignment="hw1", source=str(source)))
    with pytest.raises(RuntimeError, match="not mounted"):
        carry_out(action, host.context(runner))
    host.mounted(str(host.paths.state / "volumes" / "alice.img"), home)
    link = host.paths.course_folder / "linked"
    link.symlink_to(tmp_path)  # a folder, but through a symlink: not one of the course folder's
    inside = host.paths.course_folder / "week2"
    inside.symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "lab").mkdir()
    for bad in (link, host.paths.course_folder / "gone", inside / "lab"):  # the last: a symlink on the way
        action = Action(Op.CREATE, Kind.HANDOUT, "alice", after=HandoutFields(assignment="hw1", source=str(bad)))
        with pytest.raises(RuntimeError, match="is not a folder in the course folder"):
            carry_out(action, host.context(runner))
    assert runner.calls == [] and not host.paths.handouts.exists() and not (home / "assignments").exists()


def test_the_ledger_counts_only_the_account_that_has_the_name_now(tmp_path):
    ledger = tmp_path / "handouts.json"
    assert handouts.read(ledger, {}) == {}  # none yet: nobody got anything
    handouts._record(ledger, "hw1", "alice", 1001, "2026-12-14T08:00:00+00:00")
    handouts._record(ledger, "hw1", "bob", 1002, "2026-12-14T08:00:00+00:00")
    at = "2026-12-14T08:00:00+00:00"
    assert handouts.read(ledger, {"alice": 1001, "bob": 1002}) == {"hw1": {"alice": (at, at), "bob": (at, at)}}
    # bob purged and made again: a new uid, a new person, who gets the copy
    assert handouts.read(ledger, {"alice": 1001, "bob": 1077}) == {"hw1": {"alice": (at, at)}}
    assert json.loads(ledger.read_text())["assignments"]["hw1"]["alice"] == {
        "uid": 1001,
        "at": "2026-12-14T08:00:00+00:00",
    }


def test_a_damaged_ledger_blocks_every_handout_and_is_never_overwritten(tmp_path):
    ledger = tmp_path / "handouts.json"
    for damaged in ('{"format_version": 1, "assignments": ["hw1"]}', "{not json", '{"format_version": 9}'):
        ledger.write_text(damaged)
        with pytest.raises(LedgerDamaged, match="cannot be read"):
            handouts.read(ledger, {"alice": 1001})
    with pytest.raises(LedgerDamaged):
        handouts._record(ledger, "hw1", "alice", 1001, "now")
    assert ledger.read_text() == '{"format_version": 9}'
    blocked = at(converged(ALICE), RELEASE, handouts_blocked="the ledger cannot be read")
    the_plan = plan(desired(ALICE), blocked)
    assert copies(the_plan) == [] and [(n.target, n.message) for n in the_plan.blocked] == [
        ("assignments", "the ledger cannot be read")
    ]


def test_a_source_still_missing_before_the_release_is_said_in_advance():
    early = at(converged(ALICE), RELEASE - datetime.timedelta(hours=1), sources_missing=frozenset({"hw1"}))
    (note,) = plan(desired(ALICE), early).upcoming
    assert note.message.endswith("; its source /s/shared/hw1 is not a folder in the course folder yet")


def test_the_daemon_wakes_just_after_the_next_release(tmp_path):
    """Between resyncs the daemon sleeps; a release in 90 s wakes it then, not at the next resync."""
    from reconciler.cli.watch import Daemon
    from reconciler.core.actions import Plan, Policy
    from reconciler.engine.passes import Outcome, Verdict

    daemon = Daemon(Site.model_validate({"state_dir": str(tmp_path)}), tmp_path / "classroom.yaml", Policy())
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    past = Handout("old", "/s/shared/old", soon - datetime.timedelta(days=1))
    outcome = Outcome(Verdict.CONVERGED, Plan("py101"), desired(ALICE, assignments=(past,)), converged(ALICE))
    daemon._wake_for_releases(outcome)
    assert daemon.wake_in is None  # released already: nothing to wake for
    later = Handout("hw9", "/x", soon + datetime.timedelta(days=3))
    outcome = dataclasses.replace(
        outcome, desired=desired(ALICE, assignments=(past, later, Handout("hw2", "/x", soon)))
    )
    daemon._wake_for_releases(outcome)
    assert 85 < daemon.wake_in <= 92
    daemon.wake_in = 10.0  # a pre-warm's pace is sooner: it stays
    daemon._wake_for_releases(outcome)
    assert daemon.wake_in == 10.0


def test_a_rerelease_hands_out_again_once_and_a_changed_source_is_said(tmp_path):
    """rerelease: every student who had their copy before it gets the source again (the driver moves in only what
    they lack), once; a source changed after the handout is said in the plan, and nobody's copy is touched."""
    ledger = tmp_path / "handouts.json"
    handouts._record(ledger, "hw1", "alice", 1001, "2026-12-14T08:00:00+00:00")
    handouts._record(ledger, "hw1", "alice", 1001, "2026-12-15T10:00:00+00:00")  # handed out again
    assert handouts.read(ledger, {"alice": 1001}) == {
        "hw1": {"alice": ("2026-12-14T08:00:00+00:00", "2026-12-15T10:00:00+00:00")}
    }
    first = MappingProxyType({"hw1": frozenset({"alice", "bob"})})
    given = MappingProxyType({"hw1": MappingProxyType({"alice": RELEASE.isoformat(), "bob": RELEASE.isoformat()})})
    again_at = RELEASE + datetime.timedelta(days=1)
    changed = at(
        converged(ALICE, BOB),
        RELEASE + datetime.timedelta(hours=5),
        handed_out=first,
        handed_out_at=given,
        handed_again_at=given,
        sources_changed=frozenset({"hw1"}),
    )
    said = plan(desired(ALICE, BOB), changed)
    assert said.actions == () and "hw1's source changed after it was handed out" in said.upcoming[0].message
    again = dataclasses.replace(HW1, rerelease=again_at)
    before = plan(desired(ALICE, BOB, assignments=(again,)), changed)
    assert before.actions == () and "hw1 is handed out again 2026-12-15 09:00 CET" in before.upcoming[0].message
    due = dataclasses.replace(changed, observed_at=(again_at + datetime.timedelta(minutes=1)).isoformat())
    steps = plan(desired(ALICE, BOB, assignments=(again,)), due)
    assert [(a.target, a.reason) for a in steps.actions] == [
        (u, "hw1 handed out again 2026-12-15 09:00 CET: only the files they never had") for u in ("alice", "bob")
    ]
    once = MappingProxyType({"hw1": MappingProxyType({"alice": due.observed_at, "bob": due.observed_at})})
    assert plan(desired(ALICE, BOB, assignments=(again,)), dataclasses.replace(due, handed_again_at=once)).actions == ()
