"""<state_dir>/disables.json: when reconcile last disabled each person, for the mass-disable guard's window.

Every pass that disables or purges someone (from the daemon, the CLI, or an edit made through the
teacher API and applied by the daemon) records it here; the next passes count those disables
together with their own, so a class cannot be emptied a few people at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterable

from .fsutil import write_atomic


def read(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    found = {}
    for user, when in data.items() if isinstance(data, dict) else ():
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            found[str(user)] = float(when)
    return found


def recent(path: Path, since: float) -> frozenset[str]:
    """The people disabled at or after ``since``."""
    return frozenset(user for user, when in read(path).items() if when >= since)


def record(path: Path, usernames: Iterable[str], now: float, forget_before: float) -> None:
    """Add these disables (at ``now``), dropping the ones older than the window."""
    names = list(usernames)
    if not names:
        return
    kept = {user: when for user, when in read(path).items() if when >= forget_before}
    kept.update({user: now for user in names})
    write_atomic(path, json.dumps(kept, indent=1, sort_keys=True) + "\n")
