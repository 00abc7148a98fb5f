"""The `reconcile` commands: each reads its arguments, calls the engine or a feature, prints, returns the exit code.

The engine returns outcomes; ``exit_code`` is the one place that turns an
outcome into the documented exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..config.classroom import Classroom, json_schema
from ..config.load import load_classroom, load_site
from ..config.site import SITE_DEFAULT_PATH, Site, find_site
from ..config.sizes import format_size, parse_size
from ..core.actions import Action, Kind, Plan, Policy
from ..core.render import SYMBOLS, render_json, render_text
from ..core.firewall import reaches
from ..core.report import course_folder, material_link, render_course_folder
from ..core.report import render as render_people
from ..core.report import render_exports, render_swarm
from ..core.report import rows
from ..credentials import outbox
from ..engine import passes
from ..engine.apply import Result
from ..engine.passes import Outcome, Verdict
from ..host import lock
from . import progress
from .parser import command

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_REFUSED, EXIT_WAITING = 0, 1, 2, 3, 4


class UsageError(Exception):
    """The command line cannot be carried out as given (exit 64)."""


EXIT_CODES = {
    Verdict.CONVERGED: EXIT_OK,
    Verdict.PENDING: EXIT_PENDING,
    Verdict.BLOCKED: EXIT_ERROR,
    Verdict.FAILED: EXIT_ERROR,
    Verdict.INTERRUPTED: EXIT_ERROR,
    Verdict.REFUSED: EXIT_REFUSED,
    Verdict.WAITING: EXIT_WAITING,
}


def exit_code(outcome: Outcome) -> int:
    return EXIT_CODES[outcome.verdict]


def site_of(args: argparse.Namespace, applies: bool = False) -> Site:
    """site.yaml as found (--site, $RECONCILE_SITE, /etc/classroom/site.yaml), else the built-in default.

    The built-in default keeps its state in ./state of the current directory: that is the checkout's own
    classroom (`reconcile up`).  Anywhere else it would plan a fresh host and change one, so the command
    says which site it uses, and a command that changes the host refuses (exit 64) without a site file.
    """
    path = find_site(getattr(args, "site", None))
    if path is None:
        here = Path.cwd()
        print(
            f"site: built in (no --site, $RECONCILE_SITE or {SITE_DEFAULT_PATH}); state in {here / 'state'}",
            file=sys.stderr,
        )
        if applies and not in_checkout(here):
            raise UsageError(
                f"refusing to change this host with the built-in site outside the reconciler's "
                f"checkout ({here} is not one): pass --site site.yaml or set RECONCILE_SITE"
            )
    site = load_site(path, remember=True)  # validated once per change of the file, not per command
    # the school's proxy, mirror and CA for the programs this command runs (host.run passes them on)
    os.environ.update(site.network.environment())
    return site


def in_checkout(directory: Path) -> bool:
    """Is this the project's own checkout (where `reconcile up` keeps the built-in classroom's state)?"""
    return (directory / "pyproject.toml").is_file() and (directory / "reconciler" / "cli").is_dir()


def roster_of(args: argparse.Namespace, site: Site) -> Classroom:
    """classroom.yaml, validated (or remembered as validated while its bytes and the site are unchanged)."""
    return load_classroom(classroom_path(args, site), site, remember=True)


def classroom_path(args: argparse.Namespace, site: Site) -> Path:
    if getattr(args, "file", None):
        return Path(args.file)
    return site.classroom_file or Path("classroom.yaml")


def policy_of(args: argparse.Namespace, site: Site) -> Policy:
    return passes.policy(site, getattr(args, "allow_destroy", False), getattr(args, "allow_mass_disable", False))


# --- a pass --------------------------------------------------------------------------------------


def reconcile(args: argparse.Namespace) -> int:
    """`reconcile [--dry-run] [--observed snapshot.json]`: one pass, or a plan against a server's snapshot."""
    if args.observed and not args.dry_run:
        raise UsageError("--observed only plans: add --dry-run")
    site = site_of(args, applies=not args.dry_run)
    classroom = roster_of(args, site)
    policy = policy_of(args, site)
    if args.observed:
        outcome = passes.plan_offline(site, classroom, json.loads(args.observed.read_text()), policy)
        print(
            render_json(outcome.plan) if args.json else render_text(outcome.plan, colour=progress.colour_on(sys.stdout))
        )
        return exit_code(outcome)
    return run_pass(site, classroom, policy, dry_run=args.dry_run, as_json=args.json)


def run_pass(site: Site, classroom: Classroom, policy: Policy, *, dry_run: bool, as_json: bool, out=sys.stdout) -> int:
    """Observe, plan, then preview or apply; print the plan and what happened."""
    if site.hub is None and not as_json:
        print("note: site.yaml has no hub: section, so JupyterHub users and servers are left alone.", file=sys.stderr)

    def show(the_plan: Plan) -> None:
        print(render_json(the_plan) if as_json else render_text(the_plan, colour=progress.colour_on(out)), file=out)

    done = [0]
    total = [0]

    def show_and_count(the_plan: Plan) -> None:
        total[0] = sum(1 for a in the_plan.actions if not a.waits)
        show(the_plan)

    def report(action: Action, result: str, detail: str) -> None:
        if not as_json:
            done[0] += 1
            width = len(str(total[0]))
            line = f"[{done[0]:>{width}}/{total[0]}] {result:>7}: {SYMBOLS[action.op]} {action.kind} {action.target}"
            print(f"{line} ({detail})" if detail else line, file=sys.stderr)

    if dry_run:
        outcome = passes.preview(site, classroom, policy, on_plan=show_and_count)
    else:
        outcome = passes.converge(site, classroom, policy, on_plan=show_and_count, report=report)
    if outcome.verdict is Verdict.REFUSED:
        print("A safety guard refused this pass; nothing was changed.", file=sys.stderr)
    if outcome.result is not None:
        _summarize(outcome.plan, outcome.result, site)
    return exit_code(outcome)


def _summarize(the_plan: Plan, result: Result, site: Site) -> None:
    new_credentials = sum(1 for a in the_plan.actions if a.kind is Kind.PASSWORD)
    if new_credentials:
        print(
            f"{new_credentials} new password(s) wait in {site.paths.outbox}/ (root only) for delivery.", file=sys.stderr
        )
    for target, why in sorted(result.waiting.items()):
        print(f"waiting: {target}: {why}", file=sys.stderr)
    if result.failed:
        for target, error in sorted(result.failed.items()):
            print(f"failed: {target}: {error}", file=sys.stderr)
        print(
            f"Applied {result.ok} action(s); {len(result.failed)} target(s) failed, {result.skipped} step(s) "
            "skipped. The next pass retries them.",
            file=sys.stderr,
        )
    elif result.waiting:
        print(
            f"Applied {result.ok} action(s); {len(result.waiting)} person(s) wait for their volume to be free "
            "(not converged yet: every pass tries again).",
            file=sys.stderr,
        )
    else:
        print(f"Applied {result.ok} action(s). Converged.", file=sys.stderr)


def validate(args: argparse.Namespace) -> int:
    site = site_of(args)
    path = classroom_path(args, site)
    classroom = load_classroom(path, site, remember=True)
    print(f"{path}: valid (classroom {classroom.name}, {len(classroom.people)} people)")
    return EXIT_OK


def k8s_render(args: argparse.Namespace) -> int:
    from ..host.fsutil import write_atomic
    from ..k8s.render import render

    site = site_of(args)
    text = render(site, roster_of(args, site))
    if args.output is None:
        print(text, end="")
    else:
        write_atomic(args.output, text, mode=0o644)  # no secrets: names, quotas and the hook
        print(f"{args.output}: written", file=sys.stderr)
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def status(args: argparse.Namespace) -> int:
    site = site_of(args)
    classroom = roster_of(args, site)
    swarm = site.hub is not None and site.hub.spawner == "swarm"
    # the containers (one Docker call): which worker runs each server (swarm), which servers run an older image
    outcome = passes.look(site, classroom, containers=site.hub is not None)
    from ..host import liveness  # `status` only: a dry run never loads it

    daemon = liveness.look(site.paths.heartbeat)
    if args.json:
        print(json.dumps({**passes.status_document(site, outcome), "daemon": daemon}, indent=2))
        return EXIT_OK
    print(render_people(rows(outcome.desired, outcome.actual, outbox.pending(site.paths.outbox))))
    print()
    print(f"daemon: {liveness.describe(daemon)}{_last_pass(site)}")
    print(render_course_folder(course_folder(outcome.desired, outcome.actual)))
    if classroom.assignments:
        from ..core.assignments import counts

        for name, found in counts(outcome.desired, outcome.actual).items():
            print(
                f"assignment {name}: handed out {found['handed_out']}; on time {found['on time']}, late "
                f"{found['late']}, missing {found['missing']}, not collected yet {found['not yet']}; feedback "
                f"returned {found['feedback_returned']} (reconcile assignments for each student)"
            )
    if classroom.course_repo is not None and site.hub is not None:
        repo = classroom.course_repo
        print(
            f"course material: {repo.url} ({repo.branch}) into ~/{repo.target}; the link for the class: "
            f"{material_link(site.hub.public_url, repo.url, repo.branch, repo.target)}"
        )
    if site.hub is not None:
        from ..host.firewall import host_networks

        for line in reaches(site.hub, () if swarm else host_networks()):
            print(f"student servers reach: {line}")
        if not swarm:
            print(image_line(site.hub.image, outcome.actual))
    if swarm:
        from ..host.containers import swarm_nodes

        for line in render_swarm(swarm_nodes(), [w.address for w in site.hub.swarm.workers]):
            print(line)
    for line in render_exports(outcome.desired, outcome.actual):
        print(line)
    if site.hub is not None and classroom.schedule:
        import datetime as dt

        from ..engine import prewarm

        now = dt.datetime.now(dt.UTC)
        print(f"lessons: {prewarm.look(site, classroom, outcome.desired, outcome.actual, now).text}")
    for disk in passes.disks(site):
        share = disk.free / disk.size if disk.size else 0
        warn = f"  LOW (below {site.warn_free_fraction:.0%})" if disk.low else ""
        print(
            f"disk: {disk.what} ({disk.path}): {format_size(disk.free)} free of "
            f"{format_size(disk.size)} ({share:.0%}){warn}"
        )
    return EXIT_OK


def _last_pass(site: Site) -> str:
    """'; last pass 2026-...: converged', from the daemon's status.json (nothing before its first pass)."""
    record = passes.last_pass(site)
    return "" if record is None else f"; last pass {record.time}: {record.result}"


def image_line(tag: str, actual) -> str:
    """`status`: which image hub.image names (and what the course put in it), and how many running servers still run
    an older one."""
    from ..image.build import image_labels
    from ..image.course import summary

    if actual.containers is None:  # Docker does not answer: nothing can be said of the image either
        return f"image: {tag} not checked: Docker cannot be reached (is dockerd running?)"
    labels = image_labels(tag)
    if labels is None:
        return f"image: {tag} does not exist here (reconcile image build)"
    running = [c for c in (actual.containers or {}).values() if c.running]
    old = sorted(c.username for c in running if c.stale)
    text = f"image: {tag} ({summary(labels)}); {len(running)} server(s) running"
    if old:
        text += (
            f", {len(old)} on an older image ({', '.join(old[:5])}{' ...' if len(old) > 5 else ''}): "
            "reconcile image rollout restarts the idle ones"
        )
    return text


# --- the host -------------------------------------------------------------------------------------


def mount_all(args: argparse.Namespace) -> int:
    attached, results = passes.mount_all(site_of(args, applies=True))
    for line in attached:
        print(line)
    for username, result in results.items():
        print(f"{username}: {result}")
    failed = [u for u, r in results.items() if r.startswith("failed")]
    print(f"{len(results) - len(failed)} of {len(results)} volume(s) mounted.")
    return EXIT_ERROR if failed else EXIT_OK


def storage_init(args: argparse.Namespace) -> int:
    from ..host.run import Runner
    from ..host.volumes.lvm_storage import storage_init as init

    site_of(args)  # a broken site.yaml is reported before anything is made
    print(init(args.vg, args.file, parse_size(args.size), Runner()))
    return EXIT_OK


def image_build(args: argparse.Namespace) -> int:
    from ..image import build

    site = site_of(args)
    tag = args.tag or (site.hub.image if site.hub else build.DEFAULT_TAG)
    if args.dry_run:
        changes = build.preview(site.image, site.pins_file, tag)
        for line in changes:
            print(line)
        print(f"{tag}: {'would change' if changes else 'up to date'}")
        return EXIT_PENDING if changes else EXIT_OK
    return build.report(
        tag,
        args.cache_dir or site.state_dir / "image-cache",
        args.force,
        progress.of(args),
        site.image,
        site.pins_file,
        args.update_pins,
    )


def image_rollout(args: argparse.Namespace) -> int:
    """Restart the idle students' servers that run an older image than hub.image names (exit 0; 1 when a restart
    failed or the hub cannot be asked)."""
    import datetime as dt

    from ..engine.rollout import rollout

    site = site_of(args, applies=not args.dry_run)
    if site.hub is None:
        raise UsageError("image rollout: site.yaml has no hub section")
    classroom = roster_of(args, site)
    done = rollout(site, classroom, dt.timedelta(minutes=args.idle), dry_run=args.dry_run)
    verb = "would restart" if args.dry_run else "restarted"
    for name in done.restarted if not args.dry_run else done.plan.restart:
        print(f"{verb} {name}'s server: it runs the new image")
    for name, why in done.plan.in_use.items():
        print(f"left {name}'s server: {why} (it gets the new image at its next start)")
    for name in done.plan.others:
        print(f"left {name}'s server: a teacher's (restart it from the hub's home page)")
    for name, why in done.failed.items():
        print(f"could not restart {name}'s server: {why}", file=sys.stderr)
    if not (done.plan.restart or done.plan.in_use or done.plan.others):
        print(f"every running server uses the image {site.hub.image} names now")
    return EXIT_ERROR if done.failed else EXIT_OK


def image_push_nodes(args: argparse.Namespace) -> int:
    from ..image import nodes

    site = site_of(args)
    if site.hub is None or site.hub.swarm is None:
        raise UsageError("image push-nodes: site.yaml has no hub.swarm section (hub.spawner: swarm)")
    tag = args.tag or site.hub.image
    try:
        results = nodes.push(tag, site.hub.swarm.workers, progress.of(args))
    except LookupError as exc:
        print(f"reconcile image push-nodes: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for pushed in results:
        print(f"{pushed.worker}: {pushed.result}")
    return EXIT_OK if all(p.ok for p in results) else EXIT_ERROR


# --- processes ----------------------------------------------------------------------------------------


def hub(args: argparse.Namespace) -> int:
    site = site_of(args, applies=True)
    if site.hub is None:
        print("reconcile hub: site.yaml has no hub: section (see examples/site.yaml)", file=sys.stderr)
        return EXIT_ERROR
    from ..hub.launch import exec_hub

    exec_hub(site, classroom_path(args, site))
    return EXIT_ERROR  # not reached: exec_hub replaces this process


def api(args: argparse.Namespace) -> int:
    from ..service import app

    site = site_of(args)
    return app.main(site, classroom_path(args, site))


# --- roster and credentials ----------------------------------------------------------------------------


def import_csv(args: argparse.Namespace) -> int:
    from ..roster import csv_import, edit
    from ..engine.journal import Unwritable
    from ..engine.journal import before as journal_before
    from ..service.teacher import journal_imported, refuse_new_problems

    site = site_of(args)
    classroom_file = classroom_path(args, site)
    say = progress.of(args)
    try:
        say(f"reading {args.csv} and checking every row against {classroom_file} and this host's accounts")
        result = csv_import.prepare(classroom_file, site, args.csv.read_bytes(), order=args.name_order)
    except OSError as exc:
        print(f"{args.csv}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except edit.Rejected as exc:
        for problem in exc.problems:
            print(f"{args.csv}: {problem['message']}", file=sys.stderr)
        return EXIT_ERROR
    for line in result.present:
        print(f"skipped: {line}")
    if result.problems:
        for problem in result.problems:
            print(f"{args.csv}: {problem}", file=sys.stderr)
        if not args.skip_invalid:
            print(
                f"{len(result.problems)} invalid row(s); nothing was changed (--skip-invalid adds the others).",
                file=sys.stderr,
            )
            return EXIT_ERROR
        print(f"left out {len(result.problems)} invalid row(s).", file=sys.stderr)
    for entry in result.added:
        emails = entry.get("email", "")
        print(f"+ {entry['username']:<16} {entry['name']}  {', '.join(emails) if isinstance(emails, list) else emails}")
    if getattr(args, "dry_run", False):
        print(f"{len(result.added)} to add (dry run: {classroom_file} unchanged).")
        return EXIT_PENDING if result.added else EXIT_OK
    if result.added:
        say(f"planning {len(result.added)} new people against this host, then writing {classroom_file}")
        try:
            with journal_before(site.paths.journal, operator(), source="cli") as journal:  # journal first
                edit.add_students(
                    classroom_file, site, result.added, lambda before, after: refuse_new_problems(site, before, after)
                )
                journal_imported(journal, result.added, "imported from CSV with reconcile import-csv")
        except edit.Rejected as exc:
            why = "the next pass would refuse it or block someone" if exc.status == 409 else "the file would be invalid"
            print(f"{classroom_file}: not imported, {why}: {exc}; nothing was changed.", file=sys.stderr)
            return EXIT_ERROR
        except Unwritable as exc:
            print(f"{classroom_file}: not imported: {exc}", file=sys.stderr)
            return EXIT_ERROR
    print(f"{len(result.added)} added to {classroom_file}.")
    return EXIT_OK


def operator() -> str:
    """Who ran the command, for the journal (sudo's caller when there is one)."""
    import os
    import pwd

    name = os.environ.get("SUDO_USER")
    if name:
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def reset_password(args: argparse.Namespace) -> int:
    from ..service import teacher

    site = site_of(args, applies=True)
    classroom = roster_of(args, site)
    try:
        teacher.reset_password(site, classroom, args.username, actor=operator())
    except teacher.Refused as exc:
        print(f"reconcile: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except (lock.LockBusy, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 - journaled by reset_password
        print(f"reconcile: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.username} has a new password; it waits in {site.paths.outbox}/ (root only).")
    return _send(site, classroom)


def _send(site: Site, classroom: Classroom) -> int:
    from ..credentials import delivery

    if site.delivery.smtp is None:
        print("No smtp: in site.yaml's delivery section: print slips with `reconcile credentials slips --out FILE`.")
        return EXIT_OK
    report = delivery.deliver(site, classroom.name, active=delivery.active_people(classroom))
    for username in report.sent:
        print(f"sent: {username}")
    for username in report.held:
        print(f"held: {username} is not active in classroom.yaml (the password stays until they are enabled again)")
    for username, error in sorted(report.failed.items()):
        print(f"not sent (kept, will retry): {username}: {error}", file=sys.stderr)
    return EXIT_ERROR if report.failed else EXIT_OK


def send_credentials(args: argparse.Namespace) -> int:
    site = site_of(args, applies=True)
    classroom = roster_of(args, site)
    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout):
        return _send(site, classroom)


def slips(args: argparse.Namespace) -> int:
    from ..credentials import delivery

    site = site_of(args, applies=True)
    classroom = roster_of(args, site)
    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout):
        written = delivery.write_slips(
            site, classroom.name, args.out, everyone=args.all, active=delivery.active_people(classroom)
        )
    if not written:
        print("No passwords are waiting for a slip.")
        return EXIT_OK
    print(f"{len(written)} slip(s) written to {args.out} (it contains passwords: print it, then delete it).")
    return EXIT_OK


def register(sub) -> None:
    """This module's subcommands: the files, status, the hub and its service, passwords, the roster, storage,
    the image, Kubernetes."""
    command(sub, "validate", validate, "check classroom.yaml (and site.yaml); change nothing")
    command(sub, "schema", schema, "print the JSON schema of classroom.yaml", common=False)
    status_parser = command(sub, "status", status, "show each person's account, volume and mount")
    status_parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="the people and the raw snapshot as JSON (what CI plans against with --observed)",
    )
    command(sub, "mount-all", mount_all, "mount every volume in the manifest (at boot, before the hub)")
    command(sub, "hub", hub, "run JupyterHub for this classroom in the foreground (site.yaml needs a hub: section)")
    command(sub, "api", api, "the teacher API and page (a JupyterHub service: `reconcile hub` starts it)")

    reset = command(
        sub, "reset-password", reset_password, "give USER a new generated password, delivered like a new one"
    )
    reset.add_argument("username", help="the person (a student or teacher in classroom.yaml)")

    credentials = sub.add_parser(
        "credentials",
        help="deliver new passwords: e-mail or printable slips",
        description="deliver new passwords: e-mail or printable slips",
    )
    cred_sub = credentials.add_subparsers(dest="credentials_command", metavar="ACTION", required=True)
    command(
        cred_sub,
        "send",
        send_credentials,
        "e-mail every waiting password now (the daemon does this after each pass)",
    )
    slips_parser = command(
        cred_sub,
        "slips",
        slips,
        "write printable slips (HTML) for people without e-mail; those passwords leave the outbox",
    )
    slips_parser.add_argument("--out", type=Path, required=True, help="the HTML file to write (mode 0600)")
    slips_parser.add_argument("--all", action="store_true", help="also people who have an e-mail address")

    imp = command(sub, "import-csv", import_csv, "add the people of a CSV roster to classroom.yaml (comments kept)")
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
    init = command(
        storage_sub,
        "init",
        storage_init,
        "create a volume group on a sparse file behind a loop device (for servers without a spare disk); idempotent",
        common=False,
    )
    init.add_argument("--vg", required=True, help="the volume group's name")
    init.add_argument("--file", type=Path, required=True, help="the sparse file that holds the physical volume")
    init.add_argument("--size", required=True, help="the file's size, e.g. 100G")

    image = sub.add_parser("image", help="the student container image", description="the student container image")
    image_sub = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = command(
        image_sub,
        "build",
        image_build,
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
    roll = command(
        image_sub,
        "rollout",
        image_rollout,
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
    push = command(
        image_sub,
        "push-nodes",
        image_push_nodes,
        "copy the image onto every worker of hub.swarm (docker save | docker -H <worker> load; no "
        "registry); workers that already hold it are skipped",
    )
    push.add_argument("--tag", default=None, help="default: site.yaml's hub.image")
    k8s = sub.add_parser(
        "k8s",
        help="the classroom on Kubernetes (Zero to JupyterHub)",
        description="the classroom on Kubernetes (Zero to JupyterHub)",
    )
    k8s_sub = k8s.add_subparsers(dest="k8s_command", metavar="ACTION", required=True)
    render = command(
        k8s_sub,
        "render",
        k8s_render,
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
