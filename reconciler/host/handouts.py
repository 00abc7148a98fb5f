"""Driver for handing out an assignment: a student's own copy of a course-folder folder in ~/assignments/<name>.

The copy is made as the student (setpriv: their uid and group, no other groups, no capabilities), so nothing
they placed in their home (a symlink out of it, say) can make root write anywhere they could not; files they
already have are never replaced (``cp --no-clobber``).  Who got which assignment is kept in
``<state_dir>/handouts.json`` (``Paths.handouts``): each copy is handed out once.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from ..core.actions import Action, Kind, Op
from .drivers import Context, driver
from .facts import colon_entry
from .fsutil import write_atomic
from .mounts import is_mounted
from .run import as_user

FOLDER = "assignments"  # in each student's home
FORMAT = 1
_LEDGER = threading.Lock()  # a pass hands out to several students side by side: one ledger write at a time


def read(path: Path) -> Mapping[str, frozenset[str]]:
    """The ledger: assignment -> the students who got their copy.  Missing or unreadable: nobody yet (a copy
    handed out again lands beside the student's files, never over them)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format_version") != FORMAT:
        return {}
    return {name: frozenset(users) for name, users in (data.get("assignments") or {}).items()}


def is_folder(path: str) -> bool:
    """A real folder (not a symlink to one): what a handout copies from."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _record(path: Path, name: str, user: str, when: str) -> None:
    with _LEDGER:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict) or data.get("format_version") != FORMAT:
            data = {"format_version": FORMAT, "assignments": {}}
        data.setdefault("assignments", {}).setdefault(name, {})[user] = when
        write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


@driver(Kind.HANDOUT, Op.CREATE)
def hand_out(action: Action, ctx: Context) -> str:
    user, name, source = action.target, action.after.assignment, action.after.source
    home = ctx.paths.home(user)
    if not is_mounted(ctx.host, home, ctx.volumes.layout.source(user)):
        raise RuntimeError(f"{home} is not mounted; nothing is handed out to the bare mount point")
    account = colon_entry(ctx.host.etc / "passwd", user)
    if account is None:
        raise RuntimeError(f"{user} has no account")
    if not is_folder(source):
        raise RuntimeError(f"{source} is not a folder in the course folder")
    student = as_user(int(account[2]), int(account[3]))
    target = f"{home}/{FOLDER}/{name}"
    ctx.run.run([*student, "mkdir", "-p", "--", target])
    ctx.run.run([*student, "cp", "-R", "--no-clobber", "--", f"{source}/.", target])
    when = datetime.datetime.fromtimestamp(ctx.host.clock(), datetime.UTC).isoformat(timespec="seconds")
    _record(ctx.paths.handouts, name, user, when)
    return "handed out"
