"""`reconcile assignments`: each assignment's release, due time and late window, and each active student's copy
and submission (on time, late, missing), from the host as it is now."""

from __future__ import annotations

import argparse
import json

from .commands import EXIT_OK, roster_of, site_of
from .parser import command


def assignments(args: argparse.Namespace) -> int:
    from ..core.assignments import render_report, report
    from ..engine import passes

    site = site_of(args)
    classroom = roster_of(args, site)
    outcome = passes.look(site, classroom, containers=False)
    found = report(outcome.desired, outcome.actual)
    if args.json:
        print(json.dumps({"observed_at": outcome.actual.observed_at, "assignments": found}, indent=2))
    else:
        print(render_report(found))
    return EXIT_OK


def register(sub) -> None:
    parser = command(sub, "assignments", assignments, "each assignment's times and each student's copy and submission")
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the same as JSON: times in ISO 8601, extensions in seconds, a row per active student",
    )
