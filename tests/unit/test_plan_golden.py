"""Golden tables for the pure planner: (desired, actual snapshot, policy) -> the exact Plan.

In the style of pyinfra's operation tests: every case spells out the whole
expected tuple of actions, in order, plus the refused/blocked notes.  The
snapshot is built with small factories; ``today`` and the paths are fixed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import pytest

from reconciler.config.classroom import Classroom
from reconciler.config.site import Paths
from reconciler.core.actions import (
    AccountFields,
    Action,
    InvalidAction,
    Kind,
    Note,
    Op,
    Plan,
    Policy,
    VolumeFields,
    thaw,
)
from reconciler.core.actual import (
    Account,
    Actual,
    Container,
    Filesystem,
    Group,
    HubState,
    HubUser,
    ManifestEntry,
    Mount,
    Volume,
)
from reconciler.core.desired import Desired, Member, resolve
from reconciler.core.exports import ExportPolicy
from reconciler.core.plan import LEFTOVER_SERVICE, SERVER_UNKNOWN, STOPPED_DIRECTLY, plan
from reconciler.core.report import rows as report_rows
from reconciler.host.volumes import loop

MiB = 1024**2
GiB = 1024**3
TODAY = 19_000  # days since the epoch
C = "py101"
STUDENTS = "py101-students"
TEACHERS = "py101-teachers"
PATHS = Paths(Path("/s"), Path("/h"))
LAYOUT = loop.layout(PATHS)  # the loop backend's naming: images under /s/volumes
SHELL = "/usr/sbin/nologin"
USED = 100 * MiB
UIDS = {"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004, "erin": 1005, "tina": 1010}
PASSWORD_PLACEHOLDER = "generated, to the outbox"
REMOVED = "not in classroom.yaml (removed people are disabled, never deleted)"


# --- desired ---------------------------------------------------------------------------------------


def member(
    username: str, *, name: str | None = None, role: str = "student", status: str = "active", disk: int = GiB
) -> Member:
    return Member(
        username=username,
        name=name or username.capitalize(),
        role=role,
        status=status,
        memory=512 * MiB,
        cpu=1.0,
        disk=disk,
        emails=(f"{username}@example.org",),
    )


def desired(*members: Member) -> Desired:
    return Desired(C, tuple(members), PATHS, LAYOUT, servers_here=True)


# --- actual ----------------------------------------------------------------------------------------


def uid(username: str) -> int:
    return UIDS[username]


def image(username: str) -> str:
    return f"/s/volumes/{username}.img"


def home(username: str) -> str:
    return f"/h/{username}"


def account(
    username: str,
    *,
    classroom: str | None = C,
    name: str | None = None,
    role: str = "student",
    groups: frozenset[str] | set[str] | None = None,
    locked: bool = False,
    expire_day: int | None = None,
    has_password: bool = True,
    home_dir: str | None = None,
    shell: str = SHELL,
) -> Account:
    return Account(
        username=username,
        uid=uid(username),
        gid=uid(username),
        name=name or username.capitalize(),
        classroom=classroom,
        home=home_dir or home(username),
        shell=shell,
        groups=frozenset(groups if groups is not None else {STUDENTS if role == "student" else TEACHERS}),
        has_password=has_password,
        locked=locked,
        expire_day=expire_day,
    )


def disabled_account(username: str, **kw: Any) -> Account:
    """What ``usermod --lock --expiredate 1`` leaves behind."""
    return account(username, locked=True, expire_day=1, **kw)


def group(name: str, gid: int = 2000) -> Group:
    return Group(name, gid, frozenset())


def volume(
    username: str,
    *,
    size: int = GiB,
    fs_size: int | None = None,
    fs: bool = True,
    complete: bool = True,
    loop: str | None = None,
    used: int | None = USED,
    in_use: int | None = None,
    held_elsewhere: bool = False,
) -> Volume:
    fs_size = size if fs_size is None else fs_size
    return Volume(
        username=username,
        path=image(username) if complete else f"/s/volumes/{username}.img.partial",
        complete=complete,
        size=size,
        allocated=used or 0,
        fs=Filesystem(size=fs_size, free=fs_size - (used or 0)) if fs else None,
        loop=loop,
        used=used if fs else None,
        in_use=(used if in_use is None else in_use) if fs else None,
        attached=loop is not None,
        held_elsewhere=held_elsewhere,
    )


def mount(
    username: str,
    *,
    options: tuple[str, ...] = ("rw", "nodev", "nosuid", "noatime"),
    owner: tuple[int, int, int] | None = None,
    source: str | None = None,
) -> Mount:
    return Mount(
        target=home(username),
        source=source or image(username),
        fstype="ext4",
        options=frozenset(options),
        owner=owner if owner is not None else (uid(username), uid(username), 0o700),
    )


def entry(username: str, *, options: str = loop.MOUNT_OPTIONS) -> ManifestEntry:
    return ManifestEntry(image(username), home(username), "ext4", options)


def snapshot(
    *,
    accounts=(),
    groups=(STUDENTS, TEACHERS),
    volumes=(),
    mounts=(),
    manifest=(),
    today: int = TODAY,
    volume_step: int = loop.VOLUME_STEP,
    extra_groups=(),
) -> Actual:
    group_list = [group(g) for g in groups] + [group(g) for g in extra_groups]
    return Actual(
        accounts=MappingProxyType({a.username: a for a in accounts}),
        groups=MappingProxyType({g.name: g for g in group_list}),
        volumes=MappingProxyType({v.username: v for v in volumes}),
        mounts=MappingProxyType({m.target: m for m in mounts}),
        manifest=MappingProxyType({e.target: e for e in manifest}),
        today=today,
        volume_step=volume_step,
    )


def converged(*people: Member, **overrides: Any) -> Actual:
    """The host exactly as classroom.yaml wants it for ``people``; ``overrides`` replace whole parts.

    Per-person replacements: ``account_alice=...``, ``volume_alice=...`` (None drops it), etc.
    """
    parts: dict[str, list] = {"accounts": [], "volumes": [], "mounts": [], "manifest": []}
    builders = {
        "accounts": lambda m: account(m.username, name=m.name, role=m.role),
        "volumes": lambda m: volume(m.username, loop=f"/dev/loop{uid(m.username) - 1000}"),
        "mounts": lambda m: mount(m.username),
        "manifest": lambda m: entry(m.username),
    }
    singular = {"accounts": "account", "volumes": "volume", "mounts": "mount", "manifest": "entry"}
    for m in people:
        for part, build in builders.items():
            key = f"{singular[part]}_{m.username}"
            value = overrides.pop(key) if key in overrides else build(m)
            if value is not None:
                parts[part].append(value)
    extra = {k: overrides.pop(k) for k in list(overrides) if k in ("groups", "today", "volume_step", "extra_groups")}
    assert not overrides, f"unknown overrides {sorted(overrides)}"
    return snapshot(**parts, **extra)


def hub_user(name: str, *, admin: bool = False, running: bool = False) -> HubUser:
    return HubUser(name, admin, running)


def container(name: str, memory: int, *, running: bool = True, cpus: float = 1.0) -> Container:
    return Container(name, f"id-{name}", running, memory, int(cpus * 100_000), 100_000)


def service(name: str, memory: int, *, cpus: float = 1.0, node: str = "w1") -> Container:
    """A swarm service (hub.spawner: swarm): NanoCPUs per 10**9, the worker it runs on."""
    return Container(name, f"svc-{name}", True, memory, int(cpus * 10**9), 10**9, node, service=True)


def with_hub(actual: Actual, *, users=(), containers=(), error: str | None = None) -> Actual:
    """The snapshot with a hub (its users, or the error listing them) and Docker's containers (None: unreachable)."""
    hub = HubState(None, error) if error else HubState(MappingProxyType({u.name: u for u in users}))
    found = None if containers is None else MappingProxyType({c.username: c for c in containers})
    return dataclasses.replace(actual, hub=hub, containers=found)


def recently(actual: Actual, *disabled: str) -> Actual:
    """These people were disabled by an earlier pass within the mass-disable window."""
    return dataclasses.replace(actual, disabled_recently=frozenset(disabled))


def running(actual: Actual, online_resize: bool = True) -> Actual:
    """alice's server runs (its container holds a bind mount of her home)."""
    return dataclasses.replace(
        with_hub(actual, users=[hub_user("alice", running=True)], containers=[container("alice", 512 * MiB)]),
        online_resize=online_resize,
    )


SERVER_RUNS = "alice's server is running; applies when it stops"
HELD = "alice's volume is still mounted in another mount namespace; applies when that ends"
DEMOTED = (
    "nobody is a hub admin: the hub user is forgotten (files untouched) and comes back at the next login "
    "without admin rights"
)


# --- expected ----------------------------------------------------------------------------------------


def A(
    op: str,
    kind: str,
    target: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    destructive: bool = False,
    drift: bool = False,
    waits: str = "",
) -> tuple:
    return (op, kind, target, before, after, reason, destructive, drift, waits)


def as_tuple(action: Action) -> tuple:
    """The action in its wire form (what JSON plans and the journal carry), for comparing with the table."""
    wire = action.to_json()
    return (
        wire["op"],
        wire["kind"],
        wire["target"],
        wire["before"],
        wire["after"],
        action.reason,
        action.destructive,
        action.drift,
        wire.get("waits", ""),
    )


def new_person(
    username: str, name: str, role: str = "student", size: int = GiB, disk_text: str = "1 GiB"
) -> list[tuple]:
    """The creation sequence for one person, in the documented order."""
    grp = STUDENTS if role == "student" else TEACHERS
    return [
        A(
            "create",
            "account",
            username,
            after={"name": name, "group": grp, "home": home(username), "shell": SHELL},
            reason=f"new {role}",
        ),
        A("create", "password", username, after=PASSWORD_PLACEHOLDER, reason="new account"),
        A(
            "create",
            "volume",
            username,
            after={"size": size, "path": image(username)},
            reason=f"disk quota {disk_text}",
        ),
        A("create", "filesystem", username, after={"fstype": "ext4", "size": size}, reason="new volume"),
        *mount_sequence(username),
    ]


def mount_sequence(username: str, drift: bool = False) -> list[tuple]:
    return [
        A(
            "create",
            "manifest",
            username,
            after=f"{image(username)} {home(username)}",
            reason="mount at boot",
            drift=drift,
        ),
        A("create", "mount", username, after=home(username), reason="home volume", drift=drift),
        A(
            "create",
            "ownership",
            username,
            after=f"{username}:{username} 0700",
            reason="home belongs to its owner",
            drift=drift,
        ),
    ]


def disable_sequence(username: str, reason: str, mounted: bool = True, hub: list[tuple] = ()) -> list[tuple]:
    """The login is locked first, then the hub's part, then the volume is unmounted (files kept)."""
    steps = [
        A("disable", "account", username, before={"login": "enabled"}, after={"login": "disabled"}, reason=reason),
        *hub,
    ]
    if mounted:
        steps += [
            A("disable", "mount", username, before=home(username), reason=reason),
            A("disable", "manifest", username, before=f"{image(username)} {home(username)}", reason=reason),
        ]
    return steps


class Case(NamedTuple):
    id: str
    members: tuple[Member, ...]
    actual: Actual
    policy: Policy
    actions: list[tuple]
    refused: list[tuple[str, str, str]] = []  # (rule, target, substring of the message)
    blocked: list[tuple[str, str, str]] = []


ALICE, BOB, CAROL, DAVE, ERIN = (member(u) for u in ("alice", "bob", "carol", "dave", "erin"))
TINA = member("tina", name="Tina Teacher", role="teacher")
DEFAULT = Policy()

CASES = [
    # --- creation and convergence ---------------------------------------------------------------
    Case(
        "new-classroom",
        (TINA, member("alice", name="Alice A"), member("bob", name="Bob B")),
        snapshot(groups=()),
        DEFAULT,
        [
            A("create", "group", STUDENTS, reason="classroom student group"),
            A("create", "group", TEACHERS, reason="classroom teacher group"),
            *new_person("tina", "Tina Teacher", role="teacher"),
            *new_person("alice", "Alice A"),
            *new_person("bob", "Bob B"),
        ],
    ),
    Case("new-person-in-existing-classroom", (ALICE, BOB), converged(ALICE), DEFAULT, new_person("bob", "Bob")),
    Case("converged", (TINA, ALICE, BOB), converged(TINA, ALICE, BOB), DEFAULT, []),
    Case(
        "only-one-group-missing",
        (ALICE,),
        converged(ALICE, groups=(STUDENTS,)),
        DEFAULT,
        [A("create", "group", TEACHERS, reason="classroom teacher group")],
    ),
    # --- disk quota -------------------------------------------------------------------------------
    Case(
        "disk-raised",
        (member("alice", disk=2 * GiB),),
        converged(ALICE),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
            )
        ],
    ),
    Case(
        "disk-lowered",
        (member("alice", disk=512 * MiB),),
        converged(ALICE),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
            )
        ],
    ),
    # an unsafe shrink is left out and blocks that person only (their other steps and everyone else go ahead)
    Case(
        "disk-lowered-below-used",
        (member("alice", disk=512 * MiB, name="Alice Renamed"), BOB, CAROL),
        converged(ALICE, BOB, volume_alice=volume("alice", used=700 * MiB, loop="/dev/loop1")),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"name": "Alice"},
                after={"name": "Alice Renamed"},
                reason="name changed in classroom.yaml",
            ),
            *new_person("carol", "Carol"),
        ],
        blocked=[("shrink", "alice", "alice uses 700 MiB")],
    ),
    # a shrink keeps 10% headroom for metadata: 460 MiB < 0.9 * 512 MiB = 460.8 MiB < 461 MiB
    Case(
        "disk-lowered-within-headroom",
        (member("alice", disk=512 * MiB),),
        converged(ALICE, volume_alice=volume("alice", used=460 * MiB, loop="/dev/loop1")),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": 460 * MiB},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
            )
        ],
    ),
    Case(
        "disk-lowered-into-headroom",
        (member("alice", disk=512 * MiB),),
        converged(ALICE, volume_alice=volume("alice", used=461 * MiB, loop="/dev/loop1")),
        DEFAULT,
        [],
        blocked=[("shrink", "alice", "alice uses 461 MiB")],
    ),
    Case(
        "disk-lowered-metadata-counts",
        (member("alice", disk=512 * MiB),),
        converged(ALICE, volume_alice=volume("alice", used=300 * MiB, in_use=470 * MiB, loop="/dev/loop1")),
        DEFAULT,
        [],
        blocked=[("shrink", "alice", "alice uses 470 MiB")],
    ),
    Case(
        "disk-raised-never-refused-even-if-full",
        (member("alice", disk=2 * GiB),),
        converged(ALICE, volume_alice=volume("alice", used=GiB, loop="/dev/loop1")),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": GiB},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
            )
        ],
    ),
    Case(
        "fs-smaller-than-image",
        (member("alice", disk=2 * GiB),),
        converged(ALICE, volume_alice=volume("alice", size=2 * GiB, fs_size=GiB, loop="/dev/loop1")),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="filesystem does not fill its image (a resize was interrupted)",
                drift=True,
            )
        ],
    ),
    Case(
        "disk-1G-rounds-to-1GiB",
        (member("alice", disk=10**9),),
        snapshot(),
        DEFAULT,
        new_person("alice", "Alice", size=GiB, disk_text="953.67 MiB"),
    ),
    Case("disk-1G-converged-at-1GiB-no-endless-resize", (member("alice", disk=10**9),), converged(ALICE), DEFAULT, []),
    Case(
        "volume-step-from-snapshot",
        (member("alice", disk=10**9),),
        snapshot(volume_step=MiB),
        DEFAULT,
        new_person("alice", "Alice", size=954 * MiB, disk_text="953.67 MiB"),
    ),
    Case(
        "volume-step-from-snapshot-converged",
        (member("alice", disk=954 * MiB - 5),),
        converged(ALICE, volume_step=MiB, volume_alice=volume("alice", size=954 * MiB, loop="/dev/loop1")),
        DEFAULT,
        [],
    ),
    # --- disabling, removing, re-enabling ---------------------------------------------------------
    Case(
        "status-disabled",
        (member("alice", status="disabled"), BOB),
        converged(ALICE, BOB),
        DEFAULT,
        disable_sequence("alice", "status: disabled"),
    ),
    Case(
        "status-disabled-already-done",
        (member("alice", status="disabled"), BOB),
        converged(
            ALICE,
            BOB,
            account_alice=disabled_account("alice"),
            volume_alice=volume("alice"),
            mount_alice=None,
            entry_alice=None,
        ),
        DEFAULT,
        [],
    ),
    Case(
        "status-disabled-half-locked",
        (member("alice", status="disabled"), BOB),
        converged(
            ALICE,
            BOB,
            account_alice=account("alice", locked=True),
            volume_alice=volume("alice"),
            mount_alice=None,
            entry_alice=None,
        ),
        DEFAULT,
        [
            A(
                "disable",
                "account",
                "alice",
                before={"login": "enabled"},
                after={"login": "disabled"},
                reason="status: disabled",
            )
        ],
    ),
    Case(
        "status-disabled-loop-left-attached",
        (member("alice", status="disabled"), BOB),
        converged(
            ALICE,
            BOB,
            account_alice=disabled_account("alice"),
            volume_alice=volume("alice", loop="/dev/loop7"),
            mount_alice=None,
            entry_alice=None,
        ),
        DEFAULT,
        [
            A(
                "disable",
                "volume",
                "alice",
                before={"loop": "/dev/loop7"},
                after={"loop": None},
                reason="image still attached to a loop device",
                drift=True,
            )
        ],
    ),
    Case("status-disabled-no-account", (member("alice", status="disabled"),), snapshot(groups=()), DEFAULT, []),
    Case("removed-from-file", (BOB,), converged(ALICE, BOB), DEFAULT, disable_sequence("alice", REMOVED)),
    Case(
        "re-enabled",
        (ALICE, BOB),
        converged(
            ALICE,
            BOB,
            account_alice=disabled_account("alice"),
            volume_alice=volume("alice"),
            mount_alice=None,
            entry_alice=None,
        ),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"login": "disabled"},
                after={"login": "enabled"},
                reason="status: active",
            ),
            *mount_sequence("alice", drift=False),
        ],
    ),
    Case(
        "locked-by-hand",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", locked=True)),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"login": "half-disabled (locked or expired)"},
                after={"login": "enabled"},
                reason="account was locked or expired by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "expired-by-hand",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", expire_day=TODAY)),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"login": "half-disabled (locked or expired)"},
                after={"login": "enabled"},
                reason="account was locked or expired by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "expiring-in-future-is-fine",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", expire_day=TODAY + 1)),
        DEFAULT,
        [],
    ),
    # --- purge -----------------------------------------------------------------------------------------
    Case(
        "purged-without-allow-destroy",
        (member("alice", status="purged"), BOB),
        converged(ALICE, BOB),
        DEFAULT,
        [
            A("disable", "mount", "alice", before=home("alice"), reason="status: purged"),
            A("disable", "manifest", "alice", before=f"{image('alice')} {home('alice')}", reason="status: purged"),
            A(
                "destroy",
                "volume",
                "alice",
                before={"path": image("alice"), "used": USED},
                reason="status: purged",
                destructive=True,
            ),
            A("destroy", "account", "alice", before={"uid": 1001}, reason="status: purged", destructive=True),
        ],
        refused=[("destroy", "alice", "re-run with --allow-destroy")],
    ),
    Case(
        "purged-with-allow-destroy",
        (member("alice", status="purged"), BOB),
        converged(ALICE, BOB),
        Policy(allow_destroy=True),
        [
            A("disable", "mount", "alice", before=home("alice"), reason="status: purged"),
            A("disable", "manifest", "alice", before=f"{image('alice')} {home('alice')}", reason="status: purged"),
            A(
                "destroy",
                "volume",
                "alice",
                before={"path": image("alice"), "used": USED},
                reason="status: purged",
                destructive=True,
            ),
            A("destroy", "account", "alice", before={"uid": 1001}, reason="status: purged", destructive=True),
        ],
    ),
    Case(
        "purged-already-disabled-only-account-left",
        (member("alice", status="purged"), BOB),
        converged(
            ALICE, BOB, account_alice=disabled_account("alice"), volume_alice=None, mount_alice=None, entry_alice=None
        ),
        Policy(allow_destroy=True),
        [A("destroy", "account", "alice", before={"uid": 1001}, reason="status: purged", destructive=True)],
    ),
    Case("purged-nothing-on-host", (member("alice", status="purged"), BOB), converged(BOB), DEFAULT, []),
    Case("purged-only-member-nothing-on-host", (member("alice", status="purged"),), snapshot(groups=()), DEFAULT, []),
    # --- mass-disable guard ------------------------------------------------------------------------------
    Case(
        "mass-disable-refused",
        (ALICE, BOB, CAROL),
        converged(ALICE, BOB, CAROL, DAVE, ERIN),
        DEFAULT,
        [*disable_sequence("dave", REMOVED), *disable_sequence("erin", REMOVED)],
        refused=[("mass-disable", "", "would disable 2 of 5 active people")],
    ),
    Case(
        "mass-disable-bypassed",
        (ALICE, BOB, CAROL),
        converged(ALICE, BOB, CAROL, DAVE, ERIN),
        Policy(allow_mass_disable=True),
        [*disable_sequence("dave", REMOVED), *disable_sequence("erin", REMOVED)],
    ),
    Case(
        "mass-disable-higher-fraction-allows",
        (ALICE, BOB, CAROL),
        converged(ALICE, BOB, CAROL, DAVE, ERIN),
        Policy(max_disable_fraction=0.4),
        [*disable_sequence("dave", REMOVED), *disable_sequence("erin", REMOVED)],
    ),
    Case(
        "mass-disable-counts-status-disabled",
        (ALICE, BOB, CAROL, member("dave", status="disabled")),
        converged(ALICE, BOB, CAROL, DAVE, ERIN),
        DEFAULT,
        [*disable_sequence("dave", "status: disabled"), *disable_sequence("erin", REMOVED)],
        refused=[("mass-disable", "", "would disable 2 of 5 active people")],
    ),
    Case("single-disable-in-tiny-class", (ALICE,), converged(ALICE, BOB), DEFAULT, disable_sequence("bob", REMOVED)),
    # the window: disables of earlier passes count too, so a class is not emptied one save at a time
    Case(
        "mass-disable-paced-within-the-window",
        (ALICE, BOB, CAROL, member("dave", status="disabled")),
        recently(
            converged(
                ALICE,
                BOB,
                CAROL,
                DAVE,
                ERIN,
                account_erin=disabled_account("erin"),
                volume_erin=None,
                mount_erin=None,
                entry_erin=None,
            ),
            "erin",
        ),
        DEFAULT,
        disable_sequence("dave", "status: disabled"),
        refused=[("mass-disable", "", "with the 1 disabled in the last 24 h that makes 2 of the 5 people active")],
    ),
    Case(
        "mass-disable-window-forgets-the-re-enabled",
        (ALICE, BOB, CAROL, member("dave", status="disabled"), ERIN),
        recently(converged(ALICE, BOB, CAROL, DAVE, ERIN), "erin"),
        DEFAULT,
        disable_sequence("dave", "status: disabled"),
    ),
    Case(
        "mass-disable-window-bypassed",
        (ALICE, BOB, CAROL, member("dave", status="disabled")),
        recently(
            converged(
                ALICE,
                BOB,
                CAROL,
                DAVE,
                ERIN,
                account_erin=disabled_account("erin"),
                volume_erin=None,
                mount_erin=None,
                entry_erin=None,
            ),
            "erin",
        ),
        Policy(allow_mass_disable=True),
        disable_sequence("dave", "status: disabled"),
    ),
    Case(
        "empty-file-refused",
        (),
        converged(ALICE, BOB),
        DEFAULT,
        [*disable_sequence("alice", REMOVED), *disable_sequence("bob", REMOVED)],
        refused=[("mass-disable", "", "would disable 2 of 2 active people")],
    ),
    # --- guards against touching what is not ours ----------------------------------------------------------
    # a clash blocks that person only: everyone else converges in the same pass
    Case(
        "foreign-account-system",
        (ALICE,),
        snapshot(accounts=[account("alice", classroom=None)]),
        DEFAULT,
        [],
        blocked=[("foreign-account", "alice", "'alice' already exists on this host (uid 1001)")],
    ),
    Case(
        "foreign-account-other-classroom",
        (ALICE, BOB),
        snapshot(accounts=[account("alice", classroom="other")]),
        DEFAULT,
        new_person("bob", "Bob"),
        blocked=[("foreign-account", "alice", "was not created by reconcile for 'py101'")],
    ),
    Case(
        "foreign-account-disabled-status",
        (member("alice", status="disabled"),),
        snapshot(accounts=[account("alice", classroom=None)]),
        DEFAULT,
        [],
        blocked=[("foreign-account", "alice", "already exists on this host")],
    ),
    Case(
        "username-is-existing-group",
        (ALICE,),
        snapshot(extra_groups=("alice",)),
        DEFAULT,
        [],
        blocked=[("foreign-account", "alice", "a group named 'alice' already exists")],
    ),
    Case(
        "username-is-existing-group-others-proceed",
        (ALICE, member("bob", status="disabled"), CAROL),
        converged(BOB, extra_groups=("alice",)),
        DEFAULT,
        [*disable_sequence("bob", "status: disabled"), *new_person("carol", "Carol")],
        blocked=[("foreign-account", "alice", "a group named 'alice' already exists")],
    ),
    Case(
        "username-is-group-but-only-disabled",
        (member("alice", status="disabled"),),
        snapshot(groups=(), extra_groups=("alice",)),
        DEFAULT,
        [],
    ),
    # --- interrupted or broken volumes -----------------------------------------------------------------------
    Case(
        "partial-image-account-exists",
        (ALICE,),
        converged(
            ALICE, volume_alice=volume("alice", complete=False, fs=False, used=None), mount_alice=None, entry_alice=None
        ),
        DEFAULT,
        [
            A(
                "create",
                "filesystem",
                "alice",
                before="unfinished image",
                after={"fstype": "ext4", "size": GiB},
                reason="volume creation was interrupted; the image never held data",
                drift=True,
            ),
            *mount_sequence("alice", drift=False),
        ],
    ),
    Case(
        "partial-image-new-account",
        (ALICE,),
        snapshot(volumes=[volume("alice", complete=False, fs=False, used=None)]),
        DEFAULT,
        [
            *new_person("alice", "Alice")[:2],
            A(
                "create",
                "filesystem",
                "alice",
                before="unfinished image",
                after={"fstype": "ext4", "size": GiB},
                reason="volume creation was interrupted; the image never held data",
                drift=False,
            ),
            *mount_sequence("alice"),
        ],
    ),
    Case(
        "image-without-ext4-blocks-only-that-person",
        (member("alice", name="Alice Renamed"), BOB),
        converged(ALICE, volume_alice=volume("alice", fs=False), mount_alice=None, entry_alice=None),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"name": "Alice"},
                after={"name": "Alice Renamed"},
                reason="name changed in classroom.yaml",
            ),
            *new_person("bob", "Bob"),
        ],
        blocked=[("blocked", "alice", "/s/volumes/alice.img exists but holds no ext4 filesystem")],
    ),
    Case(
        "foreign-mount-on-home-blocks",
        (ALICE, BOB),
        converged(ALICE, BOB, mount_alice=mount("alice", source="/dev/sdb1")),
        DEFAULT,
        [],
        blocked=[("blocked", "alice", "/h/alice has /dev/sdb1 mounted on it")],
    ),
    # --- drift ---------------------------------------------------------------------------------------------
    Case(
        "drift-manifest-missing",
        (ALICE,),
        converged(ALICE, entry_alice=None),
        DEFAULT,
        [
            A(
                "create",
                "manifest",
                "alice",
                after=f"{image('alice')} {home('alice')}",
                reason="mount at boot",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-manifest-edited",
        (ALICE,),
        converged(ALICE, entry_alice=entry("alice", options="loop,noatime")),
        DEFAULT,
        [
            A(
                "update",
                "manifest",
                "alice",
                before=f"{image('alice')} loop,noatime",
                after=f"{image('alice')} {loop.MOUNT_OPTIONS}",
                reason="manifest entry changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-unmounted",
        (ALICE,),
        converged(ALICE, mount_alice=None),
        DEFAULT,
        mount_sequence("alice", drift=True)[1:],
    ),
    Case(
        "drift-mount-missing-nodev-nosuid",
        (ALICE,),
        converged(ALICE, mount_alice=mount("alice", options=("rw", "noatime"))),
        DEFAULT,
        [
            A(
                "update",
                "mount",
                "alice",
                before="noatime,rw",
                after="nodev,nosuid",
                reason="mount options changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-mount-missing-nosuid-only",
        (ALICE,),
        converged(ALICE, mount_alice=mount("alice", options=("rw", "nodev"))),
        DEFAULT,
        [
            A(
                "update",
                "mount",
                "alice",
                before="nodev,rw",
                after="nodev,nosuid",
                reason="mount options changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-ownership",
        (ALICE,),
        converged(ALICE, mount_alice=mount("alice", owner=(0, 0, 0o755))),
        DEFAULT,
        [
            A(
                "update",
                "ownership",
                "alice",
                before="0:0 0755",
                after="alice:alice 0700",
                reason="home ownership or mode changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-mode-only",
        (ALICE,),
        converged(ALICE, mount_alice=mount("alice", owner=(1001, 1001, 0o755))),
        DEFAULT,
        [
            A(
                "update",
                "ownership",
                "alice",
                before="1001:1001 0755",
                after="alice:alice 0700",
                reason="home ownership or mode changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-extra-group",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", groups={STUDENTS, "docker"})),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"groups": ["docker", STUDENTS]},
                after={"groups": [STUDENTS]},
                reason="group membership changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-group-removed",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", groups=set())),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"groups": []},
                after={"groups": [STUDENTS]},
                reason="group membership changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-shell",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", shell="/bin/bash")),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"shell": "/bin/bash"},
                after={"shell": SHELL},
                reason="account changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-shell-and-home",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", shell="/bin/bash", home_dir="/home/alice")),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"home": "/home/alice", "shell": "/bin/bash"},
                after={"home": home("alice"), "shell": SHELL},
                reason="account changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "drift-no-password",
        (ALICE,),
        converged(ALICE, account_alice=account("alice", has_password=False)),
        DEFAULT,
        [
            A(
                "create",
                "password",
                "alice",
                after=PASSWORD_PLACEHOLDER,
                reason="account has no password (creation was interrupted)",
                drift=True,
            )
        ],
    ),
    # --- changes in classroom.yaml ------------------------------------------------------------------------------
    Case(
        "role-student-to-teacher",
        (member("alice", role="teacher"),),
        converged(ALICE),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"groups": [STUDENTS]},
                after={"groups": [TEACHERS]},
                reason="role is now teacher",
            )
        ],
    ),
    Case(
        "role-teacher-to-student",
        (ALICE,),
        converged(member("alice", role="teacher")),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"groups": [TEACHERS]},
                after={"groups": [STUDENTS]},
                reason="role is now student",
            )
        ],
    ),
    Case(
        "name-change",
        (member("alice", name="Alice Married"),),
        converged(ALICE),
        DEFAULT,
        [
            A(
                "update",
                "account",
                "alice",
                before={"name": "Alice"},
                after={"name": "Alice Married"},
                reason="name changed in classroom.yaml",
            )
        ],
    ),
    # --- the hub and the running servers -------------------------------------------------------------------------
    Case(
        "hub-converged",
        (TINA, ALICE),
        with_hub(
            converged(TINA, ALICE),
            users=[hub_user("tina"), hub_user("alice", running=True)],
            containers=[container("alice", 512 * MiB)],
        ),
        DEFAULT,
        [],
    ),
    # teachers are no hub admins either (a role of their own); one still flagged waits for their server to stop
    Case(
        "hub-teacher-admin-forgotten",
        (TINA,),
        with_hub(converged(TINA), users=[hub_user("tina", admin=True)]),
        DEFAULT,
        [A("disable", "hub-user", "tina", before={"admin": True}, reason=DEMOTED)],
    ),
    Case(
        "hub-teacher-admin-waits-for-the-server",
        (TINA,),
        with_hub(converged(TINA), users=[hub_user("tina", admin=True, running=True)]),
        DEFAULT,
        [A("disable", "hub-user", "tina", before={"admin": True}, reason=DEMOTED, waits="tina's server is running")],
    ),
    Case(
        "hub-demote-forgets-the-user",
        (ALICE,),
        with_hub(converged(ALICE), users=[hub_user("alice", admin=True)]),
        DEFAULT,
        [A("disable", "hub-user", "alice", before={"admin": True}, reason=DEMOTED)],
    ),
    Case(
        "hub-memory-applied-live",
        (member("alice"),),
        with_hub(converged(ALICE), users=[hub_user("alice", running=True)], containers=[container("alice", 256 * MiB)]),
        DEFAULT,
        [
            A(
                "update",
                "container",
                "alice",
                before={"memory": 256 * MiB},
                after={"memory": 512 * MiB},
                reason="memory quota changed; applied live",
            )
        ],
    ),
    Case(
        "hub-stopped-container-left-alone",
        (ALICE,),
        with_hub(converged(ALICE), users=[hub_user("alice")], containers=[container("alice", 1, running=False)]),
        DEFAULT,
        [],
    ),
    Case(
        "hub-disable-locks-then-stops-the-server-then-unmounts",
        (member("alice", status="disabled"), BOB),
        with_hub(converged(ALICE, BOB), users=[hub_user("alice", running=True), hub_user("bob")]),
        DEFAULT,
        disable_sequence(
            "alice",
            "status: disabled",
            hub=[
                A("disable", "server", "alice", before="running", after="stopped", reason="status: disabled"),
                A("disable", "hub-user", "alice", before={"admin": False}, reason="status: disabled"),
            ],
        ),
    ),
    Case(
        "hub-user-never-created-here",
        (ALICE,),
        with_hub(converged(ALICE), users=[hub_user("alice"), hub_user("mallory", running=True)]),
        DEFAULT,
        [
            A(
                "disable",
                "server",
                "mallory",
                before="running",
                after="stopped",
                reason="hub user not in classroom.yaml",
                drift=True,
            ),
            A(
                "disable",
                "hub-user",
                "mallory",
                before={"admin": False},
                reason="hub user not in classroom.yaml",
                drift=True,
            ),
        ],
    ),
    Case(
        "hub-down-blocks-its-part-only",
        (ALICE, BOB),
        with_hub(converged(ALICE), error="hub API is unreachable"),
        DEFAULT,
        new_person("bob", "Bob"),
        blocked=[("hub", "", "hub API is unreachable; its part is retried")],
    ),
    Case(
        "hub-cpu-applied-live",
        (dataclasses.replace(ALICE, cpu=2.0),),
        with_hub(
            converged(ALICE),
            users=[hub_user("alice", running=True)],
            containers=[container("alice", 512 * MiB, cpus=0.5)],
        ),
        DEFAULT,
        [
            A(
                "update",
                "container",
                "alice",
                before={"cpu": 0.5},
                after={"cpu": 2.0},
                reason="CPU quota changed; applied live",
            )
        ],
    ),
    Case(
        "hub-cpu-thirds-no-endless-update",
        (dataclasses.replace(ALICE, cpu=1 / 3),),
        with_hub(
            converged(ALICE),
            users=[hub_user("alice", running=True)],
            containers=[container("alice", 512 * MiB, cpus=1 / 3)],
        ),
        DEFAULT,
        [],
    ),
    Case(
        "hub-container-without-cpu-limit-gets-it",
        (ALICE,),
        with_hub(
            converged(ALICE),
            users=[hub_user("alice", running=True)],
            containers=[container("alice", 256 * MiB, cpus=0)],
        ),
        DEFAULT,
        [
            A(
                "update",
                "container",
                "alice",
                before={"memory": 256 * MiB, "cpu": None},
                after={"memory": 512 * MiB, "cpu": 1.0},
                reason="memory and CPU quota changed; applied live",
            )
        ],
    ),
    # --- the swarm: a service's limits change only with a new task; services the hub left behind go ---------
    Case(
        "swarm-converged",
        (ALICE,),
        with_hub(converged(ALICE), users=[hub_user("alice", running=True)], containers=[service("alice", 512 * MiB)]),
        DEFAULT,
        [],
    ),
    Case(
        "swarm-memory-waits-for-the-next-start",
        (ALICE,),
        with_hub(converged(ALICE), users=[hub_user("alice", running=True)], containers=[service("alice", 256 * MiB)]),
        DEFAULT,
        [
            A(
                "update",
                "container",
                "alice",
                before={"memory": 256 * MiB},
                after={"memory": 512 * MiB},
                reason="memory quota changed",
                waits="alice's server runs on the swarm; applies when it starts again",
            )
        ],
    ),
    Case(
        "swarm-cpu-restart-policy-stops-the-server",
        (dataclasses.replace(ALICE, cpu=2.0),),
        with_hub(converged(ALICE), users=[hub_user("alice", running=True)], containers=[service("alice", 512 * MiB)]),
        Policy(resize_running="restart"),
        [
            A(
                "disable",
                "server",
                "alice",
                before="running",
                after="stopped",
                reason="CPU quota changed; a swarm server takes it when it starts again",
            )
        ],
    ),
    Case(
        "swarm-service-the-hub-no-longer-runs-is-removed",
        (ALICE,),
        with_hub(converged(ALICE), users=[hub_user("alice")], containers=[service("alice", 256 * MiB)]),
        DEFAULT,
        [A("disable", "container", "alice", before={"memory": 256 * MiB}, reason=LEFTOVER_SERVICE, drift=True)],
    ),
    Case(
        "swarm-a-removed-person-s-leftover-service-goes-first",
        (member("alice", status="disabled"), BOB),
        with_hub(
            converged(ALICE, BOB), users=[hub_user("alice"), hub_user("bob")], containers=[service("alice", 512 * MiB)]
        ),
        DEFAULT,
        disable_sequence(
            "alice",
            "status: disabled",
            hub=[
                A("disable", "container", "alice", before={"memory": 512 * MiB}, reason=LEFTOVER_SERVICE, drift=True),
                A("disable", "hub-user", "alice", before={"admin": False}, reason="status: disabled"),
            ],
        ),
    ),
    # disabled while the hub is down: the server Docker runs is stopped first (its container keeps its own mount of
    # the home and would go on writing); with Docker down too, the unmount waits: nobody can say it stopped
    Case(
        "disabled-while-the-hub-is-down-stops-the-server-through-docker",
        (member("alice", status="disabled"), BOB),
        with_hub(converged(ALICE, BOB), error="down", containers=[container("alice", 512 * MiB)]),
        DEFAULT,
        disable_sequence(
            "alice",
            "status: disabled",
            hub=[
                A(
                    "disable",
                    "server",
                    "alice",
                    before="running",
                    after="stopped",
                    reason=f"status: disabled; {STOPPED_DIRECTLY}",
                )
            ],
        ),
        blocked=[("hub", "", "down")],
    ),
    Case(
        "disabled-while-the-hub-is-down-and-its-server-stopped-just-unmounts",
        (member("alice", status="disabled"), BOB),
        with_hub(converged(ALICE, BOB), error="down", containers=[container("alice", 1, running=False)]),
        DEFAULT,
        disable_sequence("alice", "status: disabled"),
        blocked=[("hub", "", "down")],
    ),
    Case(
        "disabled-while-hub-and-docker-are-down-the-unmount-waits",
        (member("alice", status="disabled"), BOB),
        with_hub(converged(ALICE, BOB), error="down", containers=None),
        DEFAULT,
        [
            A(
                "disable",
                "account",
                "alice",
                before={"login": "enabled"},
                after={"login": "disabled"},
                reason="status: disabled",
            ),
            A("disable", "mount", "alice", before=home("alice"), reason="status: disabled", waits=SERVER_UNKNOWN),
            A(
                "disable",
                "manifest",
                "alice",
                before=f"{image('alice')} {home('alice')}",
                reason="status: disabled",
                waits=SERVER_UNKNOWN,
            ),
        ],
        blocked=[("hub", "", "down"), ("docker", "", "Docker is unreachable")],
    ),
    Case(
        "swarm-service-kept-while-the-hub-cannot-be-asked",
        (ALICE,),
        with_hub(converged(ALICE), error="hub API is unreachable", containers=[service("alice", 512 * MiB)]),
        DEFAULT,
        [],
        blocked=[("hub", "", "hub API is unreachable; its part is retried")],
    ),
    # --- volumes in use: offline work waits for the server to stop (never fsck a mounted filesystem) -------
    Case(
        "running-server-grow-online",
        (member("alice", disk=2 * GiB),),
        running(converged(ALICE)),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
            )
        ],
    ),
    Case(
        "running-server-grow-without-online-resizing-waits",
        (member("alice", disk=2 * GiB),),
        running(converged(ALICE), online_resize=False),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
                waits=SERVER_RUNS,
            )
        ],
    ),
    Case(
        "running-server-shrink-waits",
        (member("alice", disk=512 * MiB),),
        running(converged(ALICE)),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
                waits=SERVER_RUNS,
            )
        ],
    ),
    Case(
        "running-server-shrink-restart",
        (member("alice", disk=512 * MiB),),
        running(converged(ALICE)),
        Policy(resize_running="restart"),
        [
            A(
                "disable",
                "server",
                "alice",
                before="running",
                after="stopped",
                reason="stopped so that its volume can be resized: it starts again at the next login",
            ),
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
            ),
        ],
    ),
    Case(
        "running-server-restart-although-the-scan-sees-its-container-hold-it",
        (member("alice", disk=512 * MiB),),
        running(converged(ALICE, volume_alice=volume("alice", loop="/dev/loop1", held_elsewhere=True))),
        Policy(resize_running="restart"),
        [
            A(
                "disable",
                "server",
                "alice",
                before="running",
                after="stopped",
                reason="stopped so that its volume can be resized: it starts again at the next login",
            ),
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
            ),
        ],
    ),
    Case(
        "running-server-restart-needs-the-hub",
        (member("alice", disk=512 * MiB),),
        with_hub(converged(ALICE), error="down", containers=[container("alice", 512 * MiB)]),
        Policy(resize_running="restart"),
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
                waits=SERVER_RUNS,
            )
        ],
        blocked=[("hub", "", "down")],
    ),
    Case(
        "stopped-server-resizes-offline",
        (member("alice", disk=512 * MiB),),
        with_hub(converged(ALICE), users=[hub_user("alice")], containers=[container("alice", 1, running=False)]),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
            )
        ],
    ),
    Case(
        "held-in-another-namespace-waits-even-online",
        (member("alice", disk=2 * GiB),),
        converged(ALICE, mount_alice=None, volume_alice=volume("alice", loop="/dev/loop1", held_elsewhere=True)),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
                waits=HELD,
            ),
            A("create", "mount", "alice", after=home("alice"), reason="home volume", drift=True, waits=HELD),
            A(
                "create",
                "ownership",
                "alice",
                after="alice:alice 0700",
                reason="home belongs to its owner",
                drift=True,
                waits=HELD,
            ),
        ],
    ),
    Case(
        "purge-waits-while-held-elsewhere",
        (member("alice", status="purged"), BOB),
        converged(
            ALICE,
            BOB,
            mount_alice=None,
            entry_alice=None,
            account_alice=disabled_account("alice"),
            volume_alice=volume("alice", loop="/dev/loop1", held_elsewhere=True),
        ),
        Policy(allow_destroy=True),
        [
            A(
                "disable",
                "volume",
                "alice",
                before={"loop": "/dev/loop1"},
                after={"loop": None},
                reason="image still attached to a loop device",
                drift=True,
                waits=HELD,
            ),
            A(
                "destroy",
                "volume",
                "alice",
                before={"path": image("alice"), "used": USED},
                reason="status: purged",
                destructive=True,
                waits=HELD,
            ),
            A(
                "destroy",
                "account",
                "alice",
                before={"uid": 1001},
                reason="status: purged",
                destructive=True,
                waits=HELD,
            ),
        ],
    ),
    # a purge whose every step waits needs no --allow-destroy yet: it deletes nothing in this pass
    Case(
        "purge-that-only-waits-is-not-refused",
        (member("alice", status="purged"), BOB),
        converged(
            ALICE,
            BOB,
            mount_alice=None,
            entry_alice=None,
            account_alice=disabled_account("alice"),
            volume_alice=volume("alice", held_elsewhere=True),
        ),
        DEFAULT,
        [
            A(
                "destroy",
                "volume",
                "alice",
                before={"path": image("alice"), "used": USED},
                reason="status: purged",
                destructive=True,
                waits=HELD,
            ),
            A(
                "destroy",
                "account",
                "alice",
                before={"uid": 1001},
                reason="status: purged",
                destructive=True,
                waits=HELD,
            ),
        ],
    ),
    Case(
        "blocked-shrink-keeps-the-server-running-even-with-restart",
        (member("alice", disk=512 * MiB),),
        running(converged(ALICE, volume_alice=volume("alice", used=700 * MiB, loop="/dev/loop1"))),
        Policy(resize_running="restart"),
        [],
        blocked=[("shrink", "alice", "alice uses 700 MiB")],
    ),
    Case(
        "docker-down-blocks-live-limits",
        (ALICE,),
        with_hub(converged(ALICE), users=[], containers=None),
        DEFAULT,
        [],
        blocked=[("docker", "", "Docker is unreachable")],
    ),
]


def test_servers_on_swarm_workers_never_hold_the_unmount() -> None:
    """With the swarm spawner the servers reach the home over NFS, whose export goes first: the hub and Docker
    both down do not make the unmount wait (they do when the servers run on this host, above)."""
    swarm = Desired(C, (member("alice", status="disabled"), BOB), PATHS, LAYOUT, servers_here=False)
    result = plan(swarm, with_hub(converged(ALICE, BOB), error="down", containers=None))
    assert [as_tuple(a) for a in result.actions] == disable_sequence("alice", "status: disabled")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_golden(case: Case) -> None:
    result = plan(desired(*case.members), case.actual, case.policy)

    assert [as_tuple(a) for a in result.actions] == case.actions
    assert [(n.rule, n.target) for n in result.refused] == [(r, t) for r, t, _ in case.refused]
    for note, (_, _, text) in zip(result.refused, case.refused, strict=False):
        assert text in note.message
    assert [(n.rule, n.target) for n in result.blocked] == [(r, t) for r, t, _ in case.blocked]
    for note, (_, _, text) in zip(result.blocked, case.blocked, strict=False):
        assert text in note.message
    assert result.classroom == C


# --- the course folder's own volume (classroom.yaml's shared_disk) ---------------------------------------

SHARED = "_shared"
FOLDER = "/shared"  # PATHS' default course folder: <homes>/../shared
FOLDER_OWNER = (0, 2000, 0o2775)  # root, the teachers' group (gid 2000 in these snapshots), setgid


def shared_volume(size: int = GiB, **kw: Any) -> Volume:
    return volume(SHARED, size=size, loop="/dev/loop9", **kw)


def shared_mount(owner: tuple[int, int, int] = FOLDER_OWNER) -> Mount:
    return Mount(FOLDER, image(SHARED), "ext4", frozenset({"rw", "nodev", "nosuid", "noatime"}), owner)


def with_folder(actual: Actual, *, vol: Volume | None = None, mounted: bool = True) -> Actual:
    vol = vol if vol is not None else shared_volume()
    return dataclasses.replace(
        actual,
        volumes=MappingProxyType({**actual.volumes, SHARED: vol}),
        mounts=MappingProxyType({**actual.mounts, **({FOLDER: shared_mount()} if mounted else {})}),
        manifest=MappingProxyType(
            {**actual.manifest, FOLDER: ManifestEntry(image(SHARED), FOLDER, "ext4", loop.MOUNT_OPTIONS)}
        ),
    )


FOLDER_MOUNT = [
    A("create", "manifest", SHARED, after=f"{image(SHARED)} {FOLDER}", reason="mount at boot"),
    A("create", "mount", SHARED, after=FOLDER, reason="course folder volume"),
    A("create", "ownership", SHARED, after=f"root:{TEACHERS} 2775", reason="course folder belongs to its owner"),
]
FOLDER_WAITS = "the course folder is open in 2 running server(s); applies when they have all stopped"

SHARED_CASES = [
    Case("no-shared-disk-nothing", (ALICE,), converged(ALICE), DEFAULT, []),
    Case(
        "shared-disk-new",
        (ALICE,),
        converged(ALICE),
        DEFAULT,
        [
            A(
                "create",
                "volume",
                SHARED,
                after={"size": 2 * GiB, "path": image(SHARED)},
                reason="course folder: shared_disk 2 GiB",
            ),
            A("create", "filesystem", SHARED, after={"fstype": "ext4", "size": 2 * GiB}, reason="new volume"),
            *FOLDER_MOUNT,
        ],
    ),
    Case("shared-disk-converged", (ALICE,), with_folder(converged(ALICE), vol=shared_volume(2 * GiB)), DEFAULT, []),
    # files written to the folder on the host's disk would vanish under the mount: that is left to a person
    Case(
        "shared-disk-folder-has-files",
        (ALICE, BOB),
        dataclasses.replace(converged(ALICE), course_folder_files=True),
        DEFAULT,
        new_person("bob", "Bob"),
        blocked=[("blocked", SHARED, "already holds files on the host's disk")],
    ),
    Case(
        "shared-disk-raised-online",
        (ALICE,),
        with_folder(converged(ALICE)),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                SHARED,
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
            )
        ],
    ),
    # every running server holds a bind mount of the folder: offline work waits for all of them
    Case(
        "shared-disk-raised-servers-running",
        (ALICE, BOB),
        dataclasses.replace(
            with_hub(
                with_folder(converged(ALICE, BOB)),
                users=[hub_user("alice", running=True), hub_user("bob", running=True)],
                containers=[container("alice", 512 * MiB), container("bob", 512 * MiB)],
            ),
            online_resize=False,
        ),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                SHARED,
                before={"size": GiB, "used": USED},
                after={"size": 2 * GiB},
                reason="disk quota raised to 2 GiB",
                waits=FOLDER_WAITS,
            )
        ],
    ),
    Case(
        "shared-disk-lowered-below-used-blocks-the-folder-only",
        (ALICE, BOB),
        with_folder(converged(ALICE), vol=shared_volume(4 * GiB, used=3 * GiB)),
        DEFAULT,
        new_person("bob", "Bob"),
        blocked=[("shrink", SHARED, "uses 3 GiB")],
    ),
    # removing the key keeps the volume mounted, as it is: it holds the course's files
    Case("shared-disk-removed-keeps-the-volume", (ALICE,), with_folder(converged(ALICE)), DEFAULT, []),
    Case(
        "shared-disk-removed-still-mounted-at-boot",
        (ALICE,),
        with_folder(converged(ALICE), mounted=False),
        DEFAULT,
        [
            A("create", "mount", SHARED, after=FOLDER, reason="course folder volume", drift=True),
            A(
                "create",
                "ownership",
                SHARED,
                after=f"root:{TEACHERS} 2775",
                reason="course folder belongs to its owner",
                drift=True,
            ),
        ],
    ),
    Case(
        "shared-folder-owner-changed-by-hand",
        (ALICE,),
        dataclasses.replace(
            with_folder(converged(ALICE)),
            mounts=MappingProxyType({**converged(ALICE).mounts, FOLDER: shared_mount((0, 0, 0o755))}),
        ),
        DEFAULT,
        [
            A(
                "update",
                "ownership",
                SHARED,
                before="0:0 0755",
                after=f"root:{TEACHERS} 2775",
                reason="course folder ownership or mode changed by hand",
                drift=True,
            )
        ],
    ),
    Case(
        "shared-disk-in-a-new-classroom",
        (ALICE,),
        snapshot(groups=()),
        DEFAULT,
        [
            A("create", "group", STUDENTS, reason="classroom student group"),
            A("create", "group", TEACHERS, reason="classroom teacher group"),
            *new_person("alice", "Alice"),
            A(
                "create",
                "volume",
                SHARED,
                after={"size": 2 * GiB, "path": image(SHARED)},
                reason="course folder: shared_disk 2 GiB",
            ),
            A("create", "filesystem", SHARED, after={"fstype": "ext4", "size": 2 * GiB}, reason="new volume"),
            *FOLDER_MOUNT,
        ],
    ),
]
SHARED_DISK = {  # the classroom.yaml value of each case (None: no shared_disk key)
    "no-shared-disk-nothing": None,
    "shared-disk-removed-keeps-the-volume": None,
    "shared-disk-removed-still-mounted-at-boot": None,
    "shared-folder-owner-changed-by-hand": None,
    "shared-disk-lowered-below-used-blocks-the-folder-only": 2 * GiB,
}


@pytest.mark.parametrize("case", SHARED_CASES, ids=[c.id for c in SHARED_CASES])
def test_course_folder_golden(case: Case) -> None:
    wanted = dataclasses.replace(desired(*case.members), shared_disk=SHARED_DISK.get(case.id, 2 * GiB))
    result = plan(wanted, case.actual, case.policy)

    assert [as_tuple(a) for a in result.actions] == case.actions
    assert [(n.rule, n.target) for n in result.refused] == [(r, t) for r, t, _ in case.refused]
    assert [(n.rule, n.target) for n in result.blocked] == [(r, t) for r, t, _ in case.blocked]
    for note, (_, _, text) in zip(result.blocked, case.blocked, strict=False):
        assert text in note.message


def test_the_course_folder_volume_is_never_taken_for_a_removed_person() -> None:
    actual = with_folder(converged(ALICE))
    assert plan(desired(ALICE), actual).actions == ()
    assert "_shared" not in {row.username for row in report_rows(desired(ALICE), actual, {})}


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# --- targeted checks beyond the tables -------------------------------------------------------------------


def test_new_classroom_from_file_order_via_resolve() -> None:
    """resolve() lists admins first, then students, each in file order; plan() keeps that order."""
    room = Classroom.model_validate(
        {
            "version": 1,
            "name": C,
            "quotas": {"default": {"memory": "512Mi", "cpu": 1, "disk": "1Gi"}},
            "admins": [{"username": "tina", "name": "Tina Teacher"}],
            "students": [{"username": "zoe", "name": "Zoe Z"}, {"username": "adam", "name": "Adam A"}],
        }
    )
    result = plan(resolve(room, PATHS, LAYOUT), snapshot(groups=()))
    kinds = [(a.kind, a.target) for a in result.actions]
    assert kinds[:2] == [("group", STUDENTS), ("group", TEACHERS)]
    per_person = ["account", "password", "volume", "filesystem", "manifest", "mount", "ownership"]
    assert kinds[2:] == [(k, u) for u in ("tina", "zoe", "adam") for k in per_person]
    assert all(a.op == "create" and not a.drift and not a.destructive for a in result.actions)


def test_removed_people_come_after_listed_ones_sorted_by_name() -> None:
    actual = converged(ALICE, BOB, CAROL, DAVE, ERIN, TINA)
    result = plan(desired(TINA, ALICE, BOB), actual, Policy(allow_mass_disable=True))
    order = []
    for a in result.actions:
        if a.target not in order:
            order.append(a.target)
    assert order == ["carol", "dave", "erin"]
    assert {a.reason for a in result.actions} == {REMOVED}


def test_leftover_found_by_volume_alone_is_reported() -> None:
    """An image in the volumes dir whose account is gone: its loop device is still released."""
    actual = snapshot(
        accounts=[account("alice")],
        volumes=[volume("alice"), volume("carol", loop="/dev/loop9")],
        mounts=[mount("alice")],
        manifest=[entry("alice")],
    )
    result = plan(desired(ALICE), actual)
    assert [as_tuple(a) for a in result.actions] == [
        A(
            "disable",
            "volume",
            "carol",
            before={"loop": "/dev/loop9"},
            after={"loop": None},
            reason="image still attached to a loop device",
            drift=True,
        )
    ]


def test_leftover_found_by_mount_and_manifest_under_homes_only() -> None:
    actual = converged(ALICE)
    actual = dataclasses.replace(
        actual,
        mounts=MappingProxyType(
            {
                **actual.mounts,
                "/h/ghost": Mount("/h/ghost", image("ghost"), "ext4", frozenset({"rw"}), None),
                "/h/x/deep": Mount("/h/x/deep", "/dev/sdc", "ext4", frozenset({"rw"}), None),
                "/hh/other": Mount("/hh/other", "/dev/sdd", "ext4", frozenset({"rw"}), None),
            }
        ),
        manifest=MappingProxyType(
            {**actual.manifest, "/h/ghost": ManifestEntry(image("ghost"), "/h/ghost", "ext4", "loop")}
        ),
    )
    result = plan(desired(ALICE), actual)
    assert [as_tuple(a) for a in result.actions] == [
        A("disable", "mount", "ghost", before="/h/ghost", reason=REMOVED),
        A("disable", "manifest", "ghost", before=f"{image('ghost')} /h/ghost", reason=REMOVED),
    ]


def test_leftover_volume_never_disables_a_foreign_account() -> None:
    actual = converged(ALICE)
    actual = dataclasses.replace(
        actual,
        accounts=MappingProxyType({**actual.accounts, "carol": account("carol", classroom=None)}),
        volumes=MappingProxyType({**actual.volumes, "carol": volume("carol")}),
    )
    result = plan(desired(ALICE), actual)
    assert not [a for a in result.actions if a.target == "carol" and a.kind == "account"]


def test_disabling_locks_the_login_first_then_reverses_creation() -> None:
    result = plan(desired(member("alice", status="disabled"), BOB), converged(ALICE, BOB))
    kinds = [a.kind for a in result.actions if a.target == "alice"]
    assert kinds == ["account", "mount", "manifest"]
    creation = [a.kind for a in plan(desired(ALICE), snapshot()).actions if a.target == "alice"]
    assert creation.index("account") < creation.index("manifest") < creation.index("mount")


def test_blocked_person_keeps_no_later_steps_but_others_do() -> None:
    actual = converged(ALICE, volume_alice=volume("alice", fs=False), mount_alice=None, entry_alice=None)
    result = plan(desired(ALICE, BOB), actual)
    assert [n.target for n in result.blocked] == ["alice"]
    assert not [a for a in result.actions if a.target == "alice"]
    assert {a.kind for a in result.actions if a.target == "bob"} == {
        "account",
        "password",
        "volume",
        "filesystem",
        "manifest",
        "mount",
        "ownership",
    }
    assert not result.empty and not result.refused


def test_plan_is_deterministic() -> None:
    members = (
        TINA,
        member("alice", disk=2 * GiB),
        member("bob", status="disabled"),
        member("carol", name="C"),
        member("dave", status="purged"),
    )
    actual = converged(ALICE, BOB, CAROL, DAVE, ERIN, account_alice=account("alice", shell="/bin/sh"))
    first = plan(desired(*members), actual, Policy(allow_destroy=True, allow_mass_disable=True))
    for _ in range(5):
        again = plan(desired(*members), actual, Policy(allow_destroy=True, allow_mass_disable=True))
        assert again == first
        assert [a.to_json() for a in again.actions] == [a.to_json() for a in first.actions]
    assert len(first.actions) > 5


def test_plan_does_not_mutate_inputs() -> None:
    actual = converged(ALICE, BOB)
    before = dataclasses.astuple(actual.accounts["alice"])
    want = desired(member("alice", name="New", disk=2 * GiB), member("bob", status="purged"))
    plan(want, actual, Policy(allow_destroy=True))
    assert dataclasses.astuple(actual.accounts["alice"]) == before
    assert sorted(actual.accounts) == ["alice", "bob"]


def test_actions_and_plan_are_frozen() -> None:
    result = plan(desired(ALICE), snapshot())
    action = result.actions[2]
    assert action.kind is Kind.VOLUME and action.after.size == GiB  # a typed payload: an int field
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.op = Op.DESTROY  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.after = VolumeFields(size=1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.after.size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.actions = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.summary["create"] = 0  # type: ignore[index]
    assert isinstance(result.actions, tuple)


def test_action_payloads_are_typed_and_checked() -> None:
    """Construction checks op, kind, their pair and the payload with exceptions: the checks hold under -O."""
    action = Action(
        "update", "account", "alice", before=AccountFields(groups=["a", "b"]), after=AccountFields(groups=("c",))
    )
    assert action.op is Op.UPDATE and action.kind is Kind.ACCOUNT
    assert action.before.groups == ("a", "b")
    assert thaw(action.before) == {"groups": ["a", "b"]}
    assert action.to_json()["after"] == {"groups": ["c"]}
    roster = Action(Op.UPDATE, Kind.ROSTER, "alice", before={"email": ["a@x.org"]}, after={"email": None})
    assert isinstance(roster.before, MappingProxyType) and roster.before["email"] == ("a@x.org",)
    assert Action(Op.DESTROY, Kind.VOLUME, "alice").destructive  # destroy always deletes data
    for bad in (
        lambda: Action("explode", "account", "alice"),
        lambda: Action("create", "kernel", "alice"),
        lambda: Action(Op.CREATE, Kind.SERVER, "alice"),  # servers are only stopped
        lambda: Action(Op.UPDATE, Kind.HUB_USER, "alice"),  # demotion forgets the user: a disable
        lambda: Action(Op.UPDATE, Kind.VOLUME, "alice", after={"size": 1}),  # a dict, not VolumeFields
        lambda: Action(Op.UPDATE, Kind.VOLUME, "alice", after=VolumeFields(size="1 GiB")),
        lambda: Action(Op.UPDATE, Kind.VOLUME, "alice", after=VolumeFields(size=True)),
        lambda: Action(Op.CREATE, Kind.MOUNT, "alice", after=VolumeFields(size=1)),
        lambda: Action(Op.DISABLE, Kind.VOLUME, "alice", destructive=True),
        lambda: Action(Op.CREATE, Kind.GROUP, ""),
    ):
        with pytest.raises(InvalidAction):
            bad()


def test_action_checks_survive_python_O() -> None:
    import subprocess
    import sys

    probe = (
        "from reconciler.core.actions import Action, InvalidAction\n"
        "try:\n    Action('explode', 'account', 'alice')\nexcept InvalidAction:\n    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "refused"


@pytest.mark.parametrize(
    "members,actual,policy,summary",
    [
        ((TINA, ALICE), snapshot(groups=()), DEFAULT, {"create": 16, "change": 0, "disable": 0, "destroy": 0}),
        ((ALICE,), converged(ALICE), DEFAULT, {"create": 0, "change": 0, "disable": 0, "destroy": 0}),
        (
            (member("alice", name="X", disk=2 * GiB), BOB),
            converged(ALICE, BOB, CAROL, mount_bob=None),
            DEFAULT,
            {"create": 2, "change": 2, "disable": 3, "destroy": 0},
        ),
        (
            (member("alice", status="purged"), BOB),
            converged(ALICE, BOB),
            Policy(allow_destroy=True),
            {"create": 0, "change": 0, "disable": 2, "destroy": 2},
        ),
    ],
)
def test_summary_counts(members, actual, policy, summary) -> None:
    result = plan(desired(*members), actual, policy)
    assert dict(result.summary) == summary
    assert sum(result.summary.values()) == len(result.actions)


def test_plan_empty_property() -> None:
    assert plan(desired(ALICE), converged(ALICE)).empty
    assert not plan(desired(ALICE), converged(ALICE, entry_alice=None)).empty
    refused_only = plan(desired(), converged(ALICE, BOB))
    assert refused_only.refused and not refused_only.empty
    blocked = plan(desired(ALICE), converged(ALICE, mount_alice=mount("alice", source="/dev/sdz")))
    assert blocked.actions == () and not blocked.empty


def test_overcommit_never_holds_up_a_plan_that_promises_less() -> None:
    """Already over the limit (an old site, a smaller disk): lowering a quota or removing someone still goes."""
    full = dataclasses.replace(converged(ALICE, BOB), capacity=GiB, capacity_of="the disk")
    lowered = plan(desired(member("alice", disk=512 * MiB), BOB), full)
    assert not lowered.refused and [a.kind for a in lowered.actions] == ["volume"]
    grown = plan(desired(member("alice", disk=2 * GiB), BOB), full)
    assert [n.rule for n in grown.refused] == ["overcommit"] and "x the disk (1 GiB)" in grown.refused[0].message


def test_plan_summary_is_recomputed_from_actions() -> None:
    p = Plan(
        "x",
        actions=(
            Action("create", "group", "g"),
            Action("update", "account", "u"),
            Action("destroy", "volume", "u", destructive=True),
        ),
        summary={"bogus": 1},
    )
    assert p.actions[0].op is Op.CREATE
    assert dict(p.summary) == {"create": 1, "change": 1, "disable": 0, "destroy": 1}
    assert Note("r", "t", "m").to_json() == {"rule": "r", "target": "t", "message": "m"}


def test_account_deleted_by_hand_while_mounted_converges_in_one_pass() -> None:
    actual = converged(ALICE)
    actual = dataclasses.replace(actual, accounts=MappingProxyType({}))
    result = plan(desired(ALICE), actual)
    kinds = [(str(a.op), str(a.kind)) for a in result.actions if a.target == "alice"]
    assert ("create", "account") in kinds and ("update", "ownership") in kinds
    assert kinds.index(("create", "account")) < kinds.index(("update", "ownership"))


# --- the students' firewall (site.yaml hub section) ---------------------------------------------------


def firewall_case(lines, error: str = ""):
    from reconciler.config.site import HubSettings
    from reconciler.core.firewall import chains

    wanted = dataclasses.replace(desired(ALICE), firewall=chains(HubSettings(token_file="t", network="net")))
    actual = dataclasses.replace(converged(ALICE), firewall=lines, firewall_error=error)
    return wanted, actual, plan(wanted, actual)


def in_force_lines():
    from reconciler.config.site import HubSettings
    from reconciler.core.firewall import chains

    lines = []
    for chain in chains(HubSettings(token_file="t", network="net")).values():
        lines += [f"-N {chain.name}", *chain.rules, chain.jump]
    return lines


def test_firewall_in_force_is_left_alone_and_goes_first_when_missing():
    assert firewall_case(tuple(in_force_lines()))[2].actions == ()
    _, _, made = firewall_case(())
    assert [(a.op, a.kind, a.target) for a in made.actions] == [
        (Op.CREATE, Kind.FIREWALL, "input"),
        (Op.CREATE, Kind.FIREWALL, "egress"),
    ]
    assert made.actions[1].after.startswith("12 rules in CLSRM-OUT-")  # replies + the 11 ranges refused


def test_firewall_rule_or_jump_removed_by_hand_is_repaired():
    lines = in_force_lines()
    without_rule = tuple(line for line in lines if "10.0.0.0/8" not in line)
    (action,) = firewall_case(without_rule)[2].actions
    assert (action.op, action.target, action.before) == (Op.UPDATE, "egress", "11 rules")
    without_jump = tuple(line for line in lines if not line.startswith("-A DOCKER-USER"))
    (action,) = firewall_case(without_jump)[2].actions
    assert "jump from DOCKER-USER" in action.reason


def test_firewall_that_cannot_be_read_blocks_and_one_not_asked_is_skipped():
    _, _, unreadable = firewall_case(None, error="`iptables -S` failed")
    assert [(n.rule, n.target) for n in unreadable.blocked] == [("firewall", "")]
    assert firewall_case(None)[2].actions == () and firewall_case(None)[2].blocked == ()


# --- homes over NFS for the swarm's workers (hub.swarm.homes: nfs) ----------------------------------------

WORKERS = ("10.0.5.11", "10.0.5.12")
EXPORTS_FILE = "/e/classroom-py101.exports"
NFS = ExportPolicy(WORKERS, EXPORTS_FILE)
IN_FORCE = frozenset(
    {
        "rw",
        "sync",
        "wdelay",
        "root_squash",
        "no_all_squash",
        "sec=sys",
        "no_subtree_check",
        "secure",
        "mountpoint",
        "anonuid=65534",
        "anongid=65534",
    }
)  # etab spells every option out


def exported(
    actual: Actual,
    *people: str,
    clients: tuple[str, ...] = WORKERS,
    live: bool = True,
    file: bool = True,
    options: frozenset[str] = IN_FORCE,
    file_clients: tuple[str, ...] | None = None,
    folder: bool = False,
) -> Actual:
    """The snapshot with these homes exported (in the kernel's table and/or the exports file)."""
    table = {home(p): {c: options for c in clients} for p in people} if live else {}
    lines = (
        {
            home(p): NFS.export(home(p)).line
            if file_clients is None
            else ExportPolicy(file_clients, EXPORTS_FILE).export(home(p)).line
            for p in people
        }
        if file
        else {}
    )
    if folder:
        table[FOLDER] = {c: options - {"mountpoint"} for c in clients}
        lines[FOLDER] = NFS.export(FOLDER, mountpoint=False).line
    return dataclasses.replace(
        actual, exports=MappingProxyType(table), export_lines=MappingProxyType(lines), course_folder_exists=folder
    )


def nfs_plan(members: tuple[Member, ...], actual: Actual, policy: Policy = DEFAULT, exports=NFS) -> Plan:
    return plan(dataclasses.replace(desired(*members), exports=exports), actual, policy)


def EXPORT(username: str, reason: str = "the swarm's workers mount it over NFS") -> tuple:
    return A("create", "export", username, after=",".join(WORKERS), reason=reason)


def WITHDRAW(username: str, reason: str, before: str = ",".join(WORKERS)) -> tuple:
    return A("disable", "export", username, before=before, reason=reason)


NO_FOLDER = {"course_folder_exists": False}
NFS_CASES = [
    Case(
        "nfs-a-new-person-is-exported-after-the-mount",
        (ALICE,),
        dataclasses.replace(snapshot(), exports=MappingProxyType({}), export_lines=MappingProxyType({}), **NO_FOLDER),
        DEFAULT,
        [*new_person("alice", "Alice"), EXPORT("alice")],
    ),
    Case("nfs-converged", (ALICE, BOB), exported(converged(ALICE, BOB), "alice", "bob"), DEFAULT, []),
    Case(
        "nfs-withdrawn-from-the-kernel-by-hand",
        (ALICE,),
        exported(converged(ALICE), "alice", live=False),
        DEFAULT,
        [
            A(
                "update",
                "export",
                "alice",
                before="-",
                after=",".join(WORKERS),
                reason="export changed by hand (options, or withdrawn from the kernel or the exports file)",
                drift=True,
            )
        ],
    ),
    Case(
        "nfs-options-changed-by-hand",
        (ALICE,),
        exported(converged(ALICE), "alice", options=IN_FORCE - {"root_squash"} | {"no_root_squash"}),
        DEFAULT,
        [
            A(
                "update",
                "export",
                "alice",
                before=",".join(WORKERS),
                after=",".join(WORKERS),
                reason="export changed by hand (options, or withdrawn from the kernel or the exports file)",
                drift=True,
            )
        ],
    ),
    Case(
        "nfs-a-worker-added-in-site-yaml",
        (ALICE,),
        exported(converged(ALICE), "alice", clients=WORKERS[:1], file_clients=WORKERS[:1]),
        DEFAULT,
        [
            A(
                "update",
                "export",
                "alice",
                before=WORKERS[0],
                after=",".join(WORKERS),
                reason="the workers in site.yaml changed",
            )
        ],
    ),
    Case(
        "nfs-not-exported-until-mounted",
        (ALICE,),
        exported(
            converged(ALICE, mount_alice=None, volume_alice=volume("alice", held_elsewhere=True)),
            live=False,
            file=False,
        ),
        DEFAULT,
        [
            A("create", "mount", "alice", after=home("alice"), reason="home volume", drift=True, waits=HELD),
            A(
                "create",
                "ownership",
                "alice",
                after="alice:alice 0700",
                reason="home belongs to its owner",
                drift=True,
                waits=HELD,
            ),
        ],
    ),
    # the workers' way in goes before the home is unmounted (the kernel's export would hold the filesystem)
    Case(
        "nfs-disabled-person-withdrawn-before-the-unmount",
        (member("alice", status="disabled"), BOB),
        exported(converged(ALICE, BOB), "alice", "bob"),
        DEFAULT,
        [
            A(
                "disable",
                "account",
                "alice",
                before={"login": "enabled"},
                after={"login": "disabled"},
                reason="status: disabled",
            ),
            WITHDRAW("alice", "status: disabled"),
            A("disable", "mount", "alice", before=home("alice"), reason="status: disabled"),
            A("disable", "manifest", "alice", before=f"{image('alice')} {home('alice')}", reason="status: disabled"),
        ],
    ),
    Case(
        "nfs-offline-resize-withdraws-and-exports-again",
        (member("alice", disk=512 * MiB),),
        exported(converged(ALICE), "alice"),
        DEFAULT,
        [
            WITHDRAW("alice", "the volume is resized offline: exported again right after"),
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
            ),
            EXPORT("alice"),
        ],
    ),
    Case(
        "nfs-resize-waiting-for-the-server-keeps-the-export",
        (member("alice", disk=512 * MiB),),
        exported(running(converged(ALICE)), "alice"),
        DEFAULT,
        [
            A(
                "update",
                "volume",
                "alice",
                before={"size": GiB, "used": USED},
                after={"size": 512 * MiB},
                reason="disk quota lowered to 512 MiB",
                waits=SERVER_RUNS,
            )
        ],
    ),
    Case(
        "nfs-an-export-nobody-owns-is-withdrawn",
        (ALICE,),
        exported(converged(ALICE), "alice", "zed"),
        DEFAULT,
        [WITHDRAW("zed", REMOVED)],
    ),
    Case(
        "nfs-the-course-folder-without-a-volume-is-exported-as-it-is",
        (ALICE,),
        dataclasses.replace(exported(converged(ALICE), "alice"), course_folder_exists=True),
        DEFAULT,
        [EXPORT(SHARED)],
    ),
    Case("nfs-the-course-folder-exported", (ALICE,), exported(converged(ALICE), "alice", folder=True), DEFAULT, []),
]


@pytest.mark.parametrize("case", NFS_CASES, ids=[c.id for c in NFS_CASES])
def test_nfs_exports_golden(case: Case) -> None:
    result = nfs_plan(case.members, case.actual, case.policy)
    assert [as_tuple(a) for a in result.actions] == case.actions
    assert [(n.rule, n.target) for n in result.blocked] == [(r, t) for r, t, _ in case.blocked]


def test_nfs_turned_off_withdraws_what_it_exported() -> None:
    result = nfs_plan((ALICE,), exported(converged(ALICE), "alice"), exports=None)
    assert [as_tuple(a) for a in result.actions] == [
        WITHDRAW("alice", "hub.swarm.homes is not nfs: the workers no longer mount homes from this server")
    ]


def test_an_export_line_is_what_the_kernel_is_asked_for() -> None:
    assert NFS.export("/h/alice").line == (
        "/h/alice 10.0.5.11(rw,sync,root_squash,sec=sys,no_subtree_check,mountpoint) "
        "10.0.5.12(rw,sync,root_squash,sec=sys,no_subtree_check,mountpoint)"
    )
    assert NFS.export(FOLDER, mountpoint=False).options == "rw,sync,root_squash,sec=sys,no_subtree_check"
    assert NFS.export("/h/alice").in_force({c: IN_FORCE for c in WORKERS})
    assert not NFS.export("/h/alice").in_force({WORKERS[0]: IN_FORCE})
    assert not NFS.export("/h/alice").in_force({c: IN_FORCE - {"sync"} | {"async"} for c in WORKERS})
    # requests from unprivileged ports would let a student's server claim anyone's UID (sec=sys)
    assert not NFS.export("/h/alice").in_force({c: IN_FORCE - {"secure"} | {"insecure"} for c in WORKERS})


def test_status_says_which_mounted_homes_the_workers_can_mount() -> None:
    from reconciler.core.report import render_exports

    wanted = dataclasses.replace(desired(ALICE, BOB), exports=NFS)
    assert render_exports(wanted, exported(converged(ALICE, BOB), "alice", "bob")) == [
        "homes over NFS: 2 of 2 mounted volumes exported to 10.0.5.11, 10.0.5.12"
    ]
    assert render_exports(wanted, exported(converged(ALICE, BOB), "alice")) == [
        "homes over NFS: 1 of 2 mounted volumes exported to 10.0.5.11, 10.0.5.12; not exported: /h/bob "
        "(the next pass exports them)"
    ]
    assert render_exports(desired(ALICE), converged(ALICE)) == []


def test_nfs_an_online_grow_keeps_the_export_and_a_blocked_shrink_leaves_it_alone() -> None:
    # growing a mounted volume online: the running server on its worker keeps its home
    grow = nfs_plan((member("alice", disk=2 * GiB),), exported(running(converged(ALICE)), "alice"))
    assert [as_tuple(a) for a in grow.actions] == [
        A(
            "update",
            "volume",
            "alice",
            before={"size": GiB, "used": USED},
            after={"size": 2 * GiB},
            reason="disk quota raised to 2 GiB",
        )
    ]
    # a shrink the guard refuses (she uses more than the new quota) neither withdraws nor re-exports: no flapping
    full = converged(ALICE, volume_alice=volume("alice", used=700 * MiB, loop="/dev/loop1"))
    shrink = nfs_plan((member("alice", disk=512 * MiB),), exported(full, "alice"))
    assert shrink.actions == () and [(n.rule, n.target) for n in shrink.blocked] == [("shrink", "alice")]
