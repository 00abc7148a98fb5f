"""Throw-away classrooms on the real host for integration tests, and their cleanup.

Every test classroom has a random name and random usernames, lives in its own
temp directory, and is removed completely afterwards: mounts, loop devices,
users, groups, files.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reconciler.config.site import Paths
from reconciler.core.actual import Actual
from reconciler.host import facts
from reconciler.host.facts import HostFiles
from reconciler.host.observe import observe
from reconciler.host.run import Runner
from reconciler.host.volumes.loop import LoopBackend, LoopLayout
from reconciler.host.volumes.loop import layout as loop_layout

# The configuration cache (reconciler.config.cache) of every command the tests and benchmarks run, in-process
# or not: one throw-away directory per session, never the host's /var/cache/classroom.
if "RECONCILE_CACHE" not in os.environ:
    os.environ["RECONCILE_CACHE"] = tempfile.mkdtemp(prefix="reconcile-cache-")
    atexit.register(shutil.rmtree, os.environ["RECONCILE_CACHE"], True)

ROOT_REASON = "needs root: creates real users, loop devices and mounts (CI runs as root)"


def host_ready() -> str | None:
    """None when real integration tests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return ROOT_REASON
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control: loop devices are unavailable"
    for tool in ("useradd", "chpasswd", "mkfs.ext4", "resize2fs", "e2fsck", "losetup", "mount"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"{tool} is not installed"
    return None


@dataclass
class Classroom:
    """A classroom.yaml + site.yaml pair in a temp dir, with helpers to run reconcile on it."""

    name: str
    prefix: str
    root: Path
    quotas: dict = field(default_factory=lambda: {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}})

    @property
    def paths(self) -> Paths:
        return Paths(self.root / "state", self.root / "homes")

    @property
    def volumes(self) -> LoopLayout:
        """Where the loop backend keeps this classroom's images."""
        return loop_layout(self.paths)

    @property
    def site(self) -> Path:
        return self.root / "site.yaml"

    @property
    def file(self) -> Path:
        return self.root / "classroom.yaml"

    def user(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def write(self, students: list[dict], admins: list[dict] | None = None, **extra) -> Path:
        """Write classroom.yaml; people are given short names that get the random prefix."""

        def person(p: dict) -> dict:
            out = dict(p)
            out["username"] = self.user(p["username"])
            out.setdefault("name", p["username"].capitalize())
            return out

        doc = {
            "version": 1,
            "name": self.name,
            "quotas": self.quotas,
            "admins": [person(p) for p in admins or []],
            "students": [person(p) for p in students],
            **extra,
        }
        self.file.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.file

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the real `reconcile` command as a separate process.

        Always without CAP_SYS_RESOURCE (setpriv drops it from the bounding set): a resize here is the offline
        kind whatever this host grants root, so the tests that expect a raise to wait for a running server
        hold on any machine (online growth is tested in the VM, tests/vm)."""
        argv = [sys.executable, "-m", "reconciler", "--site", str(self.site), "-f", str(self.file), *args]
        if args and args[0] in ("validate", "status", "mount-all", "doctor"):
            argv = [
                sys.executable,
                "-m",
                "reconciler",
                args[0],
                "--site",
                str(self.site),
                "-f",
                str(self.file),
                *args[1:],
            ]
        return subprocess.run([*WITHOUT_ONLINE_RESIZE, *argv], capture_output=True, text=True, timeout=timeout)

    def observe(self) -> Actual:
        return observe(self.paths, LoopBackend(self.paths, Runner(), HostFiles()))


WITHOUT_ONLINE_RESIZE = ("setpriv", "--bounding-set=-sys_resource", "--inh-caps=-sys_resource", "--")


def make_classroom(
    max_disable_fraction: float = 0.5, limits: dict | None = None, volumes: dict | None = None
) -> Classroom:
    tag = secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix=f"reconcile-test-{tag}-"))
    classroom = Classroom(name=f"t{tag}", prefix=f"z{tag}", root=root)
    site = {
        "state_dir": "state",
        "homes_dir": "homes",
        "max_disable_fraction": max_disable_fraction,
        "lock_timeout": 60,
    }
    if limits:
        site["limits"] = limits
    if volumes:
        site["volumes"] = volumes
    classroom.site.write_text(yaml.safe_dump(site))
    return classroom


def cleanup(classroom: Classroom) -> None:
    """Remove everything the classroom created on the host, whatever state a test left it in."""
    root = str(classroom.root)  # the homes and the course folder
    with open("/proc/self/mountinfo") as handle:
        targets = [facts.unescape(line.split()[4]) for line in handle]
    for target in sorted((t for t in targets if t.startswith(root + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    for image, device in facts.read_loops(Path("/sys/block")).items():
        if image.startswith(str(classroom.root) + "/"):
            subprocess.run(["losetup", "-d", device], capture_output=True)
    accounts = facts.read_accounts(Path("/etc/passwd"), {}, {})
    for account in accounts.values():
        if account.classroom == classroom.name or account.username.startswith(classroom.prefix):
            subprocess.run(["userdel", account.username], capture_output=True)
    groups = facts.read_groups(Path("/etc/group"))
    for group in groups:
        if group.startswith(classroom.name + "-") or group.startswith(classroom.prefix):
            subprocess.run(["groupdel", group], capture_output=True)
    shutil.rmtree(classroom.root, ignore_errors=True)


def wait_for(predicate, timeout: float = 60, what: str = "condition", step: float = 0.1, ignoring: tuple = ()):
    """Poll until ``predicate()`` is true (its value is returned); fail saying what did not happen.  The
    deadline only keeps a hung wait from hanging the run: what is waited for is an event, not a time.
    ``ignoring``: exceptions that mean "not yet" (a file still being written, a server still starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ignoring:
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def full_filesystem(where: Path, size: str = "1m", keep: dict[str, bytes] | None = None) -> Iterator[Path]:
    """A real filesystem with no room left (a tmpfs of ``size``, filled to its last block), mounted at ``where``
    with the files ``keep`` written first; unmounted afterwards, whatever happens."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        for name, data in (keep or {}).items():
            (where / name).write_bytes(data)
        try:
            with open(where / "filler", "wb", buffering=0) as handle:
                while True:
                    handle.write(b"x" * 4096)
        except OSError:
            pass
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
