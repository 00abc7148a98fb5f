"""The runner: the one way the host layer changes the system as root.

Commands run without a shell, with a fixed PATH and locale; secrets go on
stdin, never in argv.  Ownership and mode changes go through the runner too,
so a driver's every privileged effect is something a recording runner can
list in a test without root (tests/driverkit.py).

A runner carries the file descriptors its children inherit: the pass lock's,
so that if reconcile itself is killed mid-command (SIGKILL, OOM) the orphaned
mkfs or resize2fs still holds the lock and the next pass waits for it instead
of racing it.  Each pass makes its own runner; nothing is process-global.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from collections.abc import Sequence

from ..config.site import NETWORK_VARIABLES

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def environment() -> dict[str, str]:
    """A fixed PATH and locale, plus the school's network settings from ours (proxy, mirror, CA, DOCKER_HOST):
    nothing else of the caller's environment reaches a command."""
    return {**{name: os.environ[name] for name in NETWORK_VARIABLES if name in os.environ}, **ENV}


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], code: int, stderr: str):
        self.argv, self.code, self.stderr = list(argv), code, stderr.strip()
        super().__init__(f"{argv[0]} exited {code}: {self.stderr or '(no message)'}")


class Runner:
    def __init__(self, pass_fds: tuple[int, ...] = ()):
        self.pass_fds = pass_fds

    def holding(self, *fds: int) -> Runner:
        """The same runner whose children also inherit ``fds`` (a lock)."""
        return Runner(self.pass_fds + fds)

    def run(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        ok_codes: tuple[int, ...] = (0,),
        timeout: float | None = None,
    ) -> str:
        """Run a command and return its stdout; raise CommandFailed on any other exit code, or when it runs longer
        than ``timeout`` seconds (it is killed)."""
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                text=True,
                pass_fds=self.pass_fds,
                env=environment(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise CommandFailed(argv, -9, f"killed after {timeout:g} s") from None
        if proc.returncode not in ok_codes:
            raise CommandFailed(argv, proc.returncode, proc.stderr or proc.stdout)
        return proc.stdout

    def succeeds(self, argv: Sequence[str]) -> bool:
        """True when the command exits 0 (for checks such as `iptables -C`)."""
        return (
            subprocess.run(list(argv), capture_output=True, pass_fds=self.pass_fds, env=environment()).returncode == 0
        )

    def chown(self, path: Path, uid: int, gid: int) -> None:
        os.chown(path, uid, gid)

    def chmod(self, path: Path, mode: int) -> None:
        os.chmod(path, mode)


def run(argv: Sequence[str], stdin: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    """A command outside any pass (image builds, hub set-up): no lock to pass on."""
    return Runner().run(argv, stdin, ok_codes)


def succeeds(argv: Sequence[str]) -> bool:
    return Runner().succeeds(argv)


def as_user(uid: int, gid: int) -> list[str]:
    """The prefix that runs a command as the student: their uid and group only, no capabilities."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs", "--"]
