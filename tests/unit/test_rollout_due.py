"""Which servers `reconcile image rollout` restarts (core/rollout.py): idle students' servers on an older image."""

import dataclasses
import datetime as dt
from types import MappingProxyType

from reconciler.core.actual import Container, HubState, HubUser
from reconciler.core.rollout import due
from test_plan_golden import snapshot

NOW = dt.datetime(2027, 3, 1, 10, 0, tzinfo=dt.UTC)


def at(minutes_ago: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def test_idle_students_on_an_old_image_are_restarted_and_busy_ones_and_teachers_are_left():
    containers = {
        "ann": Container("ann", "c1", True, 0, image="sha256:old", stale=True),  # idle 40 min
        "bob": Container("bob", "c2", True, 0, image="sha256:old", stale=True),  # used 3 min ago
        "cat": Container("cat", "c3", True, 0, image="sha256:new"),  # already on the new image
        "dot": Container("dot", "c4", False, 0, image="sha256:old", stale=True),  # stopped: starts on the new one
        "eve": Container("eve", "c5", True, 0, image="sha256:old", stale=True),  # no activity known: idle
        "tea": Container("tea", "c6", True, 0, image="sha256:old", stale=True),  # a teacher
    }
    users = {
        name: HubUser(name, False, True, last_activity=at(minutes))
        for name, minutes in (("ann", 40), ("bob", 3), ("cat", 50), ("tea", 90))
    }
    users["bob"] = dataclasses.replace(users["bob"], server_activity=at(3), last_activity=at(30))
    actual = dataclasses.replace(
        snapshot(), containers=MappingProxyType(containers), hub=HubState(MappingProxyType(users))
    )
    plan = due(actual, {"ann", "bob", "cat", "dot", "eve"}, NOW, dt.timedelta(minutes=15))
    assert plan.restart == ("ann", "eve")
    assert plan.in_use == {"bob": "used 3 min ago"}
    assert plan.others == ("tea",)
