"""classroom.yaml as pydantic models: the desired state a teacher keeps in git (no secrets).

The models check each value on its own (patterns, sizes, CPUs, e-mails); the rules
that span entries (unique usernames, quota references, site limits) are in
``load.py``, so that every problem of a file is reported at once.
"""

from __future__ import annotations

import datetime
import math
import re
import unicodedata
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .sizes import parse_size

USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# The classroom name becomes the Unix groups "<name>-students"/"<name>-teachers" (at most 32 chars).
CLASSROOM_PATTERN = r"^[a-z][a-z0-9-]{0,22}$"
QUOTA_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ROLES = ("student", "teacher")
# Unicode categories a name may not hold: line and paragraph separators, controls, invisible formatting.
UNPRINTABLE = frozenset({"Zl", "Zp", "Cc", "Cf"})

# Names that belong to the system or to common services, whatever this host has.
RESERVED_USERNAMES = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "_apt",
        "messagebus",
        "sshd",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-journal",
        "systemd-coredump",
        "polkitd",
        "postfix",
        "ntp",
        "tss",
        "uuidd",
        "avahi",
        "dnsmasq",
        "statd",
        "docker",
        "admin",
        "administrator",
        "sudo",
        "wheel",
        "adm",
        "staff",
        "users",
        "operator",
        "jupyter",
        "jupyterhub",
        "postgres",
        "mysql",
        "redis",
        "nginx",
        "ftp",
        "git",
        "lxd",
        "input",
        "kvm",
        "render",
        "video",
        "audio",
        "plugdev",
        "netdev",
        "tty",
        "disk",
        "kmem",
        "dialout",
        "fax",
        "voice",
        "cdrom",
        "floppy",
        "tape",
        "src",
        "shadow",
        "utmp",
        "sasl",
    ]
)


def group_name(classroom: str, role: str) -> str:
    """The Unix (and hub) group of a role: ``<classroom>-students`` or ``<classroom>-teachers``."""
    return f"{classroom}-{'students' if role == 'student' else 'teachers'}"


def parse_cpu(value: object) -> float:
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


# The everyday address (ASCII letters, digits and ._%+- before the @, plain labels after it, a letters-only top-level
# domain) is checked here; anything else goes to email-validator, which is slower to import and to run (IDNA):
# a class of a thousand pays for it only for the addresses that need it.  What this accepts, email-validator
# accepts too, normalized the same way (the domain lowercased): tests/unit/test_spec.py checks that.
_PLAIN_EMAIL = re.compile(
    r"^[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*@((?!-)(?!xn--)[A-Za-z0-9-]{1,63}(?<!-)\.)+"
    r"[A-Za-z]{2,63}$"
)
SPECIAL_USE_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")  # email-validator refuses them


def plain_email(address: str) -> str | None:
    """The normalized address when it is an everyday one (see _PLAIN_EMAIL), else None."""
    if len(address) > 254 or not _PLAIN_EMAIL.match(address):
        return None
    local, _, domain = address.partition("@")
    domain = domain.lower()
    if (
        len(local) > 64
        or len(domain) > 253
        or any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAINS)
    ):
        return None
    return f"{local}@{domain}"


def _emails(value: object) -> list[str]:
    """One address or a list; each checked and normalized (email-validator for anything but everyday ones)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("expected an e-mail address or a list of them")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an e-mail address")
        plain = plain_email(item)
        if plain is not None:
            out.append(plain)
            continue
        from email_validator import EmailNotValidError, validate_email

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

Size = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(_SIZE_SCHEMA)]
Cpu = Annotated[float, BeforeValidator(parse_cpu), WithJsonSchema(_CPU_SCHEMA)]
Emails = Annotated[list[str], BeforeValidator(_emails), WithJsonSchema(_EMAILS_SCHEMA)]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently drop a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Quota(Strict):
    memory: Size
    cpu: Cpu
    disk: Size


class Person(Strict):
    """A student or a teacher (admin) as written in classroom.yaml."""

    username: Annotated[str, Field(pattern=USERNAME_PATTERN, description="Unix and hub login")]
    name: Annotated[str, Field(min_length=1, max_length=100, description="Full name")]
    email: Emails = Field(default_factory=list)
    quota: Annotated[str, Field(pattern=QUOTA_NAME_PATTERN)] = "default"
    memory: Size | None = None
    cpu: Cpu | None = None
    disk: Size | None = None
    status: Literal["active", "disabled", "archived", "purged"] = Field(
        "active",
        description="active; disabled = login locked, files kept; archived = disabled, and `reconcile archive` "
        "exports the files to a checked archive; purged = tombstone: account and files deleted, only with "
        "--allow-destroy",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # The name goes into /etc/passwd's GECOS field, where ':' ',' and newlines are separators; line and
        # paragraph separators (U+2028, U+2029), control and invisible format characters split or hide text
        # in the tools that read those files.
        if (
            any(ch in value for ch in ":,\\")
            or not value.strip()
            or any(unicodedata.category(ch) == "Cc" for ch in value)
        ):
            raise ValueError("a name may not contain ':', ',', backslashes or control characters (tabs, newlines)")
        odd = next((ch for ch in value if unicodedata.category(ch) in UNPRINTABLE), None)
        if odd is not None:
            raise ValueError(
                f"a name may not contain U+{ord(odd):04X} ({unicodedata.name(odd, 'unnamed')}): "
                "line breaks, control and invisible characters are not allowed"
            )
        return value.strip()


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones ("Europe")
        raise ValueError(f"{value!r} is not a time zone; use an IANA name such as Europe/Rome or UTC") from None
    return value


Zone = Annotated[str, AfterValidator(_zone)]  # an IANA time zone's name

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Lesson(Strict):
    """A lesson slot: weekly on ``days``, or once on ``date``, from ``start`` to ``end`` in the time zone ``tz``."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(
        None, min_length=1, description="Weekly on these days"
    )
    date: datetime.date | None = Field(None, description="Once, on this day (YYYY-MM-DD)")
    start: Annotated[str, Field(pattern=TIME_PATTERN, description="HH:MM, local time in tz")]
    end: Annotated[str, Field(pattern=TIME_PATTERN, description="HH:MM, after start, the same day")]
    tz: Zone = Field("UTC", description="IANA time zone, e.g. Europe/Rome (summer time follows it)")

    @model_validator(mode="after")
    def _one_kind(self) -> Lesson:
        if (self.days is None) == (self.date is None):
            raise ValueError("a lesson has either days (weekly) or a date (once)")
        if self.end <= self.start:
            raise ValueError(f"end {self.end} is not after start {self.start}")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


class CourseRepo(Strict):
    """The course material in git: each student pulls it into their home with nbgitpuller (their own changes are
    kept: it merges, never overwrites)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s?#]+$", description="The repository's http(s) clone URL")]
    branch: Annotated[str, Field(pattern=r"^[A-Za-z0-9._/-]{1,100}$")] = "main"
    folder: Annotated[
        str | None,
        Field(
            pattern=r"^[A-Za-z0-9._-]{1,100}$",
            description="The folder it lands in, in each home (default: the repository's name)",
        ),
    ] = None
    pull_at_start: bool = Field(
        False,
        description="Also pull it at every server start, before JupyterLab opens "
        "(at most two minutes; a failed pull never keeps a student from their server)",
    )

    @property
    def target(self) -> str:
        if self.folder:
            return self.folder
        name = self.url.rstrip("/").rsplit("/", 1)[-1]
        return name.removesuffix(".git") or "course"


ASSIGNMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # a folder name in every student's home
# a folder below the course folder: plain names joined by "/" (never "." or "..": Assignment checks), never absolute
SOURCE_PATTERN = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
_LOCAL_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(:\d{2})?)$")


def parse_local_time(value: object) -> object:
    """A moment as a teacher writes it: "2026-12-14 09:00" (in the classroom's time zone), or with an offset
    ("2026-12-14T09:00+01:00").  A date alone is refused: which hour would it be?"""
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        raise ValueError(f"{value} has no time of day: write it with one, e.g. {value} 09:00")
    if isinstance(value, str):
        text = value.strip()
        match = _LOCAL_TIME.match(text)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(f"{value!r} has no time of day: write it with one, e.g. {text} 09:00")
        try:
            return datetime.datetime.fromisoformat(f"{match[1]}T{match[2]}" if match else text)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date and time: write YYYY-MM-DD HH:MM (in the classroom's timezone)")


LocalTime = Annotated[
    datetime.datetime,
    BeforeValidator(parse_local_time),
    WithJsonSchema(
        {
            "type": "string",
            "description": "YYYY-MM-DD HH:MM in the classroom's timezone, or ISO 8601 with an offset",
            "examples": ["2026-12-14 09:00"],
        }
    ),
]


_DURATION = re.compile(r"^(?:(\d{1,3})d)?\s*(?:(\d{1,4})h)?\s*(?:(\d{1,5})m(?:in)?)?$")


def _duration(value: object) -> object:
    """How much longer one student has: "2d", "36h", "1d 12h", "90m"."""
    if isinstance(value, datetime.timedelta):
        return value
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a length of time: write e.g. 2d, 36h, 1d 12h or 90m")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return datetime.timedelta(days=days, hours=hours, minutes=minutes)


Duration = Annotated[
    datetime.timedelta,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "description": "days, hours, minutes: 2d, 36h, 1d 12h, 90m", "examples": ["2d"]}),
]
DEFAULT_SUBMISSION_LIMIT = 100 * 1024**2
DEFAULT_COLLECTION_DISK = 2 * 1024**3


class Assignment(Strict):
    """Work handed out to every active student: at ``release``, each gets their own copy of ``source`` as
    ~/assignments/<name>/ (their files: nothing of theirs is ever overwritten; a student added later gets it at
    their first pass).  At ``due`` (plus the student's extension) a copy of that folder is collected into the
    collection area, in nbgrader's layout."""

    name: Annotated[str, Field(pattern=ASSIGNMENT_PATTERN, description="The folder's name in ~/assignments/ (unique)")]
    source: Annotated[
        str,
        Field(
            pattern=SOURCE_PATTERN,
            description="A folder in the course folder (~/shared), e.g. hw1 or week2/lab: what each student gets",
        ),
    ]
    release: LocalTime = Field(description="When each student gets their copy")
    rerelease: LocalTime | None = Field(
        None,
        description="Hand the source out again at this time (after a change to it): each student gets only the "
        "files and folders they never had; nothing of theirs is replaced",
    )
    due: LocalTime | None = Field(
        None,
        description="When each student's folder is collected (a consistent copy, into the collection area); "
        "none: never collected",
    )
    late_until: LocalTime | None = Field(
        None,
        description="Until when work changed after the due time is collected again, marked late (the first "
        "copy is kept)",
    )
    extensions: dict[Annotated[str, Field(pattern=USERNAME_PATTERN)], Duration] = Field(
        default_factory=dict,
        description="Students with more time, e.g. {jdoe: 2d}: their due time and late window move by that much",
    )
    feedback: LocalTime | None = Field(
        None,
        description="From when the feedback teachers wrote (nbgrader generate_feedback, in the collection area's "
        "feedback/<student>/<name>/) reaches each student as ~/assignments/<name>/feedback/, read-only; "
        "regenerated feedback reaches them again",
    )
    max_submission: Size = Field(
        DEFAULT_SUBMISSION_LIMIT,
        description="What one submission may hold: files beyond it are listed in its manifest, not collected",
    )

    @field_validator("source")
    @classmethod
    def _below_the_course_folder(cls, value: str) -> str:
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError(f"{value!r} must name a folder inside the course folder: no '.' or '..' in it")
        return value


class Classroom(Strict):
    """classroom.yaml, version 1: the desired state of one classroom."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        defer_build=True,
        title="classroom.yaml",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1]
    name: Annotated[
        str,
        Field(pattern=CLASSROOM_PATTERN, description="Classroom id; Unix groups <name>-students and <name>-teachers"),
    ]
    quotas: dict[Annotated[str, Field(pattern=QUOTA_NAME_PATTERN)], Quota] = Field(default_factory=dict)
    admins: list[Person] = Field(
        default_factory=list,
        description="The teachers (the name is the file format's, kept): each gets the classroom's teacher role "
        "(the roster, the teacher page and API, their students' servers), never JupyterHub admin rights; "
        "a teacher's own lab, volume and quota work as a student's do",
    )
    students: list[Person] = Field(default_factory=list)
    shared_disk: Size | None = Field(
        None,
        description="Give the course folder (~/shared: teachers write, students read) its own volume of this "
        "size, so course material cannot fill the host's disk.  Once made it stays (raise or lower the size here; "
        "removing the key keeps the volume as it is)",
    )

    schedule: list[Lesson] = Field(
        default_factory=list,
        description="When lessons take place: before each, the students' servers are started "
        "(site.yaml hub.prewarm), so they are ready when the class logs in",
    )
    course_repo: CourseRepo | None = Field(
        None,
        description="The course material in git: the teacher page gives the link that pulls it into each "
        "student's home (nbgitpuller)",
    )
    timezone: Zone = Field(
        "UTC",
        description="IANA time zone of the times this file writes without an offset (assignments' release), "
        "e.g. Europe/Rome; summer time follows it",
    )
    assignments: list[Assignment] = Field(
        default_factory=list,
        description="Work handed out: each active student gets their own copy of a course-folder folder at its "
        "release time, collected at its due time",
    )
    collection_disk: Size | None = Field(
        None,
        description="The size of the collection area's own volume (collected assignments, in nbgrader's "
        "layout: teachers read, students never see it); made when an assignment has a due time, "
        f"{DEFAULT_COLLECTION_DISK // 1024**3} GiB unless set.  Once made it stays",
    )

    def moment(self, when: datetime.datetime) -> datetime.datetime:
        """A time of this file as an aware moment: one written without an offset is in ``timezone``."""
        return when if when.tzinfo is not None else when.replace(tzinfo=ZoneInfo(self.timezone))

    @property
    def collection_size(self) -> int | None:
        """The collection area's volume as asked: collection_disk, or the default once something is due."""
        if self.collection_disk is not None:
            return self.collection_disk
        return DEFAULT_COLLECTION_DISK if any(a.due is not None for a in self.assignments) else None

    @property
    def people(self) -> tuple[Person, ...]:
        """Teachers first, then students, in file order."""
        return (*self.admins, *self.students)


def json_schema() -> dict:
    """The JSON schema of classroom.yaml, as checked in at schemas/classroom.schema.json."""
    return Classroom.model_json_schema()
