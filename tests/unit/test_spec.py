"""classroom.yaml / site.yaml validation: every problem at once, with file:line:column and field path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.config.classroom import json_schema
from reconciler.config.load import InvalidFile, load_classroom, load_site
from reconciler.config.site import Limits, Site, find_site
from reconciler.config.sizes import GiB, MiB, format_size, parse_size
from reconciler.core.desired import resolve
from reconciler.host.volumes import layout_for

ROOT = Path(__file__).resolve().parents[2]
SITE = Site()


def load(tmp_path, text, site=SITE):
    path = tmp_path / "classroom.yaml"
    path.write_text(text)
    return load_classroom(path, site)


def problems(tmp_path, text, site=SITE):
    with pytest.raises(InvalidFile) as info:
        load(tmp_path, text, site)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("512Mi", 512 * MiB),
        ("512M", 512 * 10**6),
        ("1G", 10**9),
        ("1.5GiB", 3 * GiB // 2),
        ("2gi", 2 * GiB),
        (1073741824, GiB),
        ("100", 100),
        ("1 Ti", 1024**4),
        ("10kb", 10_000),
    ],
)
def test_sizes_normalize_to_bytes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12Q", "-1Gi", "0", "1..5G", True, None, "Gi"])
def test_bad_sizes_are_rejected(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size():
    assert format_size(GiB) == "1 GiB"
    assert format_size(3 * GiB // 2) == "1.5 GiB"
    assert format_size(None) == "-"


def test_example_classroom_is_valid_and_resolves_quotas():
    classroom = load_classroom(ROOT / "examples" / "classroom.yaml", SITE)
    desired = resolve(classroom, SITE.paths, layout_for(SITE))
    by_name = {m.username: m for m in desired.members}
    assert by_name["mrossi"].role == "teacher" and by_name["mrossi"].disk == 5 * GiB
    assert by_name["abianchi"].disk == 2 * GiB and by_name["abianchi"].memory == 512 * MiB
    assert by_name["abianchi"].emails == ("anna@example.org", "parent@example.org")
    assert by_name["lverdi"].status == "disabled"
    assert desired.groups == {"student": "python-101-students", "teacher": "python-101-teachers"}


def test_example_has_schema_line():
    first = (ROOT / "examples" / "classroom.yaml").read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")


BAD = """\
version: 1
name: python-101
quotas:
  default: {memory: 512Mi, cpu: 1, disk: 1Gi, memroy: 3}
admins:
  - {username: mrossi, name: Mario Rossi, email: mrossi@school.example, quota: projekt}
students:
  - {username: jdoe, name: Jane Doe, email: jane@example}
  - {username: jdoe, name: Jane Doe2, emial: x@y.org}
  - {username: Root, name: "A, B", disk: 12Q}
  - {username: root, name: R}
  - {username: big, name: Big, disk: 30Gi}
  - {username: ok2, name: OK, status: gone}
  - {username: python-101-students, name: G}
"""


def test_every_problem_is_reported_at_once_with_position_and_path(tmp_path):
    site = Site(limits=Limits(disk=20 * GiB))
    found = problems(tmp_path, BAD, site)
    file = str(tmp_path / "classroom.yaml")
    expected = [
        f"{file}:4:47: quotas.default.memroy: unknown key 'memroy'; did you mean 'memory'?",
        f"{file}:6:73: admins[0].quota: unknown quota 'projekt'",
        f"{file}:8:38: students[0].email: 'jane@example' is not a valid e-mail address",
        f"{file}:9:6: students[1].username: username 'jdoe' is already used at students[0]",
        f"{file}:9:39: students[1].emial: unknown key 'emial'; did you mean 'email'?",
        f"{file}:10:6: students[2].username: 'Root' is not a valid username",
        f"{file}:10:22: students[2].name: a name may not contain",
        f"{file}:10:36: students[2].disk: unknown unit 'Q'",
        f"{file}:11:6: students[3].username: username 'root' is reserved",
        f"{file}:12:32: students[4].disk: 30Gi is above this server's limit of 20 GiB",
        f"{file}:13:31: students[5].status: Input should be 'active', 'disabled', 'archived' or 'purged'",
        f"{file}:14:6: students[6].username: username 'python-101-students' is reserved",
    ]
    assert len(found) == len(expected), "\n".join(found)
    for line, prefix in zip(found, expected, strict=False):
        assert line.startswith(prefix), (line, prefix)


def test_yaml_syntax_error_has_position(tmp_path):
    found = problems(tmp_path, "version: 1\nname: x\nstudents:\n  - {username: a, name: [\n")
    assert len(found) == 1 and "YAML syntax error" in found[0]
    assert found[0].startswith(str(tmp_path / "classroom.yaml") + ":")


def test_duplicate_keys_are_errors(tmp_path):
    found = problems(tmp_path, "version: 1\nname: x\nname: y\n")
    assert any(":3:1: name: duplicate key 'name'" in p for p in found)


def test_missing_required_keys_and_wrong_version(tmp_path):
    found = problems(tmp_path, "version: 2\nstudents:\n  - {name: No Username}\n")
    assert any("version" in p and "1" in p for p in found)
    assert any(p.endswith("name: missing required key 'name'") or "missing required key 'name'" in p for p in found)
    assert any("students[0].username: missing required key 'username'" in p for p in found)


def test_empty_file_and_non_mapping(tmp_path):
    assert "the file is empty" in problems(tmp_path, "")[0]
    assert "must be a mapping" in problems(tmp_path, "- a\n- b\n")[0]


def test_inline_quota_needs_no_named_default(tmp_path):
    classroom = load(
        tmp_path, "version: 1\nname: c\nstudents:\n  - {username: a, name: A, memory: 1Gi, cpu: 500m, disk: 2G}\n"
    )
    member = resolve(classroom, SITE.paths, layout_for(SITE)).members[0]
    assert (member.memory, member.cpu, member.disk) == (GiB, 0.5, 2 * 10**9)


def test_missing_default_quota_is_an_error(tmp_path):
    found = problems(tmp_path, "version: 1\nname: c\nstudents:\n  - {username: a, name: A}\n")
    assert any("students[0].quota: unknown quota 'default'" in p for p in found)


def test_site_defaults_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILE_SITE", raising=False)
    site = load_site(None)
    assert site.state_dir == tmp_path / "state" and site.homes_dir == tmp_path / "state" / "homes"
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "site.yaml"
    path.write_text("state_dir: ../var\nmax_disable_fraction: 0.5\n")
    site = load_site(path)
    assert site.state_dir == tmp_path / "var" and site.homes_dir == tmp_path / "var" / "homes"
    monkeypatch.setenv("RECONCILE_SITE", str(path))
    assert find_site(None) == path
    assert find_site("/x/site.yaml") == Path("/x/site.yaml")


def test_site_typos_are_errors(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("state_dir: /x\nvolumes: {backend: zfs}\nmax_disable_fraktion: 0.1\n")
    with pytest.raises(InvalidFile) as info:
        load_site(path)
    text = str(info.value)
    assert ":3:1: max_disable_fraktion: unknown key" in text and "did you mean 'max_disable_fraction'" in text
    assert ":2:11: volumes.backend: unknown backend 'zfs' (one of 'loop', 'lvm')" in text


def test_checked_in_schema_matches_the_models():
    checked_in = json.loads((ROOT / "schemas" / "classroom.schema.json").read_text())
    assert checked_in == json_schema(), "schemas/classroom.schema.json is stale: run `reconcile schema`"


def test_schema_command_prints_the_schema():
    out = subprocess.run([sys.executable, "-m", "reconciler", "schema"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == json_schema()


def test_validate_command_exit_codes(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "-f", str(ROOT / "examples/classroom.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert good.returncode == 0 and "valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    out = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "-f", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 1
    assert f"{bad}:9:6: students[1].username" in out.stderr
    assert "nothing was changed" in out.stderr


@pytest.mark.parametrize(
    "name,expected",
    [
        ("Ann\u2028Smith", "U+2028 (LINE SEPARATOR)"),
        ("Ann\u2029Smith", "U+2029 (PARAGRAPH SEPARATOR)"),
        ("Ann\u200bSmith", "U+200B (ZERO WIDTH SPACE)"),
        ("Ann\u202eSmith", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("Ann\tSmith", "control characters"),
        ("Ann\x85Smith", "control characters"),  # NEL: a line break to str.splitlines()
    ],
)
def test_names_with_line_breaks_or_invisible_characters_are_refused(tmp_path, name, expected):
    text = (
        "version: 1\nname: c\nquotas: {default: {memory: 1Gi, cpu: 1, disk: 1Gi}}\nstudents:\n"
        f"  - username: ann\n    name: {json.dumps(name)}\n"
    )
    found = problems(tmp_path, text)
    assert len(found) == 1 and ":6:5: students[0].name: " in found[0] and expected in found[0], found


def test_accented_and_non_latin_names_are_fine(tmp_path):
    text = (
        "version: 1\nname: c\nquotas: {default: {memory: 1Gi, cpu: 1, disk: 1Gi}}\nstudents:\n"
        "  - {username: ann, name: Niccolò Çelik-Øberg}\n  - {username: bo, name: 李小龍}\n"
    )
    assert [p.name for p in load(tmp_path, text).students] == ["Niccolò Çelik-Øberg", "李小龍"]


def test_the_fast_email_check_agrees_with_email_validator():
    """config/classroom.py checks everyday addresses itself (email-validator costs an import and IDNA work per
    address): whatever it accepts, email-validator accepts with the same normalized form, and it knows the same
    special-use names.  Everything else goes to email-validator."""
    import random

    import email_validator
    from email_validator import EmailNotValidError, validate_email

    from reconciler.config.classroom import SPECIAL_USE_DOMAINS, plain_email

    assert set(SPECIAL_USE_DOMAINS) == set(email_validator.SPECIAL_USE_DOMAIN_NAMES)
    samples = [
        "Jane.Doe@Example.ORG",
        "a+b@sub.example.co.uk",
        "x@example.test",
        "x@host.localhost",
        "x@123.com",
        "x@a.b1",
        "x@exa_mple.org",
        "x..y@example.org",
        "x@example.org.",
        '"q"@example.org',
        "x@xn--bcher-kva.example",
        "x@-a.org",
        "x@a-.org",
        "x@a.c",
        ".x@a.org",
        "x.@a.org",
        "x@a..org",
        "anna@example.org",
        "o'brien@example.org",
        "x@" + "a" * 64 + ".org",
        "y" * 65 + "@a.org",
        "x@mail.onion",
        "x@foo.arpa",
        "x%y@example.org",
        "ü@example.org",
        "x@exämple.org",
    ]
    alphabet = "aZ09._%+-@'\"ü"
    rng = random.Random(7)
    samples += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 12))) + rng.choice(["@a.org", "@B.Co", ""])
        for _ in range(3000)
    ]
    accepted = 0
    for address in samples:
        fast = plain_email(address)
        if fast is None:
            continue
        accepted += 1
        try:
            assert validate_email(address, check_deliverability=False).normalized == fast, address
        except EmailNotValidError as exc:
            raise AssertionError(f"{address!r}: accepted here, refused by email-validator ({exc})") from None
    assert accepted > 50
