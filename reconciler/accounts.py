"""Driver for Unix accounts and groups: check the target, then one command.

Every function re-reads the account just before acting (the snapshot may be
seconds old), does nothing when the work is already done, and never touches
an account that lacks our GECOS marker.
"""

from __future__ import annotations

import grp
import pwd
import time
from pathlib import Path

from . import outbox, passwords
from .observe import MARKER_PREFIX, parse_gecos, read_shadow
from .system import run

SHADOW = Path("/etc/shadow")


class NotOurs(RuntimeError):
    pass


def gecos(name: str, classroom: str) -> str:
    """Full name plus the marker that proves reconcile created the account (chfn's 'other' field)."""
    return f"{name},,,,{MARKER_PREFIX}{classroom}"


def ours(username: str, classroom: str) -> pwd.struct_passwd | None:
    """The account if it exists and is ours; raise if it exists and is not."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        return None
    if parse_gecos(entry.pw_gecos)[1] != classroom:
        raise NotOurs(f"{username} exists but was not created by reconcile for {classroom}; leaving it alone")
    return entry


def _shadow(username: str) -> tuple[str, int | None]:
    return read_shadow(SHADOW).get(username, ("!", None))


def create_group(name: str) -> str:
    try:
        grp.getgrnam(name)
        return "exists"
    except KeyError:
        run(["groupadd", name])
        return "created"


def create_account(username: str, classroom: str, name: str, group: str, home: str, shell: str) -> str:
    if ours(username, classroom) is not None:
        return "exists"
    run(["useradd", "--comment", gecos(name, classroom), "--home-dir", home, "--no-create-home",
         "--shell", shell, "--user-group", "--groups", group, username])
    return "created"


def set_password(username: str, classroom: str, member_name: str, emails: tuple[str, ...], outbox_dir, reason: str,
                 reset: bool = False) -> str:
    """Generate a password, hand it to the 0600 outbox, then set it through chpasswd's stdin.

    The outbox is written first: if we die in between, the next pass sees no
    password and generates a new one, replacing the outbox item.  Without
    ``reset``, an account that already has a password keeps it.
    """
    if ours(username, classroom) is None:
        raise RuntimeError(f"{username} does not exist")
    password_field, _ = _shadow(username)
    if password_field.lstrip("!").startswith("$") and not reset:
        return "already set"
    secret = passwords.generate()
    outbox.put(outbox_dir, username=username, name=member_name, emails=emails, password=secret, reason=reason)
    run(["chpasswd"], stdin=f"{username}:{secret}\n")
    return "set"


def update_account(username: str, classroom: str, changes: dict) -> str:
    """Apply name / groups / home / shell / login changes with a single usermod."""
    entry = ours(username, classroom)
    if entry is None:
        raise RuntimeError(f"{username} does not exist")
    argv = ["usermod"]
    name, _ = parse_gecos(entry.pw_gecos)
    if "name" in changes and changes["name"] != name:
        argv += ["--comment", gecos(changes["name"], classroom)]
    if "groups" in changes:
        current = sorted(g.gr_name for g in grp.getgrall() if username in g.gr_mem)
        if current != sorted(changes["groups"]):
            argv += ["--groups", ",".join(changes["groups"])]
    if "home" in changes and changes["home"] != entry.pw_dir:
        argv += ["--home", changes["home"]]
    if "shell" in changes and changes["shell"] != entry.pw_shell:
        argv += ["--shell", changes["shell"]]
    if changes.get("login") == "enabled":
        password_field, expire = _shadow(username)
        if password_field.startswith("!"):
            argv += ["--unlock"]
        if expire is not None:
            argv += ["--expiredate", ""]
    if len(argv) == 1:
        return "already"
    run(argv + [username])
    return "updated"


def disable_account(username: str, classroom: str) -> str:
    """Lock the password and expire the account: PAM refuses the login, files stay."""
    if ours(username, classroom) is None:
        return "absent"
    password_field, expire = _shadow(username)
    if password_field.startswith("!") and expire is not None and expire <= time.time() // 86400:
        return "already"
    run(["usermod", "--lock", "--expiredate", "1", username])
    return "disabled"


def destroy_account(username: str, classroom: str, outbox_dir) -> str:
    if ours(username, classroom) is None:
        outbox.discard(outbox_dir, username)
        return "absent"
    run(["userdel", username])
    outbox.discard(outbox_dir, username)
    return "deleted"
