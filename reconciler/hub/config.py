"""Build JupyterHub's configuration from site.yaml and classroom.yaml.

Access follows the Unix groups reconcile manages (PAM checks passwords and
locked/expired accounts).  Nobody is a hub admin: teachers get the
classroom-teacher role (``teacher_scopes``), limited to the students' group.
Student servers run in hardened Docker containers as the person's own UID.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import traceback
from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

from ..config.classroom import Classroom, group_name
from ..config.load import load_classroom, load_site
from ..config.site import (
    HSTS,
    HUB_PORT,
    MANAGE_SCOPE,
    METRICS_SCOPE,
    SERVICE_NAME,
    HubSettings,
    Site,
    find_site,
)

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
START_WALL_SECONDS = 10.0  # one JupyterLab boot holding a start slot: 7-9 s measured under load, rounded up
RECONCILER_SCOPES = ["list:users", "read:users", "read:servers", "delete:servers", "delete:users"]


def cull_every(timeout: int) -> int:
    """How often the culler looks: a tenth of the idle timeout, between 10 s and the culler's own 10 minutes."""
    return max(10, min(600, timeout // 10))


def reconciler_scopes(classroom: str) -> list[str]:
    """Stop anyone's server (before their volume is resized, or they leave); start only students' (hub.prewarm)."""
    return [*RECONCILER_SCOPES, f"servers!group={group_name(classroom, 'student')}"]


CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


# What the hub's services must see as the hub and the daemon do: the same site and configuration cache, the same
# Docker engine (DOCKER_HOST and its TLS settings) and the same proxies.  JupyterHub starts services with a
# minimal environment (PATH, LANG, ...), so these are passed on by name.
PASSED_ON = (
    "RECONCILE_SITE",
    "RECONCILE_CACHE",
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def passed_on() -> dict[str, str]:
    return {
        "RECONCILE_SITE": os.environ.get("RECONCILE_SITE", ""),
        **{name: os.environ[name] for name in PASSED_ON if name in os.environ},
    }


def teacher_scopes(classroom: str, subdomains: bool) -> list[str]:
    """What a teacher may do on the hub: see and start/stop the students' servers, and use the teacher page.

    Never hub admin (no admin:users, admin:servers, tokens of others, the admin page), never anything on
    other teachers.  Opening a student's server (access:servers) only with per-user subdomains: on one
    origin the student's JavaScript would run as the teacher on the hub and the teacher page.
    """
    students = f"group={group_name(classroom, 'student')}"
    scopes = [
        MANAGE_SCOPE,
        METRICS_SCOPE,
        f"access:services!service={SERVICE_NAME}",
        f"list:users!{students}",
        f"read:users!{students}",
        f"servers!{students}",
    ]
    if subdomains:
        scopes.append(f"access:servers!{students}")
    return scopes


class HubDatabase(sqlite3.Connection):
    """The hub's SQLite connections (the embedded default's database), in write-ahead-log mode.

    JupyterHub commits several times per login (the session, the OAuth code, its exchange for a token, activity);
    in SQLite's default rollback journal each commit waits for two or three fsyncs, on the hub's one event loop:
    about a tenth of its time in a 50-login class start here, far more on a server's spinning disk.  With a WAL and
    synchronous=NORMAL a commit is an append: the database stays consistent through any crash, and a power cut
    can lose the last moments of commits (people log in again; the reconciler's state does not live here).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")


def database_settings(db_url: str) -> dict:
    """JupyterHub.db_kwargs for this database (create_engine's arguments): HubDatabase for SQLite files."""
    if not db_url.startswith("sqlite:///") or db_url.endswith(":memory:"):
        return {}
    # check_same_thread: JupyterHub's own setting for SQLite, which these connect_args replace
    return {"connect_args": {"check_same_thread": False, "factory": HubDatabase}}


def load() -> tuple[Site, Path]:
    site = load_site(find_site(None))
    if site.hub is None:
        raise SystemExit("site.yaml has no hub: section; add one to run JupyterHub (see examples/site.yaml)")
    classroom = Path(os.environ.get("RECONCILE_CLASSROOM") or site.classroom_file or "classroom.yaml").resolve()
    load_classroom(classroom, site)  # refuse to start on an invalid roster
    return site, classroom


OUR_AUTHENTICATOR = "reconciler.hub.auth.ClassroomAuthenticator"


def configure(c, site: Site | None = None, classroom_file: Path | None = None, load_subconfig=None) -> None:
    """The packaged configuration, one concern after the other; then the operator's files
    (hub.extra_config_dir) and, whatever they set, what stays reconcile's.

    ``load_subconfig`` is the one traitlets gives the config file that calls this (jupyterhub_config.py);
    without it (tests, tools) the same loader is used on ``c``.
    """
    if site is None or classroom_file is None:
        site, classroom_file = load()
    hub = site.hub
    if hub is None:
        raise SystemExit("site.yaml has no hub: section; add one to run JupyterHub (see examples/site.yaml)")
    classroom = load_classroom(classroom_file, site)
    update_network(c, hub)
    update_state(c, site)
    update_auth(c, classroom.name)
    update_tls(c, hub)
    update_limits(c, classroom)
    update_spawner(c, hub, classroom.name, classroom_file)
    update_services(c, hub, classroom_file)
    update_roles(c, classroom.name, bool(hub.subdomain_host))
    load_extra_config(c, hub.extra_config_dir, load_subconfig)
    keep_what_reconcile_owns(
        c, site, classroom_file, group_name(classroom.name, "teacher"), group_name(classroom.name, "student")
    )


def update_network(c, hub: HubSettings) -> None:
    """Where the proxy, the hub API and the proxy's API listen."""
    c.JupyterHub.bind_url = hub.public_url
    c.JupyterHub.hub_bind_url = f"http://{hub.hub_address}:{HUB_PORT}"
    c.JupyterHub.hub_connect_url = c.JupyterHub.hub_bind_url
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"  # never reachable from containers


def update_state(c, site: Site) -> None:
    """The hub's database, cookie secret and pid file; students' servers outlive the hub."""
    hub = site.hub
    c.JupyterHub.db_url = hub.db_url
    c.JupyterHub.db_kwargs = database_settings(hub.db_url)
    c.JupyterHub.cookie_secret_file = str(site.cookie_secret_file)
    c.JupyterHub.pid_file = str(site.state_dir / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = False  # a hub restart must not kill every student's running notebook


def update_auth(c, classroom: str) -> None:
    """PAM against the accounts reconcile manages; locked or expired accounts are refused; nobody is admin."""
    c.JupyterHub.authenticator_class = OUR_AUTHENTICATOR
    c.ClassroomAuthenticator.teachers_group = group_name(classroom, "teacher")
    c.ClassroomAuthenticator.students_group = group_name(classroom, "student")
    c.PAMAuthenticator.allowed_groups = {group_name(classroom, "student"), group_name(classroom, "teacher")}
    c.PAMAuthenticator.admin_groups = set()  # nobody is a hub admin: teachers have a role of their own
    c.PAMAuthenticator.check_account = True
    c.PAMAuthenticator.open_sessions = False
    c.Authenticator.admin_users = set()


def update_tls(c, hub: HubSettings) -> None:
    """hub.tls and hub.subdomain_host: the proxy's certificate, secure cookies, HSTS; per-user origins."""
    if hub.tls is not None:
        # the proxy terminates TLS; cookies are marked secure (the hub sees https via X-Forwarded-Proto);
        # HSTS keeps browsers on https for the hub and, with per-user subdomains, every server below it
        c.JupyterHub.ssl_cert = str(hub.tls.cert)
        c.JupyterHub.ssl_key = str(hub.tls.key)
        c.JupyterHub.tornado_settings = {
            "headers": {"Strict-Transport-Security": HSTS},
            "xsrf_cookie_kwargs": {"secure": True},
        }
    if hub.subdomain_host:
        # every user server (and the teacher page) on an origin of its own: <user>.<host>, classroom--service.<host>
        c.JupyterHub.subdomain_host = hub.subdomain_host


def update_limits(c, classroom: Classroom) -> None:
    """Class-start storms: a whole class logs in within seconds.  Starts queue for a CPU slot (see
    ClassroomSpawner.start_slots) behind a page that waits, so the hub must neither refuse them (429)
    nor time them out: the limits grow with the class and with the CPU time the queue needs."""
    people = len(classroom.admins) + len(classroom.students)
    c.JupyterHub.concurrent_spawn_limit = max(100, people)
    slots = 2 * (os.cpu_count() or 1)  # ClassroomSpawner.start_slots
    c.Spawner.start_timeout = max(300, int(people * START_WALL_SECONDS / slots) + 300)
    c.Spawner.http_timeout = c.Spawner.start_timeout


def update_spawner(c, hub: HubSettings, classroom: str, classroom_file: Path) -> None:
    """Student servers: hardened containers of the locally built image (hub/spawner.py), or swarm services on
    the workers (hub/swarm.py)."""
    c.JupyterHub.spawner_class = "reconciler.hub.spawner.ClassroomSpawner"
    c.Spawner.default_url = "/lab"
    c.DockerSpawner.image = hub.image
    c.DockerSpawner.pull_policy = "never"  # no registry: the image is built locally
    c.DockerSpawner.remove = True
    c.DockerSpawner.prefix = f"jupyter-{classroom}"
    if hub.spawner == "swarm":
        # services on the workers (hub/swarm.py), reached at their worker's address and host-mode port
        c.JupyterHub.spawner_class = "reconciler.hub.swarm.ClassroomSwarmSpawner"
        c.DockerSpawner.pull_policy = "skip"  # the image is on the workers (`reconcile image push-nodes`)
        c.DockerSpawner.cmd = ["jupyterhub-singleuser"]  # the image's CMD: the manager need not hold the image
        c.DockerSpawner.use_internal_ip = False
    else:
        c.DockerSpawner.network_name = hub.network
        c.DockerSpawner.use_internal_ip = True
    c.ClassroomSpawner.site_file = str(find_site(None) or "")
    c.ClassroomSpawner.classroom_file = str(classroom_file)
    c.ClassroomSpawner.classroom_name = classroom


def update_services(c, hub: HubSettings, classroom_file: Path) -> None:
    """The culler, the reconciler's API token and the teacher service."""
    token = hub.token_file.read_text().strip()
    c.JupyterHub.services = [
        # jupyterhub-idle-culler, paused while a lesson of classroom.yaml's schedule is on (hub/culler.py)
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "reconciler.hub.culler",
                f"--timeout={hub.cull_idle_timeout}",
                f"--cull-every={cull_every(hub.cull_idle_timeout)}",
            ],
            "environment": {**passed_on(), "CLASSROOM_FILE": str(classroom_file)},
        },
        {"name": "reconciler", "api_token": token},
        {
            "name": SERVICE_NAME,
            "display": True,
            "url": f"http://127.0.0.1:{hub.service_port}",
            "command": [sys.executable, "-m", "reconciler", "api", "-f", str(classroom_file)],
            "environment": passed_on(),
            "oauth_client_allowed_scopes": [MANAGE_SCOPE],
            "oauth_no_confirm": True,
        },  # the hub's own packaged service: no "authorize this app?" step
    ]


def update_roles(c, classroom: str, subdomains: bool) -> None:
    """Least privilege for each service; teachers (the Unix teachers group, mirrored into the hub by
    ClassroomAuthenticator) manage the classroom through the service; scripts use a token the teacher makes
    with the custom scope."""
    c.JupyterHub.custom_scopes = {
        MANAGE_SCOPE: {"description": "Manage the classroom's students through the classroom service"},
        # a teacher makes a token with this scope alone for Prometheus: it reads the figures, changes nothing
        METRICS_SCOPE: {"description": "Read the classroom's figures (Prometheus format) from the classroom service"},
    }
    c.JupyterHub.load_roles = [
        {"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]},
        {"name": "reconciler", "scopes": reconciler_scopes(classroom), "services": ["reconciler"]},
        {
            "name": "classroom-teacher",
            "scopes": teacher_scopes(classroom, subdomains),
            "groups": [group_name(classroom, "teacher")],
        },
        # students reach the service only for /me/export (their own files); everything else needs the custom scope
        {
            "name": "classroom-student",
            "scopes": [f"access:services!service={SERVICE_NAME}"],
            "groups": [group_name(classroom, "student")],
        },
    ]


def trusted(path: Path) -> None:
    """Code the hub runs as root: it must be root's (or the hub user's) and writable by nobody else."""
    info = path.stat()
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022:
        raise SystemExit(
            f"hub.extra_config_dir: {path} is owned by uid {info.st_uid} with mode "
            f"{info.st_mode & 0o777:04o}; the hub runs it as root, so it must be root's and writable "
            f"by nobody else (chown root: {path}; chmod go-w {path})"
        )


def merging_into(c):
    """traitlets' ``load_subconfig`` for a ``c`` that no config file made (tests, tools): the same loader and merge."""

    def load_subconfig(fname: str) -> None:
        c.merge(PyFileConfigLoader(fname).load_config())

    return load_subconfig


def load_extra_config(c, directory: Path, load_subconfig=None) -> list[Path]:
    """jupyterhub_config.d as Z2JH and TLJH load it: ``load_subconfig`` on each *.py in name order.

    Each file runs with a ``c`` of its own, merged into ours afterwards: what it sets replaces ours, what it
    appends or updates (``c.JupyterHub.services.append(...)``) extends ours.  The directory and each file must be
    root's and writable by nobody else, all of them checked before any runs; an error in a file stops the hub
    with the file and line named.
    """
    if not directory.is_dir():
        return []
    trusted(directory)
    files = sorted(path for path in directory.glob("*.py") if path.is_file())
    for path in files:
        trusted(path)
    load = load_subconfig or merging_into(c)
    for path in files:
        try:
            load(str(path))
        except Exception as error:
            traceback.print_exception(error, file=sys.stderr)
            raise SystemExit(f"hub.extra_config_dir: {where(path, error)}: {type(error).__name__}: {error}") from error
    return files


def where(path: Path, error: BaseException) -> str:
    """The operator's file, and the line of it the error comes from (a syntax error's own, or the traceback's)."""
    if isinstance(error, SyntaxError) and error.filename == str(path) and error.lineno:
        return f"{path}, line {error.lineno}"
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(path)]
    return f"{path}, line {lines[-1]}" if lines else str(path)


def keep_what_reconcile_owns(c, site: Site, classroom_file: Path, teachers: str, students: str) -> None:
    """Whatever the extra files set: nobody is admin, and with another authenticator only classroom.yaml's
    active people get in, in their role's group (hub/auth.py: ClassroomGate)."""
    c.Authenticator.admin_users = set()
    authenticator = c.JupyterHub.authenticator_class
    if authenticator == OUR_AUTHENTICATOR:
        return
    from .auth import ClassroomGate

    c.Authenticator.allow_all = True  # the gate decides, at every login
    c.Authenticator.manage_groups = True  # groups come from the gate's answer
    c.Authenticator.post_auth_hook = ClassroomGate(site, str(classroom_file), teachers, students)
