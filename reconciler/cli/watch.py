"""`reconcile watch`: the daemon that keeps the host converged on classroom.yaml.

Edge- and level-triggered: inotify (watchdog) on the file's directory wakes it
for a save (editors save by rename, so the directory is watched, not the
file), bursts are debounced; a full pass also runs every resync_interval to
repair drift, and at once on SIGHUP.  An invalid file is logged with
file:line and never applied: the last good state stays in force.  SIGTERM
finishes the action in flight, then exits.  After each pass the daemon writes
<state_dir>/status.json atomically, naming the file version (content hash, git
commit) it reflects.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import signal
import threading
import time
from pathlib import Path

from ..config.classroom import Classroom
from ..config.load import FileBusy, InvalidFile, check_classroom, read_bytes, read_source
from ..config.site import Site
from ..core.actions import Action, Policy
from ..core.actual import Disk
from ..core.render import SYMBOLS, render_text
from ..credentials import outbox
from ..engine import passes
from ..engine.passes import Outcome, Verdict
from ..host import liveness, lock
from ..host.fsutil import write_atomic
from ..host.gitinfo import git_revision
from .commands import classroom_path, policy_of, site_of
from . import parser


class _Log:
    """The daemon's logger, with logging imported at its first line: every command builds the parser, which
    imports this module, and only the daemon logs."""

    def __getattr__(self, name: str):
        import logging

        return getattr(logging.getLogger("reconcile.watch"), name)


log = _Log()
# A save wakes the daemon when it is complete: a rename onto the file (editors), or the close after writing it in
# place (never the writes themselves: a file cut short at a line's end may still be valid YAML, with people
# missing).  Then it waits until the events stop for this long, in case a tool saves twice.
DEBOUNCE = 0.02
BUSY_WAIT = 0.5  # seconds a pass waits for a writer in place to close the file before it reports "busy"
BUSY_RETRY = 1.0  # and then looks again this soon, should the close's event be missed


def command(args: argparse.Namespace) -> int:
    site = site_of(args, applies=True)
    return main(site, classroom_path(args, site), policy_of(args, site))


def _watch(target: Path, poke) -> object:
    """Start watching ``target``'s directory (editors save by rename); returns the running observer."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return  # our own reads of the file: reacting to them would loop forever
            if event.event_type == "modified":
                return  # written in place (scp, `cat >`): only once the writer closes it is the file whole
            paths = {getattr(event, "src_path", ""), getattr(event, "dest_path", "")}
            if str(target) in {str(p) for p in paths}:
                poke()

    observer = Observer()
    observer.schedule(Wake(), str(target.parent), recursive=False)
    observer.start()
    return observer


class Daemon:
    def __init__(self, site: Site, classroom_file: Path, policy: Policy):
        self.site, self.file, self.policy = site, classroom_file.resolve(), policy
        self.status_file = site.paths.pass_record
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_event = 0.0
        self.last_good: dict | None = None  # the last valid file version applied (hash, time)
        self.low_disks: set[str] = set()  # filesystems whose low space was already logged
        self.wake_in: float | None = None  # sooner than resync_interval: the pre-warm's pace
        self.busy = False  # the last pass found the file being written in place: look again within BUSY_RETRY
        self.pass_started: float | None = None  # the pass in progress (the heartbeat says so)
        self._stopped = threading.Event()  # the main loop has ended: the heartbeat ends too

    def poke(self) -> None:
        self._last_event = time.monotonic()
        self._wake.set()

    def stop(self, *_args) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, lambda *_: self._wake.set())
        observer = _watch(self.file, self.poke)
        log.info("watching %s (resync every %gs)", self.file, self.site.resync_interval)
        liveness.notify("READY=1", f"STATUS=watching {self.file}")  # systemd (Type=notify): started
        heart = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)  # then its watchdog
        heart.start()
        try:
            while not self._stop.is_set():
                self.pass_started = time.time()
                try:
                    self.pass_once()
                finally:
                    self.pass_started = None
                self._wait()
        finally:
            liveness.notify("STOPPING=1")
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=5)  # type: ignore[attr-defined]
            self._stopped.set()
            heart.join(timeout=5)
            self.site.paths.heartbeat.unlink(missing_ok=True)  # stopped on purpose: not "last heard from"
        log.info("stopped")
        return 0

    def _heartbeat(self) -> None:
        """Every liveness.BEAT seconds, also during a pass: the heartbeat file, and systemd's watchdog -- unless
        a pass has run for longer than liveness.STUCK (hung: let the watchdog restart the daemon)."""
        while not self._stopped.is_set():
            started = self.pass_started
            try:
                liveness.beat(self.site.paths.heartbeat, pass_started=started)
            except OSError as exc:  # a full disk: the old heartbeat goes stale, which is what it should say
                log.warning("cannot write the heartbeat %s: %s", self.site.paths.heartbeat, exc.strerror or exc)
            if started is None or time.time() - started < liveness.STUCK:
                liveness.notify("WATCHDOG=1")
            self._stopped.wait(liveness.BEAT)

    def _wait(self) -> None:
        """Until a save (debounced), SIGHUP, SIGTERM or the resync interval, whichever comes first."""
        timeout = min(
            self.site.resync_interval,
            math.inf if self.wake_in is None else self.wake_in,
            BUSY_RETRY if self.busy else math.inf,
        )
        self._wake.wait(timeout=timeout)
        self._wake.clear()
        while not self._stop.is_set() and time.monotonic() - self._last_event < DEBOUNCE:
            time.sleep(DEBOUNCE / 5)  # an editor's save is often several events: let the burst end

    def pass_once(self) -> None:
        started = time.time()
        self.busy = False
        try:
            content = read_bytes(self.file, wait=BUSY_WAIT)  # one whole version: never a write in progress
        except FileBusy as exc:
            # written in place right now (scp, `cat >`): the close wakes the daemon; look again soon in any case
            log.info("%s; the last good state stays in force", exc.problems[0])
            self.busy = True
            self._write_status(started, None, "busy", problems=tuple(map(str, exc.problems)))
            return
        except InvalidFile as exc:
            self._write_status(started, None, "invalid", problems=tuple(map(str, exc.problems)))
            log.error("%s; the last good state stays in force", exc.problems[0])
            return
        digest = hashlib.sha256(content).hexdigest()
        try:
            classroom = check_classroom(read_source(self.file, content), self.site)
        except InvalidFile as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            log.error("%s is invalid and was not applied; the last good state stays in force", self.file)
            self._write_status(started, digest, "invalid", problems=tuple(map(str, exc.problems)))
            return

        def report(action: Action, result: str, detail: str) -> None:
            import logging

            level = logging.INFO if result == "ok" else logging.WARNING
            log.log(level, "%s: %s %s %s %s", result, SYMBOLS[action.op], action.kind, action.target, detail)

        try:
            outcome = passes.converge(
                self.site,
                classroom,
                self.policy,
                report=report,
                should_stop=self._stop.is_set,
                observe_after=True,
            )
        except Exception as exc:  # noqa: BLE001 - the daemon must outlive a failed pass (lock timeout, ...)
            log.exception("pass failed")
            self._write_status(started, digest, "error", problems=(str(exc),))
            return
        the_plan, result = outcome.plan, outcome.result
        for note in the_plan.refused:
            log.error("refused: %s", note.message)
        state = str(outcome.verdict)
        failed = dict(result.failed) if result else {n.target: n.message for n in the_plan.blocked}
        waiting = dict(result.waiting) if result else {a.target: a.waits for a in the_plan.waiting}

        from ..core.assignments import counts
        from ..core.pass_record import Condition

        def condition(username: str) -> Condition:
            if username in failed:
                return Condition("failed", failed[username])
            if username in waiting:
                return Condition("waiting", waiting[username])
            return Condition("ok")

        people = {m.username: condition(m.username) for m in outcome.desired.members}
        if outcome.verdict in (Verdict.CONVERGED, Verdict.FAILED, Verdict.WAITING):
            if (self.last_good or {}).get("sha256") != digest:
                self._keep_in_force(content)
            self.last_good = {"sha256": digest, "time": _iso(started)}
        if the_plan.actions:
            log.info("%s: %s", state, render_text(the_plan).splitlines()[-1])
        credentials = self._deliver(classroom)
        found_disks = self._disks()
        self._write_snapshot(outcome, found_disks)
        warm = self._prewarm(classroom, outcome)
        self._wake_for_releases(outcome)
        self._write_status(
            started,
            digest,
            state,
            plan=the_plan.to_json(),
            people=people,
            applied=result.ok if result else 0,
            failed=failed,
            waiting=waiting,
            credentials=credentials,
            disks=tuple(found_disks),
            prewarm=warm or None,
            assignments=counts(outcome.desired, outcome.current) or None,
        )

    def _prewarm(self, classroom: Classroom, outcome: Outcome) -> dict | None:
        """Before a lesson: start the server that is due (one per pace), and wake again at the pace."""
        self.wake_in = None
        if self.site.hub is None or not classroom.schedule:
            return None
        from ..engine import prewarm
        from ..host.observe import hub_probes

        try:
            done = prewarm.run(
                self.site, classroom, outcome.desired, outcome.current, hub_probes(self.site, classroom.name).client
            )
        except Exception as exc:  # noqa: BLE001 - the pre-warm is a convenience; never stop the daemon for it
            log.exception("pre-warm failed")
            return {"error": str(exc)}
        for username in done.started:
            log.info(
                "pre-warm: started %s's server for %s", username, done.step.lesson.text if done.step.lesson else ""
            )
        for username, why in done.failed.items():
            log.warning("pre-warm: could not start %s's server: %s", username, why)
        self.wake_in = done.step.wake
        return done.to_json()

    def _wake_for_releases(self, outcome: Outcome) -> None:
        """Wake at the next assignment's release, due time (extensions included) or the end of a late window,
        when that comes before the next resync."""
        now = time.time()
        moments = (moment.timestamp() for h in outcome.desired.handouts for moment in h.moments())
        due = [moment - now for moment in moments if moment > now]
        if due:
            soonest = min(due) + 1  # just after it: the pass's snapshot is then at or after the moment
            self.wake_in = soonest if self.wake_in is None else min(self.wake_in, soonest)

    def _keep_in_force(self, content: bytes) -> None:
        """The roster this pass applied, for the teacher page to show while a later save is invalid."""
        try:
            write_atomic(self.site.paths.in_force, content.decode("utf-8"))
        except OSError as exc:
            log.warning(
                "cannot keep a copy of the roster in force in %s: %s", self.site.paths.in_force, exc.strerror or exc
            )

    def _disks(self) -> list[Disk]:
        """Free space of the classroom's filesystems; a warning is logged once each time one runs low."""
        found = passes.disks(self.site)
        low = {disk.path for disk in found if disk.low}
        for disk in found:
            if disk.low and disk.path not in self.low_disks:
                log.warning(
                    "low disk space: %s (%s) has %d MiB free of %d MiB",
                    disk.what,
                    disk.path,
                    disk.free // 2**20,
                    disk.size // 2**20,
                )
            elif not disk.low and disk.path in self.low_disks:
                log.info("disk space recovered: %s (%s)", disk.what, disk.path)
        self.low_disks = low
        return found

    def _write_snapshot(self, outcome: Outcome, found_disks: list[Disk]) -> None:
        """<state_dir>/snapshot.json, as `reconcile status --json` prints it: CI plans against it (--observed).

        The pass's own snapshot (observed again when the pass changed the host): no second observation.
        """
        try:
            document = passes.status_document(self.site, outcome, found_disks)
            write_atomic(self.site.paths.snapshot, json.dumps(document, indent=1) + "\n")
        except Exception:  # noqa: BLE001 - a snapshot is a convenience; never stop the daemon for it
            log.exception("could not write snapshot.json")

    def _deliver(self, classroom: Classroom) -> dict:
        """Send waiting credentials; a mail server that is down never holds up reconciling."""
        if self.site.delivery.smtp is None:
            return {"waiting": sorted(outbox.pending(self.site.paths.outbox))}
        try:
            from ..credentials import delivery  # jinja2 and smtplib: only once there is something to send

            with lock.hold(self.site.paths.lock, exclusive=True, timeout=self.site.lock_timeout):
                report = delivery.deliver(self.site, classroom.name, active=delivery.active_people(classroom))
        except Exception as exc:  # noqa: BLE001
            log.warning("credential delivery skipped: %s", exc)
            return {"error": str(exc)}
        for username in report.sent:
            log.info("credentials sent to %s", username)
        for username, error in report.failed.items():
            log.warning("credentials for %s not sent (kept, will retry): %s", username, error)
        return {"sent": report.sent, "failed": report.failed, "waiting": report.waiting}

    def _write_status(self, started: float, digest: str | None, result: str, **parts) -> None:
        from ..core.pass_record import PassRecord

        record = PassRecord(
            time=_iso(started),
            duration_seconds=round(time.time() - started, 3),
            classroom_file=str(self.file),
            file_sha256=digest,
            git=git_revision(self.file),
            result=result,
            last_applied=self.last_good,
            **parts,
        )
        try:
            write_atomic(self.status_file, json.dumps(record.to_json(), indent=2) + "\n")
        except OSError as exc:  # a full disk: the old status.json stays whole; the daemon goes on
            log.error("could not write %s (%s); it still shows the pass before", self.status_file, exc)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def main(site: Site, classroom_file: Path, policy: Policy) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return Daemon(site, classroom_file, policy).run()


def register(sub) -> None:
    daemon = parser.command(
        sub,
        "watch",
        command,
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
