"""Comment-preserving edits of classroom.yaml: the writes behind `import-csv` and the teacher API.

The file is edited as a ruamel round-trip document, so comments, key order and
quoting stay as the teacher wrote them and the git diff shows only the change.
Each edit validates the whole candidate file, then replaces the file only if
it is still the version the edit read (a compare-and-swap, see ``rewrite``),
so no writer -- another teacher, an editor, scp, CI -- loses a change.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import re
import time
from collections.abc import Collection
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import yaml
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from ..config.classroom import Classroom, Person, parse_local_time
from ..config.load import InvalidFile, parse_classroom, read_version
from ..config.site import Site
from ..host import lock
from ..host.fsutil import replace_if_unchanged

EDITABLE = ("name", "email", "quota", "memory", "cpu", "disk", "status")
ASSIGNMENT_EDITABLE = ("due", "late_until", "feedback", "extensions")  # what the page and the API change
LOCK_TIMEOUT = 10.0


class Rejected(Exception):
    """The edit would make the file invalid, or names nobody; ``problems`` carry field paths."""

    def __init__(self, problems: list[dict], status: int = 422):
        self.problems, self.status = problems, status
        super().__init__("; ".join(f"{p['path']}: {p['message']}" if p["path"] else p["message"] for p in problems))


def _yaml(text: str) -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    match = re.search(r"^(students|admins):\s*(?:#.*)?\n(\s*)- ", text, re.M)
    offset = len(match.group(2)) if match else 2  # keep the file's own list indentation
    y.indent(mapping=2, sequence=offset + 2, offset=offset)
    return y


# Called with the file as it is and as it would be (both validated) before the new one is written; it
# raises Rejected to refuse the edit (the teacher API and import-csv plan the candidate against the host).
Accept = Callable[[Classroom, Classroom], None]
SECTIONS = ("admins", "students")
RETRY_FOR = 10.0  # seconds an edit without If-Match goes on re-reading a file that other programs keep writing


class Stale(Rejected):
    """The file is no longer the version the writer read (HTTP If-Match): nothing was written (412)."""

    def __init__(self, current: str):
        self.current = current
        super().__init__(
            [
                {
                    "path": "",
                    "message": "classroom.yaml changed since you read it (another teacher, an "
                    "editor or CI): read it again and make your change on that",
                }
            ],
            status=412,
        )


@dataclass(frozen=True)
class Written:
    """What ``mutate`` returned, and the ETag of the file as written (the client's next If-Match)."""

    result: Any
    etag: str


def etag(data: bytes) -> str:
    """A version of classroom.yaml as HTTP names it: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def rewrite(
    path: Path,
    site: Site,
    mutate: Callable[[CommentedMap], object],
    accept: Accept | None = None,
    expect: Collection[str] | None = None,
) -> Written:
    """Read, apply ``mutate`` to the document, validate the result as a whole, and replace the file: a
    compare-and-swap on the bytes read, so no writer's change is ever renamed away unseen.

    The file is read only as a whole version (config.settled: never in the middle of a write in place), and the
    new one takes its place only if the file is still that version (fsutil.replace_if_unchanged).  If another
    program wrote it meanwhile, the edit is made again on what it wrote; with ``expect`` (the versions the
    client read, HTTP If-Match) it is refused instead (Stale).  Our own writers also queue on a lock.
    """
    with ExitStack() as held:
        try:
            held.enter_context(lock.hold(site.state_dir / "roster.lock", exclusive=True, timeout=LOCK_TIMEOUT))
        except lock.LockBusy:
            raise lock.LockBusy(f"another edit of {path.name} is in progress; try again") from None
        deadline = time.monotonic() + RETRY_FOR
        while True:
            seen = read_version(path)
            text = seen.data.decode("utf-8")
            y = _yaml(text)
            doc = y.load(text)
            result = mutate(doc)
            out = io.StringIO()
            y.dump(doc, out)
            try:
                after = parse_classroom(out.getvalue(), str(path), site)
            except InvalidFile as exc:
                raise Rejected([{"path": p.path, "message": p.message} for p in exc.problems]) from None
            if expect is not None and seen.sha256 not in expect:  # after the input's own problems (422)
                raise Stale(seen.sha256)
            if accept is not None:
                accept(parse_classroom(text, str(path), site), after)
            if replace_if_unchanged(path, out.getvalue(), seen, mode=path.stat().st_mode & 0o777):
                return Written(result, etag(out.getvalue().encode()))
            if expect is not None:
                raise Stale(read_version(path).sha256)
            if time.monotonic() > deadline:
                raise lock.LockBusy(f"{path.name} kept changing under the edit (another program writes it); try again")


def scalar(value):
    """Quote strings a YAML 1.1 reader would take for something else (off, no, 0755, null).

    ruamel writes YAML 1.2, where ``off`` is a string; the validator (PyYAML) and
    many tools read 1.1, where it is false: a username ``off`` must stay a string.
    """
    if isinstance(value, list):
        return [scalar(item) for item in value]
    if isinstance(value, str):
        try:
            same = yaml.safe_load(value) == value
        except yaml.YAMLError:
            same = False
        if not same:
            return SingleQuotedScalarString(value)
    return value


def append_students(doc: CommentedMap, entries: list[dict]) -> None:
    """Append to students, in the style of the entries already there (block or flow)."""
    students = doc.get("students")
    if students is None:
        doc["students"] = students = CommentedSeq()
    flow = bool(students) and getattr(students[0], "fa", None) is not None and students[0].fa.flow_style()
    for entry in entries:
        item = CommentedMap({key: scalar(value) for key, value in entry.items()})
        if flow:
            item.fa.set_flow_style()
        students.append(item)


def add_students(
    path: Path, site: Site, entries: list[dict], accept: Accept | None = None, expect: Collection[str] | None = None
) -> Written:
    return rewrite(path, site, lambda doc: append_students(doc, entries), accept, expect)


def check_person(entry: dict) -> None:
    """One person's own fields, with paths relative to the person (the API reports these first)."""
    try:
        Person.model_validate(entry)
    except ValidationError as exc:
        raise Rejected(
            [
                {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
                for e in exc.errors(include_url=False)
            ]
        ) from None


def change_person(
    path: Path,
    site: Site,
    username: str,
    changes: dict,
    check: Callable[[dict], None] = lambda entry: None,
    accept: Accept | None = None,
    expect: Collection[str] | None = None,
    among: tuple[str, ...] = SECTIONS,
) -> Written:
    """Merge ``changes`` into the person (None removes a key); the result is the entry before and after.

    ``check`` sees the entry as it is under the lock and may refuse the edit; ``among``: the sections the
    person may be found in (the teacher API changes students only).

    The username is the identity of an account and cannot change; purging is
    left to the file itself (a tombstone plus --allow-destroy), never an edit.
    """
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise Rejected(
            [{"path": key, "message": "cannot be changed (editable: " + ", ".join(EDITABLE) + ")"} for key in unknown]
        )
    if changes.get("status") == "purged":
        raise Rejected(
            [
                {
                    "path": "status",
                    "message": "purging deletes a person's files: write the tombstone "
                    "in classroom.yaml and run reconcile --allow-destroy",
                }
            ]
        )

    def edit(doc: CommentedMap) -> dict:
        entry = find(doc, username, among)
        if entry is None:
            raise Rejected([{"path": "username", "message": f"{username} is not in the classroom"}], status=404)
        before = plain(entry)
        check(before)
        merged = {k: v for k, v in {**entry, **changes}.items() if v is not None}
        check_person(merged)
        for key, value in changes.items():
            if value is None or is_default(key, value):  # the file says only what differs from the defaults
                entry.pop(key, None)
            else:
                entry[key] = scalar(value)
        return before, plain(entry)

    return rewrite(path, site, edit, accept, expect)


def change_assignment(
    path: Path,
    site: Site,
    name: str,
    changes: dict,
    accept: Accept | None = None,
    expect: Collection[str] | None = None,
) -> Written:
    """Merge ``changes`` into the assignment ``name``: its due, late_until and feedback times (null removes one)
    and its extensions (a merge too: ``{"bob": "2d"}`` adds or changes bob's, ``{"bob": null}`` removes it).  A
    time given with an offset (a browser's "now") is written in the file's own time zone, to the minute, as a
    teacher writes it.  The result is the entry before and after."""
    unknown = sorted(set(changes) - set(ASSIGNMENT_EDITABLE))
    if unknown:
        editable = ", ".join(ASSIGNMENT_EDITABLE)
        raise Rejected([{"path": key, "message": f"cannot be changed here (editable: {editable})"} for key in unknown])
    if "extensions" in changes and not isinstance(changes["extensions"], dict | None):
        raise Rejected([{"path": "extensions", "message": "an object: username -> length (2d, 36h) or null"}])

    def edit(doc: CommentedMap) -> tuple[dict, dict]:
        entry = next((a for a in doc.get("assignments") or [] if isinstance(a, dict) and a.get("name") == name), None)
        if entry is None:
            raise Rejected([{"path": "name", "message": f"{name} is not an assignment of the classroom"}], status=404)
        before = plain(entry)
        for key, value in changes.items():
            if key == "extensions":
                _merge_extensions(entry, value)
            elif value is None:
                entry.pop(key, None)
            else:
                entry[key] = scalar(_written_time(key, value, doc.get("timezone")))
        return before, plain(entry)

    return rewrite(path, site, edit, accept, expect)


def _merge_extensions(entry: CommentedMap, value: dict | None) -> None:
    found = entry.get("extensions")
    if value is not None:
        if found is None:
            found = CommentedMap()
            if getattr(entry, "fa", None) is not None and entry.fa.flow_style():
                found.fa.set_flow_style()
        for user, length in value.items():
            if length is None:
                found.pop(user, None)
            else:
                found[scalar(user)] = scalar(str(length))
    if value is None or not found:
        entry.pop("extensions", None)
    else:
        entry["extensions"] = found


def _written_time(key: str, value: object, zone_name: object) -> str:
    """A time as classroom.yaml holds it: YYYY-MM-DD HH:MM in the file's zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        moment = parse_local_time(value)
    except ValueError as exc:
        raise Rejected([{"path": key, "message": str(exc)}]) from None
    if moment.tzinfo is not None:  # type: ignore[union-attr]
        try:
            zone = ZoneInfo(zone_name if isinstance(zone_name, str) else "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        try:
            moment = moment.astimezone(zone)  # type: ignore[union-attr]
        except (OverflowError, ValueError):
            raise Rejected([{"path": key, "message": f"{value!r} is out of range"}]) from None
    return f"{moment:%Y-%m-%d %H:%M}"


def is_default(key: str, value) -> bool:
    """Is this what classroom.yaml means when the key is left out (quota: default, status: active)?"""
    field = Person.model_fields.get(key)
    return key in ("quota", "status") and field is not None and value == field.default


def without_defaults(entry: dict) -> dict:
    """A new person as the file should hold them: only what differs from the defaults."""
    return {key: value for key, value in entry.items() if not is_default(key, value)}


def find(doc: CommentedMap, username: str, among: tuple[str, ...] = SECTIONS) -> CommentedMap | None:
    for section in among:
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("username") == username:
                return entry
    return None


def plain(value):
    """A document's part as plain JSON data: a time the YAML reader made a datetime (2026-01-01 09:00:00) is
    written back as text, as the file says it."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value
