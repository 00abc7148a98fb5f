"""The `reconcile` command: one pass (plan, then apply or preview) and its helpers.

Exit codes.  --dry-run: 0 no changes, 2 changes pending, 1 error, 3 a guard
refused.  Apply: 0 converged, 1 some actions failed, 3 a guard refused
(nothing applied).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import engine, lock, mounts, observe, outbox, render, spec, status, system
from .engine import EXIT_ERROR, EXIT_OK, EXIT_REFUSED
from .plan import Action, Plan, Policy, plan


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
    parser.add_argument("--observed", type=Path, metavar="snapshot.json",
                        help="with --dry-run: plan against a snapshot from `reconcile status --json` (for CI)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("validate", "check classroom.yaml (and site.yaml); change nothing"),
                       ("schema", "print the JSON schema of classroom.yaml"),
                       ("status", "show each person's account, volume and mount"),
                       ("mount-all", "mount every volume in the manifest (at boot, before the hub)"),
                       ("hub", "run JupyterHub for this classroom in the foreground (site.yaml needs a hub: section)"),
                       ("watch", "the daemon: apply classroom.yaml on every save and every resync_interval"),
                       ("api", "the teacher API and page (a JupyterHub service: `reconcile hub` starts it)"),
                       ("up", "everything on this machine: image, volumes, hub and daemon in the background, "
                              "one pass"),
                       ("down", "stop the hub and the daemon started by `reconcile up`")):
        command = sub.add_parser(name, help=text, description=text)
        if name != "schema":
            _common(command, suppress=True)
        if name == "status":
            command.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        if name == "watch":
            command.add_argument("--allow-mass-disable", action="store_true", default=argparse.SUPPRESS)
            command.add_argument("--allow-destroy", action="store_true", default=argparse.SUPPRESS)
    reset = sub.add_parser("reset-password", help="give USER a new generated password, delivered like a new one")
    _common(reset, suppress=True)
    reset.add_argument("username")
    credentials = sub.add_parser("credentials", help="deliver new passwords: e-mail or printable slips")
    cred_sub = credentials.add_subparsers(dest="credentials_command", metavar="ACTION", required=True)
    send = cred_sub.add_parser("send", help="e-mail every waiting password now (the daemon does this after each pass)")
    _common(send, suppress=True)
    slips = cred_sub.add_parser("slips", help="write printable slips (HTML) for people without e-mail; "
                                              "those passwords leave the outbox")
    _common(slips, suppress=True)
    slips.add_argument("--out", type=Path, required=True, help="the HTML file to write (mode 0600)")
    slips.add_argument("--all", action="store_true", help="also people who have an e-mail address")
    imp = sub.add_parser("import-csv", help="add the people of a CSV roster to classroom.yaml (comments kept)")
    _common(imp, suppress=True)
    imp.add_argument("csv", type=Path, metavar="roster.csv")
    imp.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS, help="show who would be added")
    imp.add_argument("--skip-invalid", action="store_true", help="add the valid rows, report the others")
    storage = sub.add_parser("storage", help="LVM storage for the volumes")
    storage_sub = storage.add_subparsers(dest="storage_command", metavar="ACTION", required=True)
    init = storage_sub.add_parser("init", help="create a volume group on a sparse file behind a loop device "
                                               "(for servers without a spare disk); idempotent")
    init.add_argument("--vg", required=True)
    init.add_argument("--file", type=Path, required=True)
    init.add_argument("--size", required=True, help="e.g. 100G")
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
        if args.command == "storage":
            from . import lvm

            print(lvm.storage_init(args.vg, args.file, spec.parse_size(args.size)))
            return EXIT_OK
        if args.command == "image":
            from . import image

            tag = args.tag or (site.hub.image if site.hub else image.DEFAULT_TAG)
            return image.report(tag, args.cache_dir or site.state_dir / "image-cache", args.force)
        if args.command in ("up", "down"):
            from . import up

            classroom_file = _classroom_path(args, site)
            return up.up(site, classroom_file) if args.command == "up" else up.down(site, classroom_file)
        if args.command == "mount-all":
            return _mount_all(site)
        if args.command == "hub":
            return _hub(site, _classroom_path(args, site))
        if args.command == "api":
            from .service import app

            return app.main(site, _classroom_path(args, site))
        if args.command == "status":
            return _status(site, _classroom_path(args, site), args.json)
        policy = engine.policy(site, args.allow_destroy, args.allow_mass_disable)
        if args.command == "watch":
            from . import watch

            return watch.main(site, _classroom_path(args, site), policy)
        classroom = spec.load_classroom(_classroom_path(args, site), site)
        if args.command == "import-csv":
            return _import_csv(site, _classroom_path(args, site), args)
        if args.command == "reset-password":
            return _reset_password(site, classroom, args.username)
        if args.command == "credentials":
            return _credentials(site, classroom, args)
        if args.command == "validate":
            people = len(classroom.admins) + len(classroom.students)
            print(f"{_classroom_path(args, site)}: valid (classroom {classroom.name}, {people} people)")
            return EXIT_OK
        if args.observed:
            if not args.dry_run:
                print("reconcile: --observed only plans: add --dry-run", file=sys.stderr)
                return EXIT_ERROR
            return _plan_offline(site, classroom, args.observed, policy, args.json)
        return run_pass(site, classroom, policy, dry_run=args.dry_run, as_json=args.json)
    except spec.InvalidFile as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    except system.CommandFailed as exc:  # observe's lvs/vgs, storage init, ...
        print(f"reconcile: {exc}", file=sys.stderr)
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
    """Observe, plan, then preview or apply; print the plan and what happened."""
    if site.hub is None and not as_json:
        print("note: site.yaml has no hub: section, so JupyterHub users and servers are left alone.", file=sys.stderr)

    def show(the_plan: Plan) -> None:
        print(render.render_json(the_plan) if as_json else render.render_text(the_plan), file=out)

    def report(action: Action, result: str, detail: str) -> None:
        if not as_json:
            line = f"{result:>7}: {render.SYMBOLS[action.op]} {action.kind} {action.target}"
            print(f"{line} ({detail})" if detail else line, file=sys.stderr)

    outcome = engine.one_pass(site, classroom, policy, dry_run=dry_run, on_plan=show, report=report)
    if outcome.code == EXIT_REFUSED:
        print("A safety guard refused this pass; nothing was changed.", file=sys.stderr)
    if outcome.result is not None:
        _summarize(outcome.plan, outcome.result, site.paths)
    return outcome.code


def _summarize(the_plan: Plan, result, paths) -> None:
    new_credentials = sum(1 for a in the_plan.actions if a.kind == "password")
    if new_credentials:
        print(f"{new_credentials} new password(s) wait in {paths.outbox}/ (root only) for delivery.", file=sys.stderr)
    if result.failed:
        for target, error in sorted(result.failed.items()):
            print(f"failed: {target}: {error}", file=sys.stderr)
        print(f"Applied {result.ok} action(s); {len(result.failed)} target(s) failed, {result.skipped} step(s) "
              "skipped. The next pass retries them.", file=sys.stderr)
    else:
        print(f"Applied {result.ok} action(s). Converged.", file=sys.stderr)


def _import_csv(site: spec.Site, classroom_file: Path, args: argparse.Namespace) -> int:
    from . import roster, rosteredit

    try:
        result = roster.prepare(classroom_file, site, args.csv.read_bytes())
    except OSError as exc:
        print(f"{args.csv}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except rosteredit.Rejected as exc:
        for problem in exc.problems:
            print(f"{args.csv}: {problem['message']}", file=sys.stderr)
        return EXIT_ERROR
    for line in result.present:
        print(f"skipped: {line}")
    if result.problems:
        for problem in result.problems:
            print(f"{args.csv}: {problem}", file=sys.stderr)
        if not args.skip_invalid:
            print(f"{len(result.problems)} invalid row(s); nothing was changed (--skip-invalid adds the others).",
                  file=sys.stderr)
            return EXIT_ERROR
        print(f"left out {len(result.problems)} invalid row(s).", file=sys.stderr)
    for entry in result.added:
        emails = entry.get("email", "")
        print(f"+ {entry['username']:<16} {entry['name']}  {', '.join(emails) if isinstance(emails, list) else emails}")
    if getattr(args, "dry_run", False):
        print(f"{len(result.added)} to add (dry run: {classroom_file} unchanged).")
        return engine.EXIT_PENDING if result.added else EXIT_OK
    if result.added:
        try:
            rosteredit.add_students(classroom_file, site, result.added)
        except rosteredit.Rejected as exc:
            print(f"{classroom_file}: the import would make the file invalid ({exc}); nothing was changed.",
                  file=sys.stderr)
            return EXIT_ERROR
    print(f"{len(result.added)} added to {classroom_file}.")
    return EXIT_OK


def _reset_password(site: spec.Site, classroom: spec.Classroom, username: str) -> int:
    from . import teacher

    try:
        teacher.reset_password(site, classroom, username)
    except teacher.Refused as exc:
        print(f"reconcile: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except (lock.LockBusy, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 - journaled by reset_password
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{username} has a new password; it waits in {site.paths.outbox}/ (root only).")
    return _send(site, classroom)


def _send(site: spec.Site, classroom: spec.Classroom) -> int:
    from . import delivery

    if site.delivery.smtp is None:
        print("No smtp: in site.yaml's delivery section: print slips with `reconcile credentials slips --out FILE`.")
        return EXIT_OK
    report = delivery.deliver(site, classroom.name)
    for username in report.sent:
        print(f"sent: {username}")
    for username, error in sorted(report.failed.items()):
        print(f"not sent (kept, will retry): {username}: {error}", file=sys.stderr)
    return EXIT_ERROR if report.failed else EXIT_OK


def _credentials(site: spec.Site, classroom: spec.Classroom, args: argparse.Namespace) -> int:
    from . import delivery

    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout):
        if args.credentials_command == "send":
            return _send(site, classroom)
        written = delivery.write_slips(site, classroom.name, args.out, everyone=args.all)
    if not written:
        print("No passwords are waiting for a slip.")
        return EXIT_OK
    print(f"{len(written)} slip(s) written to {args.out} (it contains passwords: print it, then delete it).")
    return EXIT_OK


def _hub(site: spec.Site, classroom_file: Path) -> int:
    if site.hub is None:
        print("reconcile hub: site.yaml has no hub: section (see examples/site.yaml)", file=sys.stderr)
        return EXIT_ERROR
    from .hub.launch import exec_hub

    exec_hub(site, classroom_file)
    return EXIT_ERROR  # not reached: exec_hub replaces this process


def _mount_all(site: spec.Site) -> int:
    paths = site.paths
    with lock.hold(paths.lock, exclusive=True, timeout=site.lock_timeout):
        if isinstance(site.volumes, spec.LvmVolumes) and site.volumes.pv_file:
            from . import lvm

            print(lvm.attach_pv(site.volumes.pv_file))
        results = mounts.mount_all(paths)
    for username, result in results.items():
        print(f"{username}: {result}")
    failed = [u for u, r in results.items() if r.startswith("failed")]
    print(f"{len(results) - len(failed)} of {len(results)} volume(s) mounted.")
    return EXIT_ERROR if failed else EXIT_OK


def _status(site: spec.Site, classroom_path: Path, as_json: bool) -> int:
    classroom = spec.load_classroom(classroom_path, site)
    paths = site.paths
    _, hub_probe, _ = engine.hub_probes(site, classroom.name)
    with lock.hold(paths.lock, exclusive=False, timeout=site.lock_timeout):
        actual = observe.observe(paths, hub=hub_probe)
    desired = spec.resolve(classroom, paths)
    if as_json:
        print(json.dumps(status.document(site, desired, actual), indent=2))
    else:
        print(status.render(status.rows(desired, actual, outbox.pending(paths.outbox))))
    return EXIT_OK


def _plan_offline(site: spec.Site, classroom: spec.Classroom, snapshot_file: Path, policy: Policy,
                  as_json: bool) -> int:
    """--dry-run --observed: plan against a server's snapshot, without touching this host."""
    from .layout import Paths

    data = json.loads(snapshot_file.read_text())
    actual = observe.from_json(data.get("observed", data))
    paths = Paths(Path(data["paths"]["state"]), Path(data["paths"]["homes"])) if "paths" in data else site.paths
    limits = data.get("policy", {})
    policy = Policy(policy.allow_destroy, policy.allow_mass_disable,
                    limits.get("max_disable_fraction", policy.max_disable_fraction),
                    limits.get("max_overcommit", policy.max_overcommit))
    the_plan = plan(spec.resolve(classroom, paths), actual, policy)
    print(render.render_json(the_plan) if as_json else render.render_text(the_plan))
    if the_plan.refused:
        return EXIT_REFUSED
    if the_plan.blocked:
        return EXIT_ERROR
    return engine.EXIT_PENDING if the_plan.actions else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
