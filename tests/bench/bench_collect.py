#!/usr/bin/env python3
"""Benchmark of collecting one assignment: N students, a few MiB of work each, collected by one real pass.

Not a pytest test (nothing here asserts on time).  Needs root: it makes a throw-away classroom with
tests/hostkit.py (N real accounts and loop-image ext4 homes, the collection area's own volume), hands
``hw1`` out, writes each student's work (``--mib`` MiB in a few files), starts a writer as each of
``--writers`` students (a stand-in for a running server: a process appending to a file in their home every
10 ms) and moves the due time into the past.  Then it times

  * the real `reconcile` pass that collects everyone (each home frozen only while its folder is copied,
    hashed and fsynced), and the freezes as the manifests record them;
  * the same-run baseline: a plain `cp -a` of the same N folders as root onto the same volume (no freeze, no
    hash, no fsync, no manifest: the floor a copy cannot go below);

and checks that every writer is still running and wrote after the pass.  Everything is removed again (also on
Ctrl-C / SIGTERM), and what would be left is said.

    .venv/bin/python tests/bench/bench_collect.py [--n 100] [--mib 3] [--writers 10]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from hostkit import cleanup, host_ready, make_classroom  # noqa: E402


def stamp(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def reconcile(room, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    argv = [sys.executable, "-m", "reconciler", "--site", str(room.site), "-f", str(room.file), *args]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    return done, time.perf_counter() - start


def write_work(home: Path, mib: int, uid: int) -> int:
    """The student's work: one large notebook and a few small files, theirs."""
    folder = home / "assignments" / "hw1"
    chunks = [("answers.ipynb", mib * 1024 * 1024 - 3 * 4096), *((f"part{i}.py", 4096) for i in range(3))]
    total = 0
    for name, size in chunks:
        path = folder / name
        path.write_bytes(os.urandom(size))
        os.chown(path, uid, uid)
        total += size
    return total


def writer(home: Path, user: str) -> subprocess.Popen:
    """A running server's stand-in: the student appending a line to a file of theirs every 10 ms."""
    script = f'while :; do date +%s.%N >> "{home}/running.log"; sleep 0.01; done'
    return subprocess.Popen(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "sh", "-c", script],
        start_new_session=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="students (default 100)")
    parser.add_argument("--mib", type=int, default=3, help="MiB of work per student (default 3)")
    parser.add_argument("--writers", type=int, default=10, help="students with a writer running (default 10)")
    args = parser.parse_args()
    reason = host_ready()
    if reason:
        print(f"cannot run here: {reason}")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    room = make_classroom()
    writers: list[subprocess.Popen] = []
    try:
        room.quotas = {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}}
        room.root.chmod(0o755)
        source = room.root / "shared" / "hw1"
        source.mkdir(parents=True)
        (source / "answers.ipynb").write_text("{}")
        source.chmod(0o755)
        (source / "answers.ipynb").chmod(0o644)
        people = [{"username": f"s{i:04d}"} for i in range(args.n)]
        now = datetime.datetime.now(datetime.UTC)
        work = {"name": "hw1", "source": "hw1", "release": stamp(now - datetime.timedelta(hours=1))}
        area_size = f"{max(256, (args.n * (args.mib + 1) * 3 // 128 + 1) * 128)}Mi"  # the copy and the baseline
        work["due"] = stamp(now + datetime.timedelta(days=1))
        room.write(people, assignments=[work], collection_disk=area_size)
        made, seconds = reconcile(room)
        if made.returncode != 0:
            print(made.stdout[-3000:], made.stderr[-3000:])
            return 1
        print(f"set-up: {args.n} students, homes, handouts and the collection area in {seconds:.1f} s")
        uids = {a.username: a.uid for a in room.observe().accounts.values()}
        users = [room.user(p["username"]) for p in people]
        total = sum(write_work(room.paths.home(u), args.mib, uids[u]) for u in users)
        writers = [writer(room.paths.home(u), u) for u in users[: args.writers]]
        time.sleep(2)  # the due time (to the second) falls after every file written: all on time
        work["due"] = stamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1))
        work["release"] = stamp(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
        room.write(people, assignments=[work], collection_disk=area_size)

        area = room.root / "collected"
        baseline = area / "baseline"
        baseline.mkdir()
        start = time.perf_counter()
        for user in users:
            subprocess.run(
                ["cp", "-a", str(room.paths.home(user) / "assignments" / "hw1"), str(baseline / user)], check=True
            )
        floor = time.perf_counter() - start
        subprocess.run(["rm", "-rf", str(baseline)], check=True)

        sizes_before = {
            w.pid: (room.paths.home(u) / "running.log").stat().st_size for w, u in zip(writers, users, strict=False)
        }
        collected, seconds = reconcile(room)
        if collected.returncode != 0:
            print(collected.stdout[-3000:], collected.stderr[-3000:])
            return 1
        time.sleep(0.5)
        alive = sum(1 for w in writers if w.poll() is None)
        grew = sum(
            1
            for w, u in zip(writers, users, strict=False)
            if (room.paths.home(u) / "running.log").stat().st_size > sizes_before[w.pid]
        )
        manifests = [json.loads((area / "manifests" / "hw1" / f"{u}.json").read_text()) for u in users]
        pauses = [float(m["how"].split("paused ")[1].split(" s")[0]) for m in manifests if "paused" in m["how"]]
        statuses = {s: sum(1 for m in manifests if m["status"] == s) for s in ("on time", "late", "missing")}
        again, second = reconcile(room, "--dry-run")
        print(
            f"\n{datetime.date.today()}  {platform.node()}  {os.cpu_count()} CPUs  Python {platform.python_version()}\n"
        )
        print(f"collecting hw1 from {args.n} students, {total / 2**20:.0f} MiB in all ({args.mib} MiB each)")
        print(f"  reconcile pass (collects all):        {seconds:7.2f} s   ({total / 2**20 / seconds:.0f} MiB/s)")
        print(f"  baseline, cp -a of the same folders:  {floor:7.2f} s   ({total / 2**20 / floor:.0f} MiB/s)")
        if pauses:
            print(
                f"  each home's writes paused: median {statistics.median(pauses) * 1000:.0f} ms, "
                f"max {max(pauses) * 1000:.0f} ms ({len(pauses)} homes)"
            )
        print(f"  verdicts: {statuses}")
        print(f"  writers still running after the pass: {alive}/{len(writers)}; wrote after it: {grew}/{len(writers)}")
        print(
            f"  the next pass collects nothing: {'yes' if '+ collection' not in again.stdout else 'NO'} ({second:.2f} s)"
        )
        return 0
    finally:
        for w in writers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.pid, signal.SIGKILL)
            w.wait()
        cleanup(room)


if __name__ == "__main__":
    sys.exit(main())
