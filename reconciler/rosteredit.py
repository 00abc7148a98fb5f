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

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import lock, spec
from .fsutil import write_atomic

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


def rewrite(path: Path, site: spec.Site, mutate: Callable[[CommentedMap], object]) -> object:
    """Load, apply ``mutate`` to the document, validate the result as a whole, replace the file."""
    with lock.hold(site.state_dir / "roster.lock", exclusive=True, timeout=LOCK_TIMEOUT):
        text = path.read_text(encoding="utf-8")
        y = _yaml(text)
        doc = y.load(text)
        result = mutate(doc)
        out = io.StringIO()
        y.dump(doc, out)
        try:
            spec.parse_classroom(out.getvalue(), str(path), site)
        except spec.InvalidFile as exc:
            raise Rejected([{"path": p.path, "message": p.message} for p in exc.problems]) from None
        write_atomic(path, out.getvalue(), mode=path.stat().st_mode & 0o777)
        return result


def add_students(path: Path, site: spec.Site, entries: list[dict]) -> None:
    """Append to students, in the style of the entries already there (block or flow)."""

    def append(doc: CommentedMap) -> None:
        students = doc.get("students")
        if students is None:
            doc["students"] = students = CommentedSeq()
        flow = bool(students) and getattr(students[0], "fa", None) is not None and students[0].fa.flow_style()
        for entry in entries:
            item = CommentedMap(entry)
            if flow:
                item.fa.set_flow_style()
            students.append(item)

    rewrite(path, site, append)


def check_person(entry: dict) -> None:
    """One person's own fields, with paths relative to the person (the API reports these first)."""
    try:
        spec.Person.model_validate(entry)
    except ValidationError as exc:
        raise Rejected([{"path": ".".join(str(p) for p in e["loc"]),
                         "message": e["msg"].removeprefix("Value error, ")} for e in exc.errors(include_url=False)
                        ]) from None


def change_person(path: Path, site: spec.Site, username: str, changes: dict) -> dict:
    """Merge ``changes`` into the person (None removes a key); return the entry as now written.

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
        merged = {k: v for k, v in {**entry, **changes}.items() if v is not None}
        check_person(merged)
        for key, value in changes.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        return _plain(entry)

    return rewrite(path, site, edit)  # type: ignore[return-value]


def find(doc: CommentedMap, username: str) -> CommentedMap | None:
    for section in ("admins", "students"):
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("username") == username:
                return entry
    return None


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
