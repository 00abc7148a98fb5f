"""Drivers for Unix accounts, groups and passwords: check the target, then one command.

Every driver reads the account again just before acting (from ``ctx.host.etc``),
does nothing when the work is already done, and never touches an account that
lacks our GECOS marker.
"""

from __future__ import annotations


from ..core.actions import Action, Kind, Op
from .drivers import Context, CredentialStore, driver
from .facts import HostFiles, colon_entry, gecos, parse_gecos, read_groups, shadow_entry
from .run import Runner


class NotOurs(RuntimeError):
    pass


def ours(host: HostFiles, username: str, classroom: str) -> list[str] | None:
    """The account's passwd fields if it exists and is ours; raise if it exists and is not."""
    entry = colon_entry(host.etc / "passwd", username)
    if entry is None or len(entry) < 7:
        return None
    if parse_gecos(entry[4])[1] != classroom:
        raise NotOurs(f"{username} exists but was not created by reconcile for {classroom}; leaving it alone")
    return entry


@driver(Kind.GROUP, Op.CREATE)
def create_group(action: Action, ctx: Context) -> str:
    if colon_entry(ctx.host.etc / "group", action.target) is not None:
        return "exists"
    ctx.run.run(["groupadd", action.target])
    return "created"


@driver(Kind.ACCOUNT, Op.CREATE)
def create_account(action: Action, ctx: Context) -> str:
    user, want = action.target, action.after
    if ours(ctx.host, user, ctx.classroom) is not None:
        return "exists"
    # no subordinate UID/GID ranges (/etc/subuid, /etc/subgid): a student has no use for user namespaces of their
    # own, and each range useradd hands out is one more line every later useradd scans
    ctx.run.run(
        [
            "useradd",
            "--key",
            "SUB_UID_COUNT=0",
            "--key",
            "SUB_GID_COUNT=0",
            "--comment",
            gecos(want.name, ctx.classroom),
            "--home-dir",
            want.home,
            "--no-create-home",
            "--shell",
            want.shell,
            "--user-group",
            "--groups",
            want.group,
            user,
        ]
    )
    return "created"


# How generated passwords are hashed in /etc/shadow.  Debian's PAM default (chpasswd without a method) is yescrypt,
# which spends ~37 ms of CPU on every check by design: it protects weak, human-chosen passwords.  These are never
# chosen by a person (credentials.passwords: 12 random characters, about 59 bits), so a brute force of SHA-512 crypt
# (5000 rounds, or /etc/login.defs' SHA_CRYPT_*_ROUNDS) is still out of reach, and each login checks in ~2 ms: at the
# start of a lesson 50 logins cost the hub 0.1 CPU-s instead of 1.9, and a first apply of 1000 accounts 2 CPU-s
# instead of 37.  Passwords set by hand (passwd, chpasswd) keep the system's method.
CRYPT_METHOD = "SHA512"


@driver(Kind.PASSWORD, Op.CREATE)
def create_password(action: Action, ctx: Context) -> str:
    member = ctx.member(action.target)
    if ctx.credentials is None:
        raise RuntimeError("no credentials store: a new password would have nowhere to go")
    return set_password(
        ctx.run,
        ctx.host,
        ctx.credentials,
        action.target,
        ctx.classroom,
        member.name if member else action.target,
        member.emails if member else (),
        action.reason,
    )


def set_password(
    run: Runner,
    host: HostFiles,
    credentials: CredentialStore,
    username: str,
    classroom: str,
    name: str,
    emails: tuple[str, ...],
    reason: str,
    reset: bool = False,
) -> str:
    """Generate a password, hand it to the credentials store, then set it through chpasswd's stdin.

    The store is written first: if we die in between, the next pass sees no
    password and generates a new one, replacing the waiting one.  Without
    ``reset``, an account that already has a password keeps it.
    """
    if ours(host, username, classroom) is None:
        raise RuntimeError(f"{username} does not exist")
    password_field, _ = shadow_entry(host.etc, username)
    if password_field.lstrip("!").startswith("$") and not reset:
        return "already set"
    secret = credentials.issue(username, name, emails, reason)
    run.run(["chpasswd", "--crypt-method", CRYPT_METHOD], stdin=f"{username}:{secret}\n")
    return "set"


@driver(Kind.ACCOUNT, Op.UPDATE)
def update_account(action: Action, ctx: Context) -> str:
    """Apply name / groups / home / shell / login changes with a single usermod."""
    user, want = action.target, action.after.given()
    entry = ours(ctx.host, user, ctx.classroom)
    if entry is None:
        raise RuntimeError(f"{user} does not exist")
    argv = ["usermod"]
    name, _ = parse_gecos(entry[4])
    if "name" in want and want["name"] != name:
        argv += ["--comment", gecos(want["name"], ctx.classroom)]
    if "groups" in want:
        current = sorted(g.name for g in read_groups(ctx.host.etc / "group").values() if user in g.members)
        if current != sorted(want["groups"]):
            argv += ["--groups", ",".join(want["groups"])]
    if "home" in want and want["home"] != entry[5]:
        argv += ["--home", want["home"]]
    if "shell" in want and want["shell"] != entry[6]:
        argv += ["--shell", want["shell"]]
    if want.get("login") == "enabled":
        password_field, expire = shadow_entry(ctx.host.etc, user)
        if password_field.startswith("!"):
            argv += ["--unlock"]
        if expire is not None:
            argv += ["--expiredate", ""]
    if len(argv) == 1:
        return "already"
    ctx.run.run(argv + [user])
    return "updated"


@driver(Kind.ACCOUNT, Op.DISABLE)
def disable_account(action: Action, ctx: Context) -> str:
    """Lock the password and expire the account: PAM refuses the login, files stay."""
    user = action.target
    if ours(ctx.host, user, ctx.classroom) is None:
        return "absent"
    password_field, expire = shadow_entry(ctx.host.etc, user)
    if password_field.startswith("!") and expire is not None and expire <= ctx.host.today():
        return "already"
    ctx.run.run(["usermod", "--lock", "--expiredate", "1", user])
    return "disabled"


@driver(Kind.ACCOUNT, Op.DESTROY)
def destroy_account(action: Action, ctx: Context) -> str:
    user = action.target
    exists = ours(ctx.host, user, ctx.classroom) is not None
    if exists:
        ctx.run.run(["userdel", user])
    if ctx.credentials is not None:
        ctx.credentials.discard(user)
    return "deleted" if exists else "absent"
