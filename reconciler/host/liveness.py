"""Is the daemon alive, and do the hub's helpers die with the hub: heartbeats, systemd's notify protocol, and
PR_SET_PDEATHSIG.

The daemon writes <state_dir>/heartbeat.json every BEAT seconds from a thread of its own (its pid, the time, and
whether a pass is running and since when); ``look`` reads it for `reconcile status`, the teacher API and the
page, so they can say when edits are no longer being applied.  Under systemd (Type=notify) the same thread sends
READY=1 and WATCHDOG=1; a pass that runs for longer than STUCK stops the watchdog pings, so systemd restarts a
daemon that hangs.  The hub's managed services (the teacher service, the culler) ask the kernel for SIGTERM when
their parent dies: a hub killed with SIGKILL leaves no service behind holding its port.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

BEAT = 10.0  # seconds between heartbeats
STALE = 3 * BEAT  # a heartbeat older than this: the daemon is not running (or stuck outside a pass)
STUCK = 15 * 60.0  # a pass running this long is taken for hung: the watchdog pings stop


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` when the parent process dies (PR_SET_PDEATHSIG); if it died already, exit."""
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent or parent == 1:  # orphaned before the request took effect
        os.kill(os.getpid(), sig)


def notify(*lines: str) -> bool:
    """systemd's sd_notify: send ``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` to $NOTIFY_SOCKET (False: no socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    import socket  # only under systemd

    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(lines).encode(), address)
        except OSError:
            return False
    return True


def beat(path: Path, **state) -> None:
    """One heartbeat: a small JSON file replaced whole (no fsync: it is worth nothing after a crash)."""
    record = {"pid": os.getpid(), "time": time.time(), **state}
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    os.replace(temp, path)


def look(path: Path, now: float | None = None) -> dict:
    """The daemon as its heartbeat shows it: ``running`` (a fresh heartbeat from a live process), how old the
    heartbeat is, and the pass in progress; {"running": False, "heard": None} when it never beat here."""
    now = time.time() if now is None else now
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"running": False, "heard": None, "pid": None, "pass_started": None}
    age = max(0.0, now - float(record.get("time", 0)))
    pid = record.get("pid")
    running = age <= STALE and isinstance(pid, int) and _alive(pid)
    return {"running": running, "heard": round(age, 1), "pid": pid, "pass_started": record.get("pass_started")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def describe(found: dict) -> str:
    """One line for `reconcile status` and the page's log."""
    if found["running"]:
        doing = "in a pass" if found.get("pass_started") else "waiting for a change"
        return f"running (pid {found['pid']}, {doing}, heard from {found['heard']:g} s ago)"
    if found["heard"] is None:
        return "not running: edits to classroom.yaml are applied only by `reconcile` run by hand"
    return (
        f"NOT RUNNING (last heard from {_ago(found['heard'])} ago): edits to classroom.yaml are not being "
        "applied; start it (systemctl start classroom-reconcile, or reconcile up)"
    )


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
