"""plan(desired, actual) -> Plan: the pure core.  No I/O, no clock, no randomness.

A Plan is an ordered tuple of frozen Actions.  For one person, creation runs
account -> password -> volume -> filesystem -> resize -> manifest -> mount ->
ownership (after the classroom groups), and disabling runs the reverse.
Actions that repair changes made by hand are flagged ``drift`` so they can be
shown apart, but they are applied in the same order.  Guards that must stop
the whole pass become Refusals; a problem that only blocks one person (an
image that is not ext4) becomes a Blocked note and the others proceed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable

from . import layout
from .observe import Account, Actual, ManifestEntry, Volume
from .sizes import format_size, round_up
from .spec import ROLES, Desired, Member, group_name

OPS = ("create", "update", "disable", "destroy")
KINDS = ("group", "account", "password", "volume", "filesystem", "manifest", "mount", "ownership",
         "container", "server", "hub-user", "roster")  # roster: an edit of classroom.yaml (teacher API)


def freeze(value: Any) -> Any:
    """Make before/after values immutable (dicts become read-only mappings, lists tuples)."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-ready form of a frozen value."""
    if isinstance(value, MappingProxyType):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


@dataclass(frozen=True)
class Action:
    op: str  # create | update | disable | destroy
    kind: str  # one of KINDS
    target: str  # a username, or a group name for kind "group"
    before: Any = None
    after: Any = None
    reason: str = ""
    destructive: bool = False
    drift: bool = False  # repairs a change made outside reconcile

    def __post_init__(self) -> None:
        assert self.op in OPS and self.kind in KINDS, (self.op, self.kind)
        object.__setattr__(self, "before", freeze(self.before))
        object.__setattr__(self, "after", freeze(self.after))

    def to_json(self) -> dict:
        return {
            "op": self.op,
            "kind": self.kind,
            "target": self.target,
            "before": thaw(self.before),
            "after": thaw(self.after),
            "reason": self.reason,
            "destructive": self.destructive,
            "drift": self.drift,
        }


@dataclass(frozen=True)
class Note:
    """A refused guard (stops the whole pass) or a blocked person (stops only them)."""

    rule: str
    target: str
    message: str

    def to_json(self) -> dict:
        return {"rule": self.rule, "target": self.target, "message": self.message}


@dataclass(frozen=True)
class Policy:
    """The operator's flags for this pass."""

    allow_destroy: bool = False
    allow_mass_disable: bool = False
    max_disable_fraction: float = 0.2
    max_overcommit: float = 1.0  # thin pools: volumes may add up to this times the pool


@dataclass(frozen=True)
class Plan:
    classroom: str
    actions: tuple[Action, ...] = ()
    refused: tuple[Note, ...] = ()
    blocked: tuple[Note, ...] = ()
    summary: Any = field(default=None)

    def __post_init__(self) -> None:
        counts = {"create": 0, "change": 0, "disable": 0, "destroy": 0}
        for action in self.actions:
            counts["change" if action.op == "update" else action.op] += 1
        object.__setattr__(self, "summary", MappingProxyType(counts))

    @property
    def empty(self) -> bool:
        return not self.actions and not self.blocked and not self.refused

    def to_json(self) -> dict:
        return {
            "format_version": 1,
            "classroom": self.classroom,
            "actions": [a.to_json() for a in self.actions if not a.drift],
            "drift": [a.to_json() for a in self.actions if a.drift],
            "refused": [n.to_json() for n in self.refused],
            "blocked": [n.to_json() for n in self.blocked],
            "summary": dict(self.summary),
        }


# --- helpers on observed state ------------------------------------------------------------------


def is_disabled(account: Account, today: int) -> bool:
    """Locked and expired: PAM refuses the login either way, both make it unambiguous."""
    return account.locked and account.expire_day is not None and account.expire_day <= today


def is_enabled(account: Account, today: int) -> bool:
    return not account.locked and (account.expire_day is None or account.expire_day > today)


def _owner_text(owner: tuple[int, int, int] | None) -> str | None:
    return None if owner is None else f"{owner[0]}:{owner[1]} {owner[2]:04o}"


# --- the planner -----------------------------------------------------------------------------------


def plan(desired: Desired, actual: Actual, policy: Policy = Policy()) -> Plan:
    """Diff desired against actual; return the ordered actions that converge the host."""
    actions: list[Action] = []
    refused: list[Note] = []
    blocked: list[Note] = []
    active = [m for m in desired.members if m.status == "active"]
    if active:
        for role in ROLES:
            name = group_name(desired.classroom, role)
            if name not in actual.groups:
                actions.append(Action("create", "group", name, reason=f"classroom {role} group"))

    if actual.hub is not None and actual.hub.users is None:
        blocked.append(Note("hub", "", f"JupyterHub: {actual.hub.error}; its part is retried next pass"))
    if actual.hub is not None and actual.containers is None:
        blocked.append(Note("docker", "", "Docker is unreachable: running servers' limits are not updated"))

    listed = {m.username for m in desired.members}
    for member in desired.members:
        account = actual.accounts.get(member.username)
        if account is not None and account.classroom != desired.classroom:
            refused.append(
                Note("foreign-account", member.username,
                     f"{member.username!r} already exists on this host (uid {account.uid}) but was not created by "
                     f"reconcile for {desired.classroom!r}; pick another username or remove that account by hand"))
            continue
        if account is None and member.username in actual.groups and member.status == "active":
            refused.append(
                Note("foreign-account", member.username,
                     f"a group named {member.username!r} already exists on this host; useradd could not create "
                     "the person's own group: pick another username"))
            continue
        if member.status == "active":
            steps, problem = _converge_active(member, account, desired, actual)
            actions += steps + _hub_active(member, actual)
            if problem:
                blocked.append(Note("blocked", member.username, problem))
        elif member.status == "disabled":
            actions += _converge_disabled(member.username, account, desired, actual, "status: disabled")
        else:
            steps = _converge_purged(member.username, account, desired, actual)
            if steps and not policy.allow_destroy:
                refused.append(
                    Note("destroy", member.username,
                         f"purging {member.username!r} deletes their account and every file they wrote; "
                         "re-run with --allow-destroy to do it"))
            actions += steps

    for username in sorted(_leftovers(desired, actual) - listed):
        account = actual.accounts.get(username)
        ours = account if account is not None and account.classroom == desired.classroom else None
        actions += _converge_disabled(username, ours, desired, actual,
                                      "not in classroom.yaml (removed people are disabled, never deleted)")

    refused += _guard_mass_disable(actions, desired, actual, policy)
    refused += _guard_shrink(actions, actual)
    refused += _guard_overcommit(actions, desired, actual, policy)
    return Plan(desired.classroom, tuple(actions), tuple(refused), tuple(blocked))


def _leftovers(desired: Desired, actual: Actual) -> set[str]:
    """People we manage on this host in any form: our accounts, images, manifest entries, mounts."""
    names = {a.username for a in actual.accounts.values() if a.classroom == desired.classroom}
    names |= set(actual.volumes)
    names |= set(_hub_users(actual))
    homes = str(desired.paths.homes).rstrip("/") + "/"
    for target in (*actual.manifest, *actual.mounts):
        if target.startswith(homes) and "/" not in target[len(homes):]:
            names.add(target[len(homes):])
    return names


def _converge_active(member: Member, account: Account | None, desired: Desired, actual: Actual) -> tuple[list[Action], str | None]:
    user = member.username
    paths = desired.paths
    group = group_name(desired.classroom, member.role)
    home = str(paths.home(user))
    image = str(paths.source(user))
    new = account is None
    reenabling = account is not None and is_disabled(account, actual.today)
    steps: list[Action] = []

    # account
    if account is None:
        steps.append(Action("create", "account", user,
                            after={"name": member.name, "group": group, "home": home, "shell": layout.SHELL},
                            reason=f"new {member.role}"))
        steps.append(Action("create", "password", user, after="generated, to the outbox", reason="new account"))
    else:
        if reenabling:
            steps.append(Action("update", "account", user, before={"login": "disabled"}, after={"login": "enabled"},
                                reason="status: active"))
        elif not is_enabled(account, actual.today):
            steps.append(Action("update", "account", user,
                                before={"login": "half-disabled (locked or expired)"}, after={"login": "enabled"},
                                reason="account was locked or expired by hand", drift=True))
        if account.name != member.name:
            steps.append(Action("update", "account", user, before={"name": account.name}, after={"name": member.name},
                                reason="name changed in classroom.yaml"))
        if account.groups != {group}:
            role_change = bool(account.groups & set(desired.groups.values()) - {group})
            steps.append(Action("update", "account", user,
                                before={"groups": sorted(account.groups)}, after={"groups": [group]},
                                reason=f"role is now {member.role}" if role_change else "group membership changed by hand",
                                drift=not role_change))
        hand_edits = {key: (old, want) for key, old, want in
                      (("home", account.home, home), ("shell", account.shell, layout.SHELL)) if old != want}
        if hand_edits:
            steps.append(Action("update", "account", user,
                                before={k: v[0] for k, v in hand_edits.items()},
                                after={k: v[1] for k, v in hand_edits.items()},
                                reason="account changed by hand", drift=True))
        if not account.has_password:
            steps.append(Action("create", "password", user, after="generated, to the outbox",
                                reason="account has no password (creation was interrupted)", drift=True))

    # volume
    volume = actual.volumes.get(user)
    size = round_up(member.disk, actual.volume_step)
    if volume is None:
        steps.append(Action("create", "volume", user, after={"size": size, "path": image},
                            reason=f"disk quota {format_size(member.disk)}"))
        steps.append(Action("create", "filesystem", user, after={"fstype": "ext4", "size": size}, reason="new volume"))
    elif not volume.complete:
        steps.append(Action("create", "filesystem", user, before="unfinished image",
                            after={"fstype": "ext4", "size": size},
                            reason="volume creation was interrupted; the image never held data", drift=not new))
    elif volume.fs is None and (volume.attached or paths.backend == "loop"):
        return steps, (f"{volume.path} exists but holds no ext4 filesystem; it is never formatted automatically: "
                       "inspect it by hand")
    elif volume.size != size or (volume.fs is not None and volume.fs.size != size):
        steps.append(_resize(member, volume, size))  # an inactive LV: its size is known, its filesystem not yet

    # manifest, mount, ownership
    expected_by_file = new or reenabling or volume is None or not volume.complete
    entry = actual.manifest.get(home)
    want = ManifestEntry(image, home, "ext4", paths.mount_options)
    if entry is None:
        steps.append(Action("create", "manifest", user, after=f"{image} {home}",
                            reason="mount at boot", drift=not expected_by_file))
    elif entry != want:
        steps.append(Action("update", "manifest", user, before=f"{entry.source} {entry.options}",
                            after=f"{want.source} {want.options}", reason="manifest entry changed by hand", drift=True))

    mount = actual.mounts.get(home)
    owner_after = f"{user}:{user} {layout.HOME_MODE:04o}"
    if mount is None:
        steps.append(Action("create", "mount", user, after=home, reason="home volume",
                            drift=not expected_by_file))
        steps.append(Action("create", "ownership", user, after=owner_after, reason="home belongs to its owner",
                            drift=not expected_by_file))
    elif mount.source != image:
        return steps, f"{home} has {mount.source} mounted on it, not {image}: unmount it by hand"
    else:
        if not layout.REQUIRED_MOUNT_FLAGS <= mount.options:
            steps.append(Action("update", "mount", user, before=",".join(sorted(mount.options)),
                                after="nodev,nosuid", reason="mount options changed by hand", drift=True))
        if account is None:
            steps.append(Action("update", "ownership", user, before=_owner_text(mount.owner), after=owner_after,
                                reason="the account was missing: its home goes to the new account", drift=True))
        elif mount.owner != (account.uid, account.gid, layout.HOME_MODE):
            steps.append(Action("update", "ownership", user, before=_owner_text(mount.owner), after=owner_after,
                                reason="home ownership or mode changed by hand", drift=True))
    return steps, None


def _resize(member: Member, volume: Volume, size: int) -> Action:
    fs_size = volume.fs.size if volume.fs else volume.size
    current = volume.size if volume.size != size else fs_size
    if volume.size == size:
        reason, drift = "filesystem does not fill its image (a resize was interrupted)", True
    elif size > volume.size:
        reason, drift = f"disk quota raised to {format_size(member.disk)}", False
    else:
        reason, drift = f"disk quota lowered to {format_size(member.disk)}", False
    return Action("update", "volume", member.username,
                  before={"size": current, "used": volume.used}, after={"size": size}, reason=reason, drift=drift)


def _hub_users(actual: Actual) -> dict:
    return dict(actual.hub.users) if actual.hub is not None and actual.hub.users is not None else {}


def _hub_active(member: Member, actual: Actual) -> list[Action]:
    """Demote stale admins; apply a changed memory quota to a running server in place."""
    steps = []
    hub_user = _hub_users(actual).get(member.username)
    if hub_user is not None and hub_user.admin and member.role != "teacher":
        steps.append(Action("update", "hub-user", member.username, before={"admin": True}, after={"admin": False},
                            reason="not a teacher: admin rights come back only through the teachers group"))
    container = (actual.containers or {}).get(member.username)
    if container is not None and container.running and container.memory != member.memory:
        steps.append(Action("update", "container", member.username, before={"memory": container.memory},
                            after={"memory": member.memory}, reason="memory quota changed; applied live"))
    return steps


def _hub_leave(user: str, actual: Actual, reason: str, drift: bool) -> list[Action]:
    """Stop the server and forget the hub user before the home is unmounted; files are untouched."""
    hub_user = _hub_users(actual).get(user)
    if hub_user is None:
        return []
    steps = []
    if hub_user.running:
        steps.append(Action("disable", "server", user, before="running", after="stopped", reason=reason, drift=drift))
    steps.append(Action("disable", "hub-user", user, before={"admin": hub_user.admin}, reason=reason, drift=drift))
    return steps


def _converge_disabled(user: str, account: Account | None, desired: Desired, actual: Actual, reason: str) -> list[Action]:
    """Reverse order of creation; files are kept."""
    drift = account is None and user not in actual.volumes  # a hub user we never created
    steps = _hub_leave(user, actual, reason if not drift else "hub user not in classroom.yaml", drift)
    steps += _unmount_steps(user, desired, actual, reason)
    if account is not None and not is_disabled(account, actual.today):
        steps.append(Action("disable", "account", user, before={"login": "enabled"}, after={"login": "disabled"},
                            reason=reason))
    return steps


def _unmount_steps(user: str, desired: Desired, actual: Actual, reason: str) -> list[Action]:
    home = str(desired.paths.home(user))
    volume = actual.volumes.get(user)
    steps = []
    if home in actual.mounts:
        steps.append(Action("disable", "mount", user, before=home, reason=reason))
    if home in actual.manifest:
        steps.append(Action("disable", "manifest", user, before=f"{actual.manifest[home].source} {home}", reason=reason))
    if volume is not None and volume.attached and home not in actual.mounts:
        if volume.loop:
            steps.append(Action("disable", "volume", user, before={"loop": volume.loop}, after={"loop": None},
                                reason="image still attached to a loop device", drift=True))
        else:
            steps.append(Action("disable", "volume", user, before={"active": True}, after={"active": False},
                                reason="logical volume still active", drift=True))
    return steps


def _converge_purged(user: str, account: Account | None, desired: Desired, actual: Actual) -> list[Action]:
    steps = _hub_leave(user, actual, "status: purged", False) + _unmount_steps(user, desired, actual, "status: purged")
    volume = actual.volumes.get(user)
    if volume is not None:
        steps.append(Action("destroy", "volume", user, before={"path": volume.path, "used": volume.used},
                            reason="status: purged", destructive=True))
    if account is not None:
        steps.append(Action("destroy", "account", user, before={"uid": account.uid}, reason="status: purged",
                            destructive=True))
    return steps


# --- guards -------------------------------------------------------------------------------------------


def _guard_mass_disable(actions: Iterable[Action], desired: Desired, actual: Actual, policy: Policy) -> list[Note]:
    """A truncated or half-merged classroom.yaml must not lock out the whole class."""
    if policy.allow_mass_disable:
        return []
    current = sum(1 for a in actual.accounts.values()
                  if a.classroom == desired.classroom and is_enabled(a, actual.today))
    leaving = {a.target for a in actions if a.kind == "account" and a.op in ("disable", "destroy")
               and (acct := actual.accounts.get(a.target)) is not None and is_enabled(acct, actual.today)}
    allowed = max(1, int(policy.max_disable_fraction * current))
    if len(leaving) <= allowed:
        return []
    return [Note("mass-disable", "",
                 f"this pass would disable {len(leaving)} of {current} active people (more than "
                 f"{policy.max_disable_fraction:.0%}); is classroom.yaml truncated? "
                 "Re-run with --allow-mass-disable if this is intended")]


SHRINK_HEADROOM = 0.9  # resize2fs needs room for metadata; a full volume is of no use to a student


def _guard_overcommit(actions: Iterable[Action], desired: Desired, actual: Actual, policy: Policy) -> list[Note]:
    """Thin pools: a full pool stalls every student's writes, so never promise more than allowed."""
    if actual.thin_pool_size is None:
        return []
    sizes = {user: volume.size for user, volume in actual.volumes.items()}
    for action in actions:
        if action.kind == "volume" and action.op in ("create", "update"):
            sizes[action.target] = action.after["size"]
        elif action.kind == "volume" and action.op == "destroy":
            sizes.pop(action.target, None)
    total, limit = sum(sizes.values()), policy.max_overcommit * actual.thin_pool_size
    if total <= limit or not any(a.kind == "volume" and a.op in ("create", "update") for a in actions):
        return []
    return [Note("overcommit", "",
                 f"the volumes would add up to {format_size(total)}, more than {policy.max_overcommit:g} x the thin "
                 f"pool ({format_size(actual.thin_pool_size)}); grow the pool or raise max_overcommit knowingly")]


def _guard_shrink(actions: Iterable[Action], actual: Actual) -> list[Note]:
    """Never shrink a filesystem below what its owner has stored (plus metadata, with headroom)."""
    notes = []
    for action in actions:
        if action.kind != "volume" or action.op != "update":
            continue
        volume = actual.volumes[action.target]
        in_use = volume.in_use if volume.in_use is not None else volume.used
        size = action.after["size"]
        if in_use is not None and size < action.before["size"] and in_use > size * SHRINK_HEADROOM:
            notes.append(Note("shrink", action.target,
                              f"{action.target} uses {format_size(in_use)} (files and filesystem metadata), "
                              f"more than {SHRINK_HEADROOM:.0%} of the new disk quota {format_size(size)}; "
                              "raise the quota or ask them to free space"))
    return notes
