"""`reconcile export`, `reconcile archive`, `reconcile restore`: the end of term (engine/end_of_term.py does it).

The parser is built for every command; engine.end_of_term is imported only when one of these runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config.sizes import format_size
from .parser import command
from .commands import EXIT_ERROR, EXIT_OK, EXIT_WAITING, UsageError, policy_of, roster_of, run_pass, site_of


def _report(done: list) -> int:
    """One line per person; exit 0 when every archive was written and verified, 4 when the only problems are
    volumes that cannot be read now (a server still ending), else 1."""
    for item in done:
        if item.ok:
            m = item.manifest
            assert m is not None and item.archive is not None
            print(
                f"{item.user}: {item.archive} ({m.files} files, {format_size(m.content_bytes)} -> "
                f"{format_size(m.archive_bytes)}; verified; from {item.how})"
            )
        elif item.archive is not None:
            print(f"{item.user}: {item.archive} DOES NOT VERIFY: {item.problem}", file=sys.stderr)
        else:
            print(f"{item.user}: not exported: {item.problem}", file=sys.stderr)
    if all(item.ok for item in done):
        return EXIT_OK
    return EXIT_WAITING if all(item.ok or item.waiting for item in done) else EXIT_ERROR


def _progress(args: argparse.Namespace):
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return lambda user: None
    return lambda user: print(f"exporting {user}…", file=sys.stderr)


def export_command(args: argparse.Namespace) -> int:
    from ..engine import end_of_term

    site = site_of(args, applies=True)
    classroom = roster_of(args, site)
    known = end_of_term.exportable(classroom)
    if args.all == bool(args.users):
        raise UsageError("export: name the people (USER ...) or give --all, not both")
    users = known if args.all else args.users
    unknown = [user for user in users if user not in known]
    if unknown:
        raise UsageError(f"export: not in classroom.yaml with files kept: {', '.join(unknown)}")
    return _report(end_of_term.export(site, users, args.out, on_start=_progress(args)))


def archive_command(args: argparse.Namespace) -> int:
    """Export everyone in status: archived who has no archive in OUT yet, then one pass (which disables them)."""
    from ..engine import end_of_term

    site = site_of(args, applies=True)
    classroom = roster_of(args, site)
    out = args.out or site.paths.state / "archives"
    due = end_of_term.to_archive(classroom)
    fresh = [user for user in due if args.again or end_of_term.latest(out, user) is None]
    for user in sorted(set(due) - set(fresh)):
        print(f"{user}: already archived: {end_of_term.latest(out, user)}")
    code = _report(end_of_term.export(site, fresh, out, on_start=_progress(args))) if fresh else EXIT_OK
    if not due:
        print("nobody has status: archived in classroom.yaml")
    passed = run_pass(site, classroom, policy_of(args, site), dry_run=False, as_json=False)
    return code if code != EXIT_OK else passed


def restore_command(args: argparse.Namespace) -> int:
    from ..engine import end_of_term

    site = site_of(args, applies=True)
    classroom = roster_of(args, site)
    if not args.source.is_file():
        raise UsageError(f"restore: {args.source} is not a file")
    done = end_of_term.restore(site, classroom, args.username, args.source, args.into)
    for problem in done.problems:
        print(f"{args.username}: {problem}", file=sys.stderr)
    if done.target is None:
        print("nothing was restored", file=sys.stderr)
        return EXIT_ERROR
    if done.problems:
        print(
            f"the restore into {done.target} is incomplete: what was unpacked stays, nothing was replaced",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"{args.username}: restored {done.files} files into {done.target}; each matches the archive")
    return EXIT_OK


def register(sub) -> None:
    """The three commands of the end of term."""
    export = command(
        sub,
        "export",
        export_command,
        "write each person's home to OUT/USER-YYYYMMDD.tar.zst with a manifest (sizes, sha256), from a "
        "consistent view even while their server runs, and verify it",
    )
    export.add_argument("users", nargs="*", metavar="USER", help="the people to export")
    export.add_argument("--all", action="store_true", help="everyone in classroom.yaml whose files are kept")
    export.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the archives go (made mode 0700; an archive is never overwritten)",
    )
    archive = command(
        sub,
        "archive",
        archive_command,
        "export everyone with status: archived who has no archive yet, verify it, then apply "
        "classroom.yaml (which disables them)",
    )
    archive.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where the archives go (default: <state_dir>/archives)"
    )
    archive.add_argument("--again", action="store_true", help="a new archive even for people who have one")
    restore = command(
        sub,
        "restore",
        restore_command,
        "unpack an export into an active person's home (or a new folder of it), as that person, "
        "never replacing a file; refused when it does not verify or fit",
    )
    restore.add_argument("username", metavar="USER", help="an active person in classroom.yaml")
    restore.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        metavar="FILE",
        help="USER-YYYYMMDD.tar.zst (its manifest beside it)",
    )
    restore.add_argument(
        "--into",
        default=None,
        metavar="FOLDER",
        help="a new folder in the home to unpack into (when files of the same names exist)",
    )
