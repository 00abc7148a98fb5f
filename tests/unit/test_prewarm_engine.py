"""engine/prewarm.py between the pure step and the hub: the students come from the pass's snapshot, the memory
from /proc/meminfo, each start is remembered in <state>/prewarm.json (once per lesson, whatever happened), and a
start the hub refuses is reported, not retried in a loop.  The hub client is a stand-in that records the starts
(the real hub is in tests/hub/test_prewarm.py)."""

import datetime as dt
from types import MappingProxyType

import pytest

from reconciler.config.classroom import Classroom
from reconciler.config.site import Site
from reconciler.core.actual import Actual, HubState, HubUser
from reconciler.core.desired import resolve
from reconciler.engine import prewarm
from reconciler.host.facts import HostFiles
from reconciler.host.volumes import layout_for

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 2, 7, 59, 59, tzinfo=UTC)  # Wednesday, a second before a 09:00 lesson in Rome


class Hub:
    def __init__(self, refuse=()):
        self.started, self.refuse = [], set(refuse)

    def start_server(self, name):
        if name in self.refuse:
            raise RuntimeError("hub refused to start it: 400")
        self.started.append(name)
        return "starting"


@pytest.fixture
def room(tmp_path):
    site = Site.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "hub": {"token_file": str(tmp_path / "token"), "prewarm": {"lead": 0, "pace": 1, "idle_memory": "100Mi"}},
        }
    )
    classroom = Classroom.model_validate(
        {
            "version": 1,
            "name": "py",
            "quotas": {"default": {"memory": "256Mi", "cpu": 1, "disk": "1Gi"}},
            "admins": [{"username": "tea", "name": "Tea"}],
            "students": [{"username": u, "name": u} for u in ("ann", "bob", "cat")]
            + [{"username": "dan", "name": "Dan", "status": "disabled"}],
            "schedule": [{"days": ["wed"], "start": "09:00", "end": "10:00", "tz": "Europe/Rome"}],
        }
    )
    desired = resolve(classroom, site.paths, layout_for(site))
    users = {u: HubUser(u, False, u == "bob") for u in ("ann", "bob", "dan", "tea")}  # cat never logged in
    actual = Actual(
        MappingProxyType({}),
        MappingProxyType({}),
        MappingProxyType({}),
        MappingProxyType({}),
        MappingProxyType({}),
        today=0,
        hub=HubState(MappingProxyType(users)),
    )
    (tmp_path / "proc").mkdir()
    return site, classroom, desired, actual, tmp_path


def meminfo(tmp_path, mib):
    (tmp_path / "proc" / "meminfo").write_text(f"MemTotal: 999999 kB\nMemAvailable: {mib * 1024} kB\n")
    return HostFiles(proc=tmp_path / "proc")


def test_starts_one_student_per_step_and_remembers_it(room):
    site, classroom, desired, actual, tmp_path = room
    hub, host = Hub(), meminfo(tmp_path, 1000)
    first = prewarm.run(site, classroom, desired, actual, hub, NOW, host)
    assert hub.started == ["ann"] and first.started == ["ann"]  # bob runs already; cat is unknown to the hub
    assert first.step.skipped == {"cat": "never logged in: their server starts at the first login"}
    assert first.to_json()["phase"] == "warming" and first.to_json()["wanted"] == 2
    # the next step: ann was started for this lesson, bob runs: nothing more (teachers and disabled: never)
    again = prewarm.run(site, classroom, desired, actual, hub, NOW + dt.timedelta(seconds=1), host)
    assert again.started == [] and hub.started == ["ann"]
    assert '"lesson": "2026-12-02T08:00:00+00:00"' in site.paths.prewarm.read_text()


def test_no_memory_no_start_and_a_refused_start_is_not_retried(room):
    site, classroom, desired, actual, tmp_path = room
    hub = Hub(refuse={"ann"})
    none = prewarm.run(site, classroom, desired, actual, hub, NOW, meminfo(tmp_path, 50))  # 50 MiB < 100 MiB
    assert none.started == [] and none.step.skipped["ann"] == "not enough memory for another idle server now"
    refused = prewarm.run(site, classroom, desired, actual, hub, NOW, meminfo(tmp_path, 1000))
    assert refused.failed == {"ann": "hub refused to start it: 400"} and refused.started == []
    later = prewarm.run(site, classroom, desired, actual, hub, NOW + dt.timedelta(seconds=2), meminfo(tmp_path, 1000))
    assert later.failed == {} and hub.started == []  # once per lesson, whatever happened


def test_without_a_hub_client_nothing_is_claimed(room):
    site, classroom, desired, actual, tmp_path = room
    done = prewarm.run(site, classroom, desired, actual, None, NOW, meminfo(tmp_path, 1000))
    assert done.started == [] and done.failed == {"ann": "the hub API is not available"}


def test_who_recent_counts_real_use_not_our_own_pre_start(room):
    """The hub's last_activity moves when a server starts or stops; a server's own activity minutes after its
    start is a student at work.  ann used hers last lesson; bob's was pre-started and sat idle."""
    site, classroom, desired, actual, tmp_path = room
    site = site.model_copy(
        update={
            "hub": site.hub.model_copy(
                update={"prewarm": site.hub.prewarm.model_copy(update={"who": "recent", "recent_lessons": 1})}
            )
        }
    )
    last_lesson = "2026-11-25T08"  # the Wednesday before, 09:00 in Rome
    users = {
        "ann": HubUser("ann", False, True, f"{last_lesson}:50:00Z", f"{last_lesson}:00:00Z", f"{last_lesson}:40:00Z"),
        "bob": HubUser("bob", False, True, f"{last_lesson}:59:00Z", f"{last_lesson}:00:00Z", f"{last_lesson}:00:20Z"),
    }
    seen = prewarm.used(site, replace_users(actual, users))
    assert seen == {"ann": "2026-11-25T08:40:00+00:00"}  # kept in usage.json
    stopped = {name: HubUser(name, False, False, "2026-11-25T10:10:00Z") for name in ("ann", "bob", "cat")}
    got = prewarm.run(site, classroom, desired, replace_users(actual, stopped), Hub(), NOW, meminfo(tmp_path, 1000))
    assert got.started == ["ann"]
    assert got.step.skipped == {
        "bob": "did not use the hub in the last 1 lessons",
        "cat": "did not use the hub in the last 1 lessons",
    }


def replace_users(actual, users):
    import dataclasses

    return dataclasses.replace(actual, hub=HubState(MappingProxyType(users)))
