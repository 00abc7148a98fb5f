"""`reconcile doctor`: what is wrong with this host for the classroom, and how to fix each thing.

Every check looks, never changes anything: the files are valid, the commands reconcile runs exist, the
kernel has what the volumes need, every volume in the manifest is mounted, the disks have room, the state
is root's alone, and with a hub: Docker answers (and is a swarm manager whose workers are ready and hold the
image, with the swarm spawner, and with homes over NFS the kernel's NFS server runs), the student image exists, the proxy is installed, PAM has its login service,
the hub's ports are free or the hub's own, the certificate is valid for a while yet, and under systemd the
units are enabled and running.  Exit 1 when anything is wrong ("FAIL"); "warn" lines are advice.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config.load import InvalidFile, load_classroom
from ..config.site import HUB_PORT, Site
from ..core import exports
from ..host.facts import HostFiles, alive, read_manifest
from ..host.mounts import is_mounted
from ..host import volumes
from ..host.run import environment
from .commands import EXIT_ERROR, EXIT_OK, classroom_path, site_of
from .parser import command

OK, WARN, FAIL = "ok", "warn", "FAIL"
CERT_WARN_DAYS = 14
UNITS = ("classroom-mount.service", "classroom-hub.service", "classroom-reconcile.service")


@dataclass(frozen=True)
class Check:
    verdict: str  # ok / warn / FAIL
    what: str
    detail: str
    fix: str = ""


def _tool(name: str) -> str | None:
    return shutil.which(name, path=environment()["PATH"] + ":/usr/local/bin")


def check_files(site: Site, classroom_file: Path) -> list[Check]:
    try:
        classroom = load_classroom(classroom_file, site)
    except InvalidFile as exc:
        return [Check(FAIL, "classroom.yaml", str(exc).splitlines()[0], f"reconcile validate -f {classroom_file}")]
    except OSError as exc:
        return [Check(FAIL, "classroom.yaml", str(exc), "give -f the classroom file (or classroom_file in site.yaml)")]
    return [Check(OK, "classroom.yaml", f"valid: classroom {classroom.name}, {len(classroom.people)} people")]


def check_tools(site: Site) -> list[Check]:
    needed = {
        "useradd": "passwd",
        "usermod": "passwd",
        "chpasswd": "passwd",
        **volumes.about(site).tools,  # the volume backend's own
        # the end of term: export, archive, restore
        "tar": "tar",
        "zstd": "zstd",
        "setpriv": "util-linux",
        "fsfreeze": "util-linux",
    }
    if site.hub is not None:
        needed |= {"docker": "docker.io", "configurable-http-proxy": "node-configurable-http-proxy"}
        if site.hub.spawner == "docker":
            needed["iptables"] = "iptables"
        if _nfs(site):
            needed["exportfs"] = "nfs-kernel-server"
    missing = sorted({package for tool, package in needed.items() if _tool(tool) is None})
    if missing:
        return [
            Check(
                FAIL,
                "commands",
                f"missing: {', '.join(t for t, p in needed.items() if p in missing)}",
                f"apt-get install {' '.join(missing)}",
            )
        ]
    return [Check(OK, "commands", f"{len(needed)} commands reconcile runs are installed")]


def check_kernel(site: Site, proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> list[Check]:
    out = []
    filesystems = (proc / "filesystems").read_text() if (proc / "filesystems").exists() else ""
    if "ext4" not in filesystems.split():
        out.append(Check(FAIL, "kernel: ext4", "not in /proc/filesystems", "modprobe ext4"))
    need = volumes.about(site).kernel
    if not (dev / need.device).exists():
        out.append(
            Check(FAIL, f"kernel: {need.what}", " ".join(filter(None, [f"no /dev/{need.device}", need.why])), need.fix)
        )
    if site.hub is not None and "overlay" not in filesystems.split():
        out.append(
            Check(
                WARN, "kernel: overlay", "not in /proc/filesystems (Docker's usual storage driver)", "modprobe overlay"
            )
        )
    return out or [Check(OK, "kernel", f"ext4 and {need.what} available")]


def check_mounts(site: Site, host: HostFiles = HostFiles()) -> list[Check]:
    entries = read_manifest(site.paths.manifest)
    missing = [target for target, entry in entries.items() if not is_mounted(host, Path(target), entry.source)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return [
            Check(
                FAIL,
                "volumes",
                f"{len(missing)} of {len(entries)} not mounted: {shown}",
                "reconcile mount-all (the classroom-mount unit runs it at boot)",
            )
        ]
    return [Check(OK, "volumes", f"all {len(entries)} volumes in the manifest are mounted")]


def check_state(site: Site) -> list[Check]:
    state = site.state_dir
    if not state.exists():
        return [Check(WARN, "state", f"{state} does not exist yet", "the first `reconcile` pass makes it")]
    info = state.stat()
    if info.st_uid != 0 or info.st_mode & 0o077:
        return [
            Check(
                FAIL,
                "state",
                f"{state} is mode {info.st_mode & 0o777:04o}, owner uid {info.st_uid}: it holds "
                "passwords waiting for delivery",
                f"chown root: {state} && chmod 700 {state}",
            )
        ]
    return [Check(OK, "state", f"{state} is root's alone (0700)")]


def check_disks(site: Site) -> list[Check]:
    from ..engine.passes import disks

    out = []
    for disk in disks(site):
        if disk.low:
            out.append(
                Check(
                    WARN,
                    "disk",
                    f"{disk.what} ({disk.path}): {disk.free // 2**20} MiB free of {disk.size // 2**20} MiB",
                    "free space there, or move it to a bigger disk",
                )
            )
    return out or [
        Check(OK, "disks", f"every disk the classroom writes to has more than {site.warn_free_fraction:.0%} free")
    ]


def check_docker(site: Site) -> list[Check]:
    assert site.hub is not None
    import docker

    try:
        client = docker.from_env(timeout=10)
        info = client.info()
    except Exception as exc:  # noqa: BLE001 - docker raises many types
        return [
            Check(
                FAIL,
                "docker",
                f"not reachable ({type(exc).__name__})",
                "start dockerd (systemctl enable --now docker); DOCKER_HOST, if set, must name it",
            )
        ]
    out = [Check(OK, "docker", f"dockerd {info.get('ServerVersion', '?')} answers")]
    if site.hub.swarm is None:
        try:
            client.images.get(site.hub.image)
            out.append(Check(OK, "student image", f"{site.hub.image} exists"))
        except docker.errors.ImageNotFound:
            out.append(
                Check(
                    FAIL,
                    "student image",
                    f"{site.hub.image} does not exist",
                    f"reconcile image build --tag {site.hub.image}",
                )
            )
        return out
    swarm = info.get("Swarm", {})
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        return out + [
            Check(
                FAIL,
                "swarm",
                "this Docker is not a swarm manager",
                f"docker swarm init --advertise-addr {site.hub.swarm.address}",
            )
        ]
    from ..core.report import render_swarm
    from ..host.containers import swarm_nodes
    from ..image.nodes import image_id

    lines = render_swarm(swarm_nodes(), [w.address for w in site.hub.swarm.workers])
    bad = [line for line in lines if "NOT USABLE" in line or "not in the swarm" in line]
    out += [
        Check(
            FAIL,
            "swarm",
            line.removeprefix("swarm: "),
            "examples/install.sh --worker on it, or docker node update --availability active",
        )
        for line in bad
    ]
    if not bad:
        out.append(Check(OK, "swarm", f"manager; {len(site.hub.swarm.workers)} workers ready"))
    wanted = image_id(site.hub.image)
    for worker in site.hub.swarm.workers:
        try:
            have = image_id(site.hub.image, worker.endpoint, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            have = None
            out.append(
                Check(
                    FAIL,
                    "student image",
                    f"{worker.address}: cannot ask its Docker ({exc})",
                    f"check that `docker -H {worker.endpoint} info` works from here",
                )
            )
            continue
        if have is None or have != wanted:
            out.append(
                Check(
                    FAIL,
                    "student image",
                    f"{worker.address} does not hold this server's {site.hub.image}",
                    "reconcile image push-nodes",
                )
            )
    return out


def check_hub(site: Site, pam: Path = Path("/etc/pam.d")) -> list[Check]:
    assert site.hub is not None
    hub = site.hub
    out = []
    if not (pam / "login").exists() and not (pam / "other").exists():
        out.append(
            Check(
                FAIL,
                "PAM",
                f"no {pam}/login: the hub checks passwords through it",
                "apt-get install login libpam-runtime",
            )
        )
    else:
        out.append(Check(OK, "PAM", "the login service the hub authenticates with exists"))
    hub_running = _hub_running(site)
    public = urlsplit(hub.public_url)
    ports = [
        (
            "the proxy (public_url)",
            public.hostname or "0.0.0.0",
            public.port or (443 if public.scheme == "https" else 80),
        ),
        ("the proxy's API", "127.0.0.1", hub.proxy_api_port),
        ("the teacher service", "127.0.0.1", hub.service_port),
    ]
    if not hub_running:
        taken = [f"{what} {host}:{port}" for what, host, port in ports if _in_use(host, port)]
        if taken:
            out.append(
                Check(
                    FAIL,
                    "ports",
                    f"in use by something else: {', '.join(taken)}",
                    "stop what listens there, or change the port in site.yaml",
                )
            )
        else:
            out.append(Check(OK, "ports", "the hub's ports are free (the hub is not running)"))
    else:
        out.append(
            Check(
                OK,
                "ports",
                f"the hub is running (its pid file names a live process); it holds "
                f"{hub.public_url} and port {HUB_PORT}",
            )
        )
    if hub.tls is not None:
        out += check_certificate(hub.tls.cert)
    return out


def check_certificate(cert: Path, now: datetime.datetime | None = None) -> list[Check]:
    """The proxy's certificate (the first of a chain: the server's own) still valid, and for CERT_WARN_DAYS more."""
    try:
        from cryptography import x509  # only when there is a certificate to read

        ends = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    except (OSError, ValueError) as error:
        return [
            Check(
                FAIL,
                "certificate",
                f"{cert} cannot be read as a certificate: {str(error).strip()[:200]}",
                "see HTTPS in docs/how-to/jupyterhub.md",
            )
        ]
    left = ends - (now or datetime.datetime.now(datetime.UTC))
    if left.total_seconds() <= 0:
        return [
            Check(
                FAIL,
                "certificate",
                f"{cert} expired on {ends:%Y-%m-%d}: browsers refuse the hub",
                "renew it (certbot renew), then restart the hub",
            )
        ]
    if left.days < CERT_WARN_DAYS:
        return [
            Check(
                WARN,
                "certificate",
                f"{cert} expires in {left.days} day(s), on {ends:%Y-%m-%d}",
                "renew it (certbot renew), then restart the hub",
            )
        ]
    return [Check(OK, "certificate", f"valid until {ends:%Y-%m-%d}")]


def check_systemd() -> list[Check]:
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        return [Check(OK, "systemd", "not PID 1 here: the units are not checked (start the processes by hand)")]
    out = []
    for unit in UNITS:
        enabled = subprocess.run(["systemctl", "is-enabled", unit], capture_output=True, text=True).stdout.strip()
        active = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True).stdout.strip()
        wanted_active = "active" if unit != "classroom-mount.service" else ("active", "inactive")
        if enabled != "enabled" or active not in wanted_active:
            out.append(
                Check(
                    FAIL,
                    "systemd",
                    f"{unit} is {enabled or 'unknown'}, {active or 'unknown'}",
                    f"systemctl enable --now {unit}; journalctl -u {unit}",
                )
            )
    synced = subprocess.run(
        ["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True
    ).stdout.strip()
    if synced == "no":
        out.append(
            Check(
                WARN,
                "clock",
                "not synchronized (NTP): expiry dates and the culler's idle times drift",
                "timedatectl set-ntp true",
            )
        )
    return out or [Check(OK, "systemd", "the classroom's units are enabled and running")]


def _nfs(site: Site) -> bool:
    return exports.policy(site.hub, "") is not None


def check_nfs(site: Site, proc: Path = Path("/proc")) -> list[Check]:
    """homes: nfs: this server's kernel NFS server runs (the workers mount every home from it)."""
    if not _nfs(site):
        return []
    fix = "apt-get install nfs-kernel-server; systemctl enable --now nfs-server"
    filesystems = (proc / "filesystems").read_text() if (proc / "filesystems").exists() else ""
    if "nfsd" not in filesystems.split():
        return [
            Check(
                FAIL,
                "nfs",
                "the kernel's NFS server (nfsd) is not loaded: workers cannot mount the homes",
                f"modprobe nfsd; {fix}",
            )
        ]
    threads = HostFiles(proc=proc).nfsd_threads()
    if threads == 0:
        return [Check(FAIL, "nfs", "no nfsd threads run: workers cannot mount the homes", fix)]
    return [
        Check(
            OK,
            "nfs",
            f"the NFS server runs ({threads} threads); homes exported to {len(site.hub.swarm.workers)} workers",
        )
    ]  # type: ignore[union-attr]


def _hub_running(site: Site) -> bool:
    return alive(site.state_dir / "jupyterhub.pid") is not None


def _in_use(host: str, port: int) -> bool:
    """Is something listening there (a connect on loopback for wildcard addresses)?"""
    target = "127.0.0.1" if host in ("0.0.0.0", "", "*") else host
    import socket  # `doctor` alone

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((target, port)) == 0


def diagnose(site: Site, classroom_file: Path) -> list[Check]:
    checks = [
        *check_files(site, classroom_file),
        *check_tools(site),
        *check_kernel(site),
        *check_state(site),
        *check_mounts(site),
        *check_disks(site),
    ]
    if site.hub is not None:
        checks += [*check_docker(site), *check_nfs(site), *check_hub(site)]
    return checks + check_systemd()


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{check.verdict:<4}  {check.what}: {check.detail}")
        if check.fix and check.verdict != OK:
            lines.append(f"      fix: {check.fix}")
    failed = sum(1 for c in checks if c.verdict == FAIL)
    lines.append(f"\n{failed} problem(s)" if failed else "\nno problems found")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    site = site_of(args)
    found = diagnose(site, classroom_path(args, site))
    print(render(found))
    return EXIT_ERROR if any(c.verdict == FAIL for c in found) else EXIT_OK


def register(sub) -> None:
    command(
        sub,
        "doctor",
        run,
        "check this host for the classroom (kernel, commands, volumes, disks, "
        "Docker, the swarm, the image, PAM, ports, certificate, systemd) and say how to fix what is wrong",
    )
