"""Run a Plan's actions through the drivers, one person at a time, journaling each.

A failure for one person skips that person's remaining actions (their later
steps depend on the earlier ones) and everyone else proceeds.  Drivers
re-check their target before acting, so re-running a half-applied plan is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import accounts, mounts, volumes
from .journal import Journal
from .layout import Paths
from .plan import Action, Plan
from .spec import Desired, Member

if TYPE_CHECKING:
    from .hubapi import HubClient


@dataclass
class Result:
    ok: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # target -> first error
    skipped: int = 0
    interrupted: bool = False

    @property
    def converged(self) -> bool:
        return not self.failed and not self.interrupted


def _driver(action: Action, desired: Desired, members: dict[str, Member], hub: HubClient | None) -> Callable[[], str]:
    """The one driver call that carries out ``action``."""
    paths: Paths = desired.paths
    user, after, classroom = action.target, action.after, desired.classroom
    member = members.get(user)
    table: dict[tuple[str, str], Callable[[], str]] = {
        ("create", "group"): lambda: accounts.create_group(user),
        ("create", "account"): lambda: accounts.create_account(
            user, classroom, after["name"], after["group"], after["home"], after["shell"]),
        ("create", "password"): lambda: accounts.set_password(
            user, classroom, member.name if member else user, member.emails if member else (),
            paths.outbox, action.reason),
        ("update", "account"): lambda: accounts.update_account(user, classroom, dict(after)),
        ("disable", "account"): lambda: accounts.disable_account(user, classroom),
        ("destroy", "account"): lambda: accounts.destroy_account(user, classroom, paths.outbox),
        ("create", "volume"): lambda: volumes.create_image(paths, user, after["size"]),
        ("create", "filesystem"): lambda: volumes.make_filesystem(paths, user, after["size"]),
        ("update", "volume"): lambda: volumes.resize(paths, user, after["size"]),
        ("disable", "volume"): lambda: volumes.detach(paths, user),
        ("destroy", "volume"): lambda: volumes.destroy(paths, user),
        ("create", "manifest"): lambda: mounts.add_entry(paths, user),
        ("update", "manifest"): lambda: mounts.add_entry(paths, user),
        ("disable", "manifest"): lambda: mounts.remove_entry(paths, user),
        ("create", "mount"): lambda: mounts.mount(paths, user),
        ("update", "mount"): lambda: mounts.remount(paths, user),
        ("disable", "mount"): lambda: mounts.unmount(paths, user),
        ("create", "ownership"): lambda: mounts.set_ownership(paths, user),
        ("update", "ownership"): lambda: mounts.set_ownership(paths, user),
        ("update", "container"): lambda: _containers().update_memory(classroom, user, after["memory"]),
        ("disable", "server"): lambda: _need(hub).stop_server(user),
        ("disable", "hub-user"): lambda: _need(hub).delete_user(user),
        ("update", "hub-user"): lambda: _need(hub).delete_user(user),  # demote: admin returns only via the group
    }
    return table[(action.op, action.kind)]


def _containers():
    from . import containers  # docker's client loads only when a container must change

    return containers


def _need(hub: HubClient | None) -> HubClient:
    if hub is None:
        raise RuntimeError("the hub API is not available")
    return hub


def apply(plan: Plan, desired: Desired, journal: Journal, should_stop: Callable[[], bool] = lambda: False,
          report: Callable[[Action, str, str], None] = lambda a, r, d: None, hub: HubClient | None = None) -> Result:
    """Carry out the plan.  ``should_stop`` is checked between actions (SIGTERM finishes the one in flight)."""
    result = Result()
    members = {m.username: m for m in desired.members}
    for action in plan.actions:
        if should_stop():
            result.interrupted = True
            break
        if action.target in result.failed:
            journal.record(action, "skipped", f"an earlier step for {action.target} failed")
            result.skipped += 1
            report(action, "skipped", "")
            continue
        try:
            detail = _driver(action, desired, members, hub)()
        except Exception as exc:  # noqa: BLE001 - any driver error is this person's failure only
            message = str(exc) or type(exc).__name__
            result.failed[action.target] = message
            journal.record(action, "failed", message)
            report(action, "failed", message)
            continue
        journal.record(action, "ok", detail)
        report(action, "ok", detail)
        result.ok += 1
    for note in plan.blocked:
        result.failed.setdefault(note.target or note.rule, note.message)
    return result
