"""The actual state: the types of one immutable snapshot of the host, and its JSON form.

``reconciler.host.observe`` fills them in batch; ``plan()`` only ever reads
them.  The JSON form is what the daemon writes to snapshot.json and `reconcile
status --json` prints, so CI can plan against a server without touching it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from collections.abc import Mapping

# ext4 with 4 KiB blocks has 128 MiB block groups; a size that is a whole number of groups
# is filled exactly by mkfs and resize2fs, so the observed size always equals the planned one.
EXT4_BLOCK_GROUP = 128 * 1024 * 1024


@dataclass(frozen=True)
class Account:
    username: str
    uid: int
    gid: int
    name: str  # first GECOS field
    classroom: str | None  # from our GECOS marker: proves we created it
    home: str
    shell: str
    groups: frozenset[str]  # supplementary groups
    has_password: bool
    locked: bool
    expire_day: int | None  # days since the epoch; None = never


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: frozenset[str]


@dataclass(frozen=True)
class Filesystem:
    """What an ext4 superblock says (read straight from the image or device)."""

    size: int
    free: int


@dataclass(frozen=True)
class Disk:
    """One filesystem the classroom writes to, and how full it is (statvfs): status.json, `reconcile status`."""

    what: str  # what lives there: "the volume images, the state"
    path: str
    size: int
    free: int  # bytes an unprivileged writer may still use
    low: bool  # less free than site.yaml's warn_free_fraction

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> Disk:
        return cls(str(data["what"]), str(data["path"]), int(data["size"]), int(data["free"]), bool(data["low"]))


@dataclass(frozen=True)
class Volume:
    username: str
    path: str  # the image or device (or the unfinished ``.partial`` image)
    complete: bool  # False: creation was interrupted before the filesystem was made
    size: int  # apparent size of the image / size of the logical volume
    allocated: int  # bytes really written: 0 means no data was ever stored
    fs: Filesystem | None
    loop: str | None  # /dev/loopN attached to the image
    used: int | None  # what `df` calls used (while unmounted: in_use)
    in_use: int | None = None  # blocks not free, filesystem metadata included: what a shrink must keep
    attached: bool = False  # a loop device holds the image / the logical volume is active
    readable: bool = True  # its superblock could be read (an image always; an LV only while active)
    held_elsewhere: bool = False  # mounted in another mount namespace (a server's container): no offline work


@dataclass(frozen=True)
class Mount:
    target: str
    source: str  # for loop mounts, the backing image
    fstype: str
    options: frozenset[str]
    owner: tuple[int, int, int] | None  # uid, gid, mode of the mounted root
    device: str = ""  # "major:minor" of the mounted device


@dataclass(frozen=True)
class ManifestEntry:
    source: str
    target: str
    fstype: str
    options: str


@dataclass(frozen=True)
class HubUser:
    name: str
    admin: bool
    running: bool  # the default server is running or starting
    last_activity: str | None = None  # the hub's: also set when a server starts or stops (a pre-start counts)
    server_started: str | None = None  # the running server's start, and its own last activity: a server that
    server_activity: str | None = None  # was used shows activity well after its start (an idle one does not)


@dataclass(frozen=True)
class HubState:
    """JupyterHub's users, or why they could not be listed (the pass then reports the hub part failed)."""

    users: Mapping[str, HubUser] | None
    error: str | None = None


@dataclass(frozen=True)
class Container:
    """A student's server: a container (DockerSpawner) or a swarm service (hub/swarm.py), found by our labels."""

    username: str
    id: str
    running: bool
    memory: int  # the cgroup memory limit now in force (0 = none)
    cpu_quota: int = 0  # CFS quota per period, microseconds (0 = none); a swarm service: NanoCPUs
    cpu_period: int = 0  # a swarm service: 10**9
    node: str = ""  # a swarm service: the worker its server runs on (hostname)
    service: bool = False  # a swarm service: its limits change only when the server starts again
    image: str = ""  # the image id the container runs ("" unknown: a swarm service names a tag)
    stale: bool = False  # it runs an older image than the one hub.image names now: a restart gets the new one

    @property
    def cpus(self) -> float | None:
        return self.cpu_quota / self.cpu_period if self.cpu_quota > 0 and self.cpu_period > 0 else None


@dataclass(frozen=True)
class Actual:
    """The host as observed at one moment; plan() only ever reads this."""

    accounts: Mapping[str, Account]
    groups: Mapping[str, Group]
    volumes: Mapping[str, Volume]
    mounts: Mapping[str, Mount]  # by mount point
    manifest: Mapping[str, ManifestEntry]  # by mount point
    today: int  # days since the epoch, for account expiry
    volume_step: int = EXT4_BLOCK_GROUP  # volumes are sized in multiples of this (the backend's unit)
    # What the volumes can really hold together: sparse images share their filesystem's space, thin LVs their
    # pool.  None: each volume has its space of its own (thick LVs).
    capacity: int | None = None
    capacity_of: str = ""  # what that space is, in words
    hub: HubState | None = None  # None: no hub configured on this host
    containers: Mapping[str, Container] | None = field(default_factory=lambda: MappingProxyType({}))  # None: no Docker
    online_resize: bool = True  # the kernel lets reconcile grow a mounted ext4 (CAP_SYS_RESOURCE)
    disabled_recently: frozenset[str] = frozenset()  # people reconcile disabled within the mass-disable window
    # The course folder holds files on the disk below it (no volume mounted there): mounting one would hide them.
    course_folder_files: bool = False
    # The iptables lines that mention our chains (host.firewall.observe); None: not asked (no hub) or unreadable.
    firewall: tuple[str, ...] | None = None
    firewall_error: str = ""  # why it could not be read
    # NFS (hub.swarm.homes: nfs): the kernel's export table for our paths, path -> client -> options, and the lines
    # of the classroom's exports file by path.  None: not asked (no NFS, and no exports file of ours).
    exports: Mapping[str, Mapping[str, frozenset[str]]] | None = None
    export_lines: Mapping[str, str] | None = None
    course_folder_exists: bool = True
    # When the snapshot was taken (ISO 8601, UTC): the plan's clock for what falls due (an assignment's release).
    # "" (an old snapshot): nothing that depends on the time is planned.
    observed_at: str = ""
    handed_out: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))  # by assignment
    # by assignment, user: when their copy was handed out (ISO 8601): a due time before it is not theirs
    handed_out_at: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    handed_again_at: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))  # latest
    sources_missing: frozenset[str] = frozenset()  # assignments whose source is not a folder in the course folder
    # assignments whose source changed after a copy of it was handed out (its newest change is later)
    sources_changed: frozenset[str] = frozenset()
    handouts_blocked: str = ""  # why no copy may be handed out now (the ledger of who got which cannot be read)
    collected: Mapping[str, Mapping[str, Collected]] = field(
        default_factory=lambda: MappingProxyType({})
    )  # by assignment, user
    # During an assignment's late window: each collected student's folder as it is now (Collected.fingerprint).
    fingerprints: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    collections_blocked: str = ""  # why nothing may be collected now (the collection ledger cannot be read)
    # Once an assignment's feedback time has come: each student's feedback folder in the collection area
    # (digest of names, sizes, change times), and the digest last returned to them (the feedback ledger).
    feedback: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    returned: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    returns_blocked: str = ""  # why no feedback may be returned now (its ledger cannot be read)

    @property
    def hub_users(self) -> Mapping[str, HubUser]:
        """The hub's users, empty when there is no hub or it could not be asked."""
        return self.hub.users if self.hub is not None and self.hub.users is not None else MappingProxyType({})


NO_FOLDER = "missing"  # the fingerprint of an assignment folder that is not there (or is a symlink)


@dataclass(frozen=True)
class Collected:
    """A student's submission as last collected (the collection ledger, host.collect)."""

    status: str  # "on time" | "late" | "missing"
    fingerprint: str  # of their folder when it was collected (names, sizes, change times): changed since = new work
    at: str  # when (ISO 8601, UTC)


def is_disabled(account: Account, today: int) -> bool:
    """Locked and expired: PAM refuses the login either way, both make it unambiguous."""
    return account.locked and account.expire_day is not None and account.expire_day <= today


def is_enabled(account: Account, today: int) -> bool:
    return not account.locked and (account.expire_day is None or account.expire_day > today)


def login_state(account: Account | None, today: int) -> str:
    """missing / enabled / disabled / half-disabled (locked or expired, not both)."""
    if account is None:
        return "missing"
    if is_enabled(account, today):
        return "enabled"
    return "disabled" if is_disabled(account, today) else "half-disabled"


# --- JSON: plan elsewhere (CI) against what a server observed ------------------------------------

SNAPSHOT_FORMAT = 1


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (dict, MappingProxyType)):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def to_json(actual: Actual) -> dict:
    """The snapshot as JSON-ready data (no secrets: /etc/shadow contributes only lock and expiry state)."""
    return {"format_version": SNAPSHOT_FORMAT, **_plain(actual)}


def from_json(data: dict) -> Actual:
    """Rebuild a snapshot written by to_json (``reconcile status --json``)."""
    if data.get("format_version") != SNAPSHOT_FORMAT:
        raise ValueError(f"unsupported snapshot format {data.get('format_version')!r}")

    def table(key, build):
        return MappingProxyType({name: build(item) for name, item in (data.get(key) or {}).items()})

    def account(a):
        return Account(**{**a, "groups": frozenset(a["groups"])})

    def volume(v):
        return Volume(**{**v, "fs": Filesystem(**v["fs"]) if v.get("fs") else None})

    def mount(m):
        return Mount(**{**m, "options": frozenset(m["options"]), "owner": tuple(m["owner"]) if m["owner"] else None})

    hub = data.get("hub")
    containers = data.get("containers")
    return Actual(
        accounts=table("accounts", account),
        groups=table("groups", lambda g: Group(**{**g, "members": frozenset(g["members"])})),
        volumes=table("volumes", volume),
        mounts=table("mounts", mount),
        manifest=table("manifest", lambda e: ManifestEntry(**e)),
        today=data["today"],
        volume_step=data.get("volume_step", EXT4_BLOCK_GROUP),
        capacity=data.get("capacity", data.get("thin_pool_size")),
        capacity_of=data.get("capacity_of", "the thin pool" if data.get("thin_pool_size") else ""),
        online_resize=data.get("online_resize", True),
        disabled_recently=frozenset(data.get("disabled_recently", ())),
        course_folder_files=data.get("course_folder_files", False),
        firewall=None if data.get("firewall") is None else tuple(data["firewall"]),
        firewall_error=data.get("firewall_error", ""),
        exports=None
        if data.get("exports") is None
        else MappingProxyType(
            {
                path: MappingProxyType({client: frozenset(options) for client, options in clients.items()})
                for path, clients in data["exports"].items()
            }
        ),
        export_lines=None if data.get("export_lines") is None else MappingProxyType(dict(data["export_lines"])),
        course_folder_exists=data.get("course_folder_exists", True),
        observed_at=data.get("observed_at", ""),
        handed_out=MappingProxyType({name: frozenset(users) for name, users in (data.get("handed_out") or {}).items()}),
        handed_out_at=MappingProxyType(
            {name: MappingProxyType(dict(people)) for name, people in (data.get("handed_out_at") or {}).items()}
        ),
        sources_missing=frozenset(data.get("sources_missing", ())),
        sources_changed=frozenset(data.get("sources_changed", ())),
        handed_again_at=MappingProxyType(
            {name: MappingProxyType(dict(people)) for name, people in (data.get("handed_again_at") or {}).items()}
        ),
        handouts_blocked=data.get("handouts_blocked", ""),
        collected=MappingProxyType(
            {
                name: MappingProxyType({user: Collected(**got) for user, got in people.items()})
                for name, people in (data.get("collected") or {}).items()
            }
        ),
        fingerprints=MappingProxyType(
            {name: MappingProxyType(dict(people)) for name, people in (data.get("fingerprints") or {}).items()}
        ),
        collections_blocked=data.get("collections_blocked", ""),
        feedback=MappingProxyType(
            {name: MappingProxyType(dict(people)) for name, people in (data.get("feedback") or {}).items()}
        ),
        returned=MappingProxyType(
            {name: MappingProxyType(dict(people)) for name, people in (data.get("returned") or {}).items()}
        ),
        returns_blocked=data.get("returns_blocked", ""),
        hub=None
        if hub is None
        else HubState(
            None if hub["users"] is None else MappingProxyType({n: HubUser(**u) for n, u in hub["users"].items()}),
            hub.get("error"),
        ),
        containers=None if containers is None else MappingProxyType({n: Container(**c) for n, c in containers.items()}),
    )
