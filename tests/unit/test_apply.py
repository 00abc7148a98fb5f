"""The applier (engine/apply.py) with people side by side: the shared steps first, each person's steps in their
planned order, a failing person skipped from there on while the others finish, every step journaled, and a
journal that cannot be written stops everyone.  The drivers here are stand-ins that record what they were asked
(the real ones run in tests/host/, whose SIGKILL suite runs with the default four workers)."""

import json
import threading
import time

import pytest

from reconciler.core.actions import AccountFields, Action, Kind, Op, Plan
from reconciler.engine import apply as applier
from reconciler.engine.journal import Journal
from reconciler.host.drivers import Busy

PEOPLE = [f"p{i}" for i in range(12)]
STEPS = [(Op.CREATE, Kind.ACCOUNT), (Op.CREATE, Kind.PASSWORD), (Op.CREATE, Kind.MANIFEST), (Op.CREATE, Kind.MOUNT)]


def action(op, kind, target):
    after = {
        Kind.ACCOUNT: AccountFields(name=target),
        Kind.PASSWORD: "generated",
        Kind.MANIFEST: "x y",
        Kind.MOUNT: "/h",
    }.get(kind)
    return Action(op, kind, target, after=after)


def plan() -> Plan:
    actions = [Action(Op.CREATE, Kind.GROUP, "c-students")]
    actions += [action(op, kind, person) for person in PEOPLE for op, kind in STEPS]
    return Plan("c", tuple(actions))


@pytest.fixture
def recorded(monkeypatch):
    calls, active, peak = [], [0], [0]
    lock = threading.Lock()

    def driver(act, ctx):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            calls.append((act.target, act.kind))
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        if act.target == "p3" and act.kind is Kind.PASSWORD:
            raise RuntimeError("chpasswd exited 1")
        if act.target == "p5" and act.kind is Kind.MANIFEST:
            raise Busy("p5's volume is in use")
        return "done"

    table = {(kind, op): driver for op, kind in [*STEPS, (Op.CREATE, Kind.GROUP)]}
    monkeypatch.setattr(applier, "table", lambda: table)
    return calls, peak


def test_people_side_by_side_keep_their_own_order(recorded, tmp_path):
    calls, peak = recorded
    journal = Journal(tmp_path / "journal.jsonl", "pass-1")
    result = applier.apply(plan(), None, journal, workers=4)
    journal.close()
    assert calls[0] == ("c-students", Kind.GROUP)  # the shared steps first
    assert peak[0] > 1  # people really were worked on at the same time
    for person in PEOPLE:
        mine = [kind for target, kind in calls if target == person]
        want = {"p3": [Kind.ACCOUNT, Kind.PASSWORD], "p5": [Kind.ACCOUNT, Kind.PASSWORD, Kind.MANIFEST]}.get(
            person, [kind for _, kind in STEPS]
        )
        assert mine == want, person  # p5's mount waits with the manifest step a driver found in use
    assert result.failed == {"p3": "chpasswd exited 1"} and result.skipped == 2
    assert result.waiting == {"p5": "p5's volume is in use"}
    assert result.ok == 1 + len(PEOPLE) * len(STEPS) - 3 - 2
    entries = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert len(entries) == 1 + len(PEOPLE) * len(STEPS) - 1  # every step done, failed, skipped or found in use
    assert sorted(e["result"] for e in entries if e["target"] == "p3") == ["failed", "ok", "skipped", "skipped"]


def test_one_worker_is_the_plan_s_own_order(recorded, tmp_path):
    calls, peak = recorded
    journal = Journal(tmp_path / "journal.jsonl", "pass-1")
    applier.apply(plan(), None, journal, workers=1)
    journal.close()
    assert peak[0] == 1
    assert calls == [
        (a.target, a.kind)
        for a in plan().actions
        if not (a.target == "p3" and a.kind in (Kind.MANIFEST, Kind.MOUNT))
        and not (a.target == "p5" and a.kind is Kind.MOUNT)
    ]


def test_a_journal_that_cannot_be_written_stops_everyone(recorded, tmp_path, monkeypatch):
    calls, _ = recorded
    journal = Journal(tmp_path / "journal.jsonl", "pass-1")
    written = []

    def record(act, outcome, detail=""):
        if len(written) >= 5:
            raise OSError(28, "No space left on device")
        written.append(act)

    monkeypatch.setattr(journal, "record", record)
    result = applier.apply(plan(), None, journal, workers=4)
    journal.close()
    assert result.interrupted and "No space left on device" in result.failed["journal"]
    assert len(calls) <= 5 + 4  # what was in flight when it failed, and nothing started after


def test_sigterm_starts_no_more_steps(recorded, tmp_path):
    calls, _ = recorded
    journal = Journal(tmp_path / "journal.jsonl", "pass-1")
    result = applier.apply(plan(), None, journal, workers=4, should_stop=lambda: len(calls) >= 6)
    journal.close()
    assert result.interrupted and len(calls) < 6 + 4
