"""A real JupyterHub (+ configurable-http-proxy, PAM) for a throw-away classroom, and a browser-less client.

The hub runs as `reconcile hub`, exactly as the systemd unit would start it,
in its own process group so that stopping it also stops the proxy and culler.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

import requests
import yaml

from hostkit import Classroom, wait_for  # noqa: F401 - the hub tests take it from here
from imagekit import TAG, build_test_image

from reconciler.host.supervisor import stop_tree
from reconciler.config.load import load_site
from reconciler.hub import network


def hub_ready() -> str | None:
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy is not installed (tests/bootstrap.sh installs it)"
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001
        return f"Docker is not reachable ({type(exc).__name__}); tests/bootstrap.sh starts dockerd"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_hub(room: Classroom, **settings) -> dict:
    """Give the classroom's site.yaml a hub section on its own bridge, subnet and ports (plus ``settings``).

    The hub refuses to start without its student image: the test image (built once, cached) is the default.
    """
    site = yaml.safe_load(room.site.read_text())
    octet = random.randint(200, 250)
    site["hub"] = {
        "public_url": f"http://127.0.0.1:{free_port()}",
        "token_file": "state/hub-token",
        "network": f"clsrm-{room.name}",
        "subnet": f"172.31.{octet}.0/24",
        "proxy_api_port": free_port(),
        "service_port": free_port(),
        "request_timeout": 5,
        "image": TAG,
        **settings,
    }
    room.site.write_text(yaml.safe_dump(site))
    return site["hub"]


class Hub:
    def __init__(self, room: Classroom):
        self.room = room
        self.settings = load_site(room.site).hub
        self.url = self.settings.public_url
        self.proc: subprocess.Popen | None = None
        self.log = room.root / "hub.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "reconciler", "hub", "--site", str(self.room.site), "-f", str(self.room.file)]

    def start(self, timeout: float = 60, cwd=None, env=None) -> None:
        if self.settings.image == TAG:
            build_test_image()  # a no-op once the image exists (cached by its inputs)
        self.proc = subprocess.Popen(
            self.command(),
            cwd=cwd,
            env=env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hub did not come up:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_tree(self.proc.pid)  # the hub, its proxy, and its services (sessions of their own)
        self.proc.wait(timeout=10)
        self.proc = None

    def remove_network(self) -> None:
        network.remove(self.settings)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        token = self.settings.token_file.read_text().strip()
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers={"Authorization": f"token {token}"}, timeout=10, **kwargs
        )

    def login(self, username: str, password: str) -> requests.Session | None:
        """The real /hub/login form, XSRF token included; the session on success, None on refusal."""
        session = requests.Session()
        session.get(f"{self.url}/hub/login", timeout=10)
        response = session.post(
            f"{self.url}/hub/login?next=",
            data={"username": username, "password": password, "_xsrf": xsrf(session)["X-XSRFToken"]},
            allow_redirects=False,
            timeout=30,
        )
        return session if response.status_code == 302 else None


def xsrf(session: requests.Session) -> dict:
    """The hub's XSRF token (a single-user server sets its own _xsrf cookie under /user/<name>/)."""
    tokens = [c.value for c in session.cookies if c.name == "_xsrf" and c.path.startswith("/hub")]
    tokens += [c.value for c in session.cookies if c.name == "_xsrf"]
    return {"X-XSRFToken": tokens[0] if tokens else ""}


def server_of(hub: Hub, session: requests.Session, username: str) -> dict | None:
    """The person's default server as the hub reports it (None when there is none)."""
    model = session.get(f"{hub.url}/hub/api/users/{username}", headers=xsrf(session), timeout=10).json()
    return model.get("servers", {}).get("") or None


def start_server(hub: Hub, session: requests.Session, username: str, timeout: float = 180) -> None:
    """What the spawn button does, through the API with the browser's cookie; waits until ready."""
    response = session.post(f"{hub.url}/hub/api/users/{username}/server", headers=xsrf(session), timeout=60)
    assert response.status_code in (201, 202), f"{response.status_code} {response.text}\n{hub.log.read_text()[-3000:]}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = server_of(hub, session, username)
        if server and server.get("ready"):
            return
        if not server:
            raise AssertionError(f"{username}'s server failed to start:\n{hub.log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{username}'s server was not ready after {timeout}s")


@contextmanager
def running_hub(room: Classroom) -> Iterator[Hub]:
    """classroom.yaml applied (the hub is not up yet: only its part fails), then the hub; torn down afterwards with
    everything the classroom made (containers, network, chains, users, volumes)."""
    hub = Hub(room)
    try:
        first = room.cli()
        assert first.returncode == 1, "the first pass should converge all but the hub's part:\n" + first.stderr
        hub.start()
        yield hub
    finally:
        tear_down(hub, room)


def first_login_with_server(hub: Hub, room: Classroom, short: str) -> requests.Session:
    """``short`` logs in with the first password from the outbox and starts their server; ready when it returns."""
    username = room.user(short)
    secret = json.loads((room.paths.outbox / f"{username}.json").read_text())["password"]
    session = hub.login(username, secret)
    assert session is not None, f"{username} could not log in"
    start_server(hub, session, username)
    return session


def stop_server(hub: Hub, session: requests.Session, username: str, timeout: float = 60) -> None:
    response = session.delete(f"{hub.url}/hub/api/users/{username}/server", headers=xsrf(session), timeout=60)
    assert response.status_code in (202, 204), f"{response.status_code} {response.text}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_of(hub, session, username) is None:
            return
        time.sleep(0.5)
    raise AssertionError(f"{username}'s server did not stop")


# --- a real browser (Debian's chromium, driven by playwright) ---------------------------------------

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots, kept after the run


def chromium_missing() -> str | None:
    return None if shutil.which("chromium") else "Debian's chromium is not installed (tests/bootstrap.sh installs it)"


def launch_chromium(playwright, **options):
    ARTIFACTS.mkdir(exist_ok=True)
    return playwright.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS, **options)


def log_in(page, origin: str, username: str, password: str, then: str) -> None:
    """The hub's own login form, then on to ``then`` (a path on the hub)."""
    page.goto(f"{origin}/hub/login?next={then}")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")


def tear_down(hub: Hub | None, room: Classroom) -> None:
    """Stop the hub, remove the classroom's containers, network and firewall chains, then the classroom: whatever
    part of the set-up was done (``hub`` None: it was never made), so a fixture calls it from its ``finally``."""
    import docker

    from hostkit import cleanup

    try:
        if hub is not None:
            hub.stop()
        for container in docker.from_env().containers.list(
            all=True, filters={"label": f"org.classroom.classroom={room.name}"}
        ):
            container.remove(force=True)
        settings = load_site(room.site).hub if room.site.exists() else None
        if settings is not None:
            network.remove(settings)
    finally:
        cleanup(room)
