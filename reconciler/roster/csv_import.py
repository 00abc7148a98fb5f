"""`reconcile import-csv`: add the people of a real-world CSV roster to classroom.yaml.

Reads what schools export: UTF-8 with or without BOM, ',' or ';', quoted
fields, header aliases (English and Italian), several e-mails per cell.
Names are read as schools write them ("Núñez, José", or "BIANCHI Marco" with
--name-order surname-first: names.py) and written given name first.
Usernames are made from names, readable and deterministic (José Núñez ->
jnunez), unique against the file, reserved names and the host's other
accounts.  Every row is checked before anything is written, and the file is
rewritten with its comments, order and formatting intact, so the git diff
shows only the new people.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable

import yaml
from pydantic import ValidationError

from ..config.classroom import RESERVED_USERNAMES, ROLES, Person, group_name
from ..config.load import load_classroom
from ..config.site import Site
from ..core.actual import Account
from ..host.facts import HostFiles, read_accounts, read_groups
from . import names
from .edit import Rejected
from .names import Name, NameOrder

ALIASES = {
    "name": {
        "name",
        "full name",
        "fullname",
        "student",
        "studente",
        "studentessa",
        "nome e cognome",
        "nominativo",
        "alunno",
        "alunna",
    },
    "first": {"first name", "firstname", "given name", "nome"},
    "last": {"last name", "lastname", "surname", "family name", "cognome"},
    "email": {"email", "e-mail", "mail", "email address", "e-mail address", "indirizzo email", "posta elettronica"},
    "username": {"username", "user", "login", "utente", "nome utente"},
}


@dataclass
class Row:
    number: int  # the line in the CSV (1 = header)
    name: str  # as the file will hold it: given name first, no comma
    emails: list[str]
    username: str | None  # from a username column
    parsed: Name | None = None  # given name and surname, for the username


@dataclass
class Result:
    added: list[dict] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # rows already in the file
    problems: list[str] = field(default_factory=list)  # "row N: ..." for invalid rows
    skipped: list[str] = field(default_factory=list)  # invalid rows left out with --skip-invalid


def _header_key(cell: str) -> str | None:
    text = " ".join(cell.replace("_", " ").strip().lower().split())
    return next((key for key, names in ALIASES.items() if text in names), None)


def read_rows(data: bytes, order: NameOrder = "given-first") -> tuple[list[Row], list[str]]:
    """Parse the CSV; return rows and problems that concern the whole file.

    A name cell is read in ``order`` unless it has a comma ("Surname, Given"); separate first and last
    name columns need no guessing.
    """
    text = data.decode("utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return [], ["the CSV file is empty"]
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: dict[str, int] = {}
    rows: list[Row] = []
    for number, cells in enumerate(reader, start=1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if not header:
            header = {key: i for i, cell in enumerate(cells) if (key := _header_key(cell)) is not None}
            if "name" not in header and "first" in header and "last" not in header:
                header["name"] = header.pop("first")  # a lone "nome" column holds the whole name
            if "name" not in header and not ({"first", "last"} <= header.keys()):
                return [], [
                    f"row {number}: no name column (looked for {', '.join(sorted(ALIASES['name']))}, "
                    "or first name + last name)"
                ]
            continue

        def cell(key: str, header: dict[str, int] = header, cells: list[str] = cells) -> str:
            index = header.get(key)
            return cells[index].strip() if index is not None and index < len(cells) else ""

        if cell("name"):
            parsed = names.parse(cell("name"), order)
        else:
            parsed = Name(" ".join(cell("first").split()), " ".join(cell("last").split()))
        emails = [e for e in re.split(r"[;,\s]+", cell("email")) if e]
        rows.append(Row(number, parsed.display, emails, cell("username") or None, parsed))
    return rows, []


def username_for(name: str | Name, order: NameOrder = "given-first") -> str:
    """First initial + surname, ASCII-folded: "José Núñez" -> "jnunez", "Núñez, José" -> "jnunez" (names.py)."""
    return names.username_for(name if isinstance(name, Name) else names.parse(name, order))


def unique_username(name: str | Name, taken: set[str], order: NameOrder = "given-first") -> str:
    """username_for(name), numbered (jnunez2, jnunez3, ...) past the names already taken."""
    base = username_for(name, order)
    username, n = base, 1
    while username in taken:
        n += 1
        username = f"{base}{n}"
    return username


def taken_usernames(
    classroom_data: dict, accounts: dict[str, Account], classroom: str, groups: Iterable[str] = ()
) -> set[str]:
    """Names a new person cannot get: people in the file, the host's other accounts and groups, reserved names.

    A group is taken unless it is the personal group of one of our own accounts (useradd makes one per person).
    """
    names = {
        p.get("username")
        for section in ("admins", "students")
        for p in classroom_data.get(section) or []
        if isinstance(p, dict)
    }
    ours = {u for u, a in accounts.items() if a.classroom == classroom}
    names |= {u for u in accounts if u not in ours}  # the host's own accounts
    names |= {g for g in groups if g not in ours}  # and groups: useradd could not make the person's own
    names |= set(RESERVED_USERNAMES) | {group_name(classroom, r) for r in ROLES}
    return {n for n in names if n}


def plan_import(
    rows: list[Row], classroom_data: dict, accounts: dict[str, Account], site: Site, groups: Iterable[str] = ()
) -> Result:
    """Decide who is new, make their usernames, validate each; pure apart from its inputs."""
    result = Result()
    classroom = classroom_data.get("name", "")
    people = [p for s in ("admins", "students") for p in classroom_data.get(s) or [] if isinstance(p, dict)]
    known_users = {p.get("username") for p in people}
    known_emails = {
        e.lower() for p in people for e in ([p["email"]] if isinstance(p.get("email"), str) else p.get("email") or [])
    }
    taken = taken_usernames(classroom_data, accounts, classroom, groups)
    for row in rows:
        if row.username in known_users or any(e.lower() in known_emails for e in row.emails):
            result.present.append(f"row {row.number}: {row.name} is already in the file")
            continue
        if not row.name:
            result.problems.append(f"row {row.number}: the name is empty")
            continue
        username = row.username
        if username is None:
            username = unique_username(row.parsed or row.name, taken)
        elif username in taken:
            result.problems.append(f"row {row.number}: username {username!r} is already taken")
            continue
        entry = {"username": username, "name": row.name}
        if row.emails:
            entry["email"] = row.emails[0] if len(row.emails) == 1 else row.emails
        try:
            Person.model_validate(entry)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = ".".join(str(p) for p in error["loc"])
                result.problems.append(f"row {row.number}: {where}: {error['msg'].removeprefix('Value error, ')}")
            continue
        taken.add(username)
        known_users.add(username)
        known_emails.update(e.lower() for e in row.emails)
        result.added.append(entry)
    return result


def prepare(
    path: Path, site: Site, data: bytes, host: HostFiles = HostFiles(), order: NameOrder = "given-first"
) -> Result:
    """Read a CSV upload and decide who it adds to the file; nothing is written.

    Raises Rejected for a file that cannot be read as a roster at
    all, and InvalidFile when classroom.yaml itself is invalid.
    """
    try:
        rows, fatal = read_rows(data, order)
    except UnicodeDecodeError:
        rows, fatal = [], ["not UTF-8 text (save it as CSV UTF-8)"]
    if fatal:
        raise Rejected([{"path": "", "message": problem} for problem in fatal])
    load_classroom(path, site)  # the roster must be valid before we add to it
    accounts = read_accounts(host.etc / "passwd", {}, {})
    groups = read_groups(host.etc / "group")
    return plan_import(rows, yaml.safe_load(path.read_text(encoding="utf-8")), accounts, site, groups)
