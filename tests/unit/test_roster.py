"""`reconcile import-csv`: real-world CSV rosters into classroom.yaml, formatting and comments kept."""

import difflib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.config.load import load_classroom
from reconciler.config.site import Site
from reconciler.core.actual import Account
from reconciler.roster import csv_import as roster

ROOT = Path(__file__).resolve().parents[2]
SITE = Site()


def host(*names, classroom=None):
    return {
        n: Account(n, 1000 + i, 1000 + i, n, classroom, "/", "/bin/sh", frozenset(), True, False, None)
        for i, n in enumerate(names)
    }


def test_bom_semicolons_quotes_aliases_and_blank_lines():
    data = (
        "\ufeffStudente ; E-Mail ;Classe\r\n"
        '"Rossi, Mario";mario@example.org;3A\r\n'
        "\r\n"
        "  José Núñez  ; jose@example.org parent@example.org ;3A\r\n"
        "Anna Maria De Luca;anna@example.org;parent2@example.org\r\n"
    ).encode()
    rows, fatal = roster.read_rows(data)
    assert fatal == []
    assert [(r.number, r.name, r.emails) for r in rows] == [
        (2, "Mario Rossi", ["mario@example.org"]),  # "Surname, Given": written given name first, no comma
        (4, "José Núñez", ["jose@example.org", "parent@example.org"]),
        (5, "Anna Maria De Luca", ["anna@example.org"]),
    ]


def test_commas_first_and_last_name_columns_and_quoted_email_lists():
    data = (
        b'nome,cognome,mail,utente\nLuca,Verdi,"luca@example.org, mum@example.org",\nEva,Neri,eva@example.org,eneri9\n'
    )
    rows, fatal = roster.read_rows(data)
    assert fatal == []
    assert [(r.name, r.emails, r.username) for r in rows] == [
        ("Luca Verdi", ["luca@example.org", "mum@example.org"], None),
        ("Eva Neri", ["eva@example.org"], "eneri9"),
    ]


def test_no_name_column_is_a_clear_error():
    rows, fatal = roster.read_rows(b"foo,bar\n1,2\n")
    assert rows == [] and "no name column" in fatal[0]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("José Núñez", "jnunez"),
        ("Anna Maria De Luca", "adeluca"),
        ("Ludwig van der Berg", "lvanderberg"),
        ("Çağla Öztürk", "cozturk"),
        ("Ђорђе Петровић", "dpetrovic"),
        ("Mononym", "mononym"),
        ("O'Brien Seán", "osean"),
        ("42 Answers", "s4answers"),
    ],
)
def test_usernames_are_readable_ascii(name, expected):
    assert roster.username_for(name) == expected


def test_collisions_get_a_suffix_in_file_order_and_never_hit_other_accounts():
    data = {"version": 1, "name": "c", "students": [{"username": "mrossi", "name": "Marco Rossi"}]}
    rows, _ = roster.read_rows(b"name,email\nMaria Rossi,\nMarta Rossi,\nBruno Neri,\nDaemon Smith,\n")
    rows.append(roster.Row(9, "Root Admin", [], None))
    result = roster.plan_import(rows, data, host("bneri", "dsmith", "radmin", classroom=None), SITE)
    assert [e["username"] for e in result.added] == ["mrossi2", "mrossi3", "bneri2", "dsmith2", "radmin2"]


def test_people_already_present_are_not_duplicated():
    data = {"version": 1, "name": "c", "students": [{"username": "jdoe", "name": "Jane", "email": "jane@example.org"}]}
    rows, _ = roster.read_rows(b"name,email,username\nJane Doe,JANE@example.org,\nJ D,,jdoe\nNew One,n@example.org,\n")
    result = roster.plan_import(rows, data, {}, SITE)
    assert [e["username"] for e in result.added] == ["none"]
    assert len(result.present) == 2


def test_invalid_rows_are_all_reported_with_row_numbers():
    rows, _ = roster.read_rows(b"name,email,username\nA B,not-an-email,\n,x@example.org,\nC D,c@example.org,Bad!\n")
    result = roster.plan_import(rows, {"version": 1, "name": "c"}, {}, SITE)
    assert result.added == []
    assert any(p.startswith("row 2: email:") and "not a valid e-mail" in p for p in result.problems)
    assert "row 3: the name is empty" in result.problems
    assert any(p.startswith("row 4: username:") for p in result.problems)


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "import-csv", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture
def workdir(tmp_path):
    shutil.copy(ROOT / "examples" / "classroom.yaml", tmp_path / "classroom.yaml")
    return tmp_path


def test_rewrite_keeps_comments_order_and_formatting(workdir):
    csv_file = workdir / "roster.csv"
    csv_file.write_text("Nome;Email\nJosé Núñez;jose@example.org\nGiulia Bianchi;giulia@example.org g2@example.org\n")
    before = (workdir / "classroom.yaml").read_text()
    out = run(str(csv_file), "-f", "classroom.yaml", cwd=workdir)
    assert out.returncode == 0, out.stderr
    after = (workdir / "classroom.yaml").read_text()
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == [
        "+  - {username: jnunez, name: José Núñez, email: jose@example.org}",
        "+  - {username: gbianchi, name: Giulia Bianchi, email: [giulia@example.org, g2@example.org]}",
    ]
    assert run(str(csv_file), "-f", "classroom.yaml", cwd=workdir).stdout.count("already in the file") == 2
    assert (workdir / "classroom.yaml").read_text() == after  # a second import adds nothing


def test_block_style_files_stay_block_style(tmp_path):
    (tmp_path / "classroom.yaml").write_text(
        "version: 1\nname: c\nquotas:\n  default: {memory: 1Gi, cpu: 1, disk: 1Gi}\n"
        "students:\n# the first one\n- username: ann\n  name: Ann\n"
    )
    (tmp_path / "r.csv").write_text("name\nBob Bee\n")
    assert run("r.csv", cwd=tmp_path).returncode == 0
    assert (
        (tmp_path / "classroom.yaml")
        .read_text()
        .endswith("# the first one\n- username: ann\n  name: Ann\n- username: bbee\n  name: Bob Bee\n")
    )


def test_bad_rows_change_nothing_unless_skip_invalid(workdir):
    (workdir / "r.csv").write_text("name,email\nGood Person,good@example.org\nBad Person,bad@\n")
    before = (workdir / "classroom.yaml").read_text()
    out = run("r.csv", cwd=workdir)
    assert out.returncode == 1 and "row 3: email:" in out.stderr and "nothing was changed" in out.stderr
    assert (workdir / "classroom.yaml").read_text() == before
    dry = run("r.csv", "--dry-run", "--skip-invalid", cwd=workdir)
    assert dry.returncode == 2 and "gperson" in dry.stdout
    assert (workdir / "classroom.yaml").read_text() == before
    out = run("r.csv", "--skip-invalid", cwd=workdir)
    assert out.returncode == 0 and "left out 1 invalid row" in out.stderr
    text = (workdir / "classroom.yaml").read_text()
    assert "gperson" in text and "bad@" not in text
    load_classroom(workdir / "classroom.yaml", SITE)


# --- names as schools write them: (cell, name order, the name written to the file, the username) ----------

NAMES = [
    ("José Núñez", "given-first", "José Núñez", "jnunez"),
    ("Núñez, José", "given-first", "José Núñez", "jnunez"),  # the most common export shape
    ("Núñez, José", "surname-first", "José Núñez", "jnunez"),  # a comma always wins
    ("  Núñez ,  José  ", "given-first", "José Núñez", "jnunez"),
    ("Bianchi Marco", "surname-first", "Marco Bianchi", "mbianchi"),
    ("BIANCHI MARCO", "surname-first", "MARCO BIANCHI", "mbianchi"),
    ("De Luca Anna Maria", "surname-first", "Anna Maria De Luca", "adeluca"),
    ("Anna Maria De Luca", "given-first", "Anna Maria De Luca", "adeluca"),
    ("De Luca, Anna Maria", "given-first", "Anna Maria De Luca", "adeluca"),
    ("Ludwig van Beethoven", "given-first", "Ludwig van Beethoven", "lvanbeethoven"),
    ("Ludwig van der Berg", "given-first", "Ludwig van der Berg", "lvanderberg"),
    ("Juan de la Cruz", "given-first", "Juan de la Cruz", "jdelacruz"),
    ("Maria dos Santos", "given-first", "Maria dos Santos", "mdossantos"),
    ("Otto von Bismarck", "given-first", "Otto von Bismarck", "ovonbismarck"),
    ("García López, María José", "given-first", "María José García López", "mgarcialopez"),  # double surname
    ("María José García López", "given-first", "María José García López", "mlopez"),  # no comma: last word
    ("Nguyễn Văn An", "given-first", "Nguyễn Văn An", "nan"),  # "Văn" is a name, not Dutch "van"
    ("Nguyễn Văn An", "surname-first", "Văn An Nguyễn", "vnguyen"),  # nothing lost either way
    ("Mary O'Brien", "given-first", "Mary O'Brien", "mobrien"),
    ("D'Angelo Giulia", "surname-first", "Giulia D'Angelo", "gdangelo"),
    ("Jean-Luc Picard", "given-first", "Jean-Luc Picard", "jpicard"),
    ("Anne-Marie Smith-Jones", "given-first", "Anne-Marie Smith-Jones", "asmithjones"),
    ("Madonna", "given-first", "Madonna", "madonna"),  # a single name
    ("Madonna", "surname-first", "Madonna", "madonna"),
    ("王小明", "given-first", "王小明", "wangxiaoming"),  # no spaces: one word, transliterated
    ("Иван Петров", "given-first", "Иван Петров", "ipetrov"),
    ("Петров, Иван", "given-first", "Иван Петров", "ipetrov"),
    ("Γιώργος Παπαδόπουλος", "given-first", "Γιώργος Παπαδόπουλος", "gpapadopoulos"),  # ου -> ou, as Greeks write it
    ("Çağla Öztürk", "given-first", "Çağla Öztürk", "cozturk"),
    ("Søren Kierkegaard", "given-first", "Søren Kierkegaard", "skierkegaard"),
    ("Zoë Saldaña-Nazario", "given-first", "Zoë Saldaña-Nazario", "zsaldananazario"),
    ("Ahmed bin Rashid", "given-first", "Ahmed bin Rashid", "abinrashid"),
    (
        "Wolfeschlegelsteinhausenbergerdorff, Hubert Blaine",
        "given-first",
        "Hubert Blaine Wolfeschlegelsteinhausenbergerdorff",
        "hwolfeschlegelsteinhausenber",
    ),  # 28 + room for a number
    ("42 Answers", "given-first", "42 Answers", "s4answers"),
]


@pytest.mark.parametrize("cell,order,written,username", NAMES, ids=[f"{c} ({o})" for c, o, _, _ in NAMES])
def test_names_as_schools_write_them(cell, order, written, username):
    from reconciler.config.classroom import Person
    from reconciler.roster import names

    parsed = names.parse(cell, order)
    assert parsed.display == written and "," not in parsed.display
    assert names.username_for(parsed) == username
    Person.model_validate({"username": username, "name": parsed.display})  # the file accepts both


def test_a_comma_export_imports_in_given_name_order():
    rows, _ = roster.read_rows(
        'Studente,Email\n"Núñez, José",j@example.org\nBianchi Marco,m@example.org\n'.encode(), "surname-first"
    )
    result = roster.plan_import(rows, {"version": 1, "name": "c"}, {}, SITE)
    assert [(p["username"], p["name"]) for p in result.added] == [
        ("jnunez", "José Núñez"),
        ("mbianchi", "Marco Bianchi"),
    ]
