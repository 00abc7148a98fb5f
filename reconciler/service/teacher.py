"""What a teacher can see and change, as plain functions: the use cases behind the teacher API.

Reads are the engine's dry run (one observation: the class table and the
pending plan come from the same snapshot); roster writes go through the same
comment-preserving writer as `import-csv` (the daemon then converges the
host), passwords through the account driver.  Every write is journaled with
the teacher who made it, never with a secret.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ..config.classroom import Classroom
from ..config.load import InvalidFile, check_classroom, read_source, read_version
from ..config.site import Site
from ..core.actions import Action, Kind, Op
from ..core.report import PersonRow, material_link, rows
from ..credentials import delivery, outbox
from ..engine import end_of_term
from ..engine import passes
from ..engine.journal import Journal, record_edit
from ..engine.journal import before as journal_before
from ..host import accounts, containers, liveness, lock
from ..host.facts import HostFiles, read_accounts, read_groups
from ..host.fsutil import private_dir
from ..host.gitinfo import git_revision, log_line
from ..host.run import Runner
from ..roster import csv_import, edit, names
from ..roster.edit import Rejected, Written
from .openapi import StudentList, StudentRow


class Refused(Exception):
    """The request cannot be carried out as asked (unknown person, roster kept in git, ...)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


PLAN_LOCK_WAIT = 2.0  # seconds a request waits for a running pass before answering 503 (the page retries)
_PARSED: dict[Path, tuple[tuple[int, int, int], Classroom, dict, str]] = {}  # the last valid version, its ETag


@dataclass(frozen=True)
class Room:
    """The site and the classroom file the service manages, and the host files it reads (tests: fixtures)."""

    site: Site
    file: Path
    host: HostFiles = HostFiles()

    def accept(self, before: Classroom, after: Classroom) -> None:
        """An edit that the next pass would refuse, or that would block someone, is not written (409)."""
        refuse_new_problems(self.site, before, after, self.host)

    def current(self) -> tuple[Classroom, dict, str]:
        """The validated file, its data as written and its ETag (the sha256 of its bytes): one version, parsed
        again only when it changed (every request asks, for authorization)."""
        try:
            stat = self.file.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None  # read_version says why (InvalidFile)
        cached = _PARSED.get(self.file)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2], cached[3]
        version = read_version(self.file)  # a whole version, never one being written in place
        source = read_source(self.file, version.data)
        classroom = check_classroom(source, self.site)
        _PARSED[self.file] = ((version.inode, version.mtime_ns, version.size), classroom, source.data, version.sha256)
        return classroom, source.data, version.sha256

    def classroom(self) -> Classroom:
        return self.current()[0]

    def written(self) -> dict[str, dict]:
        """username -> the person's entry exactly as written (sizes as the teacher typed them)."""
        return _entries(self.current()[1])

    def etag(self) -> str | None:
        """The version of classroom.yaml as it is now (HTTP ETag); None while it is invalid."""
        try:
            return self.current()[2]
        except InvalidFile:
            return None

    def last_valid(self) -> tuple[Classroom, dict[str, dict]] | None:
        """While the file is invalid: its last valid version and its entries as written (the one this service
        last saw, else the daemon's copy of the last one it applied); None when there is neither."""
        cached = _PARSED.get(self.file)
        if cached is not None:
            classroom, data = cached[1], cached[2]
        else:
            try:
                source = read_source(self.site.paths.in_force)
                classroom, data = check_classroom(source, self.site), source.data
            except (InvalidFile, OSError):
                return None
        return classroom, _entries(data)

    def who_changed(self) -> str:
        """Who made the file what it is now: the git commit, or a change on this server outside the page."""
        revision = git_revision(self.file)
        if revision is not None:
            last = log_line(self.file)
            edits = "; the checkout also has local edits that are not committed" if revision["dirty"] else ""
            return f"commit {last or revision['commit'][:12]}{edits}"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.file.stat().st_mtime)) if self.file.exists() else "?"
        return f"changed on this server at {when}, outside this page (the page only writes valid files)"

    def teachers(self) -> frozenset[str] | None:
        """Active admins in the file as it is now: a teacher removed from it loses the API at once.

        While the file is invalid, those of its last valid version (the state the daemon keeps in
        force); None only if the service never saw a valid one: then the hub's scope alone decides.
        """
        try:
            classroom = self.classroom()
        except InvalidFile:
            cached = _PARSED.get(self.file)  # the last valid version, like the daemon keeps in force
            if cached is None:
                return None
            classroom = cached[1]
        return frozenset(p.username for p in classroom.admins if p.status == "active")


def _entries(data: dict) -> dict[str, dict]:
    return {p["username"]: p for section in ("admins", "students") for p in data.get(section) or []}


def _journal(room: Room, actor: str, action: Action, detail: str = "") -> None:
    record_edit(room.site.paths.journal, actor, action, detail, source="api")


def _journal_first(room: Room, actor: str):
    """A teacher's write, journal first (engine.journal.before): with no room to record it, it is not made."""
    return journal_before(room.site.paths.journal, actor, source="api")


def refuse_new_problems(site: Site, before: Classroom, after: Classroom, host: HostFiles = HostFiles()) -> None:
    """Plan the edited file against the host as it is: what it would newly refuse or block stops the edit."""
    notes = passes.check_edit(site, before, after, host)
    if notes:
        raise Rejected([{"path": f"{n.target}" if n.target else "", "message": n.message} for n in notes], status=409)


def journal_imported(journal: Journal, added: list[dict], how: str) -> None:
    """One journal line per person an import added: the same from `reconcile import-csv` and the API."""
    for entry in added:
        journal.record(Action(Op.CREATE, Kind.ROSTER, entry["username"], after=entry, reason=how), "ok")


def _writable(room: Room) -> None:
    if room.site.roster_in_git:
        revision = git_revision(room.file)
        at = f" (this server runs commit {revision['commit'][:12]})" if revision else ""
        raise Refused(
            409,
            f"classroom.yaml is managed in git{at}: change it in the repository and let CI deliver "
            "it, so the file in git stays the single source of truth",
        )


# --- reads ---------------------------------------------------------------------------------------


def students(room: Room) -> dict:
    """Desired and observed, per person: the page's table and GET /api/students.

    While classroom.yaml is invalid, the class is the last valid version (the one in force) and ``invalid``
    says what is wrong with the file and who changed it.
    """
    invalid, etag = None, None
    try:
        classroom, data, etag = room.current()
        raw = _entries(data)
    except InvalidFile as exc:
        found = room.last_valid()
        if found is None:  # never a valid version: nothing to show but the error (409)
            raise
        classroom, raw = found
        invalid = {"problems": [str(p) for p in exc.problems], "changed": room.who_changed()}
    # the host as it is, even in the middle of a pass: the daemon's last look at it when that saw this roster
    desired, actual, seen = passes.observe_now(room.site, classroom, _mtime(room.file) if invalid is None else None)
    memory = containers.memory_usage(actual.containers)
    members = {m.username: m for m in desired.members}
    written = {p.username: p for p in classroom.people}
    people = []
    for row in rows(desired, actual, outbox.pending(room.site.paths.outbox)):
        name = row.username
        member = members.get(name)
        hub_user = actual.hub_users.get(name)
        people.append(
            StudentRow(
                username=name,
                name=member.name if member else (actual.accounts[name].name if name in actual.accounts else None),
                role=row.role,
                status=row.status,
                emails=list(member.emails) if member else [],
                quota=written[name].quota if name in written else None,
                overrides=_overrides(raw[name]) if name in written else None,
                account=row.account,
                cpu=member.cpu if member else None,
                memory_limit=member.memory if member else None,
                memory_used=memory.get(name),
                disk_quota=member.disk if member else None,
                disk_used=row.volume_used,
                volume_size=row.volume_size,
                mounted=row.mounted,
                server=row.server,
                node=row.node,
                stale_image=row.stale_image,
                last_activity=hub_user.last_activity if hub_user else None,
                credentials=row.credentials,
                server_url=server_url(room.site, name) if row.server == "running" and row.role == "student" else None,
            )
        )
    hub = None if actual.hub is None else {"reachable": actual.hub.users is not None, "error": actual.hub.error}
    return StudentList(
        classroom=classroom.name,
        roster_in_git=room.site.roster_in_git,
        hub=hub,
        quotas=sorted(classroom.quotas),
        students=people,
        open_servers=None if room.site.hub is None or room.site.hub.subdomain_host else ONE_ORIGIN,
        invalid=invalid,
        quota_sizes={name: {"memory": q.memory, "cpu": q.cpu, "disk": q.disk} for name, q in classroom.quotas.items()},
        disk_changes={"online_grow": actual.online_resize, "resize_running": room.site.resize_running},
        course_material=course_material(room.site, classroom),
        host_seen=round(max(0.0, time.time() - seen), 1),
        etag=etag,
        daemon=liveness.look(room.site.paths.heartbeat),
    ).model_dump(mode="json")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()  # no file: never older than a snapshot


def course_material(site: Site, classroom: Classroom) -> dict | None:
    """classroom.yaml's course_repo with the link that pulls it into each home (None without one, or a hub)."""
    repo = classroom.course_repo
    if repo is None or site.hub is None:
        return None
    return {
        "url": repo.url,
        "branch": repo.branch,
        "folder": repo.target,
        "link": material_link(site.hub.public_url, repo.url, repo.branch, repo.target),
    }


ONE_ORIGIN = (
    "Opening a student's JupyterLab from here needs per-user subdomains (hub.subdomain_host in site.yaml): "
    "on the hub's one origin, whatever a student's server serves would run in your browser as you."
)


def server_url(site: Site, username: str) -> str | None:
    """Where a student's JupyterLab is, on its own origin (per-user subdomains); None without them."""
    if site.hub is None or not site.hub.subdomain_host:
        return None
    from urllib.parse import urlsplit

    from jupyterhub.utils import subdomain_hook_idna  # the hub's own naming (its default subdomain_hook)

    parts = urlsplit(site.hub.subdomain_host)
    host = subdomain_hook_idna(username, parts.hostname, "user")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/user/{username}/lab"


def _overrides(entry: dict) -> dict:
    """The person's own memory / cpu / disk over their named quota, as written (what the edit form shows)."""
    return {key: entry.get(key) for key in ("memory", "cpu", "disk")}


def assignments(room: Room) -> dict:
    """Each assignment's times and each active student's copy, submission and feedback: GET /api/assignments
    (the host as it is now, as the page's table reads it: no plan, no lock)."""
    from ..core.assignments import report

    desired, actual, _ = passes.observe_now(room.site, room.classroom(), _mtime(room.file))
    return {"observed_at": actual.observed_at, "assignments": report(desired, actual)}


def pending_plan(room: Room) -> dict:
    """The current dry run, in the core's JSON format: what the daemon will do next."""
    wait = min(room.site.lock_timeout, PLAN_LOCK_WAIT)  # 503 while a pass runs
    return passes.look(room.site, room.classroom(), lock_timeout=wait).plan.to_json()


def last_status(room: Room) -> dict | None:
    """The daemon's last pass (<state_dir>/status.json), None before its first."""
    record = passes.last_pass(room.site)
    return None if record is None else record.to_json()


def metrics(room: Room) -> bytes:
    """Prometheus' text format from the daemon's status.json and snapshot.json (two reads; no observation)."""
    from ..core.metrics import families

    try:
        people = [PersonRow.from_json(row) for row in json.loads(room.site.paths.snapshot.read_text())["people"]]
    except (OSError, ValueError, KeyError, TypeError):
        people = None
    return prometheus_text(families(passes.last_pass(room.site), people, room.site.metrics.per_person))


def prometheus_text(gauges: list) -> bytes:
    """core.metrics' gauges, written by prometheus_client (escaping, HELP and TYPE lines, the format version)."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import generate_latest

    class Collector:
        def collect(self):
            for gauge in gauges:
                family = GaugeMetricFamily(
                    gauge.name, gauge.documentation, value=gauge.value, labels=gauge.labels or None
                )
                for values, value in gauge.samples:
                    family.add_metric(values, value)
                yield family

    return generate_latest(Collector())


# --- roster writes -------------------------------------------------------------------------------


def preview_username(room: Room, name: str) -> dict:
    """What add_student would make of this name, without writing: the username and the name as written."""
    data = edit.plain(room.current()[1])  # 409 while the file is invalid, as for a write
    written = names.parse(name).display if "," in name else " ".join(name.split())
    if not written:
        raise Rejected([{"path": "name", "message": "the name is empty"}])
    taken = csv_import.taken_usernames(
        data, read_accounts(room.host.etc / "passwd", {}, {}), data["name"], read_groups(room.host.etc / "group")
    )
    return {"username": csv_import.unique_username(written, taken), "name": written}


def add_student(room: Room, actor: str, body: dict, expect: Collection[str] | None = None) -> Written:
    """Append one student; a missing username is made from the name like `import-csv` does.

    ``expect``, here and in every write: the versions of the file the client read (If-Match); another is 412."""
    _writable(room)
    room.classroom()  # never add to a file that is already invalid
    entry = {key: body[key] for key in ("username", *edit.EDITABLE) if body.get(key) is not None}
    entry.update({k: v for k, v in body.items() if k not in entry and v is not None})  # unknown keys: 422 below
    if entry.get("status") == "purged":
        raise Rejected([{"path": "status", "message": "a new student cannot be purged"}])
    host_accounts = read_accounts(room.host.etc / "passwd", {}, {})
    host_groups = read_groups(room.host.etc / "group")

    def add(doc) -> dict:  # under the roster lock: two teachers adding at once get distinct usernames
        data = edit.plain(doc)
        taken = csv_import.taken_usernames(data, host_accounts, data["name"], host_groups)
        new = dict(entry)
        if isinstance(new.get("name"), str) and "," in new["name"]:  # "Núñez, José", as exports write it
            new["name"] = names.parse(new["name"]).display
        if "username" not in new and isinstance(new.get("name"), str) and new["name"].strip():
            new = {"username": csv_import.unique_username(new["name"], taken), **new}
        edit.check_person(new)
        new = edit.without_defaults(new)  # no `quota: default`, no `status: active`: they are implied
        username = new["username"]
        if edit.find(doc, username) is not None:
            raise Refused(409, f"{username} is already in the classroom")
        if username in taken:
            raise Rejected(
                [{"path": "username", "message": f"{username!r} is taken by another account or group on this server"}]
            )
        edit.append_students(doc, [new])
        return new

    with _journal_first(room, actor) as journal:
        written = edit.rewrite(room.file, room.site, add, room.accept, expect)
        added = written.result
        journal.record(
            Action(Op.CREATE, Kind.ROSTER, added["username"], after=added, reason="added through the teacher API"), "ok"
        )
    return written


def change_student(
    room: Room, actor: str, username: str, changes: dict, expect: Collection[str] | None = None
) -> Written:
    """Merge-patch one student (null removes a key, e.g. an inline quota override)."""
    _writable(room)
    _student(room, username)
    with _journal_first(room, actor) as journal:
        try:
            written = edit.change_person(
                room.file, room.site, username, changes, among=("students",), accept=room.accept, expect=expect
            )
        except Rejected as exc:
            if exc.status == 404:  # removed from the file since the check above
                raise Refused(404, f"{username} is not in the classroom") from None
            raise
        before, after = written.result
        _record_change(journal, username, before, after, "changed through the teacher API")
    return Written(after, written.etag)


def change_assignment(
    room: Room, actor: str, name: str, changes: dict, expect: Collection[str] | None = None
) -> Written:
    """Merge-patch one assignment: "extend for this student" (extensions), "collect now" (due), "return feedback
    now" (feedback).  An extension only for a student of the classroom (the file's validation says so)."""
    _writable(room)
    with _journal_first(room, actor) as journal:
        try:
            written = edit.change_assignment(room.file, room.site, name, changes, room.accept, expect)
        except Rejected as exc:
            if exc.status == 404:
                raise Refused(404, f"{name} is not an assignment of the classroom") from None
            raise
        before, after = written.result
        _record_change(journal, f"assignment {name}", before, after, "assignment changed through the teacher API")
    return Written(after, written.etag)


def _record_change(journal, target: str, before: dict, after: dict, reason: str) -> None:
    """Journal the keys an edit changed, before and after (nothing when it changed nothing)."""
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        journal.record(
            Action(
                Op.UPDATE,
                Kind.ROSTER,
                target,
                before={k: before.get(k) for k in changed},
                after={k: after.get(k) for k in changed},
                reason=reason,
            ),
            "ok",
        )


def reach(classroom: Classroom) -> frozenset[str]:
    """Whom a teacher acts on through the API and the page: the classroom's students, never a teacher.

    The one rule behind every path that names a person -- roster changes, password resets, printed slips,
    downloads of files: no teacher can lock out, re-address, print the password of or read the files of
    another (nor their own: teachers are changed in classroom.yaml, and their passwords reach them by e-mail
    or by root's `reconcile slips`)."""
    return frozenset(p.username for p in classroom.students)


def _student(room: Room, username: str) -> Classroom:
    """The classroom, if ``username`` is within a teacher's reach (a 409 for a teacher, a 404 for nobody)."""
    classroom = room.classroom()
    if username in reach(classroom):
        return classroom
    if any(p.username == username for p in classroom.admins):
        raise Refused(409, f"{username} is a teacher: teachers are changed in classroom.yaml, not here")
    raise Refused(404, f"{username} is not in the classroom")


def disable_student(room: Room, actor: str, username: str, expect: Collection[str] | None = None) -> Written:
    """DELETE never deletes: the account is locked and the files are kept (status: disabled)."""
    return change_student(room, actor, username, {"status": "disabled"}, expect)


def import_csv(
    room: Room,
    actor: str,
    data: bytes,
    *,
    skip_invalid: bool,
    dry_run: bool,
    name_order: str = "given-first",
    expect: Collection[str] | None = None,
) -> Written:
    """`reconcile import-csv` over HTTP: same reading, same username rules, same errors."""
    if not dry_run:
        _writable(room)
    if name_order not in names.NAME_ORDERS:
        raise Rejected([{"path": "name_order", "message": f"must be one of {', '.join(names.NAME_ORDERS)}"}])
    result = csv_import.prepare(room.file, room.site, data, room.host, name_order)  # type: ignore[arg-type]
    if result.problems and not skip_invalid:
        raise Rejected([{"path": "", "message": problem} for problem in result.problems])
    etag = room.etag()
    if result.added and not dry_run:
        with _journal_first(room, actor) as journal:
            etag = edit.add_students(room.file, room.site, result.added, room.accept, expect).etag
            journal_imported(journal, result.added, "imported from CSV through the teacher API")
    return Written(
        {"dry_run": dry_run, "added": result.added, "present": result.present, "skipped": result.problems}, etag or ""
    )


# --- downloads of a person's files ---------------------------------------------------------------------

DOWNLOAD_FRESH = 600  # seconds an archive made for a download is served again instead of a new export
_DOWNLOADING: dict[str, threading.Lock] = {}
_DOWNLOADING_LOCK = threading.Lock()


def student_download(room: Room, actor: str, username: str) -> Path:
    """A teacher downloads a student's files (not another teacher's)."""
    _student(room, username)
    return download(room, username, actor)


def own_download(room: Room, username: str) -> Path:
    """Anyone active in the classroom downloads their own files, and only their own."""
    member = next((p for p in room.classroom().people if p.username == username), None)
    if member is None or member.status != "active":
        raise Refused(403, f"{username} is not an active person of this classroom")
    return download(room, username, username)


def download(room: Room, username: str, actor: str) -> Path:
    """A verified archive of ``username``'s files for a browser (engine/end_of_term.py: a consistent view even while
    their server runs).  One made in the last ten minutes is served again, so repeated clicks cost one export;
    older ones are removed.  Journaled with who asked."""
    classroom = room.classroom()
    member = next((p for p in classroom.people if p.username == username), None)
    if member is None or member.status == "purged":
        raise Refused(404, f"{username} is not in {classroom.name} with files kept")
    folder = private_dir(room.site.paths.state / "downloads")
    now = time.time()
    for old in folder.glob("*/*"):
        try:
            if now - old.stat().st_mtime > DOWNLOAD_FRESH:
                old.unlink(missing_ok=True)
        except FileNotFoundError:  # another request removed it first
            pass
    with _DOWNLOADING_LOCK:
        one = _DOWNLOADING.setdefault(username, threading.Lock())
    with one:  # two clicks at once: one export
        mine = private_dir(folder / username)
        ready = end_of_term.latest(mine, username)
        if ready is not None:  # who read whose files is journaled for every download, not only the export
            _journal(
                room,
                actor,
                Action(
                    Op.CREATE,
                    Kind.ARCHIVE,
                    username,
                    after=str(ready),
                    reason="downloaded again (made in the last ten minutes)",
                ),
            )
            return ready
        try:
            done = end_of_term.export(room.site, [username], mine, actor=actor, source="api")[0]
        except lock.LockBusy:
            raise Refused(503, "another export is running; try again in a minute") from None
        if done.missing or done.waiting:  # no volume yet; a server still ending holds it
            raise Refused(409, f"{username}'s files cannot be exported now: {done.problem}")
        if not done.ok:
            raise Refused(503, f"{username}'s files could not be exported: {done.problem}")
        assert done.archive is not None
        return done.archive


# --- credentials ---------------------------------------------------------------------------------


def reset_password(
    site: Site, classroom: Classroom, username: str, actor: str | None = None, host: HostFiles = HostFiles()
) -> str:
    """A new generated password to the outbox (then e-mail or slip), like a new student's.

    Not a roster edit, so it works when the roster is kept in git.
    """
    paths = site.paths
    member = passes.desire(site, classroom).member(username)
    if member is None or member.status != "active":
        raise Refused(404, f"{username} is not an active person in {classroom.name}")
    try:
        exists = accounts.ours(host, username, classroom.name) is not None
    except accounts.NotOurs as exc:
        raise Refused(409, str(exc)) from None
    if not exists:
        raise Refused(409, f"{username} has no account yet: the next pass creates it, with a first password")
    action = Action(Op.UPDATE, Kind.PASSWORD, username, after="generated, to the outbox", reason="password reset")
    with (
        lock.hold(paths.lock, exclusive=True, timeout=site.lock_timeout) as held,
        journal_before(paths.journal, actor, source="reset") as journal,
    ):
        try:
            accounts.set_password(
                Runner().holding(held.fd),
                host,
                outbox.Outbox(paths.outbox),
                username,
                classroom.name,
                member.name,
                member.emails,
                "password reset",
                reset=True,
            )
            journal.record(action, "ok", "set")
        except Exception as exc:
            journal.record(action, "failed", str(exc))
            raise
    return "email" if member.emails and site.delivery.smtp is not None else "slip"


def reset_and_deliver(room: Room, actor: str, username: str) -> dict:
    classroom = _student(room, username)
    delivery_by = reset_password(room.site, classroom, username, actor)
    if delivery_by == "email":
        with lock.hold(room.site.paths.lock, exclusive=True, timeout=room.site.lock_timeout):
            report = delivery.deliver(room.site, classroom.name, active=delivery.active_people(classroom))
        if username in report.failed:
            return {"username": username, "delivery": "email", "sent": False, "error": report.failed[username]}
        return {"username": username, "delivery": "email", "sent": username in report.sent, "error": None}
    return {"username": username, "delivery": "slip", "sent": False, "error": None}


def render_slips(room: Room, everyone: bool) -> tuple[str, list[dict]]:
    """The slips page (it holds passwords) and the outbox items on it; nothing is consumed yet."""
    classroom = room.classroom()
    with lock.hold(room.site.paths.lock, exclusive=True, timeout=room.site.lock_timeout):
        return delivery.render_slips(
            room.site, classroom.name, everyone, delivery.active_people(classroom) & reach(classroom)
        )


def hand_out(room: Room, actor: str, items: list[dict]) -> list[str]:
    """Once the page reached the teacher: those passwords leave the outbox (a newer one stays)."""
    mine = reach(room.classroom())
    with (
        lock.hold(room.site.paths.lock, exclusive=True, timeout=room.site.lock_timeout),
        _journal_first(room, actor) as journal,
    ):
        names = delivery.consume(room.site, [item for item in items if item["username"] in mine])
        for name in names:
            journal.record(
                Action(
                    Op.UPDATE,
                    Kind.PASSWORD,
                    name,
                    after="handed out on a printed slip",
                    reason="slips printed through the teacher API",
                ),
                "ok",
            )
    return names
