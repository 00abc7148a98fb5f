"""Facts in, commands out: run a host driver against fixture files with a recording runner.

In the style of pyinfra's operation tests.  ``FakeHost`` writes a small /etc
(passwd, group, shadow), a mountinfo and a sysfs tree under a temp directory;
``RecordingRunner`` takes the place of ``reconciler.host.run.Runner``: it
records every command (argv and stdin) and every ownership or mode change,
and answers commands from a table instead of running them.  No root, no
subprocess: what a driver would do to the host is a list to compare.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence

from reconciler.config.site import Paths
from reconciler.core.desired import Member
from reconciler.host.drivers import Context
from reconciler.host.facts import HostFiles, escape, gecos
from reconciler.host.run import CommandFailed, Runner
from reconciler.host.volumes.loop import LoopBackend

Answer = str | Exception


class RecordingRunner(Runner):
    """Records what a driver asks of the host; runs nothing."""

    def __init__(self, answer: Callable[[Sequence[str]], Answer] | dict[str, Answer] | None = None):
        super().__init__()
        self.answer = answer or {}
        self.calls: list[tuple] = []

    def holding(self, *fds: int) -> RecordingRunner:
        return self

    def _answer(self, argv: Sequence[str]) -> str:
        found = self.answer(argv) if callable(self.answer) else self.answer.get(argv[0], "")
        if isinstance(found, Exception):
            raise found
        return found

    def run(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        ok_codes: tuple[int, ...] = (0,),
        timeout: float | None = None,
    ) -> str:
        self.calls.append(tuple(argv) if stdin is None else (*argv, f"<stdin {stdin!r}>"))
        return self._answer(argv)

    def succeeds(self, argv: Sequence[str]) -> bool:
        self.calls.append(tuple(argv))
        try:
            self._answer(argv)
        except CommandFailed:
            return False
        return True

    def chown(self, path: Path, uid: int, gid: int) -> None:
        self.calls.append(("chown", f"{uid}:{gid}", str(path)))

    def chmod(self, path: Path, mode: int) -> None:
        self.calls.append(("chmod", f"{mode:04o}", str(path)))


def failed(argv0: str, stderr: str, code: int = 1) -> CommandFailed:
    return CommandFailed([argv0], code, stderr)


@dataclass
class FakeHost:
    """A host made of files: /etc, mountinfo, sysfs loop devices, the state dir and the homes, all under ``root``."""

    root: Path
    classroom: str = "py101"
    passwd: list[str] = field(default_factory=lambda: ["root:x:0:0:root:/root:/bin/bash"])
    group: list[str] = field(default_factory=lambda: ["root:x:0:"])
    shadow: list[str] = field(default_factory=lambda: ["root:*:19000:0:99999:7:::"])
    mounts: list[tuple[str, str, str, str]] = field(default_factory=list)  # (device, target, source, options)
    loops: dict[str, str] = field(default_factory=dict)  # image -> loopN
    alive: set[str] = field(default_factory=set)  # devices whose ext4 is mounted somewhere (/sys/fs/ext4/<dev>)
    namespaces: dict[int, tuple[str, list[str], str]] = field(default_factory=dict)  # pid -> (ns, devices, comm)
    online_resize: bool = True  # CAP_SYS_RESOURCE in this process's effective capabilities
    today: int = 19_000
    etab: list[str] = field(default_factory=list)  # the kernel's NFS export table (path<TAB>client(options))

    @property
    def paths(self) -> Paths:
        return Paths(self.root / "state", self.root / "homes")

    def person(
        self,
        username: str,
        uid: int,
        name: str | None = None,
        password: str = "$y$hash",
        expire: str = "",
        groups: Sequence[str] = (),
    ) -> FakeHost:
        """An account of ours (with the GECOS marker)."""
        self.passwd.append(
            f"{username}:x:{uid}:{uid}:{gecos(name or username.capitalize(), self.classroom)}:"
            f"{self.paths.home(username)}:/usr/sbin/nologin"
        )
        self.group.append(f"{username}:x:{uid}:")
        for extra in groups:
            self.add_member(extra, username)
        self.shadow.append(f"{username}:{password}:19000:0:99999:7::{expire}:")
        return self

    def add_group(self, name: str, gid: int) -> FakeHost:
        self.group.append(f"{name}:x:{gid}:")
        return self

    def add_member(self, group: str, username: str) -> None:
        for index, line in enumerate(self.group):
            fields = line.split(":")
            if fields[0] == group:
                members = [m for m in fields[3].split(",") if m] + [username]
                self.group[index] = ":".join(fields[:3] + [",".join(members)])
                return
        self.group.append(f"{group}:x:{3000 + len(self.group)}:{username}")

    def mounted(self, source: str, target: Path, device: str = "7:0", options: str = "rw,nodev,nosuid") -> FakeHost:
        self.mounts.append((device, str(target), source, options))
        return self

    def files(self) -> HostFiles:
        etc = self.root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        for name in ("passwd", "group", "shadow"):
            (etc / name).write_text("\n".join(getattr(self, name)) + "\n")
        lines = ["22 1 8:1 / / rw - ext4 /dev/sda1 rw"]
        for index, (device, target, source, options) in enumerate(self.mounts):
            lines.append(f"{100 + index} 22 {device} / {escape(target)} {options} - ext4 {escape(source)} rw")
        (self.root / "mountinfo").write_text("\n".join(lines) + "\n")
        sys_block, dev, proc = self.root / "sys" / "block", self.root / "dev", self.root / "proc"
        for old in (self.root / "sys", dev, proc):  # the facts as they are now, not as they were
            shutil.rmtree(old, ignore_errors=True)
        sys_block.mkdir(parents=True)
        dev.mkdir()
        for image, device in self.loops.items():
            (sys_block / device / "loop").mkdir(parents=True, exist_ok=True)
            (sys_block / device / "loop" / "backing_file").write_text(image + "\n")
            (sys_block / device / "dev").write_text(f"7:{device.removeprefix('loop')}\n")
            (dev / device).symlink_to(image)  # reading the "device" reads the image, as the kernel's would
        for device in self.alive:
            (self.root / "sys" / "fs" / "ext4" / device).mkdir(parents=True)
        (proc / "self" / "ns").mkdir(parents=True)
        (proc / "self" / "ns" / "mnt").symlink_to("mnt:[4026531841]")
        caps = (1 << 24) if self.online_resize else 0
        (proc / "self" / "status").write_text(f"Name:\treconcile\nCapEff:\t{caps:016x}\n")
        for pid, (namespace, devices, comm) in self.namespaces.items():
            (proc / str(pid) / "ns").mkdir(parents=True)
            (proc / str(pid) / "ns" / "mnt").symlink_to(namespace)
            (proc / str(pid) / "comm").write_text(comm + "\n")
            (proc / str(pid) / "mountinfo").write_text(
                "".join(f"{300 + i} 1 {number} / /home/x rw - ext4 /dev/x rw\n" for i, number in enumerate(devices))
            )
        (self.root / "etab").write_text("".join(line + "\n" for line in self.etab))
        return HostFiles(
            etc=etc,
            mountinfo=self.root / "mountinfo",
            sys_block=sys_block,
            dev=dev,
            sys_fs=self.root / "sys" / "fs",
            sys_dev=self.root / "sys" / "dev" / "block",
            proc=proc,
            nfs_etab=self.root / "etab",
            clock=lambda: self.today * 86400.0,
        )

    def device(self, name: str) -> str:
        """The path a loop device has on this fake host."""
        return str(self.root / "dev" / name)

    def context(
        self, runner: RecordingRunner, members: Sequence[Member] = (), credentials=None, volumes=None
    ) -> Context:
        files = self.files()
        return Context(
            classroom=self.classroom,
            paths=self.paths,
            volumes=volumes or LoopBackend(self.paths, runner, files),
            run=runner,
            host=files,
            members={m.username: m for m in members},
            credentials=credentials,
        )


@dataclass
class FixedCredentials:
    """A credential store that issues a known password, so the test can see where it goes (stdin, never argv)."""

    secret: str = "k7qm-x3pt-zr9w"
    issued: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)

    def issue(self, username: str, name: str, emails: tuple[str, ...], reason: str) -> str:
        self.issued.append(username)
        return self.secret

    def discard(self, username: str) -> None:
        self.discarded.append(username)


def e2fsprogs(argv: Sequence[str]) -> Answer:
    """Answer a recording runner by running e2fsck and resize2fs for real on image files (no root needed),
    and lvextend/lvreduce -r on a file that stands in for the LV: the filesystem then really has the new size."""
    import os
    import subprocess

    tools = "/usr/sbin:/usr/bin:/sbin:/bin"
    if argv[0] in ("e2fsck", "resize2fs"):
        done = subprocess.run(list(argv), capture_output=True, text=True, env={"PATH": tools})
        if done.returncode not in ((0, 1, 2) if argv[0] == "e2fsck" else (0,)):
            return CommandFailed(argv, done.returncode, done.stderr)
    elif argv[0] in ("lvextend", "lvreduce"):  # -r: fsadm checks and resizes the filesystem too
        size, path = int(argv[argv.index("-L") + 1].removesuffix("b")), argv[-1]
        if argv[0] == "lvextend":
            os.truncate(path, size)
        if "-r" in argv:
            subprocess.run(["e2fsck", "-f", "-p", path], capture_output=True, env={"PATH": tools})
            subprocess.run(
                ["resize2fs", path, f"{size // 1024}K"], capture_output=True, check=True, env={"PATH": tools}
            )
        if argv[0] == "lvreduce":
            os.truncate(path, size)
    return ""
