"""`reconcile prewarm`: start the servers that are due before a lesson (what the daemon does between passes)."""

from __future__ import annotations

import argparse
import sys
import time

from ..engine import passes
from .commands import EXIT_ERROR, EXIT_OK, UsageError, roster_of, site_of
from .parser import command


def run(args: argparse.Namespace) -> int:
    """One pre-warm step (what the daemon does between its passes), or with --wait every step until nothing more
    is due now.  Exit 0, 1 when a start failed or the hub cannot be asked."""
    from ..engine import prewarm
    from ..host.observe import hub_probes

    site = site_of(args)
    if site.hub is None:
        raise UsageError("prewarm: site.yaml has no hub section")
    classroom = roster_of(args, site)
    failed = False
    while True:
        outcome = passes.look(site, classroom, containers=False)
        client = hub_probes(site, classroom.name).client
        done = prewarm.run(site, classroom, outcome.desired, outcome.current, client)
        for name in done.started:
            print(f"started {name}'s server")
        for name, why in done.failed.items():
            print(f"could not start {name}'s server: {why}", file=sys.stderr)
            failed = True
        if not args.wait or not done.step.start:
            break
        time.sleep(done.step.wake or 0)
    print(done.step.text)
    if outcome.actual.hub is not None and outcome.actual.hub.error and done.step.phase in ("warming", "lesson"):
        print(f"the hub cannot be asked: {outcome.actual.hub.error}", file=sys.stderr)
        failed = True
    return EXIT_ERROR if failed else EXIT_OK


def register(sub) -> None:
    warm = command(
        sub,
        "prewarm",
        run,
        "start the servers that are due before a lesson of classroom.yaml's schedule (what the "
        "daemon does; hub.prewarm in site.yaml)",
    )
    warm.add_argument(
        "--wait",
        action="store_true",
        help="keep starting, one server every hub.prewarm.pace seconds, until nothing more is due now",
    )
