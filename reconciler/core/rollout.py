"""Which servers a new image reaches now (`reconcile image rollout`), pure: the idle students' servers that run an
older image than the one hub.image names.  A server in use is left alone (it gets the image at its next start)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .actual import Actual


@dataclass(frozen=True)
class Rollout:
    restart: tuple[str, ...] = ()  # idle students' servers on an older image
    in_use: dict[str, str] = field(default_factory=dict)  # username -> why it is left alone
    others: tuple[str, ...] = ()  # teachers' servers on an older image: theirs to restart


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def due(actual: Actual, students: set[str], now: dt.datetime, idle: dt.timedelta) -> Rollout:
    """``now``: the caller's clock (core reads none); ``idle``: how long without activity counts as idle."""
    restart, in_use, others = [], {}, []
    users = actual.hub.users if actual.hub is not None and actual.hub.users is not None else {}
    for name, container in sorted((actual.containers or {}).items()):
        if not (container.running and container.stale):
            continue
        if name not in students:
            others.append(name)
            continue
        user = users.get(name)
        last = parse_time(user.server_activity or user.last_activity) if user is not None else None
        quiet = now - last if last is not None else None
        if quiet is not None and quiet < idle:
            in_use[name] = f"used {max(0, int(quiet.total_seconds() // 60))} min ago"
        else:
            restart.append(name)
    return Rollout(tuple(restart), in_use, tuple(others))
