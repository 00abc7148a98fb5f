"""The `reconcile` command line: the top-level parser; each command module registers its own subcommands
(``register(sub)``, each command one function: ``set_defaults(func=...)``).

Exit codes.  --dry-run: 0 no changes, 2 changes pending, 1 error, 3 a guard
refused.  Apply: 0 converged, 1 some actions failed, 3 a guard refused
(nothing applied), 4 done but changes wait for a volume in use.  Any
command: 64 a usage error (a mistyped option: never mistaken for "changes
pending").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config.load import InvalidFile
from ..host.lock import LockBusy
from ..host.run import CommandFailed
from . import archive, assignments, commands, doctor, prewarm, up, watch
from .commands import EXIT_ERROR, UsageError
from .parser import EXIT_USAGE, Parser, Version, add_common_options, command

COMMAND_MODULES = (commands, assignments, doctor, prewarm, archive, watch, up)  # each adds its own commands


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="reconcile",
        description="Make this server match classroom.yaml: Unix accounts, quota volumes, mounts.",
        epilog="exit codes: 0 converged / no changes, 1 error, failed actions or a blocked person, 2 changes "
        "pending (--dry-run), 3 a safety guard refused the pass, 4 done but changes wait for a volume in use "
        "(a running server; they apply when it stops), 64 usage error (a mistyped option; a command that "
        "changes the host, run with the built-in site outside the checkout)",
    )
    parser.add_argument("--version", action=Version, help="print the versions and the site file in use, then exit")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress lines (they are shown only on a terminal anyway; NO_COLOR turns off colour only)",
    )
    add_common_options(parser, suppress=False)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--allow-mass-disable",
        action="store_true",
        help="allow disabling more than max_disable_fraction of the class in one pass",
    )
    parser.add_argument(
        "--allow-destroy", action="store_true", help="carry out status: purged (deletes accounts and their files)"
    )
    parser.add_argument(
        "--observed",
        type=Path,
        metavar="snapshot.json",
        help="with --dry-run: plan against a snapshot from `reconcile status --json` (for CI)",
    )
    parser.set_defaults(func=commands.reconcile)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for module in COMMAND_MODULES:
        module.register(sub)
    completion = command(
        sub,
        "completion",
        print_completion,
        "print a shell completion script: reconcile completion bash > /etc/bash_completion.d/reconcile",
        common=False,
    )
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")

    return parser


def print_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidFile as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    except CommandFailed as exc:  # observe's lvs/vgs, storage init, ...
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (LockBusy, PermissionError) as exc:
        hint = " (reconcile must run as root)" if isinstance(exc, PermissionError) else ""
        print(f"reconcile: {exc}{hint}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a full disk, a missing device: said plainly, never a traceback
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
