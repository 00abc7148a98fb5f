"""DockerSpawner for a classroom: limits from classroom.yaml, the person's own UID, hardened containers.

classroom.yaml is read again at every start, so a quota change reaches the
next server without restarting the hub (a running one is updated live by
reconcile).  A start is refused with a clear message when the person's home
volume is not mounted: a container must never write to the host's own disk.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shlex
from pathlib import Path

from dockerspawner import DockerSpawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from traitlets import Integer, Unicode

from ..config.classroom import Classroom, group_name
from ..config.load import InvalidFile, load_classroom, load_site
from ..config.site import COLLECTION_VOLUME, HSTS, Site
from ..core.desired import resolve
from ..host.containers import LABEL_CLASSROOM, LABEL_USER
from ..host.facts import HostFiles
from ..host.fsutil import write_atomic
from ..host.mounts import is_mounted
from ..host.volumes import layout_for

HOME_ROOT = "/home"
SCHOOL_CA = "/usr/local/share/ca-certificates/school.pem"  # site.network.ca_bundle inside a student's container


DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"  # the student image's own (build.py IMPORT_CHANGES)


def image_path(image_env: list[str] | None) -> str:
    """The image's own PATH (a published image keeps its programs elsewhere: docker-stacks in /opt/conda/bin)."""
    for item in image_env or []:
        if item.startswith("PATH="):
            return item[5:] or DEFAULT_PATH
    return DEFAULT_PATH


def container_settings(
    site: Site, classroom: Classroom, username: str, host: HostFiles = HostFiles(), path: str = DEFAULT_PATH
) -> dict:
    """Everything about one person's container; pure apart from the account and mount lookups, so tests can check it.
    ``path``: the image's own PATH, after the student's ~/.local/bin."""
    layout = layout_for(site)
    member = resolve(classroom, site.paths, layout).member(username)
    if member is None or member.status != "active":
        raise web.HTTPError(403, f"{username} is not an active member of this classroom: ask your teacher")
    hub = site.hub
    if hub is None:
        raise web.HTTPError(500, "site.yaml has no hub: section")
    paths = site.paths
    if not is_mounted(host, paths.home(username), layout.source(username)):
        raise web.HTTPError(
            503,
            "Your files are not available right now (your home volume is not mounted). "
            "Please tell your teacher; nothing of yours was lost.",
        )
    account = pwd.getpwnam(username)
    home = f"{HOME_ROOT}/{username}"
    teacher = member.role == "teacher"
    role_group = grp.getgrnam(group_name(classroom.name, member.role))
    extra_groups = [role_group.gr_gid] if teacher else []
    shared = site.shared_dir
    binds = [{"type": "bind", "source": str(paths.home(username)), "target": home, "read_only": False}]
    if shared.is_dir():
        binds.append({"type": "bind", "source": str(shared), "target": f"{home}/shared", "read_only": not teacher})
    area = paths.collection_area
    if teacher and is_mounted(host, area, layout.source(COLLECTION_VOLUME)):  # never the bare folder below it
        # nbgrader's course directory: submitted/ (root's, read-only to teachers), their autograded/ and feedback/
        binds.append({"type": "bind", "source": str(area), "target": f"{home}/collected", "read_only": False})
    files = identity_dir(site, username)
    written = identity(
        username,
        member.name,
        account.pw_uid,
        account.pw_gid,
        grp.getgrgid(account.pw_gid).gr_name,
        (role_group.gr_name, role_group.gr_gid),
        teacher,
    )
    if hub.tls is not None:
        written["jupyter_server_config.json"] = json.dumps(server_config_over_https())
    binds += [
        {"type": "bind", "source": str(files / name), "target": IN_CONTAINER[name], "read_only": True}
        for name in written
    ]
    email = member.emails[0] if member.emails else f"{username}@{classroom.name}.invalid"
    network, ca = student_network(site)
    binds += ca
    return {
        "member": member,
        "home": home,
        "mounts": binds,
        "identity": written,
        "identity_dir": files,
        "create": {
            "user": f"{account.pw_uid}:{account.pw_gid}",
            "working_dir": home,
            "hostname": classroom.name,  # the prompt reads ann@python-101, not ann@<container id>
            "labels": {LABEL_CLASSROOM: classroom.name, LABEL_USER: username},
        },
        "host": {
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": hub.pids_limit,
            "read_only": True,
            "tmpfs": {"/tmp": f"size={hub.tmp_size},mode=1777,nosuid,nodev"},
            # a student's output (print, /proc/1/fd/1) is written to the host's disk: bounded
            "log_config": {
                "type": "json-file",
                "config": {"max-size": f"{max(1, hub.log_max_size // 1024)}k", "max-file": str(hub.log_max_files)},
            },
            "memswap_limit": member.memory,  # equal to the memory limit: no swap
            "group_add": [str(g) for g in extra_groups],
        },
        # ~/.local/bin first: console scripts of a student's own `pip install` are found by name
        "env": {
            "HOME": home,
            "USER": username,
            "LOGNAME": username,
            "SHELL": "/bin/bash",
            "EMAIL": email,
            "PATH": f"{home}/.local/bin:{path}",
            **network,
        },
    }


# What the spawner writes before each start (identity_dir) and where each file appears, read-only, in the container.
IN_CONTAINER = {
    "passwd": "/etc/passwd",
    "group": "/etc/group",
    "jupyter_server_config.json": "/etc/jupyter/jupyter_server_config.json",
}


def server_config_over_https() -> dict:
    """The student's Jupyter server behind hub.tls: its XSRF cookie https-only, and HSTS (system config path)."""
    return {
        "ServerApp": {
            "tornado_settings": {"xsrf_cookie_kwargs": {"secure": True}, "headers": {"Strict-Transport-Security": HSTS}}
        }
    }


def student_network(site: Site) -> tuple[dict[str, str], list[dict]]:
    """With network.to_student_containers: the school's proxy and mirror for a student's own `pip install`
    (environment), and its CA bundle bound read-only into the container (mounts)."""
    if not site.network.to_student_containers:
        return {}, []
    env = site.network.environment()
    if site.network.ca_bundle is None:
        return env, []
    env |= {"PIP_CERT": SCHOOL_CA, "REQUESTS_CA_BUNDLE": SCHOOL_CA, "SSL_CERT_FILE": SCHOOL_CA}
    return env, [{"type": "bind", "source": str(site.network.ca_bundle), "target": SCHOOL_CA, "read_only": True}]


def identity_dir(site: Site, username: str) -> Path:
    """Where the container's /etc/passwd and /etc/group for this person are written (root's, under the state)."""
    return site.state_dir / "containers" / username


def identity(
    username: str, name: str, uid: int, gid: int, own_group: str, role_group: tuple[str, int], teacher: bool
) -> dict[str, str]:
    """The container's /etc/passwd and /etc/group: the system's few entries and this person's, nobody else's.

    Without them the terminal says "I have no name!" and whoami, git and ssh-keygen fail.  Only this person's
    own entries: a container never learns who else is in the class.
    """
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{username}:x:{uid}:{gid}:{name}:{HOME_ROOT}/{username}:/bin/bash\n"
    )
    members = username if teacher else ""  # only a teacher's container holds the role group (group_add)
    group = f"root:x:0:\nnogroup:x:65534:\n{own_group}:x:{gid}:\n{role_group[0]}:x:{role_group[1]}:{members}\n"
    return {"passwd": passwd, "group": group}


def write_identity(directory: Path, files: dict[str, str]) -> None:
    """Written afresh before each start (a name change reaches the next server); 0644: read inside the container."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # dockerd (root) binds the files themselves
    for name, text in files.items():
        write_atomic(directory / name, text, mode=0o644)


_slots: asyncio.Semaphore | None = None


def start_slots(size: int) -> asyncio.Semaphore:
    """One semaphore per hub process: at most ``size`` servers booting at once."""
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(size)
    return _slots


class ClassroomSpawner(DockerSpawner):
    site_file = Unicode("", config=True, help="site.yaml to read at each start")
    classroom_file = Unicode("", config=True, help="classroom.yaml to read at each start")
    classroom_name = Unicode("", config=True, help="The classroom's name: the label on its servers")
    start_slots = Integer(
        2 * (os.cpu_count() or 1),
        config=True,
        help="Servers allowed to boot at the same time.  A JupyterLab start is CPU-bound (~2.7 CPU-s measured), "
        "so a class that logs in at the same second queues on the spawn page instead of every start "
        "timing out together; two per core keep the CPU busy while one boot waits on I/O.",
    )

    async def start(self):
        site = load_site(Path(self.site_file) if self.site_file else None)
        try:
            classroom = load_classroom(Path(self.classroom_file), site)
        except InvalidFile as exc:
            self.log.error("classroom.yaml is invalid; refusing to start servers:\n%s", exc)
            raise web.HTTPError(503, "The classroom configuration is being changed; try again in a minute.") from None
        settings = container_settings(site, classroom, self.user.name, path=await self.image_path())
        member = settings["member"]
        self.mem_limit = member.memory
        self.cpu_limit = member.cpu
        self.notebook_dir = settings["home"]
        self.environment = {**self.environment, **settings["env"]}
        self.configure(site, classroom, settings)
        slots = _slots
        if slots is None:  # sized once, at the first start
            size = await self.slot_count()
            self.log.info("start slots: %d servers may boot at once", size)
            slots = start_slots(size)
        async with slots:
            # Hold the slot until the server answers: its boot, not the container create, costs the CPU.
            ip, port = await super().start()
            # the path only: with per-user subdomains user.url carries the public host
            await wait_answering(f"http://{ip}:{port}{self.server.base_url}", timeout=self.http_timeout)
        return ip, port

    async def image_path(self) -> str:
        """The PATH the image itself sets (one inspect of the image; its own default when it cannot be read)."""
        try:
            info = await self.docker("inspect_image", self.image)
        except Exception:  # noqa: BLE001 - docker raises many types: the start then fails on the image itself
            return DEFAULT_PATH
        return image_path((info.get("Config") or {}).get("Env"))

    async def slot_count(self) -> int:
        """How many servers may boot at once (asked when the first server starts)."""
        return self.start_slots

    def configure(self, site: Site, classroom: Classroom, settings: dict) -> None:
        """The container's own settings (a swarm service takes them differently: hub/swarm.py)."""
        self.mounts = settings["mounts"]
        self.extra_create_kwargs = settings["create"]
        self.extra_host_config = settings["host"]
        self.post_start_cmd = pull_at_start(classroom, settings["home"]) or False
        write_identity(settings["identity_dir"], settings["identity"])


PULL_LIMIT = 120  # seconds a pull at start may take


def pull_at_start(classroom: Classroom, home: str) -> str | None:
    """classroom.yaml's course_repo with pull_at_start: the command run in the container as the student once it has
    started (DockerSpawner's post_start_cmd: `docker exec`, awaited before the start completes; its failure is
    only logged).  nbgitpuller's merge keeps the student's own changes."""
    repo = classroom.course_repo
    if repo is None or not repo.pull_at_start:
        return None
    return shlex.join(["timeout", str(PULL_LIMIT), "gitpuller", repo.url, repo.branch, f"{home}/{repo.target}"])


async def wait_answering(url: str, timeout: float) -> None:
    """Poll every 100 ms (JupyterHub's own wait backs off up to seconds, idling a start slot meanwhile)."""
    client = AsyncHTTPClient()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            response = await client.fetch(url, raise_error=False, follow_redirects=False, request_timeout=5)
            if response.code < 500:  # any answer but a server error (599: no connection yet)
                return
        except OSError:  # not listening yet
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the server did not answer at {url} within {timeout:g}s")
