"""A process holding a volume the way a running server's container does: its own mount namespace, a bind mount."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class Holder:
    """A process in a mount namespace of its own with a bind mount of ``home`` (what a container does).

    `unshare -m` starts from a copy of the host's mounts; a container does not, so the holder drops the
    other homes it inherited and keeps only its bind mount of this one.
    """

    def __init__(self, home: Path, inside: Path):
        inside.mkdir(parents=True, exist_ok=True)
        self.inside = inside
        homes = str(home.parent)
        script = (f"mount --bind '{home}' '{inside}' && "
                  f"for m in $(awk '$5 ~ \"^{homes}/\" {{print $5}}' /proc/self/mountinfo); do umount -l \"$m\"; done "
                  "&& echo ready && exec sleep 600")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def size(self) -> int:
        """The filesystem's size as the holder sees it (statvfs inside its namespace)."""
        done = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "-r", "stat", "-f", "-c", "%b %S",
                               str(self.inside)], capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"nsenter/stat in pid {self.proc.pid}'s namespace failed: {done.stderr.strip()}")
        out = done.stdout.split()
        return int(out[0]) * int(out[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10  # the namespace, and with it the mount, goes with its last process
        while time.monotonic() < deadline and Path(f"/proc/{self.proc.pid}").exists():
            time.sleep(0.05)
