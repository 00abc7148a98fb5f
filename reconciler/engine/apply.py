"""Carry out a Plan's actions through the registered drivers, journaling each.

A failure for one person skips that person's remaining actions (their later
steps depend on the earlier ones) and everyone else proceeds.  Drivers
re-check their target before acting, so re-running a half-applied plan is safe.

With ``workers`` > 1 (site.yaml ``apply_workers``) the people are worked on side by side: the shared steps
first (the firewall, the classroom groups), then each person's own steps in their planned order, several
people at once.  Most of a person's time goes to programs (useradd, chpasswd, mkfs, losetup, mount) that
wait on locks, fsync and exec more than on the CPU, so a few at once finish a new class sooner; each person's
order and the journal entry of every step are kept, and the steps that rewrite a shared file (the mount
manifest, the exports file) take a lock.  A SIGTERM lets the steps in flight finish and starts no more.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from collections.abc import Callable

from ..core.actions import Action, Kind, Plan
from ..host.drivers import Busy, Context, table
from .journal import Journal

SHARED_KINDS = frozenset({Kind.FIREWALL, Kind.GROUP})  # done first, in order, before anyone's own steps


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


def apply(
    plan: Plan,
    ctx: Context,
    journal: Journal,
    should_stop: Callable[[], bool] = lambda: False,
    report: Callable[[Action, str, str], None] = lambda a, r, d: None,
    workers: int = 1,
) -> Result:
    """Carry out the plan.  ``should_stop`` is checked between actions (SIGTERM finishes the one in flight).

    Every action is journaled; when the journal cannot be written (ENOSPC) the pass stops at once and
    says why: the next pass, once there is room, observes what was done and finishes the rest.
    """
    result = Result()
    try:
        _Applier(ctx, journal, should_stop, report, result).run(plan, workers)
    except JournalFailed as exc:
        result.failed.setdefault("journal", str(exc))
        result.interrupted = True
    return result


class _Applier:
    def __init__(
        self,
        ctx: Context,
        journal: Journal,
        should_stop: Callable[[], bool],
        report: Callable[[Action, str, str], None],
        result: Result,
    ):
        self.ctx, self.journal, self.should_stop, self.report, self.result = ctx, journal, should_stop, report, result
        self.drivers = table()
        self.lock = threading.Lock()  # the result, the journal and the report: one step's record at a time
        self.broken: JournalFailed | None = None  # the journal failed in a worker: everyone stops
        self.held: set[str] = set()  # people a driver found in use: their later steps wait this pass

    def run(self, plan: Plan, workers: int) -> None:
        self._steps(plan, workers)
        self._raise()
        for note in plan.blocked:
            self.result.failed.setdefault(note.target or note.rule, note.message)

    def _steps(self, plan: Plan, workers: int) -> None:
        if workers <= 1:
            for action in plan.actions:
                if not self.step(action):
                    return
            return
        shared = [a for a in plan.actions if a.kind in SHARED_KINDS]
        people: dict[str, list[Action]] = {}
        for action in plan.actions:
            if action.kind not in SHARED_KINDS:
                people.setdefault(action.target, []).append(action)
        for action in shared:
            if not self.step(action):
                return

        def person(steps: list[Action]) -> None:
            for action in steps:
                if not self.step(action):
                    return

        from concurrent.futures import ThreadPoolExecutor  # here: a dry run never applies (3 ms of imports)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
            for future in [pool.submit(person, steps) for steps in people.values()]:
                future.result()

    def _raise(self) -> None:
        if self.broken is not None:
            raise self.broken

    def step(self, action: Action) -> bool:
        """One action: False when the pass must stop (SIGTERM, or the journal cannot be written)."""
        result = self.result
        if self.broken is not None:
            return False
        if self.should_stop():
            result.interrupted = True
            return False
        try:
            with self.lock:
                if action.target in result.failed:
                    self._record(action, "skipped", f"an earlier step for {action.target} failed")
                    result.skipped += 1
                    self.report(action, "skipped", "")
                    return True
                if action.target in self.held and action.kind is not Kind.EXPORT:
                    # an earlier step found it in use: the rest waits with it (not the export: the home is still
                    # mounted, and the workers may mount it again meanwhile)
                    self.report(action, "waiting", result.waiting[action.target])
                    return True
                if action.waits:  # planned to wait: nothing is done and nothing journaled until it can be
                    result.waiting.setdefault(action.target, action.waits)
                    self.report(action, "waiting", action.waits)
                    return True
                self._reserve(action)  # journal first: no room for the entry, no action
            try:
                detail = self.drivers[(action.kind, action.op)](action, self.ctx)
            except Busy as exc:  # found in use just before acting: left as it was, like a planned wait
                with self.lock:
                    result.waiting.setdefault(action.target, str(exc))
                    self.held.add(action.target)
                    self._record(action, "waiting", str(exc))
                    self.report(action, "waiting", str(exc))
                return True
            except Exception as exc:  # noqa: BLE001 - any driver error is this person's failure only
                message = str(exc) or type(exc).__name__
                with self.lock:
                    result.failed[action.target] = message
                    self._record(action, "failed", message)
                    self.report(action, "failed", message)
                return True
            with self.lock:
                result.ok += 1
                result.done.append(action)
                self._record(action, "ok", detail)
                self.report(action, "ok", detail)
            return True
        except JournalFailed as exc:
            self.broken = self.broken or exc
            return False

    def _reserve(self, action: Action) -> None:
        try:
            self.journal.reserve()
        except OSError as exc:
            raise JournalFailed(
                f"cannot write the journal {self.journal.path}: {exc.strerror or exc}; the pass "
                f"stopped before {action.op} {action.kind} {action.target}: nothing is done "
                "unrecorded"
            ) from None

    def _record(self, action: Action, outcome: str, detail: str = "") -> None:
        try:
            self.journal.record(action, outcome, detail)
        except OSError as exc:
            raise JournalFailed(
                f"cannot write the journal {self.journal.path}: {exc.strerror or exc}; the pass "
                f"stopped after {action.op} {action.kind} {action.target} ({outcome})"
            ) from None
