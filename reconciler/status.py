"""`reconcile status`: what each person has on this host right now."""

from __future__ import annotations

from . import outbox
from .observe import Actual, to_json
from .plan import is_disabled, is_enabled
from .sizes import format_size
from .spec import Desired, Site


def rows(desired: Desired, actual: Actual, pending_credentials: dict[str, dict]) -> list[dict]:
    """One row per person in the file, then anyone we manage who is no longer in it."""
    listed = [(m.username, m.role, m.status) for m in desired.members]
    known = {name for name, _, _ in listed}
    extra = sorted(a.username for a in actual.accounts.values()
                   if a.classroom == desired.classroom and a.username not in known)
    extra += sorted(set(actual.volumes) - known - set(extra))
    out = []
    for username, role, wanted in listed + [(name, None, "removed") for name in extra]:
        account = actual.accounts.get(username)
        volume = actual.volumes.get(username)
        mount = actual.mounts.get(str(desired.paths.home(username)))
        if account is None:
            login = "missing"
        elif is_enabled(account, actual.today):
            login = "enabled"
        elif is_disabled(account, actual.today):
            login = "disabled"
        else:
            login = "half-disabled"
        out.append({
            "username": username,
            "role": role,
            "status": wanted,
            "account": login,
            "uid": account.uid if account else None,
            "volume_size": volume.size if volume else None,
            "volume_used": volume.used if volume else None,
            "mounted": mount is not None,
            "credentials": _credentials(pending_credentials.get(username)),
            "server": _server(actual, username),
        })
    return out


def _credentials(item: dict | None) -> str | None:
    """None: nothing waiting; "pending"; "slip" (no e-mail: print it); "failed (N): error" (will retry)."""
    if item is None:
        return None
    if not item["emails"]:
        return "slip"
    if item["attempts"]:
        return f"failed ({item['attempts']}x): {item['last_error']}"
    return "pending"


def _server(actual: Actual, username: str) -> str | None:
    """running / stopped from the hub; None when no hub is configured or it could not be asked."""
    if actual.hub is None or actual.hub.users is None:
        return None
    user = actual.hub.users.get(username)
    return "running" if user is not None and user.running else "stopped"


def render(people: list[dict]) -> str:
    header = (f"{'USERNAME':<16} {'ROLE':<8} {'STATUS':<9} {'ACCOUNT':<13} {'VOLUME':>9} {'USED':>9} {'MOUNTED':<7} "
              f"{'SERVER':<8} CREDENTIALS")
    lines = [header]
    for row in people:
        lines.append(
            f"{row['username']:<16} {row['role'] or '-':<8} {row['status']:<9} {row['account']:<13} "
            f"{format_size(row['volume_size']):>9} {format_size(row['volume_used']):>9} "
            f"{'yes' if row['mounted'] else 'no':<7} {row['server'] or '-':<8} "
            f"{row['credentials'] or '-'}"
        )
    return "\n".join(lines)


def document(site: Site, desired: Desired, actual: Actual) -> dict:
    """`reconcile status --json`: people, plus the raw snapshot, so CI can plan against it (--observed)."""
    return {
        "format_version": 1,
        "classroom": desired.classroom,
        "people": rows(desired, actual, outbox.pending(site.paths.outbox)),
        "paths": {"state": str(site.paths.state), "homes": str(site.paths.homes)},
        "policy": {"max_disable_fraction": site.max_disable_fraction,
                   "max_overcommit": getattr(site.volumes, "max_overcommit", 1.0)},
        "observed": to_json(actual),
    }
