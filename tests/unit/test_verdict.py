"""engine.verdict: the one place a pass's outcome is named, for a preview and for a converging pass alike."""

import pytest

from reconciler.core.actions import Action, Kind, Note, Op, Plan
from reconciler.engine.apply import Result
from reconciler.engine.passes import Verdict, verdict

STEP = Action(Op.CREATE, Kind.GROUP, "py101-students", reason="classroom group")
REFUSED = Note("mass-disable", "", "this pass would disable 9 of 10 active people")
BLOCKED = Note("blocked", "ann", "not ext4")


@pytest.mark.parametrize(
    ("plan", "result", "dry_run", "expected"),
    [
        (Plan("c"), None, True, Verdict.CONVERGED),
        (Plan("c", (STEP,)), None, True, Verdict.PENDING),
        (Plan("c", (STEP,), blocked=(BLOCKED,)), None, True, Verdict.BLOCKED),
        (Plan("c", (STEP,), refused=(REFUSED,)), None, True, Verdict.REFUSED),
        (Plan("c", (STEP,), refused=(REFUSED,)), None, False, Verdict.REFUSED),
        (Plan("c"), None, False, Verdict.CONVERGED),
        (Plan("c", (STEP,)), Result(ok=1), False, Verdict.CONVERGED),
        (Plan("c", (STEP,)), Result(ok=1, waiting={"ann": "her server runs"}), False, Verdict.WAITING),
        (Plan("c", (STEP,)), Result(failed={"ann": "useradd failed"}), False, Verdict.FAILED),
        (Plan("c", (STEP,)), Result(interrupted=True), False, Verdict.INTERRUPTED),
        # a full journal stops the pass like SIGTERM does, but it is a failure to act on, not an interruption
        (Plan("c", (STEP,)), Result(interrupted=True, failed={"journal": "disk full"}), False, Verdict.FAILED),
    ],
)
def test_the_verdict_of_a_pass(plan, result, dry_run, expected):
    assert verdict(plan, result, dry_run=dry_run) is expected
