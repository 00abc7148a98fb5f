"""`reconcile up`'s supervisor: what systemd's Restart= does for the units, where no init system runs.

    python -m reconciler.host.supervisor SPEC

SPEC is a JSON file: {"components": [{"name": "hub", "argv": [...]}, ...]}, in the state directory.  Each
component runs in a process group of its own, its output through a rotating log (host/logpipe.py) to
<state_dir>/<name>.log, its pid in <name>.pid.  A component that exits is started again after a backoff (1 s,
doubling up to 60 s; back to 1 s once it has run for a minute); SIGHUP reads SPEC again (a component added is
started, one removed is stopped); SIGTERM stops every component's whole tree, then the supervisor exits.
<state_dir>/supervisor.json says what runs, since when, how often it was restarted and how it last ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import contextlib

FIRST_BACKOFF, MAX_BACKOFF, STEADY = 1.0, 60.0, 60.0


def stop_tree(pid: int, grace: float = 20.0) -> None:
    """SIGTERM the process's group and everything below it (JupyterHub starts its services in sessions of their
    own), wait, then SIGKILL whatever is left.  The group is signalled even when its leader is gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)  # its process group (started in a session of its own)
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, lingering = psutil.wait_procs(tree, timeout=grace)
    for process in lingering:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(lingering, timeout=5)


def start_logged(name: str, argv: list[str], state: Path) -> tuple[subprocess.Popen, subprocess.Popen]:
    """``argv`` in a session (and process group) of its own, its output through the rotating log writer; the
    process and its log writer (which ends once everything holding the pipe has)."""
    read_end, write_end = os.pipe()
    try:
        writer = subprocess.Popen(
            [sys.executable, "-m", "reconciler.host.logpipe", str(state / f"{name}.log")],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = subprocess.Popen(argv, stdout=write_end, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(read_end)
        os.close(write_end)
    (state / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc, writer


@dataclass
class Component:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0  # time.monotonic() of the last start (0: never started)
    since: str | None = None  # the same, as a UTC time for people
    restarts: int = 0
    backoff: float = FIRST_BACKOFF
    next_start: float = 0.0
    last_exit: str | None = None

    def view(self) -> dict:
        return {
            "pid": self.proc.pid if self.proc else None,
            "since": self.since if self.proc else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class Supervisor:
    def __init__(self, spec: Path):
        self.spec, self.state = spec, spec.parent
        self.components: dict[str, Component] = {}
        self.stopping = False
        self.reload = True
        self.written: dict | None = None
        self.writers: list[subprocess.Popen] = []  # the components' log writers (host/logpipe.py)

    def read_spec(self) -> None:
        wanted = {c["name"]: c["argv"] for c in json.loads(self.spec.read_text())["components"]}
        for name in list(self.components):
            if name not in wanted:
                self._stop(self.components.pop(name))
        for name, argv in wanted.items():
            if name not in self.components:
                self.components[name] = Component(name, argv)
            else:
                self.components[name].argv = argv

    def run(self) -> int:
        # Orphans of a component that died (what it started in sessions of their own: the proxy) become our
        # children instead of init's, so they are found and stopped with it (PR_SET_CHILD_SUBREAPER).
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        while not self.stopping:
            if self.reload:
                self.reload = False
                self.read_spec()
            now = time.monotonic()
            for component in self.components.values():
                self._tend(component, now)
            self._write_status()
            self.writers = [w for w in self.writers if w.poll() is None]
            time.sleep(0.5)
        for component in self.components.values():
            self._stop(component)
        self._stop_orphans()
        self._write_status()
        return 0

    def _stop_orphans(self) -> None:
        """Stop our children that are neither a running component nor a log writer: what dead components left."""
        known = {c.proc.pid for c in self.components.values() if c.proc} | {w.pid for w in self.writers}
        for child in psutil.Process().children():
            if child.pid not in known:
                stop_tree(child.pid, grace=5)

    def _tend(self, component: Component, now: float) -> None:
        if component.proc is not None:
            code = component.proc.poll()
            if code is None:
                if now - component.started >= STEADY:
                    component.backoff = FIRST_BACKOFF  # ran a while: a later failure starts the backoff afresh
                return
            how = f"exit {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            component.last_exit = f"{_utc()}: {how}"
            print(
                f"supervisor: {component.name} ended ({how}); starting it again in {component.backoff:g} s", flush=True
            )
            stop_tree(component.proc.pid, grace=5)  # what it left in its group
            component.proc = None
            self._stop_orphans()  # and in sessions of their own (reparented to us)
            component.next_start = now + component.backoff
            component.backoff = min(MAX_BACKOFF, component.backoff * 2)
            return
        if now >= component.next_start:
            if component.started:
                component.restarts += 1
            component.proc, writer = start_logged(component.name, component.argv, self.state)
            self.writers.append(writer)
            component.started, component.since = now, _utc()
            print(f"supervisor: {component.name} started (pid {component.proc.pid})", flush=True)

    def _stop(self, component: Component) -> None:
        if component.proc is not None:
            stop_tree(component.proc.pid)
            component.proc.wait(timeout=5)
            component.proc = None
        (self.state / f"{component.name}.pid").unlink(missing_ok=True)

    def _write_status(self) -> None:
        record = {"pid": os.getpid(), "components": {n: c.view() for n, c in self.components.items()}}
        if record == self.written:
            return
        self.written = record
        temp = self.state / ".supervisor.json.tmp"
        temp.write_text(json.dumps(record) + "\n")
        os.replace(temp, self.state / "supervisor.json")

    def _on_term(self, *_args) -> None:
        self.stopping = True

    def _on_hup(self, *_args) -> None:
        self.reload = True


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(argv: list[str]) -> int:
    return Supervisor(Path(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
