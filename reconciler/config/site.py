"""site.yaml as pydantic models: this host's paths, volume backend, limits, hub and delivery.

Also the places derived from it (``Paths``) and the defaults that more than one
part of the program needs (the shared folder, the hub's cookie secret and API
address), each defined once here.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from .classroom import Cpu, Size, Strict

SITE_DEFAULT_PATH = Path("/etc/classroom/site.yaml")

# The hub API listens on the students' bridge gateway at this port: the one host port containers reach.
HUB_PORT = 8081
# The teacher API and page: a hub-managed service at /services/<SERVICE_NAME>/, for holders of MANAGE_SCOPE.
SERVICE_NAME = "classroom"
MANAGE_SCOPE = "custom:classroom:manage"
# Read-only: the classroom's figures in Prometheus' format (api/metrics) and nothing else, for a scraper's token.
METRICS_SCOPE = "custom:classroom:metrics"
# With hub.tls: browsers stay on https for a year, for the hub and (per-user subdomains) every server below it.
HSTS = "max-age=31536000; includeSubDomains"
# The course folder's own volume (classroom.yaml's shared_disk) goes by this name wherever a person's volume goes
# by their username: never a username (those start with a letter), always a legal image and LV name.
SHARED_VOLUME = "_shared"
COLLECTION_VOLUME = "_collected"  # the collection area: assignments collected at their deadline


class LoopVolumes(Strict):
    """One sparse ext4 image per person under <state_dir>/volumes, loop-mounted."""

    backend: Literal["loop"] = "loop"
    max_overcommit: Annotated[float, Field(ge=1.0)] = Field(
        1.0,
        description="Refuse plans whose volumes add up to more than this times the space of the filesystem "
        "holding the images (free + already written): when it fills, every student's writes fail at once",
    )
    preallocate: bool = Field(
        False,
        description="Reserve each image's whole size on disk when it is made or grown "
        "(fallocate) instead of sparse files that fill as students write",
    )


class LvmVolumes(Strict):
    """One logical volume per person in an existing volume group."""

    backend: Literal["lvm"]
    vg: Annotated[str, Field(pattern=r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")]
    pv_file: Path | None = Field(
        None,
        description="The VG's PV is this file on a loop device "
        "(`reconcile storage init`); mount-all attaches it at boot",
    )
    thin_pool: str | None = Field(
        None,
        description="Thin-provision the volumes from this pool in the VG. "
        "Risk: when the pool fills, every student's writes stall",
    )
    max_overcommit: Annotated[float, Field(ge=1.0)] = Field(
        1.0, description="With thin_pool: refuse plans whose volumes add up to more than this times the pool"
    )


class Limits(Strict):
    """Upper bounds for any one person's quota on this host (unset = no bound)."""

    memory: Size | None = None
    cpu: Cpu | None = None
    disk: Size | None = None


# What `egress: internet` keeps student containers from: private, shared (CGNAT), loopback, link-local (cloud
# metadata), benchmarking, multicast and reserved IPv4 ranges, i.e. the school's LAN and everything on it.
PRIVATE_RANGES = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)


def _allow_entry(value: object) -> str:
    """``CIDR``, ``CIDR:port`` or ``CIDR:port/udp`` (an address alone is one host), normalized."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r}: expected an address or CIDR, optionally with :port or :port/udp")
    text = value.strip()
    where, _, port = text.partition(":")
    try:
        network = ipaddress.IPv4Network(where, strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r}: {where!r} is not an IPv4 address or CIDR (the students' bridge is IPv4 only)"
        ) from None
    if not port:
        return str(network)
    number, _, proto = port.partition("/")
    if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp"):
        raise ValueError(f"{text!r}: the port must be 1-65535, optionally followed by /tcp or /udp")
    return f"{network}:{int(number)}/{proto or 'tcp'}"


AllowEntry = Annotated[str, BeforeValidator(_allow_entry)]


class Egress(Strict):
    """Where student containers may connect (the hub API is always reachable; answers to it are not egress)."""

    policy: Literal["internet", "none"] = Field(
        "internet",
        description="internet: the public internet, never private, CGNAT, link-local or multicast "
        "addresses; none: nothing but the hub API",
    )
    allow: list[AllowEntry] = Field(
        default_factory=list,
        description="Also allowed, before those limits: "
        "CIDR, CIDR:port or CIDR:port/udp (a school's package mirror, a data server)",
    )


def _egress_shorthand(value: object) -> object:
    """``egress: none``, ``egress: internet``, or ``egress: [allow list]`` (which means policy none + the list)."""
    if isinstance(value, str):
        return {"policy": value}
    if isinstance(value, list):
        return {"policy": "none", "allow": value}
    return value


class Tls(Strict):
    """The proxy's certificate and key (PEM): JupyterHub's own TLS, no extra parts."""

    cert: Path = Field(..., description="Certificate chain (e.g. /etc/letsencrypt/live/<host>/fullchain.pem)")
    key: Path = Field(..., description="Private key, readable by root only (e.g. .../privkey.pem)")


def _ipv4(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


IPv4 = Annotated[str, BeforeValidator(_ipv4)]


class SwarmWorker(Strict):
    """A machine that runs student servers: Docker in the swarm, nothing else (no accounts, no roster)."""

    address: IPv4 = Field(..., description="Its address on the cluster network")
    docker: str | None = Field(
        None,
        pattern=r"^(ssh|tcp|unix)://",
        description="How reconcile reaches its Docker to load the student image (default ssh://root@<address>)",
    )

    @property
    def endpoint(self) -> str:
        return self.docker or f"ssh://root@{self.address}"


class Swarm(Strict):
    """hub.swarm: student servers as Docker Swarm services on the workers (hub.spawner: swarm).

    This server stays the manager: it runs reconcile, the hub, the proxy, the accounts and the quota volumes;
    the workers only run Docker.
    """

    address: IPv4 = Field(
        ...,
        description="This server's address on the cluster network: servers on the "
        "workers reach the hub API, and their homes, here",
    )
    workers: Annotated[list[SwarmWorker], Field(min_length=1)]
    homes: Literal["nfs", "shared"] = Field(
        "nfs",
        description="nfs: this server exports each mounted home (and the course folder) to the workers "
        "only, root squashed, and each server mounts its home from here (needs nfs-kernel-server; the workers need "
        "nothing but Docker).  shared: every worker already sees homes_dir and the course folder at the same paths "
        "(a cluster filesystem the school runs, or the tests' bind of this server's directories)",
    )
    exports_dir: Path = Field(
        Path("/etc/exports.d"),
        description="Where reconcile keeps the classroom's exports file (homes: nfs); nfs-server reads it at boot",
    )
    reserve_memory: Annotated[float, Field(gt=0, le=1)] = Field(
        0.25,
        description="The share of each person's memory quota the swarm reserves on a worker when it places "
        "their server (1: never over-commit a worker's memory; most students idle far below their quota)",
    )
    reserve_cpu: Annotated[float, Field(ge=0, le=1)] = Field(
        0.05,
        description="The share of each person's CPU quota reserved the same way.  Small: students are "
        "mostly idle, and a worker refuses servers once the reservations add up to its CPUs (0.25 with a quota "
        "of 1 CPU would mean 4 servers per core)",
    )


class Prewarm(Strict):
    """hub.prewarm: before each lesson of classroom.yaml's schedule, start the students' servers, paced, so the
    class finds them ready."""

    lead: Annotated[int, Field(ge=0)] = Field(
        600, description="Seconds before the lesson starts by which every server should be up"
    )
    who: Literal["all", "recent"] = Field(
        "all",
        description="all active students, or (recent) only those who "
        "used their server during the last recent_lessons lessons (its own "
        "activity two minutes or more after its start: a pre-start alone does "
        "not count)",
    )
    recent_lessons: Annotated[int, Field(ge=1)] = 3
    pace: Annotated[float, Field(gt=0)] = Field(
        2.0,
        description="Seconds between two starts (a start costs about "
        "1.5 CPU-seconds on the benchmark machine): the host is never "
        "flooded, and the work is spread before the lead",
    )
    idle_memory: Size = Field(
        128 * 1024 * 1024,
        description="What an idle server holds (the benchmark measures "
        "about 108 MiB): never more servers are pre-started than fit in the host's available "
        "memory at this size",
    )


class HubSettings(Strict):
    """site.yaml's optional ``hub:`` section.  Without it, reconcile leaves JupyterHub alone."""

    public_url: str = Field("http://127.0.0.1:8000", description="Where people open the hub (the proxy)")
    subdomain_host: str | None = Field(
        None,
        pattern=r"^https?://[a-z0-9.-]+(:[0-9]+)?$",
        description="Give every student server an origin of its own, e.g. https://hub.school.example (wildcard DNS "
        "*.hub.school.example and a wildcard certificate): only then may teachers open students' servers, "
        "since a student's page can no longer act as the teacher on the hub or the teacher page",
    )
    api_url: str | None = Field(
        None, description="The hub API as reconcile reaches it (default: on the students' bridge gateway, port 8081)"
    )
    token_file: Path = Field(..., description="reconcile's service token for the hub API (0600; never in git)")
    cookie_secret_file: Path | None = None
    db_url: str | None = Field(None, description="Default: sqlite in <state_dir>/jupyterhub.sqlite")
    image: str = "classroom-student:latest"
    network: str = Field("classroom-students", description="Docker bridge for student containers")
    subnet: str = Field("172.31.251.0/24", description="Its subnet; the hub API listens on its gateway")
    shared_dir: Path | None = Field(None, description="Course folder (default <homes_dir>/../shared)")
    tls: Tls | None = Field(
        None,
        description="Serve HTTPS (public_url must then be https://...), with HSTS and "
        "secure cookies; or leave it out behind a reverse proxy that terminates TLS",
    )
    egress: Annotated[Egress, BeforeValidator(_egress_shorthand)] = Field(
        default_factory=Egress,
        description="What student containers may reach: internet (default), none, "
        "or a list of allowed CIDR[:port[/udp]] (with nothing else)",
    )
    cull_idle_timeout: Annotated[int, Field(gt=0)] = 3600
    prewarm: Prewarm = Field(default_factory=Prewarm)
    pids_limit: Annotated[int, Field(gt=0)] = 512
    tmp_size: Size = 256 * 1024 * 1024
    log_max_size: Size = Field(
        10 * 1024 * 1024,
        description="Docker keeps at most log_max_files files of this "
        "size of a server's output (what a student prints lands on the host's disk)",
    )
    log_max_files: Annotated[int, Field(gt=0, le=100)] = 3
    request_timeout: Annotated[float, Field(gt=0)] = 10.0
    proxy_api_port: Annotated[int, Field(gt=0, lt=65536)] = Field(8001, description="On 127.0.0.1 only")
    service_port: Annotated[int, Field(gt=0, lt=65536)] = Field(
        8002,
        description="The teacher API and page on 127.0.0.1; people reach it through the proxy at /services/classroom/",
    )
    extra_config_dir: Path = Field(
        Path("/etc/classroom/jupyterhub_config.d"),
        description="*.py files here (root's, not writable by others) "
        "are loaded, in name order, after the packaged hub configuration with `c` in scope: another authenticator "
        "(OAuth, LTI, LDAP) or any JupyterHub option.  Who may log in, admins and limits stay reconcile's",
    )
    spawner: Literal["docker", "swarm"] = Field(
        "docker",
        description="docker: student servers are containers on this server; swarm: services on the "
        "workers of hub.swarm (DOCKER_HOST, if set, names this server's swarm manager)",
    )
    swarm: Swarm | None = None

    @model_validator(mode="after")
    def _https_with_tls(self) -> HubSettings:
        if self.tls is not None:
            for key in ("public_url", "subdomain_host"):
                value = getattr(self, key)
                if value is not None and not value.startswith("https://"):
                    raise ValueError(f"with tls, {key} must start with https:// (it is {value!r})")
        return self

    @model_validator(mode="after")
    def _swarm_settings(self) -> HubSettings:
        if self.spawner == "swarm" and self.swarm is None:
            raise ValueError("spawner: swarm needs a swarm: section (address, workers)")
        if self.spawner != "swarm" and self.swarm is not None:
            raise ValueError("swarm: is set but spawner is not swarm (add spawner: swarm, or remove swarm:)")
        return self

    @property
    def gateway(self) -> str:
        """The students' bridge gateway: the one host address their containers can reach (the hub API)."""
        return gateway(self.subnet)

    @property
    def hub_address(self) -> str:
        """Where the hub API listens for the student servers: the bridge gateway, or (swarm) this server's
        cluster address."""
        return self.swarm.address if self.swarm is not None else self.gateway

    @property
    def api_endpoint(self) -> str:
        """The hub's REST API as reconcile calls it."""
        return self.api_url or f"http://{self.hub_address}:{HUB_PORT}/hub/api"

    @property
    def sqlite_file(self) -> Path | None:
        """The hub's database file when it is SQLite (the default); None for another database."""
        if self.db_url is None or not self.db_url.startswith("sqlite:///"):
            return None
        return Path(self.db_url.removeprefix("sqlite:///"))


def gateway(subnet: str) -> str:
    return str(next(ipaddress.ip_network(subnet).hosts()))


class Smtp(Strict):
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    secrets_file: Path | None = Field(None, description="YAML with username and password (0600; never in git)")
    ca_file: Path | None = Field(None, description="Trust this CA bundle instead of the system's")
    sender: str = Field(..., description='The From: header, e.g. "Classroom <noreply@school.example>"')
    timeout: Annotated[float, Field(gt=0)] = 20.0


def _language(value: object) -> object:
    from .languages import available

    if value not in available():
        raise ValueError(f"{value!r} is not a language of this installation ({', '.join(available())})")
    return value


class Delivery(Strict):
    """site.yaml's optional ``delivery:`` section: how new credentials reach people."""

    hub_url: str | None = Field(None, description="Printed in mails and slips (default: hub.public_url)")
    language: Annotated[str, BeforeValidator(_language)] = Field(
        "en",
        description="The teacher page, the slips and the e-mails: a catalogue in reconciler/config/languages "
        "(en, it; adding a language is one file there)",
    )
    templates_dir: Path | None = Field(None, description="Overrides for the packaged templates (same names)")
    smtp: Smtp | None = None
    retry_base: Annotated[float, Field(ge=0)] = 60.0
    retry_max: Annotated[float, Field(ge=0)] = 3600.0


@dataclass(frozen=True)
class Paths:
    """Where reconcile keeps its state and mounts homes; pure path arithmetic, no I/O.

    Where a backend keeps the volumes themselves is the backend's business
    (``reconciler.host.volumes``).
    """

    state: Path
    homes: Path
    shared: Path | None = None  # the course folder (Site.shared_dir); default <homes>/../shared

    @property
    def course_folder(self) -> Path:
        return self.shared if self.shared is not None else self.homes.parent / "shared"

    @property
    def collection_area(self) -> Path:
        """Where collected assignments go (its own volume, beside the course folder): nbgrader's course layout."""
        return self.course_folder.parent / "collected"

    @property
    def own_folders(self) -> tuple[str, ...]:
        """The mount points of the volumes that are nobody's home: the course folder, the collection area."""
        return str(self.course_folder), str(self.collection_area)

    @property
    def mount_roots(self) -> tuple[str, ...]:
        """Where volumes are mounted: below the homes directory, the course folder and the collection area."""
        return (str(self.homes), *self.own_folders)

    @property
    def manifest(self) -> Path:
        return self.state / "mounts.fstab"

    @property
    def journal(self) -> Path:
        return self.state / "journal.jsonl"

    @property
    def lock(self) -> Path:
        return self.state / "reconcile.lock"

    @property
    def outbox(self) -> Path:
        return self.state / "outbox"

    @property
    def handouts(self) -> Path:
        """Who got which assignment's copy, and when: a copy is handed out once, never again over their work."""
        return self.state / "handouts.json"

    @property
    def collections(self) -> Path:
        """Whose submission of which assignment was collected, when, and as what (on time, late, missing)."""
        return self.state / "collections.json"

    @property
    def returns(self) -> Path:
        """Which feedback (by digest) reached which student: returned again only when teachers regenerate it."""
        return self.state / "feedback.json"

    @property
    def disables(self) -> Path:
        """When each person was last disabled: the mass-disable guard's rolling window."""
        return self.state / "disables.json"

    @property
    def pass_record(self) -> Path:
        """The daemon's record of its last pass (status.json)."""
        return self.state / "status.json"

    @property
    def heartbeat(self) -> Path:
        """The daemon's heartbeat (host/liveness.py): is it running, and is a pass in progress."""
        return self.state / "heartbeat.json"

    @property
    def in_force(self) -> Path:
        """The daemon's copy of the last valid classroom.yaml it applied: what the teacher page shows while the
        file is invalid."""
        return self.state / "classroom.in-force.yaml"

    @property
    def prewarm(self) -> Path:
        """Who was pre-started for which lesson (each person once per lesson)."""
        return self.state / "prewarm.json"

    @property
    def usage(self) -> Path:
        """When each student last really used their server (hub.prewarm.who: recent)."""
        return self.state / "usage.json"

    @property
    def snapshot(self) -> Path:
        """The host as the daemon last observed it (snapshot.json), for planning in CI."""
        return self.state / "snapshot.json"

    def home(self, username: str) -> Path:
        """Where a volume is mounted: the person's home, the course folder (SHARED_VOLUME) or the collection area
        (COLLECTION_VOLUME)."""
        return _home(self, username)

    def volume_of(self, target: str) -> str | None:
        """The inverse of home(): whose volume belongs at this mount point, if any."""
        if target == str(self.course_folder):
            return SHARED_VOLUME
        if target == str(self.collection_area):
            return COLLECTION_VOLUME
        parent, _, name = target.rpartition("/")
        return name if parent == str(self.homes).rstrip("/") and name else None


# What reaches the programs reconcile runs (pip, debootstrap's apt, docker) from its own environment: a school's
# proxy, package mirror and CA, and where Docker is.  site.yaml's network section sets them too (and wins).
NETWORK_VARIABLES = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "DOCKER_HOST",
)


class Network(Strict):
    """A school's network: its web proxy, package mirror and CA, for the image build (pip, apt, docker) and,
    with ``to_student_containers``, for the students' own `pip install`."""

    proxy: str | None = Field(None, pattern=r"^https?://", description="HTTP(S) proxy, e.g. http://proxy.school:3128")
    no_proxy: list[str] = Field(default_factory=list, description="Hosts and domains reached without the proxy")
    pip_index: str | None = Field(None, pattern=r"^https?://", description="A PyPI mirror's simple index URL")
    ca_bundle: Path | None = Field(None, description="The school's CA bundle (PEM), for a TLS-inspecting proxy")
    to_student_containers: bool = Field(
        False,
        description="Give student servers the proxy and mirror too (then "
        "allow the proxy in hub.egress if it has a private address)",
    )

    def environment(self) -> dict[str, str]:
        """The variables these settings mean, in both spellings tools read."""
        env: dict[str, str] = {}
        if self.proxy:
            for name in ("HTTPS_PROXY", "HTTP_PROXY"):
                env[name] = env[name.lower()] = self.proxy
        if self.no_proxy:
            env["NO_PROXY"] = env["no_proxy"] = ",".join(self.no_proxy)
        if self.pip_index:
            env["PIP_INDEX_URL"] = self.pip_index
            if self.pip_index.startswith("http://"):  # a mirror on the school's LAN without TLS: chosen, so trusted
                env["PIP_TRUSTED_HOST"] = self.pip_index.split("/")[2].split(":")[0]
        if self.ca_bundle:
            env["PIP_CERT"] = env["REQUESTS_CA_BUNDLE"] = env["SSL_CERT_FILE"] = str(self.ca_bundle)
        return env


DEBIAN_PACKAGE = r"^[a-z0-9][a-z0-9+.-]+$"


class CourseImage(Strict):
    """What a course adds to the student image: `reconcile image build` puts it in, and the image's labels say so."""

    requirements: Path | None = Field(
        None,
        description="A pip requirements file (e.g. in the course's git repo); its "
        "option lines (--index-url, --find-links, ...) are used too",
    )
    apt: list[Annotated[str, Field(pattern=DEBIAN_PACKAGE)]] = Field(
        default_factory=list, description="Extra Debian packages, installed with their dependencies"
    )
    dockerfile: Path | None = Field(
        None,
        description="A Dockerfile for what the above cannot express, built on top "
        "(`ARG BASE` then `FROM $BASE`); its folder is the build context",
    )
    pins: Path | None = Field(
        None,
        description="The lock file the build writes from requirements and reuses while "
        "they do not change, so rebuilds are reproducible (default <state_dir>/image-pins.txt; "
        "put it beside the requirements to commit it)",
    )


class Metrics(Strict):
    """The Prometheus endpoint (the teacher service's api/metrics)."""

    per_person: bool = Field(
        True, description="Series per person (volume used and size); false keeps only class-wide figures"
    )


class Site(Strict):
    """site.yaml: this host's settings.  Relative paths are relative to the site file."""

    classroom_file: Path | None = Field(None, description="Default for -f")
    state_dir: Path = Path("state")
    homes_dir: Path | None = Field(None, description="Where volumes are mounted (default <state_dir>/homes)")
    volumes: Annotated[LoopVolumes | LvmVolumes, Field(discriminator="backend")] = Field(default_factory=LoopVolumes)
    max_disable_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    mass_disable_window: Annotated[float, Field(ge=0)] = Field(
        86400.0,
        description="Seconds: disables over this window count together against max_disable_fraction, "
        "so a class cannot be emptied one save (or one API call) at a time",
    )
    limits: Limits = Field(default_factory=Limits)
    resize_running: Literal["wait", "restart"] = Field(
        "wait",
        description="A disk quota change that needs the volume offline while its person's server runs: "
        "wait until the server stops (default), or stop the server first (the person starts it again)",
    )
    warn_free_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.1,
        description="Warn (status, the teacher page, the daemon's log) when a disk holding volumes, the state, "
        "Docker's data or the shared folder has less than this share free",
    )
    lock_timeout: Annotated[float, Field(ge=0)] = 30.0
    journal_max_size: Size = Field(
        16 * 1024 * 1024,
        description="Past this size journal.jsonl is renamed "
        "journal-<UTC time>-NNN.jsonl (kept, never deleted) and a new one begins",
    )
    resync_interval: Annotated[float, Field(gt=0)] = Field(60.0, description="reconcile watch: full pass this often")
    apply_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        4,
        description="People worked on side by side when a pass applies (their own steps stay in order): "
        "account, volume and mount programs mostly wait on locks, fsync and exec, so a few at once finish a new "
        "class sooner; 1 applies one step at a time",
    )
    roster_in_git: bool = Field(
        False,
        description="classroom.yaml reaches this host from git (CI): the teacher "
        "API refuses roster edits (409) so the file in git stays the single source of truth",
    )
    hub: HubSettings | None = None
    delivery: Delivery = Field(default_factory=Delivery)
    network: Network = Field(default_factory=Network)
    metrics: Metrics = Field(default_factory=Metrics)
    image: CourseImage = Field(default_factory=CourseImage)

    @property
    def pins_file(self) -> Path:
        return self.image.pins if self.image.pins is not None else self.state_dir / "image-pins.txt"

    @property
    def paths(self) -> Paths:
        homes = self.homes_dir if self.homes_dir is not None else self.state_dir / "homes"
        return Paths(self.state_dir, homes, self.hub.shared_dir if self.hub is not None else None)

    @property
    def shared_dir(self) -> Path:
        """The course folder: hub.shared_dir, else <homes_dir>/../shared."""
        return self.paths.course_folder

    @property
    def cookie_secret_file(self) -> Path:
        configured = self.hub.cookie_secret_file if self.hub is not None else None
        return configured if configured is not None else self.state_dir / "jupyterhub_cookie_secret"

    @property
    def max_overcommit(self) -> float:
        """How far the volumes may over-commit their storage (thin pools; 1.0 = never)."""
        return getattr(self.volumes, "max_overcommit", 1.0)


@functools.lru_cache(maxsize=8192)
def _home(paths: Paths, username: str) -> Path:
    """Paths.home, remembered: a pass asks it several times per person, and pathlib's joins cost at class size."""
    if username == SHARED_VOLUME:
        return paths.course_folder
    return paths.collection_area if username == COLLECTION_VOLUME else paths.homes / username


def find_site(explicit: str | None) -> Path | None:
    """--site, else $RECONCILE_SITE, else /etc/classroom/site.yaml, else None (embedded default)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("RECONCILE_SITE"):
        return Path(os.environ["RECONCILE_SITE"])
    if SITE_DEFAULT_PATH.exists():
        return SITE_DEFAULT_PATH
    return None
