"""classroom.yaml and site.yaml: the pydantic models and whole-file validation.

classroom.yaml is the desired state a teacher keeps in git (no secrets);
site.yaml holds the host's paths, backends and limits.  Every problem in a
file is reported at once with file:line:column and the field path, before
anything on the host is touched.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from . import yamlsrc
from .layout import Paths
from .sizes import format_size, parse_size
from .yamlsrc import Problem, Source

USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# The classroom name becomes the Unix groups "<name>-students"/"<name>-teachers" (at most 32 chars).
CLASSROOM_PATTERN = r"^[a-z][a-z0-9-]{0,22}$"
QUOTA_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ROLES = ("student", "teacher")

# Names that belong to the system or to common services, whatever this host has.
RESERVED_USERNAMES = frozenset(
    """root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats
    nobody nogroup _apt messagebus sshd systemd-network systemd-resolve systemd-timesync
    systemd-journal systemd-coredump polkitd postfix ntp tss uuidd avahi dnsmasq statd
    docker admin administrator sudo wheel adm staff users operator jupyter jupyterhub
    postgres mysql redis nginx ftp git lxd input kvm render video audio plugdev netdev
    tty disk kmem dialout fax voice cdrom floppy tape src shadow utmp sasl""".split()
)


def _size(value: object) -> int:
    return parse_size(value)


def _cpu(value: object) -> float:
    """CPUs as a number (1, 0.5) or Kubernetes millicores ("500m")."""
    if isinstance(value, bool):
        raise ValueError("expected a number of CPUs such as 1 or 0.5")
    try:
        if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+m\s*", value):
            cpus = int(value.strip()[:-1]) / 1000
        else:
            cpus = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{value!r} is not a number of CPUs; use e.g. 1, 0.5 or 500m") from None
    if not math.isfinite(cpus) or cpus <= 0:
        raise ValueError("a CPU limit must be a positive number")
    if cpus > 4096:
        raise ValueError(f"{value!r} CPUs is more than any server has")
    return cpus


def _emails(value: object) -> list[str]:
    """One address or a list; each checked and normalized by email-validator."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("expected an e-mail address or a list of them")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an e-mail address")
        try:
            out.append(validate_email(item, check_deliverability=False).normalized)
        except EmailNotValidError as exc:
            raise ValueError(f"{item!r} is not a valid e-mail address: {exc}") from None
    return out


_SIZE_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]([iI])?[bB]?|[bB])?\s*$"},
    ],
    "description": "Bytes, or a number with K/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti (powers of 1024), e.g. 512Mi",
}
_CPU_SCHEMA = {
    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": r"^\s*[0-9]+m\s*$"}],
    "description": "CPUs, e.g. 1 or 0.5, or millicores such as 500m",
}
_EMAILS_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "email"},
        {"type": "array", "items": {"type": "string", "format": "email"}},
    ],
    "description": "One e-mail address or a list of them (credentials go to every address)",
}

Size = Annotated[int, BeforeValidator(_size), WithJsonSchema(_SIZE_SCHEMA)]
Cpu = Annotated[float, BeforeValidator(_cpu), WithJsonSchema(_CPU_SCHEMA)]
Emails = Annotated[list[str], BeforeValidator(_emails), WithJsonSchema(_EMAILS_SCHEMA)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently drop a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Quota(_Strict):
    memory: Size
    cpu: Cpu
    disk: Size


class Person(_Strict):
    """A student or a teacher (admin) as written in classroom.yaml."""

    username: Annotated[str, Field(pattern=USERNAME_PATTERN, description="Unix and hub login")]
    name: Annotated[str, Field(min_length=1, max_length=100, description="Full name")]
    email: Emails = Field(default_factory=list)
    quota: Annotated[str, Field(pattern=QUOTA_NAME_PATTERN)] = "default"
    memory: Size | None = None
    cpu: Cpu | None = None
    disk: Size | None = None
    status: Literal["active", "disabled", "purged"] = Field(
        "active",
        description="active; disabled = login locked, files kept; purged = tombstone: account and files "
        "deleted, only with --allow-destroy",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # The name goes into /etc/passwd's GECOS field, where ':' ',' and newlines are separators.
        if any(ch in value for ch in ":,\\") or any(ord(ch) < 32 or ord(ch) == 127 for ch in value) \
                or not value.strip():
            raise ValueError("a name may not contain ':', ',', backslashes or control characters (tabs, newlines)")
        return value.strip()


class Classroom(_Strict):
    """classroom.yaml, version 1: the desired state of one classroom."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="classroom.yaml",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1]
    name: Annotated[str, Field(pattern=CLASSROOM_PATTERN, description="Classroom id; Unix groups <name>-students and <name>-teachers")]
    quotas: dict[Annotated[str, Field(pattern=QUOTA_NAME_PATTERN)], Quota] = Field(default_factory=dict)
    admins: list[Person] = Field(default_factory=list, description="Teachers: hub admins")
    students: list[Person] = Field(default_factory=list)


class LoopVolumes(_Strict):
    """One sparse ext4 image per person under <state_dir>/volumes, loop-mounted."""

    backend: Literal["loop"] = "loop"


class LvmVolumes(_Strict):
    """One logical volume per person in an existing volume group."""

    backend: Literal["lvm"]
    vg: Annotated[str, Field(pattern=r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")]
    pv_file: Path | None = Field(None, description="The VG's PV is this file on a loop device "
                                                   "(`reconcile storage init`); mount-all attaches it at boot")
    thin_pool: str | None = Field(None, description="Thin-provision the volumes from this pool in the VG. "
                                  "Risk: when the pool fills, every student's writes stall")
    max_overcommit: Annotated[float, Field(ge=1.0)] = Field(
        1.0, description="With thin_pool: refuse plans whose volumes add up to more than this times the pool")


class Limits(_Strict):
    """Upper bounds for any one person's quota on this host (unset = no bound)."""

    memory: Size | None = None
    cpu: Cpu | None = None
    disk: Size | None = None


class HubSettings(_Strict):
    """site.yaml's optional ``hub:`` section.  Without it, reconcile leaves JupyterHub alone."""

    public_url: str = Field("http://127.0.0.1:8000", description="Where people open the hub (the proxy)")
    api_url: str | None = Field(None, description="The hub API as reconcile reaches it (default: on the "
                                "students' bridge gateway, port 8081)")
    token_file: Path = Field(..., description="reconcile's service token for the hub API (0600; never in git)")
    cookie_secret_file: Path | None = None
    db_url: str | None = Field(None, description="Default: sqlite in <state_dir>/jupyterhub.sqlite")
    image: str = "classroom-student:latest"
    network: str = Field("classroom-students", description="Docker bridge for student containers")
    subnet: str = Field("172.31.251.0/24", description="Its subnet; the hub API listens on its gateway")
    shared_dir: Path | None = Field(None, description="Course folder (default <homes_dir>/../shared)")
    cull_idle_timeout: Annotated[int, Field(gt=0)] = 3600
    pids_limit: Annotated[int, Field(gt=0)] = 512
    tmp_size: Size = 256 * 1024 * 1024
    request_timeout: Annotated[float, Field(gt=0)] = 10.0
    proxy_api_port: Annotated[int, Field(gt=0, lt=65536)] = Field(8001, description="On 127.0.0.1 only")
    service_port: Annotated[int, Field(gt=0, lt=65536)] = Field(
        8002, description="The teacher API and page on 127.0.0.1; people reach it through the proxy at "
        "/services/classroom/")


class Smtp(_Strict):
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    secrets_file: Path | None = Field(None, description="YAML with username and password (0600; never in git)")
    ca_file: Path | None = Field(None, description="Trust this CA bundle instead of the system's")
    sender: str = Field(..., description='The From: header, e.g. "Classroom <noreply@school.example>"')
    timeout: Annotated[float, Field(gt=0)] = 20.0


class Delivery(_Strict):
    """site.yaml's optional ``delivery:`` section: how new credentials reach people."""

    hub_url: str | None = Field(None, description="Printed in mails and slips (default: hub.public_url)")
    language: Literal["en", "it"] = "en"
    templates_dir: Path | None = Field(None, description="Overrides for the packaged templates (same names)")
    smtp: Smtp | None = None
    retry_base: Annotated[float, Field(ge=0)] = 60.0
    retry_max: Annotated[float, Field(ge=0)] = 3600.0


class Site(_Strict):
    """site.yaml: this host's settings.  Relative paths are relative to the site file."""

    classroom_file: Path | None = Field(None, description="Default for -f")
    state_dir: Path = Path("state")
    homes_dir: Path | None = Field(None, description="Where volumes are mounted (default <state_dir>/homes)")
    volumes: Annotated[LoopVolumes | LvmVolumes, Field(discriminator="backend")] = Field(default_factory=LoopVolumes)
    max_disable_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    limits: Limits = Field(default_factory=Limits)
    lock_timeout: Annotated[float, Field(ge=0)] = 30.0
    resync_interval: Annotated[float, Field(gt=0)] = Field(60.0, description="reconcile watch: full pass this often")
    roster_in_git: bool = Field(False, description="classroom.yaml reaches this host from git (CI): the teacher "
                                "API refuses roster edits (409) so the file in git stays the single source of truth")
    hub: HubSettings | None = None
    delivery: Delivery = Field(default_factory=Delivery)

    @property
    def paths(self) -> Paths:
        homes = self.homes_dir if self.homes_dir is not None else self.state_dir / "homes"
        if isinstance(self.volumes, LvmVolumes):
            return Paths(self.state_dir, homes, "lvm", self.volumes.vg, self.volumes.thin_pool)
        return Paths(self.state_dir, homes)


# --- desired state, resolved -------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One person with the quota resolved: what the host should have for them."""

    username: str
    name: str
    role: str  # "student" | "teacher"
    status: str  # "active" | "disabled" | "purged"
    memory: int
    cpu: float
    disk: int
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Desired:
    classroom: str
    members: tuple[Member, ...]
    paths: Paths

    @property
    def groups(self) -> dict[str, str]:
        return {role: group_name(self.classroom, role) for role in ROLES}


def group_name(classroom: str, role: str) -> str:
    return f"{classroom}-{'students' if role == 'student' else 'teachers'}"


def resolve(classroom: Classroom, paths: Paths) -> Desired:
    """Apply named quotas and inline overrides; the spec must already be validated."""
    members = []
    for role, people in (("teacher", classroom.admins), ("student", classroom.students)):
        for person in people:
            base = classroom.quotas.get(person.quota)  # None only when all three are inline
            members.append(
                Member(
                    username=person.username,
                    name=person.name,
                    role=role,
                    status=person.status,
                    memory=person.memory or base.memory,  # type: ignore[union-attr]
                    cpu=person.cpu or base.cpu,  # type: ignore[union-attr]
                    disk=person.disk or base.disk,  # type: ignore[union-attr]
                    emails=tuple(person.email),
                )
            )
    return Desired(classroom.name, tuple(members), paths)


# --- loading and validation -------------------------------------------------------------


class InvalidFile(Exception):
    """Raised with every problem found in one file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_source(path: Path) -> Source:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidFile([Problem(str(path), 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise InvalidFile([Problem(str(path), 1, 1, "", f"not UTF-8 text: {exc}")]) from None
    return yamlsrc.load(text, str(path))


def _pydantic_problems(source: Source, error: ValidationError, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = _unknown_key_message(loc, model)
        elif item["type"] == "union_tag_invalid":
            ctx = item.get("ctx", {})
            loc = loc + (str(ctx.get("discriminator", "")).strip("'"),)
            message = f"unknown {loc[-1]} {ctx.get('tag')!r} (one of {ctx.get('expected_tags')})"
        elif item["type"] == "missing":
            message = f"missing required key {loc[-1]!r}"
        elif item["type"] == "string_pattern_mismatch" and loc and loc[-1] == "username":
            message = f"{item['input']!r} is not a valid username: lowercase letter first, then a-z 0-9 _ -, at most 32"
        problems.append(source.problem(loc, message))
    return problems


def _unknown_key_message(loc: tuple, model: type[BaseModel]) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1], model)
    hint = difflib.get_close_matches(key, allowed, n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else (f"; allowed: {', '.join(allowed)}" if allowed else "")
    return f"unknown key {key!r}{suffix}"


def _allowed_keys(loc: tuple, model: type[BaseModel]) -> list[str]:
    """Walk the model along ``loc`` to list the keys valid at that spot."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", {})
        if isinstance(part, str) and part in fields:
            current = _model_of(fields[part].annotation)
        # list indexes and free-form dict keys (quota names) keep the current model
    return list(getattr(current, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside ``list[Person]``, ``dict[str, Quota]``, ``X | None`` ..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def load_classroom(path: Path, site: Site) -> Classroom:
    """Parse and validate the whole file; raise InvalidFile listing every problem."""
    return check_classroom(read_source(path), site)


def parse_classroom(text: str, file: str, site: Site) -> Classroom:
    """Validate a candidate content before it replaces the file (the teacher API's and import's edits)."""
    return check_classroom(yamlsrc.load(text, file), site)


def check_classroom(source: Source, site: Site) -> Classroom:
    problems = list(source.problems)
    if source.data is not None and not isinstance(source.data, dict):
        problems.append(source.problem((), "the file must be a mapping with version, name, quotas, admins, students"))
    if problems:
        raise InvalidFile(problems)
    classroom = None
    try:
        classroom = Classroom.model_validate(source.data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(source, exc, Classroom))
    problems.extend(_cross_check(source, site))
    if problems:
        raise InvalidFile(sorted(set(problems), key=lambda p: (p.line, p.column, p.message)))
    assert classroom is not None
    return classroom


def _cross_check(source: Source, site: Site) -> list[Problem]:
    """Rules that span entries: unique names, quota references, reserved names, site limits.

    Runs on the raw data so these problems are reported together with per-field ones.
    """
    data = source.data
    problems: list[Problem] = []
    quotas = data.get("quotas") if isinstance(data.get("quotas"), dict) else {}
    classroom = data.get("name") if isinstance(data.get("name"), str) else ""
    group_names = {group_name(classroom, role) for role in ROLES} if classroom else set()
    seen: dict[str, str] = {}
    for section in ("admins", "students"):
        people = data.get(section)
        if not isinstance(people, list):
            continue
        for index, person in enumerate(people):
            if not isinstance(person, dict):
                problems.append(source.problem((section, index), "each entry must be a mapping with username, name, ..."))
                continue
            where = (section, index)
            username = person.get("username")
            if isinstance(username, str):
                if username in seen:
                    problems.append(
                        source.problem(where + ("username",), f"username {username!r} is already used at {seen[username]}")
                    )
                else:
                    seen[username] = yamlsrc.format_path(where)
                if username in RESERVED_USERNAMES or username in group_names:
                    problems.append(source.problem(where + ("username",), f"username {username!r} is reserved for the system"))
            quota_name = person.get("quota", "default")
            if isinstance(quota_name, str) and quota_name not in quotas:
                inline = all(person.get(key) is not None for key in ("memory", "cpu", "disk"))
                if quota_name != "default" or not inline:
                    known = ", ".join(sorted(quotas)) or "none defined"
                    problems.append(source.problem(where + ("quota",), f"unknown quota {quota_name!r} (quotas: {known})"))
            problems.extend(_check_limits(source, where, person, quotas.get(quota_name), site))
    for name, quota in quotas.items():
        if isinstance(quota, dict):
            problems.extend(_check_limits(source, ("quotas", name), quota, None, site))
    return problems


def _check_limits(source: Source, where: tuple, values: dict, base: Any, site: Site) -> list[Problem]:
    problems = []
    for key, parse in (("memory", parse_size), ("cpu", _cpu), ("disk", parse_size)):
        limit = getattr(site.limits, key)
        raw = values.get(key)
        if raw is None or limit is None:
            continue
        try:
            value = parse(raw)
        except ValueError:
            continue  # already reported by the model
        if value > limit:
            problems.append(source.problem(where + (key,), f"{raw} is above this server's limit of {_show_limit(key, limit)}"))
    return problems


def _show_limit(key: str, limit: float) -> str:
    return f"{limit:g} CPUs" if key == "cpu" else format_size(int(limit))


# --- site.yaml --------------------------------------------------------------------------

SITE_DEFAULT_PATH = Path("/etc/classroom/site.yaml")


def find_site(explicit: str | None) -> Path | None:
    """--site, else $RECONCILE_SITE, else /etc/classroom/site.yaml, else None (embedded default)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("RECONCILE_SITE"):
        return Path(os.environ["RECONCILE_SITE"])
    if SITE_DEFAULT_PATH.exists():
        return SITE_DEFAULT_PATH
    return None


def load_site(path: Path | None) -> Site:
    """Read site.yaml (or use the embedded default) and make every path absolute."""
    if path is None:
        return _absolute(Site(hub=HubSettings(token_file=Path("state/hub-token"))), Path.cwd())
    source = read_source(path)
    if source.problems:
        raise InvalidFile(source.problems)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise InvalidFile([source.problem((), "site.yaml must be a mapping")])
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise InvalidFile(_pydantic_problems(source, exc, Site)) from None
    return _absolute(site, path.resolve().parent)


def _absolute(site: Site, base: Path) -> Site:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p)).resolve()

    state_dir = fix(site.state_dir)
    homes = fix(site.homes_dir) or state_dir / "homes"
    hub = site.hub
    if hub is not None:
        hub = hub.model_copy(update={
            "token_file": fix(hub.token_file),
            "cookie_secret_file": fix(hub.cookie_secret_file),
            "shared_dir": fix(hub.shared_dir) or homes.parent / "shared",
            "db_url": hub.db_url or f"sqlite:///{state_dir / 'jupyterhub.sqlite'}",
        })
    delivery = site.delivery
    smtp = delivery.smtp
    if smtp is not None:
        smtp = smtp.model_copy(update={"secrets_file": fix(smtp.secrets_file), "ca_file": fix(smtp.ca_file)})
    delivery = delivery.model_copy(update={"templates_dir": fix(delivery.templates_dir), "smtp": smtp})
    return site.model_copy(
        update={"state_dir": state_dir, "homes_dir": homes, "classroom_file": fix(site.classroom_file), "hub": hub,
                "delivery": delivery}
    )


def write_effective(site: Site, path: Path) -> Path:
    """The site as resolved (absolute paths), for processes that must see exactly this configuration."""
    from .fsutil import write_atomic

    write_atomic(path, yaml.safe_dump(site.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return path


def json_schema() -> dict:
    """The JSON schema of classroom.yaml, as checked in at schemas/classroom.schema.json."""
    return Classroom.model_json_schema()
