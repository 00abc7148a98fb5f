"""Comment-preserving edits of classroom.yaml: the writes behind `import-csv` and the teacher API.

The file is edited as a ruamel round-trip document, so comments, key order and
quoting stay as the teacher wrote them and the git diff shows only the change.
Each edit validates the whole candidate file before the atomic rename, and
runs under a lock so that two writers never overwrite each other's change.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Callable

import yaml
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from ..config.classroom import Classroom, Person
from ..config.load import InvalidFile, parse_classroom
from ..config.site import Site
from ..host import lock
from ..host.fsutil import write_atomic

EDITABLE = ("name", "email", "quota", "memory", "cpu", "disk", "status")
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


def rewrite(path: Path, site: Site, mutate: Callable[[CommentedMap], object], accept: Accept | None = None) -> object:
    """Load, apply ``mutate`` to the document, validate the result as a whole, replace the file."""
    try:
        with lock.hold(site.state_dir / "roster.lock", exclusive=True, timeout=LOCK_TIMEOUT):
            text = path.read_text(encoding="utf-8")
            y = _yaml(text)
            doc = y.load(text)
            result = mutate(doc)
            out = io.StringIO()
            y.dump(doc, out)
            try:
                after = parse_classroom(out.getvalue(), str(path), site)
            except InvalidFile as exc:
                raise Rejected([{"path": p.path, "message": p.message} for p in exc.problems]) from None
            if accept is not None:
                accept(parse_classroom(text, str(path), site), after)
            write_atomic(path, out.getvalue(), mode=path.stat().st_mode & 0o777)
            return result
    except lock.LockBusy:
        raise lock.LockBusy(f"another edit of {path.name} is in progress; try again") from None


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


def add_students(path: Path, site: Site, entries: list[dict], accept: Accept | None = None) -> None:
    rewrite(path, site, lambda doc: append_students(doc, entries), accept)


def check_person(entry: dict) -> None:
    """One person's own fields, with paths relative to the person (the API reports these first)."""
    try:
        Person.model_validate(entry)
    except ValidationError as exc:
        raise Rejected([{"path": ".".join(str(p) for p in e["loc"]),
                         "message": e["msg"].removeprefix("Value error, ")} for e in exc.errors(include_url=False)
                        ]) from None


def change_person(path: Path, site: Site, username: str, changes: dict,
                  check: Callable[[dict], None] = lambda entry: None, accept: Accept | None = None) -> tuple[dict, dict]:
    """Merge ``changes`` into the person (None removes a key); return the entry before and after.

    ``check`` sees the entry as it is under the lock and may refuse the edit.

    The username is the identity of an account and cannot change; purging is
    left to the file itself (a tombstone plus --allow-destroy), never an edit.
    """
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise Rejected([{"path": key, "message": "cannot be changed (editable: " + ", ".join(EDITABLE) + ")"}
                        for key in unknown])
    if changes.get("status") == "purged":
        raise Rejected([{"path": "status", "message": "purging deletes a person's files: write the tombstone "
                                                      "in classroom.yaml and run reconcile --allow-destroy"}])

    def edit(doc: CommentedMap) -> dict:
        entry = find(doc, username)
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

    return rewrite(path, site, edit, accept)  # type: ignore[return-value]


def is_default(key: str, value) -> bool:
    """Is this what classroom.yaml means when the key is left out (quota: default, status: active)?"""
    field = Person.model_fields.get(key)
    return key in ("quota", "status") and field is not None and value == field.default


def without_defaults(entry: dict) -> dict:
    """A new person as the file should hold them: only what differs from the defaults."""
    return {key: value for key, value in entry.items() if not is_default(key, value)}


def find(doc: CommentedMap, username: str) -> CommentedMap | None:
    for section in ("admins", "students"):
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("username") == username:
                return entry
    return None


def plain(value):
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
