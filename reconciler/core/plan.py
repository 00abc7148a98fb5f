"""plan(desired, actual, policy) -> Plan: the pure core.  No I/O, no clock, no randomness.

A Plan is an ordered tuple of frozen Actions.  For one person, creation runs
account -> password -> volume -> filesystem -> resize -> manifest -> mount ->
ownership (after the classroom groups), and disabling runs the reverse.
Actions that repair changes made by hand are flagged ``drift`` so they can be
shown apart, but they are applied in the same order.  Guards that must stop
the whole pass (mass disable, over-commit, destroy without the flag) become
refusals; a problem that only blocks one person (an image that is not ext4, a
username taken by an account or group that is not ours) becomes a blocked
note and the others proceed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..config.classroom import ROLES, group_name
from ..config.site import COLLECTION_VOLUME, SHARED_VOLUME
from ..config.sizes import format_size, round_up
from .actions import (
    AccountFields,
    Action,
    ContainerFields,
    FilesystemFields,
    HubUserFields,
    Kind,
    Note,
    Op,
    Plan,
    Policy,
    VolumeFields,
)
from .actual import Account, Actual, ManifestEntry, Volume, is_disabled, is_enabled
from . import assignments
from .firewall import in_force, rules_of
from .desired import REQUIRED_MOUNT_FLAGS, SHELL, Desired, Member, VolumeSpec

PASSWORD_NOTE = "generated, to the outbox"  # what a password action shows: never the secret
RESTART_REASON = "stopped so that its volume can be resized: it starts again at the next login"
HELD_ELSEWHERE = "{whose} volume is still mounted in another mount namespace; applies when that ends"
DEMOTED = (
    "nobody is a hub admin: the hub user is forgotten (files untouched) and comes back at the next login "
    "without admin rights"
)
REMOVED = "not in classroom.yaml (removed people are disabled, never deleted)"
STOPPED_DIRECTLY = "the hub cannot be reached: the server is stopped through Docker, so it stops writing to the home"
SERVER_UNKNOWN = (
    "neither the hub nor Docker can be reached: a server may still be writing to the home; the unmount "
    "waits until one of them answers"
)


def _held_elsewhere(who: str) -> str:
    return HELD_ELSEWHERE.format(whose=f"{who}'s")


def _owner_text(owner: tuple[int, int, int] | None) -> str | None:
    return None if owner is None else f"{owner[0]}:{owner[1]} {owner[2]:04o}"


def plan(desired: Desired, actual: Actual, policy: Policy = Policy()) -> Plan:
    """Diff desired against actual; return the ordered actions that converge the host."""
    refused: list[Note] = []
    shrinks: list[Note] = []  # resizes left out: they would shrink below what their owner stores
    actions, blocked = _converge_firewall(desired, actual)  # the students' fence first
    active = [m for m in desired.members if m.status == "active"]
    if active:
        for role in ROLES:
            name = group_name(desired.classroom, role)
            if name not in actual.groups:
                actions.append(Action(Op.CREATE, Kind.GROUP, name, reason=f"classroom {role} group"))

    if actual.hub is not None and actual.hub.users is None:
        blocked.append(Note("hub", "", f"JupyterHub: {actual.hub.error}; its part is retried next pass"))
    if actual.hub is not None and actual.containers is None:
        blocked.append(Note("docker", "", "Docker is unreachable: running servers' limits are not updated"))

    listed = {m.username for m in desired.members}
    ready: list[str] = []  # active students whose home is mounted by the end of their own steps
    for member in desired.members:
        # A name that clashes with what is not ours blocks that person only: everyone else converges.
        account = actual.accounts.get(member.username)
        if account is not None and account.classroom != desired.classroom:
            blocked.append(
                Note(
                    "foreign-account",
                    member.username,
                    f"{member.username!r} already exists on this host (uid {account.uid}) but was not created by "
                    f"reconcile for {desired.classroom!r}; pick another username or remove that account by hand",
                )
            )
            continue
        if account is None and member.username in actual.groups and member.status == "active":
            blocked.append(
                Note(
                    "foreign-account",
                    member.username,
                    f"a group named {member.username!r} already exists on this host; useradd could not create "
                    "the person's own group: pick another username",
                )
            )
            continue
        if member.status == "active":
            steps, problem = _converge_active(member, account, desired, actual, policy, shrinks)
            actions += steps + _hub_active(member, actual, policy)
            if problem:
                blocked.append(Note("blocked", member.username, problem))
            elif member.role == "student" and not any(
                step.waits for step in steps if step.kind in (Kind.MOUNT, Kind.OWNERSHIP)
            ):
                ready.append(member.username)
        elif member.status in ("disabled", "archived"):  # archived: `reconcile archive` exports the files too
            actions += _converge_disabled(member.username, account, desired, actual, f"status: {member.status}")
        else:
            steps = _converge_purged(member.username, account, desired, actual)
            if any(not step.waits for step in steps) and not policy.allow_destroy:
                refused.append(
                    Note(
                        "destroy",
                        member.username,
                        f"purging {member.username!r} deletes their account and every file they wrote; "
                        "re-run with --allow-destroy to do it",
                    )
                )
            actions += steps

    steps, problem = _converge_shared(desired, actual, shrinks)
    actions += steps
    if problem:
        blocked.append(Note("blocked", SHARED_VOLUME, problem))
    course_folder_busy = problem is not None or any(s.kind is Kind.MOUNT and s.op is Op.CREATE for s in steps)
    copies, held_back, upcoming = assignments.handouts(desired, actual, ready, course_folder_busy)
    actions += copies  # after each student's own steps: their home is mounted and theirs by then
    blocked += held_back
    steps, problem = _converge_collection_area(desired, actual, shrinks)
    actions += steps
    if problem:
        blocked.append(Note("blocked", COLLECTION_VOLUME, problem))
    area_mounting = any(s.kind is Kind.MOUNT and s.op is Op.CREATE for s in steps)
    collections, held_back, due = assignments.collections(desired, actual, ready, problem, area_mounting, copies)
    actions += collections  # after the handouts: a student given their copy in this pass is collected after it
    blocked += held_back
    upcoming += due
    given, held_back, later = assignments.returns(desired, actual, ready, problem, area_mounting)
    actions += given
    blocked += held_back
    upcoming += later

    for username in sorted(_leftovers(desired, actual) - listed - {SHARED_VOLUME, COLLECTION_VOLUME}):
        account = actual.accounts.get(username)
        ours = account if account is not None and account.classroom == desired.classroom else None
        actions += _converge_disabled(username, ours, desired, actual, REMOVED)

    blocked += shrinks
    refused += _guard_mass_disable(actions, desired, actual, policy)
    refused += _guard_overcommit(actions, actual, policy)
    return Plan(desired.classroom, tuple(actions), tuple(refused), tuple(blocked), upcoming=tuple(upcoming))


def _converge_firewall(desired: Desired, actual: Actual) -> tuple[list[Action], list[Note]]:
    """The students' chains first: they keep containers off the host and the school's network."""
    if not desired.firewall or (actual.firewall is None and not actual.firewall_error):  # not asked
        return [], []
    if actual.firewall is None:
        return [], [
            Note(
                "firewall",
                "",
                f"the students' firewall could not be read ({actual.firewall_error}); "
                "nothing is known about what containers can reach",
            )
        ]
    steps = []
    for key, chain in desired.firewall.items():
        have = rules_of(chain.name, actual.firewall)
        if f"-N {chain.name}" not in actual.firewall:
            steps.append(
                Action(
                    Op.CREATE,
                    Kind.FIREWALL,
                    key,
                    after=f"{len(chain.rules)} rules in {chain.name}",
                    reason=f"students' {key} rules (site.yaml hub section)",
                )
            )
        elif not in_force(chain, actual.firewall):
            why = (
                ("the jump from " + chain.parent + " to it is missing")
                if have == chain.rules
                else "its rules differ from site.yaml (changed there or by hand, or a firewall reload)"
            )
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.FIREWALL,
                    key,
                    before=f"{len(have)} rules",
                    after=f"{len(chain.rules)} rules in {chain.name}",
                    reason=why,
                )
            )
    return steps, []


def _leftovers(desired: Desired, actual: Actual) -> set[str]:
    """People we manage on this host in any form: our accounts, volumes, manifest entries, mounts."""
    names = {a.username for a in actual.accounts.values() if a.classroom == desired.classroom}
    names |= set(actual.volumes)
    names |= set(actual.hub_users)
    homes = str(desired.paths.homes).rstrip("/") + "/"
    for target in (*actual.manifest, *actual.mounts, *(actual.exports or ()), *(actual.export_lines or ())):
        if target.startswith(homes) and "/" not in target[len(homes) :]:
            names.add(target[len(homes) :])
    return names


def _converge_active(
    member: Member, account: Account | None, desired: Desired, actual: Actual, policy: Policy, shrinks: list[Note]
) -> tuple[list[Action], str | None]:
    user = member.username
    group = group_name(desired.classroom, member.role)
    home = str(desired.paths.home(user))
    new = account is None
    reenabling = account is not None and is_disabled(account, actual.today)
    steps: list[Action] = []

    # account
    if account is None:
        steps.append(
            Action(
                Op.CREATE,
                Kind.ACCOUNT,
                user,
                after=AccountFields(name=member.name, group=group, home=home, shell=SHELL),
                reason=f"new {member.role}",
            )
        )
        steps.append(Action(Op.CREATE, Kind.PASSWORD, user, after=PASSWORD_NOTE, reason="new account"))
    else:
        if reenabling:
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.ACCOUNT,
                    user,
                    before=AccountFields(login="disabled"),
                    after=AccountFields(login="enabled"),
                    reason="status: active",
                )
            )
        elif not is_enabled(account, actual.today):
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.ACCOUNT,
                    user,
                    before=AccountFields(login="half-disabled (locked or expired)"),
                    after=AccountFields(login="enabled"),
                    reason="account was locked or expired by hand",
                    drift=True,
                )
            )
        if account.name != member.name:
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.ACCOUNT,
                    user,
                    before=AccountFields(name=account.name),
                    after=AccountFields(name=member.name),
                    reason="name changed in classroom.yaml",
                )
            )
        if account.groups != {group}:
            role_change = bool(account.groups & set(desired.groups.values()) - {group})
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.ACCOUNT,
                    user,
                    before=AccountFields(groups=tuple(sorted(account.groups))),
                    after=AccountFields(groups=(group,)),
                    reason=f"role is now {member.role}" if role_change else "group membership changed by hand",
                    drift=not role_change,
                )
            )
        hand_edits = {
            key: (old, want)
            for key, old, want in (("home", account.home, home), ("shell", account.shell, SHELL))
            if old != want
        }
        if hand_edits:
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.ACCOUNT,
                    user,
                    before=AccountFields(**{k: v[0] for k, v in hand_edits.items()}),
                    after=AccountFields(**{k: v[1] for k, v in hand_edits.items()}),
                    reason="account changed by hand",
                    drift=True,
                )
            )
        if not account.has_password:
            steps.append(
                Action(
                    Op.CREATE,
                    Kind.PASSWORD,
                    user,
                    after=PASSWORD_NOTE,
                    reason="account has no password (creation was interrupted)",
                    drift=True,
                )
            )

    spec = desired.home(member)
    own = actual.groups.get(user)  # the person's own group, as the driver resolves it (else their primary)
    ids = None if account is None else (account.uid, own.gid if own is not None else account.gid)
    volume_steps, problem = _converge_volume(
        spec,
        desired,
        actual,
        policy,
        shrinks,
        ids,
        new,
        new or reenabling,
        "the account was missing: its home goes to the new account",
    )
    return steps + volume_steps, problem


def _converge_volume(
    spec: VolumeSpec,
    desired: Desired,
    actual: Actual,
    policy: Policy,
    shrinks: list[Note],
    ids: tuple[int, int] | None,
    new: bool,
    expected: bool,
    new_owner: str,
) -> tuple[list[Action], str | None]:
    """One volume, whatever it holds: made (or its interrupted making finished), resized, in the manifest,
    mounted, its root owned, exported to the workers.  ``ids``: its owner's (uid, gid) as the host has them now
    (None: made in this pass); ``new``: its owner is made in this pass; ``expected``: its steps are expected (a
    new or returning owner), not repairs of a hand edit.  Returns the steps, and a problem that blocks it."""
    user, volume = spec.key, actual.volumes.get(spec.key)
    size = round_up(spec.quota, actual.volume_step)
    steps: list[Action] = []
    if volume is None:
        steps += _new_volume(user, size, spec.source, spec.why)
    elif not volume.complete:
        steps.append(_finish_volume(user, size, drift=not new))
    elif volume.fs is None and volume.readable:
        return steps, (
            f"{volume.path} exists but holds no ext4 filesystem; it is never formatted automatically: "
            "inspect it by hand"
        )
    elif volume.size != size or (volume.fs is not None and volume.fs.size != size):
        # an inactive LV: its size is known, its filesystem not yet
        steps += _resize(spec, volume, size, actual, policy, _mounted(actual, spec.mount_point, spec.source), shrinks)

    want = None if ids is None else (*ids, spec.owner.mode)
    fresh = expected or volume is None or not volume.complete
    mounting, problem = _mount_steps(spec, volume, desired, actual, want, fresh, new_owner)
    if problem:
        return steps + mounting, problem
    return _with_export(user, spec.mount_point, steps + mounting, desired, actual), None


NFS_REASON = "the swarm's workers mount it over NFS"
RESIZED_OFFLINE = "the volume is resized offline: exported again right after"


def _offline(resize: Action, actual: Actual, home: str) -> bool:
    """Does this resize unmount the volume (a shrink, or a grow the kernel cannot do online)?  The same test as
    _resize's; an online grow keeps the home mounted, and exported: a running server keeps its files."""
    volume = actual.volumes[resize.target]
    fs_size = volume.fs.size if volume.fs else volume.size
    return not (resize.after.size > fs_size and home in actual.mounts and actual.online_resize)


def _exported(path: str, actual: Actual) -> tuple[Mapping[str, frozenset[str]] | None, str | None]:
    """The kernel's table for this path (client -> options) and the exports file's line for it."""
    return (actual.exports or {}).get(path), (actual.export_lines or {}).get(path)


def _withdraw(user: str, desired: Desired, actual: Actual, reason: str) -> list[Action]:
    live, line = _exported(str(desired.paths.home(user)), actual)
    if not live and line is None:
        return []
    return [Action(Op.DISABLE, Kind.EXPORT, user, before=",".join(sorted(live or {})) or "(file only)", reason=reason)]


def _with_export(
    user: str, path: str, steps: list[Action], desired: Desired, actual: Actual, mountpoint: bool = True
) -> list[Action]:
    """The export of a mounted volume (at ``path``) for the workers, after its mount; withdrawn around an offline
    resize (the kernel's export holds the filesystem: it could not be unmounted) and exported again after it."""
    live, line = _exported(path, actual)
    if desired.exports is None:
        return steps + _withdraw(
            user, desired, actual, "hub.swarm.homes is not nfs: the workers no longer mount homes from this server"
        )
    mounted = path in actual.mounts or any(a.kind is Kind.MOUNT and a.op is Op.CREATE and not a.waits for a in steps)
    if mountpoint and not mounted:
        return steps  # exported once its volume is mounted (mountd would refuse it before)
    want = desired.exports.export(path, mountpoint=mountpoint)
    clients = ",".join(want.clients)
    resize = next(
        (
            i
            for i, a in enumerate(steps)
            if a.kind is Kind.VOLUME and a.op is Op.UPDATE and not a.waits and _offline(a, actual, path)
        ),
        None,
    )
    if resize is not None and (live or line is not None):
        withdraw = Action(
            Op.DISABLE, Kind.EXPORT, user, before=",".join(sorted(live or {})) or "(file only)", reason=RESIZED_OFFLINE
        )
        return [
            *steps[:resize],
            withdraw,
            *steps[resize:],
            Action(Op.CREATE, Kind.EXPORT, user, after=clients, reason=NFS_REASON),
        ]
    if not live and line is None:
        return steps + [Action(Op.CREATE, Kind.EXPORT, user, after=clients, reason=NFS_REASON)]
    if want.in_force(live) and line == want.line:
        return steps
    before = ",".join(sorted(live or {})) or "-"
    written = None if line is None else sorted(part.split("(")[0] for part in line.split()[1:])
    if written is not None and written != sorted(want.clients):  # what reconcile wrote last differs: site.yaml did
        reason, drift = "the workers in site.yaml changed", False
    else:
        reason, drift = "export changed by hand (options, or withdrawn from the kernel or the exports file)", True
    return steps + [Action(Op.UPDATE, Kind.EXPORT, user, before=before, after=clients, reason=reason, drift=drift)]


def _new_volume(user: str, size: int, source: str, reason: str) -> list[Action]:
    return [
        Action(Op.CREATE, Kind.VOLUME, user, after=VolumeFields(size=size, path=source), reason=reason),
        Action(Op.CREATE, Kind.FILESYSTEM, user, after=FilesystemFields(fstype="ext4", size=size), reason="new volume"),
    ]


def _finish_volume(user: str, size: int, drift: bool) -> Action:
    return Action(
        Op.CREATE,
        Kind.FILESYSTEM,
        user,
        before="unfinished image",
        after=FilesystemFields(fstype="ext4", size=size),
        reason="volume creation was interrupted; the image never held data",
        drift=drift,
    )


def _mount_steps(
    spec: VolumeSpec,
    volume: Volume | None,
    desired: Desired,
    actual: Actual,
    want_owner: tuple[int, int, int] | None,
    expected_by_file: bool,
    new_owner: str,
) -> tuple[list[Action], str | None]:
    """The manifest entry, the mount and the owner of a volume's root (``want_owner`` None: the owner is made
    in this pass).  Steps that repair a hand edit are drift."""
    user, home, source, what, owner_after = spec.key, spec.mount_point, spec.source, spec.what, spec.owner.text
    steps: list[Action] = []
    entry = actual.manifest.get(home)
    want = ManifestEntry(source, home, "ext4", desired.volumes.mount_options)
    if entry is None:
        steps.append(
            Action(
                Op.CREATE,
                Kind.MANIFEST,
                user,
                after=f"{source} {home}",
                reason="mount at boot",
                drift=not expected_by_file,
            )
        )
    elif entry != want:
        steps.append(
            Action(
                Op.UPDATE,
                Kind.MANIFEST,
                user,
                before=f"{entry.source} {entry.options}",
                after=f"{want.source} {want.options}",
                reason="manifest entry changed by hand",
                drift=True,
            )
        )

    mount = actual.mounts.get(home)
    if mount is None:
        # Mounting a filesystem that is still mounted elsewhere would attach its image a second time: two
        # loop devices writing one ext4 corrupt it.  It waits until the other mount is gone.
        waits = _held_elsewhere(spec.who) if volume is not None and volume.held_elsewhere else ""
        steps.append(
            Action(
                Op.CREATE,
                Kind.MOUNT,
                user,
                after=home,
                reason=f"{what} volume",
                drift=not expected_by_file,
                waits=waits,
            )
        )
        steps.append(
            Action(
                Op.CREATE,
                Kind.OWNERSHIP,
                user,
                after=owner_after,
                reason=f"{what} belongs to its owner",
                drift=not expected_by_file,
                waits=waits,
            )
        )
    elif mount.source != source:
        return steps, f"{home} has {mount.source} mounted on it, not {source}: unmount it by hand"
    else:
        if not mount.options >= REQUIRED_MOUNT_FLAGS:
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.MOUNT,
                    user,
                    before=",".join(sorted(mount.options)),
                    after="nodev,nosuid",
                    reason="mount options changed by hand",
                    drift=True,
                )
            )
        if want_owner is None:
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.OWNERSHIP,
                    user,
                    before=_owner_text(mount.owner),
                    after=owner_after,
                    reason=new_owner,
                    drift=True,
                )
            )
        elif mount.owner != want_owner:
            steps.append(
                Action(
                    Op.UPDATE,
                    Kind.OWNERSHIP,
                    user,
                    before=_owner_text(mount.owner),
                    after=owner_after,
                    reason=f"{what} ownership or mode changed by hand",
                    drift=True,
                )
            )
    return steps, None


def _converge_shared(desired: Desired, actual: Actual, shrinks: list[Note]) -> tuple[list[Action], str | None]:
    """The course folder's own volume (classroom.yaml's shared_disk): one more volume, planned like a home.

    Removing shared_disk leaves the volume as it is (never unmounted or deleted: it holds the course's
    files).  Every running server holds the folder (a bind mount), so an offline resize waits for all, whatever
    ``resize_running`` says: the course folder never stops anyone's server.
    """
    volume = actual.volumes.get(SHARED_VOLUME)
    if volume is None and desired.shared_disk is None:  # a plain folder on this server's disk (when it exists)
        if not actual.course_folder_exists:
            return [], None
        return _with_export(SHARED_VOLUME, str(desired.paths.course_folder), [], desired, actual, False), None
    spec = desired.course_folder(desired.shared_disk if desired.shared_disk is not None else volume.size)  # type: ignore[union-attr]
    if volume is None and actual.course_folder_files:
        folder = spec.mount_point
        return [], (
            f"the course folder {folder} already holds files on the host's disk, which a volume "
            f"mounted there would hide: move them aside (mv {folder} {folder}.old) and copy them back "
            "into the folder once the next pass has mounted its volume"
        )
    return _converge_teachers_volume(spec, desired, actual, shrinks)


def _converge_collection_area(desired: Desired, actual: Actual, shrinks: list[Note]) -> tuple[list[Action], str | None]:
    """The collection area's own volume, made once an assignment has a due time (collection_disk, or the
    default): planned like the course folder's.  Once made it stays, whatever the file says later (it holds
    the students' submissions); it is never a folder on the host's own disk."""
    volume = actual.volumes.get(COLLECTION_VOLUME)
    if volume is None and desired.collection_disk is None:
        return [], None
    spec = desired.collection(desired.collection_disk if desired.collection_disk is not None else volume.size)  # type: ignore[union-attr]
    return _converge_teachers_volume(spec, desired, actual, shrinks)


def _converge_teachers_volume(
    spec: VolumeSpec, desired: Desired, actual: Actual, shrinks: list[Note]
) -> tuple[list[Action], str | None]:
    """A volume of root and the teachers' group (the course folder, the collection area): a resize waits for
    every server that holds it, whatever ``resize_running`` says; its root goes to the group once it exists."""
    teachers = actual.groups.get(spec.owner.group)
    return _converge_volume(
        spec,
        desired,
        actual,
        Policy(resize_running="wait"),
        shrinks,
        None if teachers is None else (0, teachers.gid),
        False,
        False,
        f"the teachers' group is new: {spec.who} goes to it",
    )


def _mounted(actual: Actual, home: str, source: str) -> bool:
    mount = actual.mounts.get(home)
    return mount is not None and mount.source == source


def _resize(
    spec: VolumeSpec, volume: Volume, size: int, actual: Actual, policy: Policy, mounted: bool, shrinks: list[Note]
) -> list[Action]:
    """Resize the volume, unless that needs it unmounted everywhere and someone still holds it.

    A shrink below what the owner has stored is not planned at all (a note in ``shrinks`` says why): nothing
    is made for it either -- no restart of their server, no withdrawal of their export -- and their other
    steps go ahead.

    Growing a mounted filesystem is done online where the kernel allows it (a running server then sees
    the new size at once).  Anything else runs fsck and resize2fs offline, which must never happen while
    the filesystem is mounted anywhere: a running server's container holds a bind mount of the home.
    Then the change waits (shown, not applied, retried every pass) until the server stops, or, with
    ``resize_running: restart``, the server is stopped first.  A volume open in every server (the course
    folder) waits until they have all stopped.
    """
    user, quota = spec.key, spec.quota
    fs_size = volume.fs.size if volume.fs else volume.size
    current = volume.size if volume.size != size else fs_size
    refused = _shrink_refused(spec, volume, current, size)
    if refused is not None:
        shrinks.append(refused)
        return []
    if volume.size == size:
        reason, drift = "filesystem does not fill its image (a resize was interrupted)", True
    elif size > volume.size:
        reason, drift = f"disk quota raised to {format_size(quota)}", False
    else:
        reason, drift = f"disk quota lowered to {format_size(quota)}", False
    online = size > fs_size and mounted and actual.online_resize
    everyone = sum(1 for c in (actual.containers or {}).values() if c.running) if spec.in_every_server else 0
    container = (actual.containers or {}).get(user)
    running = container is not None and container.running
    waits, steps = "", []
    if not online and everyone:
        waits = f"{spec.who} is open in {everyone} running server(s); applies when they have all stopped"
    elif not online and running:  # its container holds the volume (and is what a scan finds holding it)
        hub_reachable = actual.hub is not None and actual.hub.users is not None
        if policy.resize_running == "restart" and hub_reachable:
            steps.append(
                Action(Op.DISABLE, Kind.SERVER, user, before="running", after="stopped", reason=RESTART_REASON)
            )
        else:
            waits = f"{user}'s server is running; applies when it stops"
    elif not online and volume.held_elsewhere:
        waits = _held_elsewhere(spec.who)
    steps.append(
        Action(
            Op.UPDATE,
            Kind.VOLUME,
            user,
            before=VolumeFields(size=current, used=volume.used),
            after=VolumeFields(size=size),
            reason=reason,
            drift=drift,
            waits=waits,
        )
    )
    return steps


def _hub_active(member: Member, actual: Actual, policy: Policy) -> list[Action]:
    """Demote stale admins; apply a changed memory or CPU quota to a running server in place."""
    steps = []
    hub_user = actual.hub_users.get(member.username)
    if hub_user is not None and hub_user.admin:
        # Nobody is a hub admin (teachers have the classroom-teacher role).  The reconciler holds no admin:users
        # scope, so it cannot edit the flag: it forgets the hub user, who comes back at the next login without
        # it.  A teacher's running server is not stopped for that: a login or an auth refresh clears it too.
        teacher_busy = member.role == "teacher" and hub_user.running
        steps.append(
            Action(
                Op.DISABLE,
                Kind.HUB_USER,
                member.username,
                before=HubUserFields(admin=True),
                reason=DEMOTED,
                waits=f"{member.username}'s server is running" if teacher_busy else "",
            )
        )
    leftover = _leftover_service(member.username, actual)
    steps += leftover
    container = (actual.containers or {}).get(member.username)
    if container is not None and container.running and not leftover:
        before, after = {}, {}
        if container.memory != member.memory:
            before["memory"], after["memory"] = container.memory, member.memory
        if cpu_quota(member.cpu, container.cpu_period) != container.cpu_quota:
            before["cpu"], after["cpu"] = container.cpus, member.cpu
        if after:
            what = " and ".join(("memory" if key == "memory" else "CPU") for key in after)
            change = dict(before=ContainerFields(**before), after=ContainerFields(**after))
            if not container.service:
                steps.append(
                    Action(
                        Op.UPDATE,
                        Kind.CONTAINER,
                        member.username,
                        **change,
                        reason=f"{what} quota changed; applied live",
                    )
                )
            elif policy.resize_running == "restart" and actual.hub is not None and actual.hub.users is not None:
                # a swarm service's limits change only with a new task: its next start brings them
                steps.append(
                    Action(
                        Op.DISABLE,
                        Kind.SERVER,
                        member.username,
                        before="running",
                        after="stopped",
                        reason=f"{what} quota changed; a swarm server takes it when it starts again",
                    )
                )
            else:
                steps.append(
                    Action(
                        Op.UPDATE,
                        Kind.CONTAINER,
                        member.username,
                        **change,
                        reason=f"{what} quota changed",
                        waits=f"{member.username}'s server runs on the swarm; applies when it starts again",
                    )
                )
    return steps


CPU_PERIOD = 100_000  # microseconds: Docker's default CFS period, which DockerSpawner uses


def cpu_quota(cpus: float, period: int = 0) -> int:
    """The CFS quota Docker sets for ``cpus`` (DockerSpawner: int(cpu_limit * cpu_period))."""
    return int(cpus * (period or CPU_PERIOD))


LEFTOVER_SERVICE = (
    "a swarm service with no server running in the hub (its worker went away, or it was left behind): removed"
)


def _leftover_service(user: str, actual: Actual) -> list[Action]:
    """A swarm service the hub no longer runs: JupyterHub stops only servers its poll finds running, so a server
    whose worker died leaves its service until that person's next start.  Removed here (the driver asks the hub
    again first: a start between the two observations keeps its new service)."""
    container = (actual.containers or {}).get(user)
    if container is None or not container.service or actual.hub is None or actual.hub.users is None:
        return []
    hub_user = actual.hub.users.get(user)
    if hub_user is not None and hub_user.running:
        return []
    return [
        Action(
            Op.DISABLE,
            Kind.CONTAINER,
            user,
            before=ContainerFields(memory=container.memory),
            reason=LEFTOVER_SERVICE,
            drift=True,
        )
    ]


def _hub_down(actual: Actual) -> bool:
    return actual.hub is not None and actual.hub.users is None


def _hub_leave(user: str, actual: Actual, reason: str, drift: bool) -> list[Action]:
    """Stop the server and forget the hub user before the home is unmounted; files are untouched.

    With the hub down, a server Docker still runs is stopped all the same (the driver goes through Docker):
    a disabled person's server must not go on writing to a volume that the next steps unmount."""
    hub_user = actual.hub_users.get(user)
    container = (actual.containers or {}).get(user)
    if hub_user is None and _hub_down(actual) and container is not None and container.running:
        return [
            Action(
                Op.DISABLE,
                Kind.SERVER,
                user,
                before="running",
                after="stopped",
                reason=f"{reason}; {STOPPED_DIRECTLY}",
                drift=drift,
            )
        ]
    if hub_user is None:
        return _leftover_service(user, actual)
    steps = _leftover_service(user, actual)
    if hub_user.running:
        steps.append(
            Action(Op.DISABLE, Kind.SERVER, user, before="running", after="stopped", reason=reason, drift=drift)
        )
    steps.append(
        Action(Op.DISABLE, Kind.HUB_USER, user, before=HubUserFields(admin=hub_user.admin), reason=reason, drift=drift)
    )
    return steps


def _converge_disabled(
    user: str, account: Account | None, desired: Desired, actual: Actual, reason: str
) -> list[Action]:
    """Lock the login first, then the reverse order of creation; files are kept.

    Locking first means a later step that fails (a server that will not stop, a busy unmount) can
    never leave a removed person able to log in.
    """
    steps = []
    if account is not None and not is_disabled(account, actual.today):
        steps.append(
            Action(
                Op.DISABLE,
                Kind.ACCOUNT,
                user,
                before=AccountFields(login="enabled"),
                after=AccountFields(login="disabled"),
                reason=reason,
            )
        )
    drift = account is None and user not in actual.volumes  # a hub user we never created
    steps += _hub_leave(user, actual, reason if not drift else "hub user not in classroom.yaml", drift)
    steps += _unmount_steps(user, desired, actual, reason, _server_unknown(desired, actual))
    return steps


def _server_unknown(desired: Desired, actual: Actual) -> str:
    """Why an unmount waits: servers on this host, and neither the hub nor Docker answering, so nobody can say
    a server is not still writing to the home (its container keeps its own mount).  Servers on swarm workers
    reach the home over NFS, whose export is withdrawn first."""
    return SERVER_UNKNOWN if desired.servers_here and _hub_down(actual) and actual.containers is None else ""


def _unmount_steps(user: str, desired: Desired, actual: Actual, reason: str, waits: str = "") -> list[Action]:
    home = str(desired.paths.home(user))
    volume = actual.volumes.get(user)
    steps = _withdraw(user, desired, actual, reason)  # the workers' way in goes before the mount
    if home in actual.mounts:
        steps.append(Action(Op.DISABLE, Kind.MOUNT, user, before=home, reason=reason, waits=waits))
    if home in actual.manifest:
        steps.append(
            Action(
                Op.DISABLE,
                Kind.MANIFEST,
                user,
                before=f"{actual.manifest[home].source} {home}",
                reason=reason,
                waits=waits,
            )
        )
    if volume is not None and volume.attached and home not in actual.mounts:
        waits = _held_elsewhere(user) if volume.held_elsewhere else waits
        release = desired.volumes.release(volume)  # the backend's device: a loop device, an active LV
        steps.append(
            Action(
                Op.DISABLE,
                Kind.VOLUME,
                user,
                before=release.before,
                after=release.after,
                reason=release.reason,
                drift=True,
                waits=waits,
            )
        )
    return steps


def _converge_purged(user: str, account: Account | None, desired: Desired, actual: Actual) -> list[Action]:
    steps = _hub_leave(user, actual, "status: purged", False) + _unmount_steps(
        user, desired, actual, "status: purged", _server_unknown(desired, actual)
    )
    volume = actual.volumes.get(user)
    # A volume still mounted elsewhere is not deleted yet; the account waits with it, so a purge is never
    # left half done (an image without its owner) while it waits.
    waits = _held_elsewhere(user) if volume is not None and volume.held_elsewhere else ""
    if volume is not None:
        steps.append(
            Action(
                Op.DESTROY,
                Kind.VOLUME,
                user,
                before=VolumeFields(path=volume.path, used=volume.used),
                reason="status: purged",
                destructive=True,
                waits=waits,
            )
        )
    if account is not None:
        steps.append(
            Action(
                Op.DESTROY,
                Kind.ACCOUNT,
                user,
                before=AccountFields(uid=account.uid),
                reason="status: purged",
                destructive=True,
                waits=waits,
            )
        )
    return steps


# --- guards -------------------------------------------------------------------------------------------


def _guard_mass_disable(actions: Iterable[Action], desired: Desired, actual: Actual, policy: Policy) -> list[Note]:
    """A truncated or half-merged classroom.yaml must not lock out the whole class, nor may it be emptied
    a few people at a time: disables within the window (``actual.disabled_recently``) count together,
    against the people who were active when the window started."""
    if policy.allow_mass_disable:
        return []
    ours = {a.username: a for a in actual.accounts.values() if a.classroom == desired.classroom}
    enabled = {u for u, a in ours.items() if is_enabled(a, actual.today)}
    earlier = {u for u in actual.disabled_recently if u in ours and u not in enabled}  # still disabled
    leaving = {
        a.target for a in actions if a.kind is Kind.ACCOUNT and a.op in (Op.DISABLE, Op.DESTROY) and a.target in enabled
    }
    if not leaving:
        return []
    active_then = len(enabled) + len(earlier)
    allowed = max(1, int(policy.max_disable_fraction * active_then))
    if len(leaving) + len(earlier) <= allowed:
        return []
    share = f"more than {policy.max_disable_fraction:.0%}"
    if earlier:
        window = f"{policy.mass_disable_window / 3600:g} h"
        what = (
            f"this pass would disable {len(leaving)} more; with the {len(earlier)} disabled in the last {window} "
            f"that makes {len(leaving) + len(earlier)} of the {active_then} people active then ({share} "
            f"within {window})"
        )
    else:
        what = f"this pass would disable {len(leaving)} of {active_then} active people ({share})"
    return [
        Note(
            "mass-disable",
            "",
            f"{what}; is classroom.yaml truncated? Re-run with --allow-mass-disable if this is intended",
        )
    ]


SHRINK_HEADROOM = 0.9  # resize2fs needs room for metadata; a full volume is of no use to a student


def _guard_overcommit(actions: Iterable[Action], actual: Actual, policy: Policy) -> list[Note]:
    """Sparse images and thin volumes share one space: when it is full, every student's writes fail at once
    (ENOSPC, or a stalled pool), so never promise more than ``max_overcommit`` times what it holds."""
    if actual.capacity is None:
        return []
    sizes = {user: volume.size for user, volume in actual.volumes.items()}
    now = sum(sizes.values())
    for action in actions:
        if action.kind is Kind.VOLUME and action.op in (Op.CREATE, Op.UPDATE):
            sizes[action.target] = action.after.size
        elif action.kind is Kind.VOLUME and action.op is Op.DESTROY:
            sizes.pop(action.target, None)
    total, limit = sum(sizes.values()), policy.max_overcommit * actual.capacity
    if total <= limit or total <= now:  # a plan that promises no more than today's is never held up
        return []
    return [
        Note(
            "overcommit",
            "",
            f"the volumes would add up to {format_size(total)}, more than {policy.max_overcommit:g} x "
            f"{actual.capacity_of or 'their storage'} ({format_size(actual.capacity)}); add space, lower quotas, "
            "or raise max_overcommit knowingly",
        )
    ]


def _shrink_refused(spec: VolumeSpec, volume: Volume, current: int, size: int) -> Note | None:
    """Never shrink a filesystem below what its owner has stored (plus metadata, with headroom): the note that
    blocks that resize (and only it), or None."""
    in_use = volume.in_use if volume.in_use is not None else volume.used
    if in_use is None or size >= current or in_use <= size * SHRINK_HEADROOM:
        return None
    user, who = spec.key, spec.who
    return Note(
        "shrink",
        user,
        f"{who} uses {format_size(in_use)} (files and filesystem metadata), more than "
        f"{SHRINK_HEADROOM:.0%} of the new disk quota {format_size(size)}; the volume keeps "
        "its size: raise the quota or ask them to free space",
    )
