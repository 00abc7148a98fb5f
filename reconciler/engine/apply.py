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
    done: list[Action] = field(default_factory=list)  # the actions carried out


class JournalFailed(RuntimeError):
    """The journal cannot be written (a full disk): the pass stops, since nothing may happen unrecorded."""


def apply(plan: Plan, ctx: Context, journal: Journal, should_stop: Callable[[], bool] = lambda: False,
          report: Callable[[Action, str, str], None] = lambda a, r, d: None) -> Result:
    """Carry out the plan.  ``should_stop`` is checked between actions (SIGTERM finishes the one in flight).

    Every action is journaled; when the journal cannot be written (ENOSPC) the pass stops at once and
    says why: the next pass, once there is room, observes what was done and finishes the rest.
    """
    result = Result()
    try:
        _apply(plan, ctx, journal, should_stop, report, result)
    except JournalFailed as exc:
        result.failed.setdefault("journal", str(exc))
        result.interrupted = True
    return result


def _record(journal: Journal, action: Action, outcome: str, detail: str = "") -> None:
    try:
        journal.record(action, outcome, detail)
    except OSError as exc:
        raise JournalFailed(f"cannot write the journal {journal.path}: {exc.strerror or exc}; the pass stopped "
                            f"after {action.op} {action.kind} {action.target} ({outcome})") from None


def _apply(plan: Plan, ctx: Context, journal: Journal, should_stop: Callable[[], bool],
           report: Callable[[Action, str, str], None], result: Result) -> None:
    drivers = table()
    for action in plan.actions:
        if should_stop():
            result.interrupted = True
            break
        if action.target in result.failed:
            _record(journal, action, "skipped", f"an earlier step for {action.target} failed")
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
            _record(journal, action, "waiting", str(exc))
            report(action, "waiting", str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - any driver error is this person's failure only
            message = str(exc) or type(exc).__name__
            result.failed[action.target] = message
            _record(journal, action, "failed", message)
            report(action, "failed", message)
            continue
        result.ok += 1
        result.done.append(action)
        _record(journal, action, "ok", detail)
        report(action, "ok", detail)
    for note in plan.blocked:
        result.failed.setdefault(note.target or note.rule, note.message)
