"""The teacher API as a real JupyterHub service: real hub, proxy, PAM logins, OAuth and tokens.

One hub serves the module (starting one takes seconds); each test works on
its own students so the order of the tests does not matter.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from hostkit import host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready, tear_down, xsrf

from reconciler.engine import journal

pytestmark = pytest.mark.skipif(bool(host_ready() or hub_ready()), reason=str(host_ready() or hub_ready()))

SCOPE = "custom:classroom:manage"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


class Api:
    """The service as a script (token) or a browser (OAuth cookie + XSRF) sees it."""

    def __init__(self, hub, session, headers=None):
        self.base = f"{hub.url}/services/classroom"
        self.session, self.headers = session, headers or {}

    def __call__(self, method, path, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.session.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kwargs)


def token_for(hub, room, short, scopes=None):
    """A hub API token the person makes for themselves (the /hub/token page does the same)."""
    known = getattr(room, "first_passwords", {}).get(short)  # a printed slip has taken it out of the outbox
    session = hub.login(room.user(short), known or password(room, short))
    assert session is not None
    body = {"note": "test", **({"scopes": scopes} if scopes is not None else {})}
    response = session.post(
        f"{hub.url}/hub/api/users/{room.user(short)}/tokens", json=body, headers=xsrf(session), timeout=10
    )
    return response


@pytest.fixture(scope="module")
def served():
    room, hub = make_classroom(), None
    try:  # set-up inside the cleanup's reach
        add_hub(room)
        room.write(
            [{"username": "ann"}, {"username": "bob"}, {"username": "cat"}, {"username": "dot"}],
            admins=[{"username": "tea"}, {"username": "tia"}],
        )
        text = room.file.read_text()
        room.file.write_text("# the roster of our test class\n" + text.replace("students:", "students:  # keep sorted"))
        first = room.cli()
        assert first.returncode == 1, first.stdout + first.stderr  # the hub is not up yet: only its part fails
        hub = Hub(room)
        hub.start()
        response = token_for(hub, room, "tea", [SCOPE])
        assert response.status_code == 201, response.text
        teacher = Api(hub, requests.Session(), {"Authorization": f"token {response.json()['token']}"})
        room.teacher_password = password(room, "tea")  # before a test prints the slips that hold it
        room.first_passwords = {short: password(room, short) for short in ("ann", "bob", "cat", "dot", "tea", "tia")}
        yield room, hub, teacher
    finally:
        tear_down(hub, room)


def test_teacher_token_lists_everyone_with_usage(served):
    room, hub, api = served
    response = api("GET", "/api/students")
    assert response.status_code == 200, response.text
    body = response.json()
    people = {p["username"]: p for p in body["students"]}
    assert set(people) == {room.user(s) for s in ("tea", "tia", "ann", "bob", "cat", "dot")}
    ann = people[room.user("ann")]
    assert ann["role"] == "student" and ann["account"] == "enabled" and ann["mounted"] is True
    assert ann["disk_quota"] == 128 * 1024**2 and 0 < ann["disk_used"] < ann["disk_quota"]
    assert ann["memory_limit"] == 256 * 1024**2 and ann["server"] == "stopped"
    assert ann["credentials"] == "slip"  # no e-mail: the generated password waits for a printed slip
    assert body["hub"] == {"reachable": True, "error": None}


def test_students_and_anonymous_requests_are_refused(served):
    room, hub, api = served
    student = token_for(hub, room, "ann")  # a student's own token, default scopes
    assert student.status_code == 201
    as_student = Api(hub, requests.Session(), {"Authorization": f"token {student.json()['token']}"})
    for method, path in (
        ("GET", "/api/students"),
        ("GET", "/api/plan"),
        ("PATCH", f"/api/students/{room.user('bob')}"),
        ("POST", "/api/students"),
    ):
        assert as_student(method, path, json={}).status_code == 403
        anonymous = Api(hub, requests.Session())(method, path, json={}, allow_redirects=False)
        assert anonymous.status_code == 403, (method, path, anonymous.status_code)
    # a student cannot give themselves the scope either
    refused = token_for(hub, room, "ann", [SCOPE])
    assert refused.status_code in (400, 403) and SCOPE in refused.text, refused.text
    # and a student's browser, logged in to the hub, is turned away from the page
    browser = hub.login(room.user("ann"), password(room, "ann"))
    assert browser.get(f"{hub.url}/services/classroom/", timeout=30).status_code == 403


def test_teacher_changes_reach_the_file_with_comments_and_the_journal(served):
    room, hub, api = served
    ann = room.user("ann")
    changes = json.dumps({"memory": "512Mi", "disk": "192Mi"})
    response = api("PATCH", f"/api/students/{ann}", data=changes, headers=MERGE_PATCH)  # a JSON merge patch
    assert response.status_code == 200, response.text
    assert response.json()["memory"] == "512Mi"
    text = room.file.read_text()
    assert text.startswith("# the roster of our test class\n") and "students:  # keep sorted" in text
    written = next(p for p in yaml.safe_load(text)["students"] if p["username"] == ann)
    assert written["memory"] == "512Mi" and written["disk"] == "192Mi"
    entries = [e for e in journal.read(room.paths.journal) if e.get("actor") == room.user("tea")]
    assert entries[-1]["kind"] == "roster" and entries[-1]["target"] == ann
    assert entries[-1]["after"] == {"disk": "192Mi", "memory": "512Mi"}
    plan = api("GET", "/api/plan").json()
    assert any(a["kind"] == "volume" and a["target"] == ann for a in plan["actions"])
    # the daemon would converge; one pass here does the same
    assert room.cli().returncode == 0
    people = {p["username"]: p for p in api("GET", "/api/students").json()["students"]}
    assert people[ann]["disk_quota"] == 192 * 1024**2 and people[ann]["volume_size"] >= 192 * 1024**2


def test_add_disable_enable(served):
    room, hub, api = served
    added = api("POST", "/api/students", json={"name": "Émile Zola", "email": "emile@example.org", "quota": "default"})
    assert added.status_code == 201, added.text
    username = added.json()["username"]
    assert username == "ezola"  # made from the name, like import-csv
    again = api("POST", "/api/students", json={"username": username, "name": "Someone Else"})
    assert again.status_code == 409
    bob = room.user("bob")
    assert api("DELETE", f"/api/students/{bob}").json()["status"] == "disabled"
    assert room.cli().returncode == 0
    people = {p["username"]: p for p in api("GET", "/api/students").json()["students"]}
    assert people[bob]["account"] == "disabled" and people[bob]["status"] == "disabled"
    assert people[username]["account"] == "enabled"
    assert api("PATCH", f"/api/students/{bob}", json={"status": "active"}).status_code == 200
    assert room.cli().returncode == 0
    people = {p["username"]: p for p in api("GET", "/api/students").json()["students"]}
    assert people[bob]["account"] == "enabled"
    # leave the classroom as it was for the other tests (the host account stays: removal only disables)
    api("DELETE", f"/api/students/{username}")


@pytest.mark.parametrize(
    "method, path, body, where",
    [
        ("PATCH", "/api/students/{cat}", {"memory": "lots"}, "memory"),
        ("PATCH", "/api/students/{cat}", {"quota": "nonexistent"}, "quota"),
        ("PATCH", "/api/students/{cat}", {"username": "renamed"}, "username"),
        ("PATCH", "/api/students/{cat}", {"status": "purged"}, "status"),
        ("PATCH", "/api/students/{cat}", {"name": "Bad\x00Name"}, "name"),
        ("POST", "/api/students", {"name": "New Person", "shoe_size": 44}, "shoe_size"),
        ("POST", "/api/students", {"username": "Not Valid", "name": "X"}, "username"),
        ("POST", "/api/students", {"username": "root", "name": "Root"}, "username"),
        ("POST", "/api/students", {"name": "Big", "memory": "1Ti", "cpu": 1, "disk": "1Gi", "quota": "none"}, "quota"),
    ],
)
def test_invalid_input_is_422_with_the_field_and_the_file_is_untouched(served, method, path, body, where):
    room, hub, api = served
    before = room.file.read_bytes()
    response = api(method, path.format(cat=room.user("cat")), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"  # RFC 9457, the field in "problems"
    assert response.json()["status"] == 422 and response.json()["title"] == "Unprocessable Entity"
    assert any(where in p["path"] for p in response.json()["problems"]), response.json()
    assert room.file.read_bytes() == before


def test_not_json_and_unknown_people(served):
    room, hub, api = served
    cat = room.user("cat")
    assert api("PATCH", f"/api/students/{cat}", data=b"{not json", headers=MERGE_PATCH).status_code == 400
    for other in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        refused = api("PATCH", f"/api/students/{cat}", data=b'{"quota": "big"}', headers=other)
        assert refused.status_code == 415 and "merge-patch+json" in refused.json()["detail"], refused.text
        assert refused.headers["Accept-Patch"] == "application/merge-patch+json, application/json"
    assert api("PATCH", "/api/students/nobody", json={"memory": "1Gi"}).status_code == 404
    assert api("GET", "/api/students/nobody").status_code == 404
    assert api("POST", "/api/students/nobody/reset-password").status_code == 404
    missing = api("GET", "/api/no-such-thing")
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json()["detail"].startswith("no such endpoint") and missing.json()["type"] == "about:blank"
    teacher = room.user("tea")
    for method, path in (
        ("DELETE", f"/api/students/{teacher}"),
        ("PATCH", f"/api/students/{teacher}"),
        ("POST", f"/api/students/{teacher}/reset-password"),
    ):
        assert (
            api(method, path, json={"name": "X"} if method == "PATCH" else None).status_code == 409
        )  # teachers: file only


def test_import_csv_upload(served):
    room, hub, api = served
    csv = "Nome;Cognome;Email\nGiulia;Bianchi;giulia@example.org\nMarco;;marco@example.org\n"
    preview = api("POST", "/api/import?dry_run=true", data=csv.encode(), headers={"Content-Type": "text/csv"})
    assert preview.status_code == 200 and [a["username"] for a in preview.json()["added"]] == ["gbianchi", "marco"]
    assert "gbianchi" not in room.file.read_text()
    bad = api("POST", "/api/import", data=b"just,some\n1,2\n", headers={"Content-Type": "text/csv"})
    assert bad.status_code == 422 and "no name column" in bad.json()["problems"][0]["message"]
    done = api("POST", "/api/import", files={"file": ("class.csv", csv.encode(), "text/csv")})
    assert done.status_code == 200, done.text
    assert {"gbianchi", "marco"} <= {p["username"] for p in yaml.safe_load(room.file.read_text())["students"]}
    for username in ("gbianchi", "marco"):
        api("DELETE", f"/api/students/{username}")
    # an Italian export: COGNOME NOME, and a "Surname, Given" row
    export = 'Studente\nVERDI Luca\n"Núñez, José"\n'
    shown = api(
        "POST",
        "/api/import?dry_run=true&name_order=surname-first",
        data=export.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert [(a["username"], a["name"]) for a in shown.json()["added"]] == [
        ("lverdi", "Luca VERDI"),
        ("jnunez", "José Núñez"),
    ]
    wrong = api(
        "POST",
        "/api/import?dry_run=true&name_order=backwards",
        data=export.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert wrong.status_code == 422 and wrong.json()["problems"][0]["path"] == "name_order"


def test_reset_password_and_slips(served):
    room, hub, api = served
    dot = room.user("dot")
    api("POST", "/api/slips")  # hand out whatever waits, so only the reset's password is left
    response = api("POST", f"/api/students/{dot}/reset-password")
    assert response.status_code == 200, response.text
    assert response.json() == {"username": dot, "delivery": "slip", "sent": False, "error": None}
    secret = password(room, "dot")
    assert secret not in response.text and secret not in room.paths.journal.read_text()
    slips = api("POST", "/api/slips")
    assert slips.status_code == 200 and slips.headers["Content-Type"].startswith("text/html")
    assert secret in slips.text and dot in slips.text
    deadline = time.monotonic() + 10  # handed out once the page was sent, just after the answer
    while (room.paths.outbox / f"{dot}.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (room.paths.outbox / f"{dot}.json").exists()
    assert hub.login(dot, secret) is not None
    entries = [e for e in journal.read(room.paths.journal) if e.get("actor") == room.user("tea")]
    assert any(e["kind"] == "password" and e["target"] == dot and e["reason"] == "password reset" for e in entries)


def test_a_teacher_never_reaches_another_teachers_credentials_or_files(served):
    """The reported takeover: one teacher's `slips?all=true` printed another teacher's first password and took it
    out of the outbox.  Every path that names a person, with a second teacher as the target."""
    room, hub, api = served
    tia, dot = room.user("tia"), room.user("dot")
    assert api("POST", f"/api/students/{dot}/reset-password").status_code == 200  # one slip that is the teacher's
    secret = password(room, "dot")
    slips = api("POST", "/api/slips?all=true")
    assert slips.status_code == 200 and secret in slips.text
    assert room.first_passwords["tia"] not in slips.text and tia not in slips.text
    deadline = time.monotonic() + 10  # the hand-out runs just after the answer: once dot's slip is handed out...
    while (room.paths.outbox / f"{dot}.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (room.paths.outbox / f"{dot}.json").exists()
    assert password(room, "tia") == room.first_passwords["tia"]  # ...tia's password still waits for its owner
    for method, path in (
        ("POST", f"/api/students/{tia}/reset-password"),
        ("GET", f"/api/students/{tia}/export"),
        ("PATCH", f"/api/students/{tia}"),
        ("DELETE", f"/api/students/{tia}"),
    ):
        response = api(method, path, json={"email": "mine@example.org"} if method == "PATCH" else None)
        assert response.status_code == 409 and "is a teacher" in response.json()["detail"], (method, response.text)
    assert password(room, "tia") == room.first_passwords["tia"]
    assert hub.login(tia, room.first_passwords["tia"]) is not None  # her account is still hers


def test_writes_are_a_compare_and_swap_on_the_version_read(served):
    room, hub, api = served
    cat = room.user("cat")
    listing = api("GET", "/api/students")
    version = listing.headers["ETag"]
    assert version == f'"{listing.json()["etag"]}"'
    changed = api("PATCH", f"/api/students/{cat}", json={"name": "Cat One"}, headers={"If-Match": version})
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] != version
    before = room.file.read_bytes()
    for stale in (version, '"bogus"', "W/" + changed.headers["ETag"], "garbage"):
        refused = api("PATCH", f"/api/students/{cat}", json={"name": "Cat Two"}, headers={"If-Match": stale})
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["ETag"] == changed.headers["ETag"] and "changed since you read it" in refused.text
    assert room.file.read_bytes() == before
    # twenty clients with the same version: one is written, the others are told to read again
    from concurrent.futures import ThreadPoolExecutor

    def patch(i):  # a client of its own each (a requests session is not for threads)
        return Api(hub, requests.Session(), api.headers)(
            "PATCH", f"/api/students/{cat}", json={"name": f"Cat {i}"}, headers={"If-Match": changed.headers["ETag"]}
        ).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(patch, range(20)))
    assert codes.count(200) == 1 and codes.count(412) == 19, codes
    assert api("PATCH", f"/api/students/{cat}", json={"name": "Cat"}, headers={"If-Match": "*"}).status_code == 200


def unpack(archive: bytes) -> dict:
    import io
    import tarfile

    raw = subprocess.run(["zstd", "-dcq"], input=archive, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar if m.isreg()}


def test_students_download_their_own_files_and_teachers_a_students(served):
    room, hub, api = served
    bob, tea = room.user("bob"), room.user("tea")
    (room.paths.home(bob) / "homework.py").write_text("print(42)\n")
    browser = hub.login(bob, room.first_passwords["bob"])
    assert browser is not None
    own = browser.get(f"{hub.url}/services/classroom/me/export", timeout=120)
    assert own.status_code == 200, own.text
    assert own.headers["Content-Type"] == "application/zstd"
    assert own.headers["Content-Disposition"].startswith(f'attachment; filename="{bob}-')
    assert unpack(own.content)["homework.py"] == b"print(42)\n"
    # a student reaches nothing else of the service: the teacher's download of anyone is refused
    for other in (room.user("ann"), bob):
        refused = browser.get(f"{hub.url}/services/classroom/api/students/{other}/export", timeout=30)
        assert refused.status_code == 403
    assert browser.get(f"{hub.url}/services/classroom/", timeout=30).status_code == 403

    by_teacher = api("GET", f"/api/students/{bob}/export")
    assert by_teacher.status_code == 200 and by_teacher.content == own.content  # one export in ten minutes
    assert api("GET", f"/api/students/{tea}/export").status_code == 409  # a teacher's files: not through the API
    assert api("GET", "/api/students/nobody/export").status_code == 404
    entries = [e for e in journal.read(room.paths.journal) if e.get("kind") == "archive" and e["target"] == bob]
    assert [e["actor"] for e in entries] == [bob, tea]  # who read whose files: every download
    assert not list(room.paths.home(bob).glob("*.tar.zst"))  # nothing left in the home itself


def test_browser_login_needs_xsrf_for_writes(served):
    room, hub, api = served
    browser = hub.login(room.user("tea"), room.teacher_password)
    page = browser.get(f"{hub.url}/services/classroom/", timeout=30)
    assert page.status_code == 200 and room.user("tea") in page.text
    token = page.text.split('name="xsrf" content="')[1].split('"')[0]
    as_browser = Api(hub, browser)
    assert as_browser("GET", "/api/students").status_code == 200
    cat = room.user("cat")
    assert as_browser("PATCH", f"/api/students/{cat}", json={"cpu": 0.5}).status_code == 403  # no XSRF token
    ok = as_browser("PATCH", f"/api/students/{cat}", json={"cpu": 0.5}, headers={"X-XSRFToken": token})
    assert ok.status_code == 200, ok.text


def test_openapi_is_served_and_describes_every_route(served):
    room, hub, api = served
    document = requests.get(f"{hub.url}/services/classroom/api/openapi.json", timeout=10).json()
    assert document["openapi"] == "3.1.0" and document["servers"] == [{"url": "/services/classroom"}]
    assert set(document["paths"]) == {
        "/api/students",
        "/api/students/{username}",
        "/api/students/{username}/reset-password",
        "/api/students/{username}/export",
        "/api/import",
        "/api/plan",
        "/api/status",
        "/api/assignments",
        "/api/assignments/{name}",
        "/api/slips",
        "/api/username",
        "/api/events",
        "/api/metrics",
    }


def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_schema(served, tmp_path):
    """Property-based: generated valid and invalid requests for every operation, with a teacher's token."""
    room, hub, api = served
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:  # one daemon pass, so that GET /api/status has the last pass to describe
        deadline = time.monotonic() + 120
        while not (room.paths.state / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert api("GET", "/api/status").json()["result"] == "converged"
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a test dependency (pip install -e '.[test]')"
    result = subprocess.run(
        [
            st,
            "run",
            f"{hub.url}/services/classroom/api/openapi.json",
            "--header",
            api.headers["Authorization"].replace("token ", "Authorization: token ", 1),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance,negative_data_rejection",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--report",
            "junit",
            "--exclude-path",
            "/api/events",  # a stream that never ends by design: tested in test_teacher_page.py
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert room.file.exists()


def test_metrics_for_prometheus_from_the_last_pass(served):
    """After the daemon's pass above: Prometheus' own parser reads the figures; a student's token gets 403."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.parser import text_string_to_metric_families

    room, hub, api = served
    response = api("GET", "/api/metrics")
    assert response.status_code == 200 and response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    found = {family.name: family for family in text_string_to_metric_families(response.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in found.values() for s in f.samples}
    assert samples[("classroom_people", (("role", "teacher"), ("status", "active")))] == 2
    people = json.loads(room.paths.snapshot.read_text())["people"]  # what the daemon's pass saw
    assert sum(v for (name, _), v in samples.items() if name == "classroom_people") == len(people)
    assert samples[("classroom_last_pass_result", (("result", "converged"),))] == 1
    assert samples[("classroom_volume_size_bytes", (("username", room.user("tea")),))] > 0
    assert any(name == "classroom_disk_free_bytes" for name, _ in samples)
    student = token_for(hub, room, "ann")
    assert (
        requests.get(
            f"{hub.url}/services/classroom/api/metrics",
            timeout=10,
            headers={"Authorization": f"token {student.json()['token']}"},
        ).status_code
        == 403
    )
    # a scraper's token: the read-only metrics scope reads the figures and nothing else of the service
    made = token_for(hub, room, "tea", ["custom:classroom:metrics"])
    assert made.status_code == 201, made.text
    scraper = Api(hub, requests.Session(), {"Authorization": f"token {made.json()['token']}"})
    assert scraper("GET", "/api/metrics").status_code == 200
    before = room.file.read_bytes()
    for method, path in (
        ("GET", "/api/students"),
        ("POST", "/api/slips?all=true"),
        ("GET", "/api/plan"),
        ("PATCH", f"/api/students/{room.user('cat')}"),
        ("POST", "/api/students"),
    ):
        assert scraper(method, path, json={"name": "X"}).status_code == 403, (method, path)
    assert room.file.read_bytes() == before
