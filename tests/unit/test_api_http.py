"""The teacher API over HTTP, without a hub: the service's own handlers, with the hub's login stubbed out.

Every error is problem details (RFC 9457, application/problem+json), a PATCH is a JSON merge patch (RFC 7396)
under its own media type, the metrics carry prometheus_client's content type, and the answers are what the
OpenAPI document says.  tests/hub/test_api.py drives the same handlers behind a real hub."""

import asyncio
import json
from http import HTTPStatus

import jsonschema
import pytest
from driverkit import FakeHost
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from reconciler.config.load import load_site
from reconciler.host.lock import LockBusy
from reconciler.service import app as service
from reconciler.service import openapi
from reconciler.service import teacher
from test_teacher import ROSTER  # the same classroom as the use cases' tests

PREFIX = "/services/classroom/"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def room(tmp_path, monkeypatch):
    """The classroom, and the hub's login stubbed: every request comes from the teacher tea."""
    (tmp_path / "classroom.yaml").write_text(ROSTER)
    site = load_site(None).model_copy(update={"state_dir": tmp_path / "state", "hub": None})
    monkeypatch.setattr(service.Teacher, "get_current_user", lambda self: {"name": "tea", "kind": "user"})
    return teacher.Room(site, tmp_path / "classroom.yaml", FakeHost(tmp_path / "host").files())


def call(room, method: str, path: str, body=None, headers: dict | None = None):
    """One request to the service on a port of its own; the answer whatever its status."""
    if isinstance(body, dict | list):
        body = json.dumps(body)

    async def go():
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(service.make_app(room, PREFIX))
        server.add_sockets(sockets)
        client = AsyncHTTPClient(force_instance=True)
        try:
            return await client.fetch(
                f"http://127.0.0.1:{sockets[0].getsockname()[1]}{PREFIX}{path}",
                method=method,
                body=body,
                headers=headers or {},
                raise_error=False,
                allow_nonstandard_methods=True,
                request_timeout=60,
            )
        finally:
            client.close()
            server.stop()
            await server.close_all_connections()

    return asyncio.run(go())


def problem(response, status: int) -> dict:
    """The answer is problem details with this status, valid against the OpenAPI document's Problem schema."""
    assert response.code == status, response.body
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.body)
    schemas = json.loads(
        json.dumps(openapi.document()["components"]["schemas"]).replace("/components/schemas/", "/$defs/")
    )
    jsonschema.Draft202012Validator({"$ref": "#/$defs/Problem", "$defs": schemas}).validate(body)
    assert body["type"] == "about:blank" and body["status"] == status
    assert body["title"] == HTTPStatus(status).phrase
    assert body["error"] == body["detail"]  # the extension member clients read before problem details
    return body


def test_an_error_is_a_problem_document(room):
    body = problem(call(room, "GET", "api/students/nobody"), 404)
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "nobody is not in the classroom",
        "problems": [],
        "error": "nobody is not in the classroom",
    }
    assert problem(call(room, "GET", "api/no-such-thing"), 404)["detail"].startswith("no such endpoint")
    assert problem(call(room, "PUT", "api/students", body={}), 405)["detail"] == "Method Not Allowed"
    assert (
        problem(call(room, "POST", "api/students", body="{not json"), 400)["detail"] == "the request body is not JSON"
    )
    teacher_itself = problem(call(room, "PATCH", "api/students/tea", body={"name": "X"}, headers=MERGE_PATCH), 409)
    assert "is a teacher" in teacher_itself["detail"]


def test_invalid_input_names_the_fields_in_problems(room):
    before = room.file.read_bytes()
    body = problem(
        call(room, "PATCH", "api/students/ann", body={"memory": "lots", "shoe_size": 44}, headers=MERGE_PATCH), 422
    )
    assert [p["path"] for p in body["problems"]] == ["shoe_size"]  # not editable: refused before any value
    body = problem(call(room, "POST", "api/students", body={"name": "New", "memory": "lots"}), 422)
    assert any("memory" in p["path"] for p in body["problems"]), body
    assert room.file.read_bytes() == before


def test_a_stale_version_is_412_with_the_files_version_in_etag(room):
    etag = room.etag()
    response = call(
        room, "PATCH", "api/students/ann", body={"name": "Ann"}, headers={**MERGE_PATCH, "If-Match": '"bogus"'}
    )
    body = problem(response, 412)
    assert response.headers["ETag"] == f'"{etag}"'
    assert "changed since you read it" in body["problems"][0]["message"]


def test_a_busy_lock_is_503_with_retry_after(room, monkeypatch):
    def busy(room):
        raise LockBusy("another pass holds the lock")

    monkeypatch.setattr(teacher, "pending_plan", busy)
    response = call(room, "GET", "api/plan")
    assert problem(response, 503)["detail"] == "another pass holds the lock"
    assert response.headers["Retry-After"] == "5"


def test_a_bug_is_a_500_problem_that_keeps_its_text_in_the_log(room, monkeypatch):
    def broken(room):
        raise RuntimeError("a secret path /etc/shadow")

    monkeypatch.setattr(teacher, "last_status", broken)
    response = call(room, "GET", "api/status")
    assert problem(response, 500)["detail"] == "Internal Server Error"
    assert b"shadow" not in response.body


def test_nobody_logged_in_is_a_403_problem(room, monkeypatch):
    monkeypatch.setattr(service.Teacher, "get_current_user", lambda self: None)
    body = problem(call(room, "GET", "api/students"), 403)
    assert "custom:classroom:manage" in body["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["application/merge-patch+json", "application/merge-patch+json; charset=utf-8", "application/json"],
)
def test_patch_is_a_merge_patch_and_null_removes_an_override(room, content_type):
    """application/json is taken as the same document as application/merge-patch+json."""
    response = call(
        room, "PATCH", "api/students/ann", body={"memory": None, "quota": "big"}, headers={"Content-Type": content_type}
    )
    assert response.code == 200, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == {"username": "ann", "name": "Ann Example", "quota": "big"}
    assert "1536Mi" not in room.file.read_text() and "# she runs big notebooks" not in room.file.read_text()
    assert response.headers["ETag"] == f'"{room.etag()}"'
    # null on a key with a default: back to it (the file says only what differs)
    again = call(room, "PATCH", "api/students/ann", body={"quota": None}, headers={"Content-Type": content_type})
    assert json.loads(again.body) == {"username": "ann", "name": "Ann Example"}


def test_a_required_field_cannot_be_removed(room):
    before = room.file.read_bytes()
    body = problem(call(room, "PATCH", "api/students/ann", body={"name": None}, headers=MERGE_PATCH), 422)
    assert body["problems"] == [{"path": "name", "message": "Field required"}]  # a name is required
    assert room.file.read_bytes() == before


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}],
    ids=["text", "form", "none"],
)
def test_patch_in_another_media_type_is_415(room, headers):
    before = room.file.read_bytes()
    response = call(room, "PATCH", "api/students/ann", body={"quota": "big"}, headers=headers)
    body = problem(response, 415)
    assert "application/merge-patch+json" in body["detail"]
    assert response.headers["Accept-Patch"] == "application/merge-patch+json, application/json"
    assert room.file.read_bytes() == before


def test_a_person_says_how_it_is_patched(room):
    response = call(room, "GET", "api/students/ann")
    assert response.code == 200, response.body
    assert response.headers["Accept-Patch"] == "application/merge-patch+json, application/json"


def test_the_metrics_carry_prometheus_clients_content_type(room):
    response = call(room, "GET", "api/metrics")
    assert response.code == 200, response.body
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    documented = openapi.document()["paths"]["/api/metrics"]["get"]["responses"]["200"]["content"]
    assert list(documented) == [CONTENT_TYPE_LATEST]


def test_the_openapi_document_says_the_same():
    document = openapi.document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert answer["content"] == {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, (path, method, status)
    patch = document["paths"]["/api/students/{username}"]["patch"]
    assert list(patch["requestBody"]["content"]) == ["application/merge-patch+json", "application/json"]
    assert "415" in patch["responses"]
    schema = document["components"]["schemas"]["Problem"]
    assert set(schema["required"]) == {"type", "title", "status", "detail", "problems"}


def test_the_assignments_are_what_the_openapi_document_says(room):
    """GET /api/assignments: each assignment's times (also as the file's zone words them) and a row per active
    student, valid against its schema."""
    room.file.write_text(
        ROSTER
        + "timezone: Europe/Rome\nassignments:\n"
        + "  - {name: hw1, source: hw1, release: 2026-12-14 09:00, due: 2026-12-21 23:59, extensions: {bob: 1d}}\n"
    )
    answer = call(room, "GET", "api/assignments")
    assert answer.code == 200, answer.body
    body = json.loads(answer.body)
    schemas = json.loads(
        json.dumps(openapi.document()["components"]["schemas"]).replace("/components/schemas/", "/$defs/")
    )
    jsonschema.Draft202012Validator({"$ref": "#/$defs/Assignments", "$defs": schemas}).validate(body)
    hw1 = body["assignments"][0]
    assert hw1["shown"]["due"] == "2026-12-21 23:59 CET" and hw1["extensions"] == {"bob": 86400}
    assert [row["username"] for row in hw1["students"]] == ["ann", "bob"]
    assert hw1["students"][1]["deadline_shown"] == "2026-12-22 23:59 CET"
    assert "/api/assignments" in openapi.document()["paths"]


HOMEWORK = (
    "timezone: Europe/Rome\nassignments:\n"
    "  - name: hw1   # the first homework\n"
    "    source: hw1\n"
    "    release: 2026-12-14 09:00\n"
    "    due: 2026-12-21 23:59   # before the holidays\n"
)


def test_an_assignment_is_extended_collected_now_and_its_feedback_returned_in_classroom_yaml(room):
    """PATCH /api/assignments/<name>: the page's three actions, each a merge patch written into the file with its
    comments kept, checked whole (an extension only for a student), journaled, If-Match honoured."""
    room.file.write_text(ROSTER + HOMEWORK)
    answer = call(room, "PATCH", "api/assignments/hw1", {"extensions": {"bob": "2d"}}, MERGE_PATCH)
    assert answer.code == 200, answer.body
    assert json.loads(answer.body)["extensions"] == {"bob": "2d"}
    text = room.file.read_text()
    assert "# the first homework" in text and "# before the holidays" in text and "bob: 2d" in text
    # "collect now" from a browser in another zone: written in the file's zone, to the minute
    answer = call(room, "PATCH", "api/assignments/hw1", {"due": "2026-12-18T10:30:45Z"}, MERGE_PATCH)
    assert answer.code == 200, answer.body
    assert "due: 2026-12-18 11:30" in room.file.read_text()
    etag = answer.headers["ETag"]
    answer = call(
        room, "PATCH", "api/assignments/hw1", {"feedback": "2026-12-19 09:00"}, {**MERGE_PATCH, "If-Match": etag}
    )
    assert answer.code == 200 and "feedback: 2026-12-19 09:00" in room.file.read_text()
    stale = call(room, "PATCH", "api/assignments/hw1", {"feedback": None}, {**MERGE_PATCH, "If-Match": etag})
    assert stale.code == 412  # the version it was made on is gone
    before = room.file.read_text()
    for body, code, said in (
        ({"extensions": {"tea": "1d"}}, 422, "'tea' is not a student of this classroom"),  # a teacher: no
        ({"due": "2026-12-01 09:00"}, 422, "hw1 is due before (or at) its release"),
        ({"source": "other"}, 422, "cannot be changed here"),
        ({"due": "soon"}, 422, "is not a date and time"),
    ):
        answer = call(room, "PATCH", "api/assignments/hw1", body, MERGE_PATCH)
        assert answer.code == code and said in answer.body.decode(), (body, answer.body)
    assert call(room, "PATCH", "api/assignments/nope", {"due": None}, MERGE_PATCH).code == 404
    assert room.file.read_text() == before  # nothing refused was written
    from reconciler.engine import journal

    entries = [e for e in journal.read(room.site.paths.journal) if e["kind"] == "roster"]
    assert [e["target"] for e in entries] == ["assignment hw1"] * 3 and entries[0]["actor"] == "tea"
    assert entries[0]["after"] == {"extensions": {"bob": "2d"}}


def test_assignment_edits_at_the_edges_are_refused_not_failed(room):
    """Times at the ends of the calendar, a time written with seconds, a username YAML 1.1 reads as a boolean:
    each a clear 422 or a clean write, never a 500 (and never a 500 after the file was written)."""
    room.file.write_text(
        ROSTER.replace("  - username: bob\n", "  - username: 'off'\n    name: Off Example\n  - username: bob\n")
        + HOMEWORK.replace("release: 2026-12-14 09:00", "release: 2026-12-14 09:00:00")
    )
    answer = call(room, "PATCH", "api/assignments/hw1", {"extensions": {"off": "1d"}}, MERGE_PATCH)
    assert answer.code == 200, answer.body  # written as 'off': a string for every YAML reader
    assert json.loads(answer.body)["release"] == "2026-12-14 09:00:00"
    far = call(room, "PATCH", "api/assignments/hw1", {"due": "0001-01-01T00:10:00+05:00"}, MERGE_PATCH)
    assert far.code == 422 and "out of range" in far.body.decode(), far.body
    late = call(room, "PATCH", "api/assignments/hw1", {"due": "9999-12-31 23:00"}, MERGE_PATCH)
    assert late.code == 422 and "out of range" in late.body.decode(), late.body
