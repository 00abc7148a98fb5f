"""The credentials outbox: root-only files the delivery step sends, then deletes.

One file per person (``<username>.json``, mode 0600, directory 0700).  A
newer password replaces an undelivered older one, so the outbox always holds
the password that is really set.  This is the only place a password is stored.
A failed delivery is recorded in the item itself (attempts, next try, error),
so nothing is lost and the status can show it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..host.fsutil import write_atomic
from . import passwords


def put(directory: Path, *, username: str, name: str, emails: tuple[str, ...], password: str, reason: str) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    item = {
        "username": username,
        "name": name,
        "emails": list(emails),
        "password": password,
        "reason": reason,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "attempts": 0,
        "next_attempt": 0,
        "last_error": None,
    }
    path = directory / f"{username}.json"
    write_atomic(path, json.dumps(item, indent=2) + "\n", mode=0o600)
    return path


def items(directory: Path) -> list[dict]:
    """Every waiting item, oldest first."""
    if not directory.is_dir():
        return []
    found = [json.loads(p.read_text()) for p in directory.glob("*.json")]
    return sorted(found, key=lambda i: (i.get("created", ""), i["username"]))


def record_failure(directory: Path, item: dict, error: str, retry_at: float) -> None:
    updated = {**item, "attempts": item.get("attempts", 0) + 1, "next_attempt": retry_at, "last_error": error}
    write_atomic(directory / f"{item['username']}.json", json.dumps(updated, indent=2) + "\n", mode=0o600)


def discard(directory: Path, username: str, password: str | None = None) -> None:
    """Remove the plaintext; with ``password``, only if it is still that one (not a newer reset)."""
    path = directory / f"{username}.json"
    if password is not None:
        try:
            if json.loads(path.read_text()).get("password") != password:
                return
        except FileNotFoundError:
            return
    path.unlink(missing_ok=True)


_PENDING: dict[Path, tuple[int, dict[str, dict]]] = {}


def pending(directory: Path) -> dict[str, dict]:
    """username -> delivery state, for status (never the secret).

    Remembered while the directory is unchanged: every change to the outbox is a file made, renamed into place
    or removed (write_atomic), which changes the directory's mtime.  A directory changed in the last two seconds
    is read afresh each time (its mtime's granularity may hide a second change within one tick), as git does
    for its racily clean index."""
    try:
        mtime = directory.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    known = _PENDING.get(directory)
    if known is not None and known[0] == mtime:
        return dict(known[1])
    found = {
        i["username"]: {
            "attempts": i.get("attempts", 0),
            "last_error": i.get("last_error"),
            "emails": bool(i.get("emails")),
        }
        for i in items(directory)
    }
    if time.time_ns() - mtime > 2_000_000_000:
        _PENDING[directory] = (mtime, found)
    return dict(found)


@dataclass(frozen=True)
class Outbox:
    """The outbox as the drivers' credential store: a new password is issued into it."""

    directory: Path

    def issue(self, username: str, name: str, emails: tuple[str, ...], reason: str) -> str:
        secret = passwords.generate()
        put(self.directory, username=username, name=name, emails=emails, password=secret, reason=reason)
        return secret

    def discard(self, username: str) -> None:
        discard(self.directory, username)
