"""HTTPS with JupyterHub's own TLS (hub.tls), end to end in a browser that trusts a test CA.

The test makes a CA and a certificate for hub.localhost with openssl, puts the CA into a fresh NSS
database for headless Chromium (what `certutil` does for a school's own CA), and runs the hub with
`tls: {cert, key}`: a student logs in over https and gets JupyterLab, the teacher page works, the
cookies are secure and the hub answers with HSTS.  Nothing here trusts "any" certificate.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from hostkit import host_ready, make_classroom
from hubkit import ARTIFACTS, Hub, add_hub, chromium_missing, free_port, hub_ready, launch_chromium, log_in, tear_down
from imagekit import TAG, build_test_image, image_unavailable

REASON = (
    host_ready()
    or hub_ready()
    or image_unavailable()
    or chromium_missing()
    or next(
        (
            f"{tool} is not installed (tests/bootstrap.sh installs it)"
            for tool in ("openssl", "certutil")
            if not shutil.which(tool)
        ),
        None,
    )
)
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))


def make_ca(where: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for hub.localhost (+ *.hub.localhost, 127.0.0.1) signed by it."""

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=classroom test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hub.localhost", "-keyout", "hub.key", "-out", "hub.csr"
    )
    (where / "ext.cnf").write_text(
        "subjectAltName=DNS:hub.localhost,DNS:*.hub.localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "hub.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "hub.pem",
    )
    os.chmod(where / "hub.key", 0o600)
    return where / "ca.pem", where / "hub.pem", where / "hub.key"


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    build_test_image()
    ca, cert, key = make_ca(tmp_path_factory.mktemp("ca"))
    room = make_classroom()
    port = free_port()
    add_hub(room, image=TAG, public_url=f"https://127.0.0.1:{port}", tls={"cert": str(cert), "key": str(key)})
    site = yaml.safe_load(room.site.read_text())
    site["delivery"] = {"language": "it"}  # and the teacher page in Italian: the language is one catalogue file
    room.site.write_text(yaml.safe_dump(site))
    room.write([{"username": "ann"}], admins=[{"username": "tea"}])
    assert room.cli().returncode == 1  # the hub is not up yet: only its part fails
    hub = Hub(room)
    old = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)  # this test's own requests trust the test CA, and only it
    try:
        hub.start()
        yield room, hub, port, ca
    finally:
        if old is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old
        tear_down(hub, room)


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


def test_login_spawn_and_teacher_page_over_https(classroom, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    room, hub, port, ca = classroom
    ann, tea = room.user("ann"), room.user("tea")
    origin = f"https://hub.localhost:{port}"

    with pytest.raises(requests.exceptions.SSLError):  # nothing else trusts the test CA
        requests.get(f"{hub.url}/hub/api/", timeout=10, verify="/etc/ssl/certs/ca-certificates.crt")
    answer = requests.get(f"{hub.url}/hub/login", timeout=10)  # trusts the test CA (REQUESTS_CA_BUNDLE)
    assert answer.status_code == 200
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=10)  # no plain HTTP on that port

    home = tmp_path / "browser-home"  # Chromium reads trusted CAs from ~/.pki/nssdb
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "classroom test CA", "-i", str(ca)], check=True
    )
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, env={**os.environ, "HOME": str(home)})
        try:
            student = browser.new_context()
            page = student.new_page()
            log_in(page, origin, ann, password(room, "ann"), "/hub/spawn")
            page.wait_for_url(f"{origin}/user/{ann}/lab**", timeout=180_000)
            expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=120_000)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-over-https.png"))
            cookies = student.cookies()
            assert cookies and all(cookie["secure"] for cookie in cookies), [
                (c["name"], c["path"], c["secure"]) for c in cookies
            ]
            student.close()

            teacher = browser.new_context()
            page = teacher.new_page()
            log_in(page, origin, tea, password(room, "tea"), "/services/classroom/")
            page.wait_for_url(f"{origin}/services/classroom/", timeout=60_000)
            expect(page.locator(f'tr[data-user="{ann}"]')).to_contain_text("in esecuzione", timeout=30_000)
            expect(page.locator("#add")).to_have_text("Aggiungi studente")
            expect(page.locator("html")).to_have_attribute("lang", "it")
            expect(page.locator(f'tr[data-user="{ann}"] td[data-label="Disco"]')).to_be_visible()
            assert all(cookie["secure"] for cookie in teacher.cookies())
        finally:
            browser.close()
