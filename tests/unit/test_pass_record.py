"""status.json as one type: the daemon writes a PassRecord, the API, the metrics and `reconcile status` read one,
and the API's schema describes exactly its fields."""

from __future__ import annotations

import dataclasses
import json

import pytest

from reconciler.core.actual import Disk
from reconciler.core.pass_record import RESULTS, Condition, PassRecord
from reconciler.engine.passes import Verdict
from reconciler.service.openapi import document

BASE = dict(
    time="2026-12-07T08:00:00Z",
    duration_seconds=0.5,
    classroom_file="/etc/classroom/classroom.yaml",
    file_sha256="ab" * 32,
    git=None,
    last_applied={"sha256": "ab" * 32, "time": "2026-12-07T07:00:00Z"},
)


def test_a_pass_that_never_planned_leaves_the_plan_out():
    record = PassRecord(**{**BASE, "file_sha256": None}, result="busy", problems=("held open by pid 42",))
    assert record.to_json() == {
        "format_version": 1,
        **{**BASE, "file_sha256": None},
        "result": "busy",
        "problems": ["held open by pid 42"],
    }
    assert not record.planned and PassRecord.from_json(record.to_json()) == record


def test_an_applying_pass_round_trips_through_its_file():
    record = PassRecord(
        **BASE,
        result="waiting",
        plan={"classroom": "py101", "actions": [{"kind": "volume", "op": "update"}], "drift": []},
        people={"ann": Condition("waiting", "ann's server is running"), "bob": Condition("ok")},
        applied=3,
        failed={},
        waiting={"ann": "ann's server is running"},
        credentials={"waiting": []},
        disks=(Disk("the state", "/var/lib/classroom", 100, 40, False),),
    )
    wire = json.loads(json.dumps(record.to_json()))
    assert wire["people"] == {
        "ann": {"condition": "waiting", "reason": "ann's server is running"},
        "bob": {"condition": "ok"},
    }
    assert "prewarm" not in wire and wire["disks"][0]["free"] == 40
    again = PassRecord.from_json(wire)
    assert again == record and again.to_json() == wire
    assert [a["kind"] for a in again.planned_actions()] == ["volume"] and again.drift() == 0


def test_only_a_pass_record_of_this_format_is_read():
    for bad in ({}, {"format_version": 2, "time": "x", "result": "converged"}, {"format_version": 1, "time": "x"}, []):
        with pytest.raises(ValueError):
            PassRecord.from_json(bad)
    with pytest.raises(ValueError, match="cannot end in"):
        PassRecord(**BASE, result="pending")  # a dry run's verdict is never a pass's record


def test_every_verdict_of_an_applying_pass_is_a_result():
    applying = set(Verdict) - {Verdict.PENDING, Verdict.BLOCKED}  # the two a dry run alone gives
    assert {str(v) for v in applying} <= set(RESULTS)


def test_the_api_schema_describes_exactly_the_record():
    schema = document()["components"]["schemas"]["PassStatus"]
    assert set(schema["properties"]) == {"format_version"} | {f.name for f in dataclasses.fields(PassRecord)}
    assert schema["properties"]["result"]["enum"] == list(RESULTS)
    assert set(schema["properties"]["disks"]["items"]["properties"]) == {f.name for f in dataclasses.fields(Disk)}


def test_assignment_counts_travel_in_the_record_and_become_metrics():
    from reconciler.core.metrics import families

    counts = {"hw1": {"handed_out": 3, "on time": 2, "late": 1, "missing": 0, "not yet": 0, "feedback_returned": 1}}
    record = PassRecord(**BASE, result="converged", plan={"actions": [], "drift": []}, assignments=counts)
    again = PassRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record and again.to_json()["assignments"] == counts
    gauges = {g.name: g for g in families(again, None)}
    assert sorted(gauges["classroom_assignment_submissions"].samples) == [
        (["hw1", "late"], 1),
        (["hw1", "missing"], 0),
        (["hw1", "not yet"], 0),
        (["hw1", "on time"], 2),
    ]
    assert gauges["classroom_assignment_handed_out"].samples == [(["hw1"], 3)]
    assert gauges["classroom_assignment_feedback_returned"].samples == [(["hw1"], 1)]
    assert "classroom_assignment_submissions" not in {g.name for g in families(PassRecord(**BASE, result="busy"), None)}
