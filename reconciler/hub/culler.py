"""The idle culler, paused while a lesson is on: jupyterhub-idle-culler with a cull arbiter that says no during a
lesson of classroom.yaml's schedule.

Servers pre-started before a lesson (hub.prewarm) wait idle until their students log in, and a student who
thinks for a while during a lesson must not lose their kernel: while a lesson is on nothing is culled.  Outside
lessons the culler does what it always does (idle longer than hub.cull_idle_timeout: stopped).  The hub starts
this as its ``idle-culler`` service, with the culler's own options; the classroom file comes in CLASSROOM_FILE
and is read again (at most once a minute, and only when it changed) so a new schedule needs no restart.  An
invalid file keeps the schedule last read.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from collections.abc import Callable

from ..config.classroom import Lesson
from ..config.load import InvalidFile, load_classroom
from ..config.site import Site, find_site
from ..core.schedule import in_lesson

log = logging.getLogger("reconcile.culler")
UTC = dt.UTC


class Lessons:
    """classroom.yaml's schedule, re-read when the file changes."""

    def __init__(self, classroom_file: Path, site: Site, every: float = 60.0):
        self.file, self.site, self.every = classroom_file, site, every
        self.schedule: list[Lesson] = []
        self._checked = 0.0
        self._seen: float | None = None

    def current(self) -> list[Lesson]:
        if time.monotonic() - self._checked < self.every and self._checked:
            return self.schedule
        self._checked = time.monotonic()
        try:
            mtime = self.file.stat().st_mtime
        except OSError:
            return self.schedule
        if mtime != self._seen:
            try:
                self.schedule = list(load_classroom(self.file, self.site).schedule)
                self._seen = mtime
            except (InvalidFile, OSError) as exc:
                log.warning("%s cannot be read (%s): the schedule last read stays", self.file, exc)
        return self.schedule


def arbiter(lessons: Callable[[], list[Lesson]], clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)):
    """The cull arbiter: never during a lesson; otherwise the classic idle check."""

    def decide(*, inactive: dt.timedelta, inactive_limit: int, server: dict, **_: object) -> bool:
        if in_lesson(lessons(), clock()) is not None:
            return False
        return inactive.total_seconds() >= inactive_limit

    return decide


def main(argv: list[str] | None = None) -> int:
    from jupyterhub_idle_culler import IdleCuller

    from ..config.load import load_site
    from ..host.liveness import die_with_parent

    die_with_parent()  # ends with the hub that started it, even a hub killed outright
    path = find_site(None)
    site = load_site(path) if path is not None else Site()
    lessons = Lessons(Path(os.environ["CLASSROOM_FILE"]), site)
    app = IdleCuller.instance()
    app.initialize(sys.argv[1:] if argv is None else argv)
    app.cull_arbiter_hook = arbiter(lessons.current)
    app.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
