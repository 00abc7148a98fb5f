"""Running host commands: one place for argv, stdin, errors and the inherited lock.

Children inherit the pass lock's file descriptor, so if reconcile itself is
killed mid-command (SIGKILL, OOM) the orphaned mkfs or resize2fs still holds
the lock and the next pass waits for it instead of racing it.
"""

from __future__ import annotations

import subprocess
from typing import Sequence

_inherited_fds: tuple[int, ...] = ()


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], code: int, stderr: str):
        self.argv, self.code, self.stderr = list(argv), code, stderr.strip()
        super().__init__(f"{argv[0]} exited {code}: {self.stderr or '(no message)'}")


def inherit(fds: tuple[int, ...]) -> None:
    global _inherited_fds
    _inherited_fds = fds


def run(argv: Sequence[str], stdin: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run a command (never through a shell); secrets go on ``stdin``, never in ``argv``."""
    proc = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        pass_fds=_inherited_fds,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )
    if proc.returncode not in ok_codes:
        raise CommandFailed(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc.stdout


def succeeds(argv: Sequence[str]) -> bool:
    """True when the command exits 0 (for checks such as `iptables -C`)."""
    return subprocess.run(list(argv), capture_output=True, pass_fds=_inherited_fds,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}).returncode == 0
