"""Credential delivery against a real SMTP server (aiosmtpd on loopback), slips, password resets."""

import email
import email.policy
import json
import socket
import stat
import subprocess
import sys
import time

import pamela
import pytest
import yaml
from aiosmtpd.controller import Controller

from hostkit import host_ready

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default))
        )
        return "250 OK"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mailroom(classroom):
    """The classroom with a delivery section pointing at a port where a test SMTP server may listen."""
    room = classroom
    port = free_port()
    site = yaml.safe_load(room.site.read_text())
    site["delivery"] = {
        "hub_url": "https://jupyter.school.example",
        "retry_base": 0,
        "language": "en",
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "sender": "Classroom <noreply@school.example>",
            "timeout": 5,
        },
    }
    room.site.write_text(yaml.safe_dump(site))
    room.write(
        [
            {"username": "ann", "email": ["ann@example.org", "parent@example.org"]},
            {"username": "bob", "email": "bob@example.org"},
            {"username": "cat"},
        ]
    )  # no e-mail: a printed slip
    out = room.cli()
    assert out.returncode == 0, out.stderr
    passwords = {p.stem: json.loads(p.read_text())["password"] for p in room.paths.outbox.glob("*.json")}
    return room, port, passwords


def serve(port):
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def send(room, port):
    """`reconcile credentials send` with the test SMTP server up for it: the command's result and what arrived."""
    controller = serve(port)
    try:
        out = room.cli("credentials", "send")
    finally:
        controller.stop()
    return out, controller.handler.messages


def test_mail_has_both_parts_goes_to_every_address_and_leaves_no_plaintext(mailroom):
    room, port, passwords = mailroom
    out, arrived = send(room, port)
    assert out.returncode == 0, out.stderr
    messages = {tuple(sorted(rcpt)): msg for rcpt, msg in arrived}
    assert set(messages) == {("ann@example.org", "parent@example.org"), ("bob@example.org",)}
    ann = room.user("ann")
    msg = messages[("ann@example.org", "parent@example.org")]
    assert msg["To"] == "ann@example.org, parent@example.org"
    assert msg["From"] == "Classroom <noreply@school.example>"
    assert room.name in msg["Subject"]
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert passwords[ann] in body and ann in body and "https://jupyter.school.example" in body
    # the plaintext is gone for mailed people; cat (no e-mail) still waits for a slip
    assert sorted(p.stem for p in room.paths.outbox.glob("*.json")) == [room.user("cat")]
    status = room.cli("status", "--json").stdout
    everything = status + out.stdout + out.stderr + room.paths.journal.read_text()
    for secret in passwords.values():
        assert secret not in everything
    rows = {r["username"]: r["credentials"] for r in json.loads(status)["people"]}
    assert rows[ann] is None and rows[room.user("cat")] == "slip"


def test_server_down_keeps_the_item_and_a_later_run_delivers(mailroom):
    room, port, passwords = mailroom
    down = room.cli("credentials", "send")  # nothing listens on the port yet
    assert down.returncode == 1 and "will retry" in down.stderr
    item = json.loads((room.paths.outbox / f"{room.user('bob')}.json").read_text())
    assert item["attempts"] == 1 and "ConnectionRefusedError" in item["last_error"]
    assert item["password"] == passwords[room.user("bob")]
    rows = {r["username"]: r["credentials"] for r in json.loads(room.cli("status", "--json").stdout)["people"]}
    assert rows[room.user("bob")].startswith("failed (1x)")

    again, arrived = send(room, port)
    assert again.returncode == 0, again.stderr
    assert len(arrived) == 2
    bodies = "".join(m.get_body(("plain",)).get_content() for _, m in arrived)
    assert passwords[room.user("bob")] in bodies and passwords[room.user("ann")] in bodies


def test_backoff_waits_before_retrying(mailroom):
    room, port, _ = mailroom
    site = yaml.safe_load(room.site.read_text())
    site["delivery"]["retry_base"] = 3600
    room.site.write_text(yaml.safe_dump(site))
    assert room.cli("credentials", "send").returncode == 1
    out, arrived = send(room, port)
    assert out.returncode == 0
    assert arrived == []  # not due for an hour: nothing sent, nothing lost
    assert len(list(room.paths.outbox.glob("*.json"))) == 3


def test_slips_for_people_without_email(mailroom):
    room, port, passwords = mailroom
    slips = room.root / "slips.html"
    out = room.cli("credentials", "slips", "--out", str(slips))
    assert out.returncode == 0 and "1 slip(s)" in out.stdout
    html = slips.read_text()
    cat = room.user("cat")
    assert cat in html and passwords[cat] in html and "https://jupyter.school.example" in html and "Cat" in html
    assert passwords[room.user("ann")] not in html
    assert stat.S_IMODE(slips.stat().st_mode) == 0o600
    assert not (room.paths.outbox / f"{cat}.json").exists()
    assert (room.paths.outbox / f"{room.user('ann')}.json").exists()


def test_reset_password_sets_a_new_one_and_mails_it(mailroom):
    room, port, passwords = mailroom
    bob = room.user("bob")
    controller = serve(port)
    try:
        assert room.cli("credentials", "send").returncode == 0
        controller.handler.messages.clear()
        out = room.cli("reset-password", bob)
    finally:
        controller.stop()
    assert out.returncode == 0, out.stderr
    ((rcpt, msg),) = controller.handler.messages
    assert rcpt == ["bob@example.org"] and "new password" in msg["Subject"]
    new = msg.get_body(("plain",)).get_content().split("Password:")[1].split()[0]
    assert new != passwords[bob]
    pamela.authenticate(bob, new, service="login", resetcred=0)
    with pytest.raises(pamela.PAMError):
        pamela.authenticate(bob, passwords[bob], service="login", resetcred=0)
    journal = room.paths.journal.read_text()
    assert '"reason": "password reset"' in journal and new not in journal


def test_italian_and_a_school_template(mailroom):
    room, port, passwords = mailroom
    templates = room.root / "templates"
    templates.mkdir()
    (templates / "credentials.it.txt.j2").write_text(
        "Subject: Benvenuto {{ name }}\n\nUtente {{ username }} / password {{ password }} / {{ hub_url }}\n"
    )
    site = yaml.safe_load(room.site.read_text())
    site["delivery"].update({"language": "it", "templates_dir": str(templates)})
    room.site.write_text(yaml.safe_dump(site))
    out, arrived = send(room, port)
    assert out.returncode == 0
    by_to = {m["To"]: m for _, m in arrived}
    msg = by_to["bob@example.org"]
    assert msg["Subject"] == "Benvenuto Bob"
    assert passwords[room.user("bob")] in msg.get_body(("plain",)).get_content()
    assert "Ciao Bob" in msg.get_body(("html",)).get_content()  # the packaged Italian HTML part


def test_the_daemon_delivers_after_a_pass(mailroom):
    room, port, passwords = mailroom
    site = yaml.safe_load(room.site.read_text())
    site["resync_interval"] = 1
    room.site.write_text(yaml.safe_dump(site))
    controller = serve(port)
    log = open(room.root / "watch.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(controller.handler.messages) < 2:
            time.sleep(0.2)
        assert len(controller.handler.messages) == 2
        status = {"credentials": "not written yet"}
        while time.monotonic() < deadline:
            if not (room.paths.state / "status.json").exists():  # the mail goes out before the pass is recorded
                time.sleep(0.2)
                continue
            status = json.loads((room.paths.state / "status.json").read_text())
            if status["credentials"].get("waiting") == [room.user("cat")] and not status["credentials"]["failed"]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"status never showed only cat waiting: {status['credentials']}")
        assert sorted(p.stem for p in room.paths.outbox.glob("*.json")) == [room.user("cat")]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        controller.stop()
    assert passwords[room.user("ann")] not in (room.root / "watch.log").read_text()


def test_starttls_with_login_from_the_secrets_file(mailroom, tmp_path):
    """STARTTLS to a server with its own CA, and AUTH with the login from a 0600 secrets file."""
    import ssl

    from aiosmtpd.smtp import AuthResult

    room, port, passwords = mailroom
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == b"mailer" and auth_data.password == b"s3cret-smtp")

    secrets = tmp_path / "smtp.yaml"
    secrets.write_text("username: mailer\npassword: s3cret-smtp\n")
    secrets.chmod(0o600)
    site = yaml.safe_load(room.site.read_text())
    site["delivery"]["smtp"].update({"security": "starttls", "secrets_file": str(secrets), "ca_file": str(cert)})
    room.site.write_text(yaml.safe_dump(site))
    controller = Controller(
        Inbox(),
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    try:
        out = room.cli("credentials", "send")
    finally:
        controller.stop()
    assert out.returncode == 0, out.stderr
    assert logins == [(b"mailer", b"s3cret-smtp")]
    assert len(controller.handler.messages) == 2
    assert "s3cret-smtp" not in out.stdout + out.stderr + room.paths.journal.read_text()


def test_a_disabled_persons_password_is_neither_sent_nor_printed(mailroom):
    room, port, passwords = mailroom
    ann, cat = room.user("ann"), room.user("cat")
    room.write(
        [
            {"username": "ann", "email": ["ann@example.org", "parent@example.org"], "status": "disabled"},
            {"username": "bob", "email": "bob@example.org"},
            {"username": "cat", "status": "disabled"},
        ]
    )
    assert room.cli("--allow-mass-disable").returncode == 0  # two of three: past the guard, knowingly
    status = room.cli("status")
    assert "held (not active" in status.stdout
    out, arrived = send(room, port)
    assert out.returncode == 0, out.stderr
    sent = [rcpt for rcpt, _ in arrived]
    assert sent == [["bob@example.org"]] and f"held: {ann}" in out.stdout
    slips = room.root / "slips.html"
    printed = room.cli("credentials", "slips", "--all", "--out", str(slips))
    assert "No passwords are waiting" in printed.stdout and not slips.exists()
    assert (room.paths.outbox / f"{ann}.json").exists() and (room.paths.outbox / f"{cat}.json").exists()  # kept
