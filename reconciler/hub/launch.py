"""`reconcile hub`: prepare the host (secrets, bridge, firewall, shared folder), then exec JupyterHub.

This is what the systemd unit runs, in the foreground.
"""

from __future__ import annotations

import grp
import os
import secrets
import signal
import shutil
import sys
from pathlib import Path

from ..config.classroom import Classroom, group_name
from ..config.load import dump_site, load_classroom
from ..config.site import Site, Tls
from ..core.desired import SHARED_MODE
from ..host.facts import HostFiles, read_manifest
from ..host.fsutil import private_dir, write_atomic
from ..host.mounts import is_mounted
from . import network
from .config import CONFIG_FILE


def ensure_secret(path: Path) -> None:
    """Create a random secret (0600) once; never print or overwrite it."""
    if not path.exists():
        write_atomic(path, secrets.token_hex(32) + "\n", mode=0o600)


def ensure_shared(shared: Path, classroom: str, manifest: Path) -> None:
    """The course folder: teachers write (setgid group), students read.

    When it has a volume of its own (classroom.yaml's shared_disk) that is not mounted, the bare mount point is
    left alone: teachers would write to the disk below, and the mount would later hide it.
    """
    entry = read_manifest(manifest).get(str(shared))
    if entry is not None and not is_mounted(HostFiles(), shared, entry.source):
        raise SystemExit(
            f"the course folder {shared} has its own volume ({entry.source}) but it is not mounted: "
            "run `reconcile mount-all` (at boot it runs before the hub)"
        )
    shared.mkdir(parents=True, exist_ok=True)
    try:
        gid = grp.getgrnam(group_name(classroom, "teacher")).gr_gid
    except KeyError:
        gid = 0  # groups appear with the first reconcile pass
    os.chown(shared, 0, gid)
    os.chmod(shared, SHARED_MODE)


def check_image(image: str) -> None:
    """The image must exist (there is no registry to pull from) and carry the hub's jupyterhub version."""
    import docker
    import jupyterhub

    from ..image.build import JUPYTERHUB_LABEL

    try:
        labels = docker.from_env().images.get(image).labels or {}
    except docker.errors.ImageNotFound:
        raise SystemExit(
            f"the student image {image} does not exist: run `reconcile image build --tag {image}`"
        ) from None
    version = labels.get(JUPYTERHUB_LABEL)
    if version is not None and version != jupyterhub.__version__:
        raise SystemExit(
            f"the student image {image} has jupyterhub {version} but the hub runs "
            f"{jupyterhub.__version__}: rebuild it with `reconcile image build --force`"
        )


def check_swarm() -> None:
    """With hub.spawner: swarm, the Docker that DOCKER_HOST (or the local socket) names must manage a swarm."""
    import docker

    try:
        info = docker.from_env().info().get("Swarm", {})
    except docker.errors.DockerException as exc:
        raise SystemExit(f"Docker cannot be reached ({exc})") from None
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        raise SystemExit(
            "hub.spawner is swarm but this Docker is not a swarm manager: run "
            "`docker swarm init --advertise-addr <hub.swarm.address>`, then join the workers "
            "(docs/how-to/beyond-one-server.md)"
        )


def prepare(site: Site, classroom: Classroom) -> None:
    hub = site.hub
    if hub is None:
        raise SystemExit("site.yaml has no hub: section (see examples/site.yaml)")
    if hub.spawner == "swarm":
        check_swarm()  # the image is on the workers: `reconcile image push-nodes` checks it there
    else:
        check_image(hub.image)
    private_dir(site.state_dir)
    ensure_secret(hub.token_file)
    ensure_secret(site.cookie_secret_file)
    check_tls(hub.tls)
    if hub.db_url and hub.db_url.startswith("sqlite:///") and Path(hub.db_url[len("sqlite:///") :]).exists():
        os.chmod(hub.db_url[len("sqlite:///") :], 0o600)  # token hashes and personal data (older versions: 0644)
    if hub.spawner != "swarm":  # servers on the workers: no students' bridge here
        network.ensure_network(hub)
        network.ensure_firewall(hub)
    ensure_shared(site.shared_dir, classroom.name, site.paths.manifest)
    deny_ssh(classroom.name)


SSHD_DROP_INS = Path("/etc/ssh/sshd_config.d")
SSHD_PID = Path("/run/sshd.pid")


def deny_ssh(classroom: str, directory: Path = SSHD_DROP_INS, pid_file: Path = SSHD_PID) -> str:
    """Keep the classroom's people off sshd: a nologin shell still lets `ssh -N` forward ports to the host.

    A ``Match Group`` block with ``DenyUsers *``: it refuses exactly these groups and leaves the admin's own
    AllowGroups / DenyGroups lines alone (for those, sshd keeps only the first it reads).  Written only where
    sshd is installed (its drop-in directory exists); a running sshd is told to reload (SIGHUP), since it
    reads its configuration once.
    """
    if not directory.is_dir():
        return "no sshd"
    path = directory / f"classroom-{classroom}.conf"
    text = (
        "# Written by `reconcile hub`: students and teachers use JupyterHub, never SSH (not even ssh -N)\n"
        f"Match Group {group_name(classroom, 'student')},{group_name(classroom, 'teacher')}\n"
        "    DenyUsers *\n"
        "    AllowTcpForwarding no\n"
        "    AllowStreamLocalForwarding no\n"
        "    PermitTunnel no\n"
    )
    if path.exists() and path.read_text() == text:
        return "already"
    write_atomic(path, text, mode=0o644)
    try:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGHUP)
    except (OSError, ValueError, IndexError):
        return "written (sshd is not running)"
    return "written, sshd reloaded"


def check_tls(tls: Tls | None) -> None:
    """The certificate and key must be there, and the key readable by root alone."""
    if tls is None:
        return
    for what, path in (("certificate", tls.cert), ("key", tls.key)):
        if not path.is_file():
            raise SystemExit(f"hub.tls: the {what} {path} does not exist")
    mode = tls.key.stat().st_mode
    if mode & 0o077:
        raise SystemExit(
            f"hub.tls: the key {tls.key} can be read by others (mode {mode & 0o777:04o}); chmod 600 {tls.key}"
        )


def write_effective(site: Site, path: Path) -> Path:
    """The site as resolved (absolute paths), for processes that must see exactly this configuration."""
    write_atomic(path, dump_site(site))
    return path


def proxy_env() -> dict[str, str]:
    """Debian's configurable-http-proxy needs its node modules on NODE_PATH."""
    env = {}
    if Path("/usr/share/nodejs").is_dir():
        env["NODE_PATH"] = ":".join(p for p in (os.environ.get("NODE_PATH"), "/usr/share/nodejs") if p)
    if shutil.which("configurable-http-proxy") is None:
        raise SystemExit("configurable-http-proxy is not installed (apt-get install node-configurable-http-proxy)")
    return env


def exec_hub(site: Site, classroom_file: Path) -> None:
    classroom = load_classroom(classroom_file, site)
    prepare(site, classroom)
    # The hub process reads the site exactly as resolved here, whether it came from a file or is the default.
    effective = write_effective(site, site.state_dir / "site.effective.yaml")
    env = {
        **os.environ,
        **proxy_env(),
        "RECONCILE_SITE": str(effective),
        "RECONCILE_CLASSROOM": str(classroom_file.resolve()),
    }
    os.chdir(site.state_dir)
    # the hub's database (token hashes, names), its pid file and whatever else it writes: root's alone
    os.umask(0o077)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)], env)
