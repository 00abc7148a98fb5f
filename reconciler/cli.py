"""The `reconcile` command: one pass (plan, then apply or preview) and its helpers.

Exit codes.  --dry-run: 0 no changes, 2 changes pending, 1 error, 3 a guard
refused.  Apply: 0 converged, 1 some actions failed, 3 a guard refused
(nothing applied).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import journal as journal_mod
from . import containers, hubapi, lock, mounts, observe, outbox, render, spec, status
from .apply import apply
from .hub.config import hub_api_url
from .plan import Action, Plan, Policy, plan

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_REFUSED = 0, 1, 2, 3


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("-f", "--file", default=default, metavar="classroom.yaml",
                        help="the desired state (default: site.yaml's classroom_file, else ./classroom.yaml)")
    parser.add_argument("--site", default=default, metavar="site.yaml",
                        help="host settings (default: $RECONCILE_SITE, else /etc/classroom/site.yaml, else built in)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile",
        description="Make this server match classroom.yaml: Unix accounts, quota volumes, mounts.",
        epilog="exit codes: 0 converged / no changes, 1 error or failed actions, 2 changes pending (--dry-run), "
               "3 a safety guard refused the pass",
    )
    _common(parser, suppress=False)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--allow-mass-disable", action="store_true",
                        help="allow disabling more than max_disable_fraction of the class in one pass")
    parser.add_argument("--allow-destroy", action="store_true",
                        help="carry out status: purged (deletes accounts and their files)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("validate", "check classroom.yaml (and site.yaml); change nothing"),
                       ("schema", "print the JSON schema of classroom.yaml"),
                       ("status", "show each person's account, volume and mount"),
                       ("mount-all", "mount every volume in the manifest (at boot, before the hub)"),
                       ("hub", "run JupyterHub for this classroom in the foreground (site.yaml needs a hub: section)")):
        command = sub.add_parser(name, help=text, description=text)
        if name != "schema":
            _common(command, suppress=True)
        if name == "status":
            command.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    image = sub.add_parser("image", help="the student container image")
    image_sub = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = image_sub.add_parser("build", help="build it locally (debootstrap + wheels, no registry); cached "
                                               "by a hash of its inputs")
    _common(build, suppress=True)
    build.add_argument("--tag", default=None, help="default: site.yaml's hub.image, else classroom-student:latest")
    build.add_argument("--cache-dir", type=Path, default=None, help="default: <state_dir>/image-cache")
    build.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "schema":
            print(json.dumps(spec.json_schema(), indent=2))
            return EXIT_OK
        site = spec.load_site(spec.find_site(args.site))
        if args.command == "image":
            from . import image

            tag = args.tag or (site.hub.image if site.hub else image.DEFAULT_TAG)
            return image.report(tag, args.cache_dir or site.state_dir / "image-cache", args.force)
        if args.command == "mount-all":
            return _mount_all(site)
        if args.command == "hub":
            return _hub(site, spec.find_site(args.site), _classroom_path(args, site))
        if args.command == "status":
            return _status(site, _classroom_path(args, site), args.json)
        classroom = spec.load_classroom(_classroom_path(args, site), site)
        if args.command == "validate":
            people = len(classroom.admins) + len(classroom.students)
            print(f"{_classroom_path(args, site)}: valid (classroom {classroom.name}, {people} people)")
            return EXIT_OK
        policy = Policy(args.allow_destroy, args.allow_mass_disable, site.max_disable_fraction)
        return run_pass(site, classroom, policy, dry_run=args.dry_run, as_json=args.json)
    except spec.InvalidFile as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    except (lock.LockBusy, PermissionError) as exc:
        hint = " (reconcile must run as root)" if isinstance(exc, PermissionError) else ""
        print(f"reconcile: {exc}{hint}", file=sys.stderr)
        return EXIT_ERROR


def _classroom_path(args: argparse.Namespace, site: spec.Site) -> Path:
    if getattr(args, "file", None):
        return Path(args.file)
    return site.classroom_file or Path("classroom.yaml")


def run_pass(site: spec.Site, classroom: spec.Classroom, policy: Policy, *, dry_run: bool, as_json: bool,
             out=sys.stdout) -> int:
    """Observe, plan, then preview or apply, all under the pass lock."""
    paths = site.paths
    desired = spec.resolve(classroom, paths)
    hub_client, hub_probe, container_probe = _hub_probes(site, classroom.name)
    if site.hub is None and not as_json:
        print("note: site.yaml has no hub: section, so JupyterHub users and servers are left alone.", file=sys.stderr)
    with lock.hold(paths.lock, exclusive=not dry_run, timeout=site.lock_timeout):
        the_plan = plan(desired, observe.observe(paths, hub=hub_probe, containers=container_probe), policy)
        print(render.render_json(the_plan) if as_json else render.render_text(the_plan), file=out)
        if the_plan.refused:
            print("A safety guard refused this pass; nothing was changed.", file=sys.stderr)
            return EXIT_REFUSED
        if dry_run:
            if the_plan.blocked:
                return EXIT_ERROR
            return EXIT_PENDING if the_plan.actions else EXIT_OK
        return _apply(the_plan, desired, paths, quiet=as_json, hub=hub_client)


def _hub_probes(site: spec.Site, classroom: str):
    """The hub and Docker probes, when site.yaml has a hub section; else (None, None, None)."""
    if site.hub is None:
        return None, None, None
    try:
        client = hubapi.HubClient(hub_api_url(site.hub), site.hub.token_file, site.hub.request_timeout)
        error = None
    except hubapi.HubUnavailable as exc:
        client, error = None, str(exc)
    return client, (lambda: hubapi.snapshot(client, error)), (lambda: containers.list_containers(classroom))


def _apply(the_plan: Plan, desired: spec.Desired, paths, quiet: bool, hub=None) -> int:
    if not the_plan.actions and not the_plan.blocked:
        return EXIT_OK
    pass_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"
    journal = journal_mod.Journal(paths.journal, pass_id)

    def report(action: Action, result: str, detail: str) -> None:
        if not quiet:
            line = f"{result:>7}: {render.SYMBOLS[action.op]} {action.kind} {action.target}"
            print(f"{line} ({detail})" if detail else line, file=sys.stderr)

    try:
        result = apply(the_plan, desired, journal, report=report, hub=hub)
    finally:
        journal.close()
    new_credentials = sum(1 for a in the_plan.actions if a.kind == "password")
    if new_credentials:
        print(f"{new_credentials} new password(s) wait in {paths.outbox}/ (root only) for delivery.", file=sys.stderr)
    if result.failed:
        for target, error in sorted(result.failed.items()):
            print(f"failed: {target}: {error}", file=sys.stderr)
        print(f"Applied {result.ok} action(s); {len(result.failed)} target(s) failed, {result.skipped} step(s) "
              "skipped. The next pass retries them.", file=sys.stderr)
        return EXIT_ERROR
    print(f"Applied {result.ok} action(s). Converged.", file=sys.stderr)
    return EXIT_OK


def _hub(site: spec.Site, site_file: Path | None, classroom_file: Path) -> int:
    if site.hub is None or site_file is None:
        print("reconcile hub: site.yaml has no hub: section (see examples/site.yaml)", file=sys.stderr)
        return EXIT_ERROR
    from .hub.launch import exec_hub

    exec_hub(site, site_file, classroom_file)
    return EXIT_ERROR  # not reached: exec_hub replaces this process


def _mount_all(site: spec.Site) -> int:
    paths = site.paths
    with lock.hold(paths.lock, exclusive=True, timeout=site.lock_timeout):
        results = mounts.mount_all(paths)
    for username, result in results.items():
        print(f"{username}: {result}")
    failed = [u for u, r in results.items() if r.startswith("failed")]
    print(f"{len(results) - len(failed)} of {len(results)} volume(s) mounted.")
    return EXIT_ERROR if failed else EXIT_OK


def _status(site: spec.Site, classroom_path: Path, as_json: bool) -> int:
    classroom = spec.load_classroom(classroom_path, site)
    paths = site.paths
    _, hub_probe, _ = _hub_probes(site, classroom.name)
    with lock.hold(paths.lock, exclusive=False, timeout=site.lock_timeout):
        actual = observe.observe(paths, hub=hub_probe)
    rows = status.rows(spec.resolve(classroom, paths), actual, outbox.pending(paths.outbox))
    print(json.dumps({"format_version": 1, "classroom": classroom.name, "people": rows}, indent=2)
          if as_json else status.render(rows))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
