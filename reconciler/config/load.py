"""Loading classroom.yaml and site.yaml: whole-file validation with file:line:column and field paths.

Every problem in a file is reported at once, before anything on the host is
touched: YAML syntax and duplicate keys (``yamlsrc``), each value (the pydantic
models), then the rules that span entries (unique usernames, quota references,
reserved names, the site's limits).
"""

from __future__ import annotations

import datetime
import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import cache
from . import settled, yamlsrc
from .classroom import RESERVED_USERNAMES, ROLES, Classroom, group_name, parse_cpu
from .site import HubSettings, Site
from .sizes import format_size, parse_size
from .yamlsrc import Problem, Source


class InvalidFile(Exception):
    """Raised with every problem found in one file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_source(path: Path, data: bytes | None = None) -> Source:
    """Parse a file (or ``data``, its bytes as already read) keeping every value's position."""
    try:
        text = (read_bytes(path) if data is None else data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidFile([Problem(str(path), 1, 1, "", f"not UTF-8 text: {exc}")]) from None
    return yamlsrc.load(text, str(path))


class FileBusy(InvalidFile):
    """The file is being written in place (scp, `cat >`): not read, so never taken for the whole roster."""


def read_bytes(path: Path, wait: float = settled.WAIT) -> bytes:
    return read_version(path, wait).data


def read_version(path: Path, wait: float = settled.WAIT) -> settled.Version:
    """The file as one whole version (config.settled): never in the middle of a write in place."""
    try:
        return settled.read(path, wait)
    except settled.Busy as exc:
        raise FileBusy([Problem(str(path), 1, 1, "", exc.strerror)]) from None
    except OSError as exc:
        raise InvalidFile([Problem(str(path), 1, 1, "", f"cannot read: {exc.strerror}")]) from None


def pydantic_problems(source: Source, error: ValidationError, model: type[BaseModel]) -> list[Problem]:
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
        elif item["type"] == "string_pattern_mismatch" and loc[:1] == ("assignments",) and loc[-1:] == ("name",):
            message = (
                f"{item['input']!r} is not a folder name: a letter or digit first, then letters, digits, . _ -; "
                "at most 64"
            )
        elif item["type"] == "string_pattern_mismatch" and loc[:1] == ("assignments",) and loc[-1:] == ("source",):
            message = f"{item['input']!r} is not a folder of the course folder: names joined by /, no spaces"
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


# --- classroom.yaml ------------------------------------------------------------------------------


def load_classroom(path: Path, site: Site, *, remember: bool = False) -> Classroom:
    """Parse and validate the whole file; raise InvalidFile listing every problem.

    ``remember``: reuse (and keep) the validated result while the file's bytes, the site it is checked against
    and the validating code are unchanged (config.cache), for commands that load it once and exit.
    """
    if not remember:
        return check_classroom(read_source(path), site)
    data = read_bytes(path)
    origin = _site_keys.get(id(site))
    if origin is None or origin[0] is not site:  # a site not loaded by load_site(remember=True): no key for it
        return check_classroom(read_source(path, data), site)
    slot = f"classroom:{os.path.abspath(path)}"
    wanted = cache.key(slot, origin[1], data)
    found = cache.fetch(slot, wanted)
    if isinstance(found, Classroom):
        return found
    classroom = check_classroom(read_source(path, data), site)
    cache.store(slot, wanted, classroom)
    return classroom


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
        problems.extend(pydantic_problems(source, exc, Classroom))
    problems.extend(_cross_check(source, site))
    if classroom is not None:
        problems.extend(_assignment_times(source, classroom))
    if problems or classroom is None:
        raise InvalidFile(sorted(set(problems), key=lambda p: (p.line, p.column, p.message)))
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
                problems.append(
                    source.problem((section, index), "each entry must be a mapping with username, name, ...")
                )
                continue
            where = (section, index)
            username = person.get("username")
            if isinstance(username, str):
                if username in seen:
                    problems.append(
                        source.problem(
                            where + ("username",), f"username {username!r} is already used at {seen[username]}"
                        )
                    )
                else:
                    seen[username] = yamlsrc.format_path(where)
                if username in RESERVED_USERNAMES or username in group_names:
                    problems.append(
                        source.problem(where + ("username",), f"username {username!r} is reserved for the system")
                    )
            quota_name = person.get("quota", "default")
            if isinstance(quota_name, str) and quota_name not in quotas:
                inline = all(person.get(key) is not None for key in ("memory", "cpu", "disk"))
                if quota_name != "default" or not inline:
                    known = ", ".join(sorted(quotas)) or "none defined"
                    problems.append(
                        source.problem(where + ("quota",), f"unknown quota {quota_name!r} (quotas: {known})")
                    )
            problems.extend(_check_limits(source, where, person, site))
    for name, quota in quotas.items():
        if isinstance(quota, dict):
            problems.extend(_check_limits(source, ("quotas", name), quota, site))
    problems.extend(_unique_assignments(source))
    return problems


def _unique_assignments(source: Source) -> list[Problem]:
    """Each assignment is a folder in every student's home: two of one name would be one folder."""
    assignments = source.data.get("assignments")
    if not isinstance(assignments, list):
        return []
    problems, seen = [], {}
    for index, item in enumerate(assignments):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                source.problem(("assignments", index, "name"), f"assignment {name!r} is already at {seen[name]}")
            )
        else:
            seen[name] = yamlsrc.format_path(("assignments", index))
    return problems


def _assignment_times(source: Source, classroom: Classroom) -> list[Problem]:
    """Release, due and late_until in that order (as moments: one may carry an offset); extensions only for
    students of this file."""
    problems = []
    students = {p.username for p in classroom.students}
    for index, work in enumerate(classroom.assignments):
        where = ("assignments", index)
        release, due, late = (classroom.moment(t) if t else None for t in (work.release, work.due, work.late_until))
        longest = max(work.extensions.values(), default=datetime.timedelta())
        try:
            for moment in (due, late, classroom.moment(work.feedback) if work.feedback else None):
                if moment is not None:
                    _ = moment + longest + datetime.timedelta(days=1)  # every student's moments exist
        except OverflowError:
            problems.append(source.problem(where, f"{work.name}'s times (with the extensions) are out of range"))
            continue
        if work.rerelease is not None and classroom.moment(work.rerelease) <= release:  # type: ignore[operator]
            problems.append(source.problem((*where, "rerelease"), "rerelease is not after the release"))
        if due is not None and due <= release:  # type: ignore[operator]
            problems.append(source.problem((*where, "due"), f"{work.name} is due before (or at) its release"))
        if late is not None and due is None:
            problems.append(source.problem((*where, "late_until"), "late_until needs a due time to follow"))
        elif late is not None and due is not None and late <= due:
            problems.append(source.problem((*where, "late_until"), "late_until is not after the due time"))
        if work.feedback is not None and due is None:
            problems.append(source.problem((*where, "feedback"), "feedback is returned after a due time: add due"))
        elif work.feedback is not None and classroom.moment(work.feedback) <= (late or due):  # type: ignore[operator]
            closes = "late_until" if late is not None else "the due time"
            problems.append(source.problem((*where, "feedback"), f"feedback is returned after {closes}, not before"))
        if work.extensions and due is None:
            problems.append(source.problem((*where, "extensions"), "extensions need a due time to extend"))
        for user in work.extensions:
            if user not in students:
                problems.append(
                    source.problem((*where, "extensions", user), f"{user!r} is not a student of this classroom")
                )
    return problems


def _check_limits(source: Source, where: tuple, values: dict, site: Site) -> list[Problem]:
    problems = []
    for key, parse in (("memory", parse_size), ("cpu", parse_cpu), ("disk", parse_size)):
        limit = getattr(site.limits, key)
        raw = values.get(key)
        if raw is None or limit is None:
            continue
        try:
            value = parse(raw)
        except ValueError:
            continue  # already reported by the model
        if value > limit:
            problems.append(
                source.problem(where + (key,), f"{raw} is above this server's limit of {_show_limit(key, limit)}")
            )
    return problems


def _show_limit(key: str, limit: float) -> str:
    return f"{limit:g} CPUs" if key == "cpu" else format_size(int(limit))


# --- site.yaml --------------------------------------------------------------------------------------


# The key each remembered site was found under, for the classroom.yaml checked against it: by id, and only
# while it is that very object (a copy with other limits is another site).
_site_keys: dict[int, tuple[Site, bytes]] = {}


def load_site(path: Path | None, *, remember: bool = False) -> Site:
    """Read site.yaml (or use the embedded default) and make every path absolute.

    ``remember``: as for load_classroom (the built-in default is keyed by the current directory).
    """
    if not remember:
        return _load_site(path, None if path is None else read_bytes(path))
    data = None if path is None else read_bytes(path)
    slot = f"site:{os.path.abspath(path)}" if path is not None else f"site:built-in:{os.getcwd()}"
    wanted = cache.key(slot, b"" if data is None else data)
    found = cache.fetch(slot, wanted)
    site = found if isinstance(found, Site) else _load_site(path, data)
    if site is not found:
        cache.store(slot, wanted, site)
    if len(_site_keys) > 16:
        _site_keys.clear()
    _site_keys[id(site)] = (site, wanted)
    return site


def _load_site(path: Path | None, data: bytes | None) -> Site:
    if path is None:
        return _absolute(Site(hub=HubSettings(token_file=Path("state/hub-token"))), Path.cwd())
    source = read_source(path, data)
    if source.problems:
        raise InvalidFile(source.problems)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise InvalidFile([source.problem((), "site.yaml must be a mapping")])
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise InvalidFile(pydantic_problems(source, exc, Site)) from None
    return _absolute(site, path.resolve().parent)


def _absolute(site: Site, base: Path) -> Site:
    def fix(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p)).resolve()

    state_dir = fix(site.state_dir)
    homes = fix(site.homes_dir) or state_dir / "homes"
    hub = site.hub
    if hub is not None:
        hub = hub.model_copy(
            update={
                "token_file": fix(hub.token_file),
                "cookie_secret_file": fix(hub.cookie_secret_file),
                "shared_dir": fix(hub.shared_dir),
                "tls": None
                if hub.tls is None
                else hub.tls.model_copy(update={"cert": fix(hub.tls.cert), "key": fix(hub.tls.key)}),
                "db_url": hub.db_url or f"sqlite:///{state_dir / 'jupyterhub.sqlite'}",
            }
        )
    delivery = site.delivery
    smtp = delivery.smtp
    if smtp is not None:
        smtp = smtp.model_copy(update={"secrets_file": fix(smtp.secrets_file), "ca_file": fix(smtp.ca_file)})
    delivery = delivery.model_copy(update={"templates_dir": fix(delivery.templates_dir), "smtp": smtp})
    volumes = site.volumes
    if getattr(volumes, "pv_file", None) is not None:
        volumes = volumes.model_copy(update={"pv_file": fix(volumes.pv_file)})  # type: ignore[union-attr]
    network = site.network.model_copy(update={"ca_bundle": fix(site.network.ca_bundle)})
    image = site.image.model_copy(
        update={
            "requirements": fix(site.image.requirements),
            "pins": fix(site.image.pins),
            "dockerfile": fix(site.image.dockerfile),
        }
    )
    return site.model_copy(
        update={
            "state_dir": state_dir,
            "homes_dir": homes,
            "classroom_file": fix(site.classroom_file),
            "hub": hub,
            "delivery": delivery,
            "volumes": volumes,
            "network": network,
            "image": image,
        }
    )


def dump_site(site: Site) -> str:
    """The site as resolved (absolute paths), for processes that must see exactly this configuration."""
    import yaml

    return yaml.safe_dump(site.model_dump(mode="json", exclude_none=True), sort_keys=False)
