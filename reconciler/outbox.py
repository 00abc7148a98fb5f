"""The credentials outbox: root-only files the delivery step sends, then deletes.

One file per person (``<username>.json``, mode 0600, directory 0700).  A
newer password replaces an undelivered older one, so the outbox always holds
the password that is really set.  This is the only place a password is stored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .fsutil import write_atomic


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
    }
    path = directory / f"{username}.json"
    write_atomic(path, json.dumps(item, indent=2) + "\n", mode=0o600)
    return path


def discard(directory: Path, username: str) -> None:
    (directory / f"{username}.json").unlink(missing_ok=True)


def pending(directory: Path) -> list[str]:
    """Usernames with undelivered credentials (for status; never reads the secret out)."""
    if not directory.is_dir():
        return []
    return sorted(p.name.removesuffix(".json") for p in directory.glob("*.json"))
