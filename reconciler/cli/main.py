"""The `reconcile` command line: the parser, and one function per command (``set_defaults(func=...)``).

Exit codes.  --dry-run: 0 no changes, 2 changes pending, 1 error, 3 a guard
refused.  Apply: 0 converged, 1 some actions failed, 3 a guard refused
(nothing applied), 4 done but changes wait for a volume in use.  Any
command: 64 a usage error (a mistyped option: never mistaken for "changes
pending").
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..config.load import InvalidFile
from ..host.lock import LockBusy
from ..host.run import CommandFailed
from . import commands
from .commands import EXIT_ERROR, EXIT_USAGE, UsageError


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is also "changes pending": here it is 64 (EX_USAGE).

    No abbreviations: they are guesses, and the top level would take a subcommand's `--all` for an abbreviation
    of `--allow-mass-disable` (or refuse it as ambiguous).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (exit {EXIT_USAGE})\n")


class Version(argparse.Action):
    """--version: the package, JupyterHub, and the site file in use (looked up only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        from ..config.site import find_site

        def of(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        site = find_site(getattr(namespace, "site", None))
        print(
            f"reconcile {of('classroom-reconciler')}\njupyterhub {of('jupyterhub')}, dockerspawner "
            f"{of('dockerspawner')}\nsite: {site if site is not None else 'built in (no site.yaml found)'}"
        )
        parser.exit(0)


def _later(module: str, name: str):
    """A command whose module (the daemon, `up`) is imported only when that command runs."""

    def command(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)

    command.__qualname__ = f"{module}.{name}"
    return command


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-f",
        "--file",
        default=default,
        metavar="classroom.yaml",
        help="the desired state (default: site.yaml's classroom_file, else ./classroom.yaml)",
    )
    parser.add_argument(
        "--site",
        default=default,
        metavar="site.yaml",
        help="host settings (default: $RECONCILE_SITE, else /etc/classroom/site.yaml, else built in)",
    )


def _command(sub, name: str, func, text: str, *, common: bool = True) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=text, description=text)  # a Parser too (argparse uses the parent's class)
    if common:
        _common(command, suppress=True)
    command.set_defaults(func=func)
    return command


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
    _common(parser, suppress=False)
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

    _command(sub, "validate", commands.validate, "check classroom.yaml (and site.yaml); change nothing")
    _command(sub, "schema", commands.schema, "print the JSON schema of classroom.yaml", common=False)
    status = _command(sub, "status", commands.status, "show each person's account, volume and mount")
    status.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the people and the raw snapshot as JSON (what CI plans against with --observed)",
    )
    _command(
        sub,
        "doctor",
        commands.doctor,
        "check this host for the classroom (kernel, commands, volumes, disks, "
        "Docker, the swarm, the image, PAM, ports, certificate, systemd) and say how to fix what is wrong",
    )
    warm = _command(
        sub,
        "prewarm",
        commands.prewarm,
        "start the servers that are due before a lesson of classroom.yaml's schedule (what the "
        "daemon does; hub.prewarm in site.yaml)",
    )
    warm.add_argument(
        "--wait",
        action="store_true",
        help="keep starting, one server every hub.prewarm.pace seconds, until nothing more is due now",
    )
    from .archive import register as end_of_term

    end_of_term(sub, _command, _later)
    _command(sub, "mount-all", commands.mount_all, "mount every volume in the manifest (at boot, before the hub)")
    _command(
        sub, "hub", commands.hub, "run JupyterHub for this classroom in the foreground (site.yaml needs a hub: section)"
    )
    daemon = _command(
        sub,
        "watch",
        _later("watch", "command"),
        "the daemon: apply classroom.yaml on every save and every resync_interval",
    )
    daemon.add_argument(
        "--allow-mass-disable",
        action="store_true",
        default=argparse.SUPPRESS,
        help="let the daemon's passes disable more than max_disable_fraction of the class",
    )
    daemon.add_argument(
        "--allow-destroy",
        action="store_true",
        default=argparse.SUPPRESS,
        help="let the daemon's passes carry out status: purged",
    )
    _command(sub, "api", commands.api, "the teacher API and page (a JupyterHub service: `reconcile hub` starts it)")
    _command(
        sub,
        "up",
        _later("up", "up_command"),
        "everything on this machine: image, volumes, hub and daemon in the background, one pass",
    )
    _command(sub, "down", _later("up", "down_command"), "stop the hub and the daemon started by `reconcile up`")

    reset = _command(
        sub, "reset-password", commands.reset_password, "give USER a new generated password, delivered like a new one"
    )
    reset.add_argument("username", help="the person (a student or teacher in classroom.yaml)")

    credentials = sub.add_parser(
        "credentials",
        help="deliver new passwords: e-mail or printable slips",
        description="deliver new passwords: e-mail or printable slips",
    )
    cred_sub = credentials.add_subparsers(dest="credentials_command", metavar="ACTION", required=True)
    _command(
        cred_sub,
        "send",
        commands.send_credentials,
        "e-mail every waiting password now (the daemon does this after each pass)",
    )
    slips = _command(
        cred_sub,
        "slips",
        commands.slips,
        "write printable slips (HTML) for people without e-mail; those passwords leave the outbox",
    )
    slips.add_argument("--out", type=Path, required=True, help="the HTML file to write (mode 0600)")
    slips.add_argument("--all", action="store_true", help="also people who have an e-mail address")

    imp = _command(
        sub, "import-csv", commands.import_csv, "add the people of a CSV roster to classroom.yaml (comments kept)"
    )
    imp.add_argument("csv", type=Path, metavar="roster.csv", help="UTF-8 CSV with a name (or first/last name) column")
    imp.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS, help="show who would be added")
    imp.add_argument("--skip-invalid", action="store_true", help="add the valid rows, report the others")
    imp.add_argument(
        "--name-order",
        choices=("given-first", "surname-first"),
        default="given-first",
        help="how a name cell without a comma is written: 'Marco Bianchi' (given-first, the default) or "
        "'BIANCHI Marco' (surname-first, many Italian exports); 'Bianchi, Marco' is always "
        "surname, given name",
    )

    storage = sub.add_parser("storage", help="LVM storage for the volumes", description="LVM storage for the volumes")
    storage_sub = storage.add_subparsers(dest="storage_command", metavar="ACTION", required=True)
    init = _command(
        storage_sub,
        "init",
        commands.storage_init,
        "create a volume group on a sparse file behind a loop device (for servers without a spare disk); idempotent",
        common=False,
    )
    init.add_argument("--vg", required=True, help="the volume group's name")
    init.add_argument("--file", type=Path, required=True, help="the sparse file that holds the physical volume")
    init.add_argument("--size", required=True, help="the file's size, e.g. 100G")

    image = sub.add_parser("image", help="the student container image", description="the student container image")
    image_sub = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = _command(
        image_sub,
        "build",
        commands.image_build,
        "build it locally (debootstrap + wheels, no registry); cached by a hash of its inputs",
    )
    build.add_argument("--tag", default=None, help="default: site.yaml's hub.image, else classroom-student:latest")
    build.add_argument("--cache-dir", type=Path, default=None, help="default: <state_dir>/image-cache")
    build.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    build.add_argument(
        "--dry-run",
        action="store_true",
        default=argparse.SUPPRESS,
        help="say what a build would change in the image (site.yaml's image: section against the "
        "labels of the image in use); exit 2 when it would change, 0 when up to date",
    )
    build.add_argument(
        "--update-pins",
        action="store_true",
        help="resolve image.requirements again (newer versions) instead of reusing the pins file",
    )
    roll = _command(
        image_sub,
        "rollout",
        commands.image_rollout,
        "restart the idle students' servers that run an older image than hub.image names, so they get "
        "the new one (servers in use get it at their next start)",
    )
    roll.add_argument(
        "--idle",
        type=float,
        default=15.0,
        metavar="MINUTES",
        help="a server without activity for this long counts as idle (default 15)",
    )
    roll.add_argument(
        "--dry-run",
        action="store_true",
        default=argparse.SUPPRESS,
        help="say which servers would be restarted, restart none",
    )
    push = _command(
        image_sub,
        "push-nodes",
        commands.image_push_nodes,
        "copy the image onto every worker of hub.swarm (docker save | docker -H <worker> load; no "
        "registry); workers that already hold it are skipped",
    )
    push.add_argument("--tag", default=None, help="default: site.yaml's hub.image")
    completion = _command(
        sub,
        "completion",
        print_completion,
        "print a shell completion script: reconcile completion bash > /etc/bash_completion.d/reconcile",
        common=False,
    )
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")

    k8s = sub.add_parser(
        "k8s",
        help="the classroom on Kubernetes (Zero to JupyterHub)",
        description="the classroom on Kubernetes (Zero to JupyterHub)",
    )
    k8s_sub = k8s.add_subparsers(dest="k8s_command", metavar="ACTION", required=True)
    render = _command(
        k8s_sub,
        "render",
        commands.k8s_render,
        "write the values.yaml fragment for the jupyterhub Helm chart: who may log in, each person's "
        "memory/CPU/disk (a KubeSpawner hook), the teachers' role",
    )
    render.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="values.yaml",
        help="write it here (atomically) instead of printing it",
    )
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
