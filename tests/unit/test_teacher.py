"""The teacher API's core without HTTP: roster edits, the git-managed refusal, usage from cgroups, OpenAPI."""

import pytest
import yaml

from driverkit import FakeHost

from reconciler.config.classroom import Person
from reconciler.config.load import InvalidFile, load_site
from reconciler.core.actual import Container
from reconciler.engine import journal
from reconciler.host import containers
from reconciler.roster import edit as rosteredit
from reconciler.service import openapi
from reconciler.service import teacher

ROSTER = """\
# Python 101, spring term
version: 1
name: py101
quotas:
  default: {memory: 1Gi, cpu: 1, disk: 1Gi}   # most students
  big: {memory: 2Gi, cpu: 2, disk: 5Gi}
admins:
  - username: tea
    name: Tea Cher
students:
  # first row
  - username: ann
    name: Ann Example
    memory: 1536Mi   # she runs big notebooks
  - username: bob
    name: Bob Example
"""


@pytest.fixture
def room(tmp_path):
    (tmp_path / "classroom.yaml").write_text(ROSTER)
    site = load_site(None).model_copy(update={"state_dir": tmp_path / "state", "hub": None})
    return teacher.Room(site, tmp_path / "classroom.yaml", FakeHost(tmp_path / "host").files())


def hosted(tmp_path, fake: FakeHost):
    """The room with the host made of ``fake``'s files (accounts, groups), to plan edits against."""
    site = load_site(None).model_copy(
        update={"state_dir": tmp_path / "state", "homes_dir": fake.paths.homes, "hub": None}
    )
    return teacher.Room(site, tmp_path / "classroom.yaml", fake.files())


def test_a_name_taken_by_a_system_group_is_refused(tmp_path):
    (tmp_path / "classroom.yaml").write_text(ROSTER)
    room = hosted(tmp_path, FakeHost(tmp_path / "host").add_group("ssl-cert", 110))
    with pytest.raises(rosteredit.Rejected) as refused:
        teacher.add_student(room, "tea", {"username": "ssl-cert", "name": "Ssl Cert"})
    assert refused.value.status == 422 and "taken by another account or group" in str(refused.value)
    result = teacher.import_csv(
        room, "tea", b"name,username\nSsl Cert,ssl-cert\n", skip_invalid=True, dry_run=True
    ).result
    assert result["added"] == [] and "already taken" in result["skipped"][0]
    assert room.file.read_text() == ROSTER


def test_an_edit_the_next_pass_would_refuse_is_not_written(tmp_path):
    """Disabling people one request at a time cannot walk past the mass-disable guard: the plan says no first."""
    (tmp_path / "classroom.yaml").write_text(
        ROSTER.replace(
            "  - username: bob\n    name: Bob Example\n",
            "  - username: bob\n    name: Bob Example\n  - {username: cat, name: Cat Example}\n",
        )
    )
    fake = FakeHost(tmp_path / "host", classroom="py101")
    for uid, name in enumerate(("tea", "ann", "bob", "cat"), start=1001):
        fake.person(name, uid)
    room = hosted(tmp_path, fake)
    assert teacher.disable_student(room, "tea", "bob").result["status"] == "disabled"  # 1 of 4: allowed
    before = room.file.read_text()
    with pytest.raises(rosteredit.Rejected) as refused:
        teacher.disable_student(room, "tea", "cat")
    assert refused.value.status == 409 and "would disable 2 of 4 active people" in str(refused.value)
    assert room.file.read_text() == before


def test_merge_patch_keeps_comments_and_null_removes_an_override(room):
    after = teacher.change_student(room, "tea", "ann", {"memory": None, "quota": "big"}).result
    assert after == {"username": "ann", "name": "Ann Example", "quota": "big"}
    text = room.file.read_text()
    assert "# Python 101, spring term" in text and "# most students" in text and "# first row" in text
    assert "1536Mi" not in text
    assert "  default: {memory: 1Gi, cpu: 1, disk: 1Gi}" in text  # the flow-style quotas stay as they were
    entry = journal.read(room.site.paths.journal)[-1]
    assert entry["actor"] == "tea" and entry["kind"] == "roster" and entry["target"] == "ann"
    assert entry["before"] == {"memory": "1536Mi", "quota": None} and entry["after"] == {"memory": None, "quota": "big"}


def test_delete_disables_and_never_purges(room):
    assert teacher.disable_student(room, "tea", "bob").result["status"] == "disabled"
    with pytest.raises(rosteredit.Rejected) as refused:
        teacher.change_student(room, "tea", "bob", {"status": "purged"})
    assert refused.value.problems[0]["path"] == "status"
    assert yaml.safe_load(room.file.read_text())["students"][1]["status"] == "disabled"


def test_teachers_are_read_only_here(room):
    for attempt in (
        lambda: teacher.disable_student(room, "tea", "tea"),
        lambda: teacher.change_student(room, "ann", "tea", {"email": "mine@example.org"}),
        lambda: teacher.reset_and_deliver(room, "ann", "tea"),
    ):
        with pytest.raises(teacher.Refused) as refused:
            attempt()
        assert refused.value.status == 409 and "teacher" in refused.value.message
    assert room.file.read_text() == ROSTER


def test_yaml_1_1_lookalikes_stay_strings(room):
    entry = teacher.add_student(room, "tea", {"username": "off", "name": "No", "disk": "0755"}).result
    assert entry["username"] == "off"
    assert {"username": "off", "name": "No", "disk": "0755"}.items() <= yaml.safe_load(room.file.read_text())[
        "students"
    ][-1].items()
    teacher.change_student(room, "tea", "off", {"name": "Yes"})
    assert yaml.safe_load(room.file.read_text())["students"][-1]["name"] == "Yes"


def test_overrides_are_shown_as_written(room):
    listing_entry = teacher._overrides({"username": "ann", "memory": "1536Mi", "cpu": "500m"})
    assert listing_entry == {"memory": "1536Mi", "cpu": "500m", "disk": None}


def test_invalid_changes_name_the_field_and_leave_the_file_alone(room):
    for changes, path in (
        ({"memory": "a lot"}, "memory"),
        ({"quota": "huge"}, "students[0].quota"),
        ({"username": "ann2"}, "username"),
        ({"cpu": "nan"}, "cpu"),
    ):
        with pytest.raises(rosteredit.Rejected) as refused:
            teacher.change_student(room, "tea", "ann", changes)
        assert any(p["path"] == path for p in refused.value.problems), refused.value.problems
    assert room.file.read_text() == ROSTER
    assert not journal.read(room.site.paths.journal)  # nothing done, nothing recorded


def test_adding_makes_a_username_and_validates_the_whole_file(room):
    entry = teacher.add_student(room, "tea", {"name": "José Núñez", "email": "jose@example.org"}).result
    assert entry == {"username": "jnunez", "name": "José Núñez", "email": "jose@example.org"}
    with pytest.raises(teacher.Refused) as again:
        teacher.add_student(room, "tea", {"username": "jnunez", "name": "Other"})
    assert again.value.status == 409
    with pytest.raises(rosteredit.Rejected) as reserved:
        teacher.add_student(room, "tea", {"username": "root", "name": "Root"})
    assert reserved.value.problems[0]["path"] == "username"
    students = yaml.safe_load(room.file.read_text())["students"]
    assert [s["username"] for s in students] == ["ann", "bob", "jnunez"]
    typed = teacher.add_student(room, "tea", {"name": "Bianchi, Marco"}).result  # as the school's list has it
    assert typed == {"username": "mbianchi", "name": "Marco Bianchi"}


def test_a_roster_kept_in_git_refuses_every_write(room):
    room = teacher.Room(room.site.model_copy(update={"roster_in_git": True}), room.file)
    attempts = [
        lambda: teacher.add_student(room, "tea", {"name": "New One"}),
        lambda: teacher.change_student(room, "tea", "ann", {"quota": "big"}),
        lambda: teacher.disable_student(room, "tea", "bob"),
        lambda: teacher.import_csv(room, "tea", b"name\nNew One\n", skip_invalid=False, dry_run=False),
    ]
    for attempt in attempts:
        with pytest.raises(teacher.Refused) as refused:
            attempt()
        assert refused.value.status == 409 and "git" in refused.value.message
    assert room.file.read_text() == ROSTER
    preview = teacher.import_csv(room, "tea", b"name\nNew One\n", skip_invalid=False, dry_run=True).result
    assert [p["username"] for p in preview["added"]] == ["none"]  # previewing still works


def test_the_teachers_are_the_active_admins_of_the_file_as_it_is_now(room):
    assert room.teachers() == {"tea"}
    room.file.write_text(ROSTER.replace("version: 1", "version: 7"))
    assert room.teachers() == {"tea"}  # invalid now: the last valid version stays in force
    room.file.write_text(ROSTER.replace("admins:\n  - username: tea\n    name: Tea Cher\n", "admins: []\n"))
    assert room.teachers() == frozenset()  # removed from the file: no more access
    never_valid = teacher.Room(room.site, room.file.with_name("other.yaml"))
    never_valid.file.write_text("version: 7\n")
    assert never_valid.teachers() is None  # never valid: the hub's scope alone decides


@pytest.mark.parametrize("layout", ["v1", "v2-cgroupfs", "v2-systemd"])
def test_memory_use_comes_from_each_servers_cgroup(tmp_path, layout):
    cid = "c0ffee" * 10
    where, current, stat = {
        "v1": (tmp_path / "memory" / "docker" / cid, "memory.usage_in_bytes", "total_inactive_file"),
        "v2-cgroupfs": (tmp_path / "docker" / cid, "memory.current", "inactive_file"),
        "v2-systemd": (tmp_path / "system.slice" / f"docker-{cid}.scope", "memory.current", "inactive_file"),
    }[layout]
    where.mkdir(parents=True)
    (where / current).write_text("157286400\n")
    (where / "memory.stat").write_text(f"cache 1\n{stat} 52428800\nrss 2\n")
    found = {
        "ann": Container("ann", cid, True, 0),
        "bob": Container("bob", "dead" * 16, False, 0),
        "cat": Container("cat", "gone" * 16, True, 0),
    }
    assert containers.memory_usage(found, root=tmp_path) == {"ann": 100 * 1024**2}  # as docker stats counts it


def test_openapi_student_fields_come_from_the_file_model():
    document = openapi.document("/services/classroom/")
    schemas = document["components"]["schemas"]
    assert set(schemas["NewStudent"]["properties"]) == set(Person.model_fields)
    assert set(schemas["StudentChanges"]["properties"]) == set(rosteredit.EDITABLE)
    assert set(rosteredit.EDITABLE) == set(Person.model_fields) - {"username"}
    assert document["servers"] == [{"url": "/services/classroom"}]


def test_the_file_says_only_what_differs_from_the_defaults(room):
    entry = teacher.add_student(room, "tea", {"name": "Nina Neri", "quota": "default", "status": "active"}).result
    assert entry == {"username": "nneri", "name": "Nina Neri"}  # the page's form sends both; neither is written
    text = room.file.read_text()
    assert "quota: default" not in text and "status: active" not in text
    teacher.change_student(room, "tea", "nneri", {"quota": "big"})
    assert "quota: big" in room.file.read_text()
    teacher.change_student(room, "tea", "nneri", {"quota": "default"})
    students = {s["username"]: s for s in yaml.safe_load(room.file.read_text())["students"]}
    assert students["nneri"] == {"username": "nneri", "name": "Nina Neri"}  # back to the default: the key goes


def test_the_username_is_shown_before_saving(room):
    assert teacher.preview_username(room, "José Núñez") == {"username": "jnunez", "name": "José Núñez"}
    assert teacher.preview_username(room, "Example, Ann") == {"username": "aexample", "name": "Ann Example"}
    teacher.add_student(room, "tea", {"name": "José Núñez"})
    assert teacher.preview_username(room, "Josefa Nunez")["username"] == "jnunez2"  # the file's names are taken
    with pytest.raises(rosteredit.Rejected):
        teacher.preview_username(room, "   ")
    assert "jnunez2" not in room.file.read_text()  # nothing written


def test_while_the_file_is_invalid_the_page_shows_the_class_in_force_and_why(room, tmp_path):
    from reconciler.service.teacher import _PARSED

    good = teacher.students(room)
    assert good["invalid"] is None
    room.file.write_text(ROSTER.replace("name: Bob Example", "name: Bob Example\n    quota: nonexistent"))
    shown = teacher.students(room)  # the version this service saw last
    assert [p["username"] for p in shown["students"]] == ["tea", "ann", "bob"] and shown["classroom"] == "py101"
    (problem,) = shown["invalid"]["problems"]
    assert "classroom.yaml:" in problem and "nonexistent" in problem  # file:line and the reason
    assert shown["invalid"]["changed"].startswith("changed on this server at")
    with pytest.raises(InvalidFile):  # the API answers 409 with it: writes wait until the file is fixed
        teacher.add_student(room, "tea", {"name": "New One"})

    _PARSED.clear()  # a service started while the file was broken: the daemon's copy of the roster in force
    with pytest.raises(InvalidFile):
        teacher.students(room)  # no copy yet: nothing to show but the error
    room.site.paths.in_force.parent.mkdir(parents=True, exist_ok=True)
    room.site.paths.in_force.write_text(ROSTER)
    assert [p["username"] for p in teacher.students(room)["students"]] == ["tea", "ann", "bob"]
