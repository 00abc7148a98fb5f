"""Rendering a Plan: Terraform-like text and the versioned JSON document."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.config.site import Paths
from reconciler.core.actions import (
    AccountFields,
    Action,
    Note,
    Plan,
    VolumeFields,
)
from reconciler.credentials import passwords
from reconciler.core.actual import Actual
from reconciler.core.plan import plan
from reconciler.core.render import SYMBOLS, describe, render_json, render_text
from reconciler.core.desired import Desired, Member
from reconciler.host.volumes import loop

MiB = 1024**2
GiB = 1024**3
STUDENTS = "py101-students"
PLACEHOLDER = "generated, to the outbox"

MIXED = Plan(
    "py101",
    actions=(
        Action("create", "group", STUDENTS, reason="classroom student group"),
        Action(
            "create",
            "account",
            "alice",
            after=AccountFields(name="Alice A", group=STUDENTS, home="/h/alice", shell="/usr/sbin/nologin"),
            reason="new student",
        ),
        Action("create", "password", "alice", after=PLACEHOLDER, reason="new account"),
        Action(
            "update",
            "volume",
            "bob",
            before=VolumeFields(size=GiB, used=100 * MiB),
            after=VolumeFields(size=2 * GiB),
            reason="disk quota raised to 2 GiB",
        ),
        Action(
            "update",
            "account",
            "bob",
            before=AccountFields(name="Bob"),
            after=AccountFields(name="Bob Builder"),
            reason="name changed in classroom.yaml",
        ),
        Action(
            "disable",
            "account",
            "carol",
            before=AccountFields(login="enabled"),
            after=AccountFields(login="disabled"),
            reason="status: disabled",
        ),
        Action(
            "destroy",
            "volume",
            "dave",
            before=VolumeFields(path="/s/volumes/dave.img", used=5 * MiB),
            reason="status: purged",
            destructive=True,
        ),
        Action(
            "update",
            "mount",
            "erin",
            before="noatime,rw",
            after="nodev,nosuid",
            reason="mount options changed by hand",
            drift=True,
        ),
        Action(
            "update",
            "account",
            "erin",
            before=AccountFields(groups=["docker", STUDENTS]),
            after=AccountFields(groups=[STUDENTS]),
            reason="group membership changed by hand",
            drift=True,
        ),
    ),
    refused=(Note("destroy", "dave", "purging 'dave' deletes their account; re-run with --allow-destroy"),),
    blocked=(Note("blocked", "frank", "/s/volumes/frank.img exists but holds no ext4 filesystem"),),
)

MIXED_TEXT = """\
Refused: nothing will be applied.
  ! purging 'dave' deletes their account; re-run with --allow-destroy

Blocked (these people are skipped; everyone else proceeds):
  ? frank: /s/volumes/frank.img exists but holds no ext4 filesystem

Changes for classroom py101:
  + group      py101-students     (classroom student group)
  + account    alice            name="Alice A", group=py101-students, home=/h/alice, shell=/usr/sbin/nologin  (new student)
  + password   alice            generated, to the outbox  (new account)
  ~ volume     bob              size: 1 GiB -> 2 GiB, used 100 MiB  (disk quota raised to 2 GiB)
  ~ account    bob              name: Bob -> "Bob Builder"  (name changed in classroom.yaml)
  - account    carol            login=enabled  (status: disabled)
  ! volume     dave             path=/s/volumes/dave.img, used=5 MiB  (status: purged)

Drift (changed outside reconcile; will be repaired):
  ~ mount      erin             noatime,rw -> nodev,nosuid  (mount options changed by hand)
  ~ account    erin             groups: docker,py101-students -> py101-students  (group membership changed by hand)

Plan: 3 to create, 4 to change, 1 to disable, 1 to destroy."""


def test_symbols() -> None:
    assert SYMBOLS == {"create": "+", "update": "~", "disable": "-", "destroy": "!"}


def test_mixed_plan_text_golden() -> None:
    assert render_text(MIXED) == MIXED_TEXT


def test_each_op_gets_its_symbol() -> None:
    lines = render_text(MIXED).splitlines()
    body = [line for line in lines if line.startswith("  ") and not line.startswith(("  ! purging", "  ? "))]
    by_target_kind = {(line.split()[1], line.split()[2]): line.split()[0] for line in body}
    assert by_target_kind[("group", STUDENTS)] == "+"
    assert by_target_kind[("volume", "bob")] == "~"
    assert by_target_kind[("account", "carol")] == "-"
    assert by_target_kind[("volume", "dave")] == "!"


def test_drift_is_a_separate_section_after_changes() -> None:
    lines = render_text(MIXED).splitlines()
    changes = lines.index("Changes for classroom py101:")
    drift = lines.index("Drift (changed outside reconcile; will be repaired):")
    assert changes < drift
    change_block = lines[changes + 1 : lines.index("", changes)]
    drift_block = lines[drift + 1 : lines.index("", drift)]
    assert not any("erin" in line for line in change_block)
    assert len(drift_block) == 2 and all("erin" in line for line in drift_block)


def test_drift_only_plan_has_no_changes_section() -> None:
    only_drift = Plan(
        "py101",
        actions=(
            Action(
                "create", "manifest", "alice", after="/s/volumes/alice.img /h/alice", reason="mount at boot", drift=True
            ),
        ),
    )
    text = render_text(only_drift)
    assert "Changes for classroom" not in text
    assert text.splitlines() == [
        "Drift (changed outside reconcile; will be repaired):",
        "  + manifest   alice            /s/volumes/alice.img /h/alice  (mount at boot)",
        "",
        "Plan: 1 to create, 0 to change, 0 to disable, 0 to destroy.",
    ]


def test_refused_section_comes_first_and_lists_every_note() -> None:
    refused = Plan(
        "py101",
        actions=(Action("disable", "account", "a", before=AccountFields(login="enabled")),),
        refused=(Note("mass-disable", "", "would disable 9 of 10"), Note("shrink", "b", "b uses 1 GiB")),
    )
    lines = render_text(refused).splitlines()
    assert lines[:4] == ["Refused: nothing will be applied.", "  ! would disable 9 of 10", "  ! b uses 1 GiB", ""]
    assert "Refused" not in render_text(Plan("py101", actions=refused.actions))


def test_empty_plan_text() -> None:
    assert render_text(Plan("py101")) == (
        "No changes. Classroom py101 matches classroom.yaml.\n"
        "Plan: 0 to create, 0 to change, 0 to disable, 0 to destroy."
    )


@pytest.mark.parametrize(
    "ops,expected",
    [
        (("create",), "Plan: 1 to create, 0 to change, 0 to disable, 0 to destroy."),
        (("update", "update"), "Plan: 0 to create, 2 to change, 0 to disable, 0 to destroy."),
        (("disable", "create", "disable", "disable"), "Plan: 1 to create, 0 to change, 3 to disable, 0 to destroy."),
        (("destroy", "destroy", "update"), "Plan: 0 to create, 1 to change, 0 to disable, 2 to destroy."),
    ],
)
def test_summary_line_is_last_and_exact(ops, expected) -> None:
    p = Plan("c", actions=tuple(Action(op, "account", f"u{i}") for i, op in enumerate(ops)))
    assert render_text(p).splitlines()[-1] == expected
    assert re.fullmatch(r"Plan: \d+ to create, \d+ to change, \d+ to disable, \d+ to destroy\.", expected)


@pytest.mark.parametrize(
    "action,text",
    [
        (
            Action("update", "account", "a", before=AccountFields(groups=[]), after=AccountFields(groups=[STUDENTS])),
            "groups: (none) -> py101-students",
        ),
        (
            Action(
                "update",
                "account",
                "a",
                before=AccountFields(home="/home/a", shell="/bin/bash"),
                after=AccountFields(home="/h/a", shell="/usr/sbin/nologin"),
            ),
            "home: /home/a -> /h/a, shell: /bin/bash -> /usr/sbin/nologin",
        ),
        (
            Action(
                "update",
                "volume",
                "a",
                before=VolumeFields(size=3 * GiB // 2, used=None),
                after=VolumeFields(size=512 * MiB),
            ),
            "size: 1.5 GiB -> 512 MiB, used -",
        ),
        (
            Action("create", "volume", "a", after=VolumeFields(size=GiB, path="/s/volumes/a.img")),
            "size=1 GiB, path=/s/volumes/a.img",
        ),
        (
            Action("disable", "volume", "a", before=VolumeFields(loop="/dev/loop3"), after=VolumeFields(loop=None)),
            "loop=/dev/loop3",
        ),
        (Action("destroy", "account", "a", before=AccountFields(uid=1001)), "uid=1001"),
        (Action("create", "group", "g"), ""),
    ],
)
def test_describe(action, text) -> None:
    assert describe(action) == text


# --- JSON ---------------------------------------------------------------------------------------------


def test_json_document_shape() -> None:
    doc = json.loads(render_json(MIXED))
    assert set(doc) == {"format_version", "classroom", "actions", "drift", "refused", "blocked", "summary"}
    assert doc["format_version"] == 1
    assert doc["classroom"] == "py101"
    assert doc["summary"] == {"create": 3, "change": 4, "disable": 1, "destroy": 1}
    assert [a["target"] for a in doc["actions"]] == ["py101-students", "alice", "alice", "bob", "bob", "carol", "dave"]
    assert all(a["drift"] is False for a in doc["actions"])
    assert [(a["kind"], a["target"]) for a in doc["drift"]] == [("mount", "erin"), ("account", "erin")]
    assert all(a["drift"] is True for a in doc["drift"])
    assert doc["refused"] == [
        {
            "rule": "destroy",
            "target": "dave",
            "message": "purging 'dave' deletes their account; re-run with --allow-destroy",
        }
    ]
    assert doc["blocked"][0]["target"] == "frank"
    assert set(doc["actions"][0]) == {"op", "kind", "target", "before", "after", "reason", "destructive", "drift"}


def test_json_action_values_are_thawed() -> None:
    doc = json.loads(render_json(MIXED))
    erin_groups = doc["drift"][1]
    assert erin_groups["before"] == {"groups": ["docker", STUDENTS]}
    assert erin_groups["after"] == {"groups": [STUDENTS]}
    dave = doc["actions"][-1]
    assert dave == {
        "op": "destroy",
        "kind": "volume",
        "target": "dave",
        "before": {"path": "/s/volumes/dave.img", "used": 5 * MiB},
        "after": None,
        "reason": "status: purged",
        "destructive": True,
        "drift": False,
    }


def test_json_round_trips() -> None:
    text = render_json(MIXED)
    doc = json.loads(text)
    assert doc == MIXED.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert render_json(MIXED) == text  # stable output


def test_json_of_empty_plan() -> None:
    doc = json.loads(render_json(Plan("py101")))
    assert doc["actions"] == [] and doc["drift"] == [] and doc["refused"] == [] and doc["blocked"] == []
    assert doc["summary"] == {"create": 0, "change": 0, "disable": 0, "destroy": 0}


# --- no secrets in plans ---------------------------------------------------------------------------------

_GENERATED = re.compile(rf"[{passwords.ALPHABET}]{{4}}(-[{passwords.ALPHABET}]{{4}}){{2}}")
_CRYPT = re.compile(r"\$(1|2[abxy]?|5|6|7|y|gy|sha1|md5)\$")


def _looks_like_password(value: str) -> bool:
    return bool(_GENERATED.search(value) or _CRYPT.search(value))


def _strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_password_detector_detects() -> None:
    assert _looks_like_password(passwords.generate())
    assert _looks_like_password("!$y$j9T$abcdefgh$ijklmnop")
    assert not _looks_like_password(PLACEHOLDER)
    assert not _looks_like_password("py101-students")


def _new_classroom_plan() -> Plan:
    paths = Paths(Path("/s"), Path("/h"))
    members = (
        Member("alice", "Alice", "student", "active", 512 * MiB, 1.0, GiB, ("a@example.org",)),
        Member("tina", "Tina", "teacher", "active", 512 * MiB, 1.0, GiB, ()),
    )
    empty = MappingProxyType({})
    actual = Actual(accounts=empty, groups=empty, volumes=empty, mounts=empty, manifest=empty, today=19_000)
    return plan(Desired("py101", members, paths, loop.layout(paths)), actual)


def test_no_value_looks_like_a_password() -> None:
    p = _new_classroom_plan()
    doc = json.loads(render_json(p))
    password_actions = [a for a in doc["actions"] if a["kind"] == "password"]
    assert [a["target"] for a in password_actions] == ["alice", "tina"]
    assert all(a["after"] == PLACEHOLDER and a["before"] is None for a in password_actions)
    strings = list(_strings(doc))
    assert len(strings) > 50
    assert not [s for s in strings if _looks_like_password(s)]
    assert not _looks_like_password(render_text(p))


def test_text_shows_non_ascii_names_as_written() -> None:
    action = Action(
        "update",
        "account",
        "nricci",
        before=AccountFields(name="Niccolò"),
        after=AccountFields(name="Niccolò Ricci"),
        reason="name changed in classroom.yaml",
    )
    assert describe(action) == 'name: Niccolò -> "Niccolò Ricci"'
    assert "Niccolò Ricci" in render_text(Plan("py101", actions=(action,)))
