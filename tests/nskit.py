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
        script = (
            f"mount --bind '{home}' '{inside}' && "
            f'for m in $(awk \'$5 ~ "^{homes}/" {{print $5}}\' /proc/self/mountinfo); do umount -l "$m"; done '
            "&& echo ready && exec sleep 600"
        )
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def size(self) -> int:
        """The filesystem's size as the holder sees it (statvfs inside its namespace)."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "-r", "stat", "-f", "-c", "%b %S", str(self.inside)],
            capture_output=True,
            text=True,
        )
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


class NetHost:
    """A throw-away host in a network namespace of our own, with a web server on two addresses.

    ``private`` (10.213.x.2, what a school LAN looks like) and ``public`` (203.0.113.x, a documentation range
    standing in for the internet) both live in the namespace; the host routes only those two addresses to it
    through a veth pair, so test traffic never leaves this machine.
    """

    def __init__(self, tag: str, octet: int = 77, port: int = 8080, directory: Path | None = None, cgi: bool = False):
        self.ns, self.port = f"clsrm-t{tag}", port
        self.host_if, self.ns_if = f"vt{tag}h", f"vt{tag}n"
        self.gateway, self.private, self.public = f"10.213.{octet}.1", f"10.213.{octet}.2", f"203.0.113.{octet}"
        self.server: subprocess.Popen | None = None
        steps = [
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.ns],
            ["ip", "addr", "add", f"{self.gateway}/24", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            ["ip", "route", "add", f"{self.public}/32", "dev", self.host_if],
            ["ip", "-n", self.ns, "addr", "add", f"{self.private}/24", "dev", self.ns_if],
            ["ip", "-n", self.ns, "addr", "add", f"{self.public}/32", "dev", self.ns_if],
            ["ip", "-n", self.ns, "link", "set", self.ns_if, "up"],
            ["ip", "-n", self.ns, "link", "set", "lo", "up"],
            ["ip", "-n", self.ns, "route", "add", "default", "via", self.gateway],
        ]
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, text=True)
            self.server = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.ns,
                    "python3",
                    "-m",
                    "http.server",
                    str(port),
                    "--bind",
                    "0.0.0.0",
                    *(["--directory", str(directory)] if directory is not None else []),
                    *(["--cgi"] if cgi else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while (
                subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        self.ns,
                        "python3",
                        "-c",
                        f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)",
                    ],
                    capture_output=True,
                ).returncode
                != 0
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test host's web server did not start")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        remove_host(self.server, self.host_if, self.ns)


def remove_host(server: subprocess.Popen | None, host_if: str, ns: str) -> None:
    """Undo a test host: its server's whole group, the veth pair (the peer goes with it), the namespace."""
    if server is not None and server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
