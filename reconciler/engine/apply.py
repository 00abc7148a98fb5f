"""Carry out a Plan's actions through the registered drivers, one person at a time, journaling each.

A failure for one person skips that person's remaining actions (their later
steps depend on the earlier ones) and everyone else proceeds.  Drivers
re-check their target before acting, so re-running a half-applied plan is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..core.actions import Action, Plan
from ..host.drivers import Busy, Context, table
from .journal import Journal


@dataclass
class Result:
    ok: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # target -> first error
    skipped: int = 0
    interrupted: bool = False
    waiting: dict[str, str] = field(default_factory=dict)  # target -> why its change waits (a volume in use)

    @property
    def converged(self) -> bool:
        return not self.failed and not self.interrupted and not self.waiting


def apply(plan: Plan, ctx: Context, journal: Journal, should_stop: Callable[[], bool] = lambda: False,
          report: Callable[[Action, str, str], None] = lambda a, r, d: None) -> Result:
    """Carry out the plan.  ``should_stop`` is checked between actions (SIGTERM finishes the one in flight)."""
    drivers = table()
    result = Result()
    for action in plan.actions:
        if should_stop():
            result.interrupted = True
            break
        if action.target in result.failed:
            journal.record(action, "skipped", f"an earlier step for {action.target} failed")
            result.skipped += 1
            report(action, "skipped", "")
            continue
        if action.waits:  # planned to wait: nothing is done and nothing journaled until it can be
            result.waiting.setdefault(action.target, action.waits)
            report(action, "waiting", action.waits)
            continue
        try:
            detail = drivers[(action.kind, action.op)](action, ctx)
        except Busy as exc:  # found in use just before acting: left as it was, like a planned wait
            result.waiting.setdefault(action.target, str(exc))
            journal.record(action, "waiting", str(exc))
            report(action, "waiting", str(exc))
            continue
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
