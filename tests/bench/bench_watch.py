#!/usr/bin/env python3
"""Edit -> converged latency of `reconcile watch`, its memory and its idle CPU.

Not a pytest test.  Needs root.  Makes a throw-away classroom of N converged students
(real accounts, mounted loop volumes), starts the daemon (resync 10 min, so only the
file's saves trigger passes), then 20 times saves classroom.yaml the way editors do
(temp file + rename) with either one student's disk quota raised or one student added,
and measures from the rename until the change is visible on the host (the image's size,
or the new account's mounted home).  Prints p50/p95, the daemon's RSS before and after,
and its CPU use while idle.  Everything is removed afterwards.

    .venv/bin/python tests/bench/bench_watch.py [--n 1000] [--edits 20] [--idle 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from hostkit import cleanup, host_ready, make_classroom  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def save(room, students: list[dict]) -> float:
    doc = {"version": 1, "name": room.name, "quotas": room.quotas, "students": students}
    tmp = room.file.with_name(".classroom.yaml.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, room.file)
    return time.monotonic()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wait(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the change did not reach the host")
        time.sleep(0.005)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    args = parser.parse_args()
    reason = host_ready()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    room = make_classroom(
        max_disable_fraction=1.0, volumes={"backend": "loop", "max_overcommit": 1000}
    )  # sparse, unfilled
    daemon = None
    try:
        site = yaml.safe_load(room.site.read_text())
        site["resync_interval"] = 600
        room.site.write_text(yaml.safe_dump(site))
        students = [{"username": room.user(f"s{i:04d}"), "name": f"Student {i}"} for i in range(args.n)]
        save(room, students)
        started = time.monotonic()
        converge = room.cli(timeout=3600)
        if converge.returncode != 0:
            print(converge.stderr[-2000:])
            return 1
        print(f"N={args.n}: converged in {time.monotonic() - started:.1f} s")
        log = open(room.root / "watch.log", "w")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        status = room.paths.state / "status.json"
        wait(lambda: status.exists(), timeout=300)
        time.sleep(1)
        rss_before = rss_kib(daemon.pid)

        latencies = {"quota": [], "add": []}
        for edit in range(args.edits):
            if edit % 2 == 0:
                index = edit // 2
                students[index] = {**students[index], "disk": "256Mi"}
                image = room.volumes.image(students[index]["username"])
                t0 = save(room, students)
                wait(lambda image=image: image.stat().st_size == 256 * 1024 * 1024)
                latencies["quota"].append(time.monotonic() - t0)
            else:
                user = room.user(f"new{edit:03d}")
                students.append({"username": user, "name": f"New {edit}"})
                home = str(room.paths.home(user))
                t0 = save(room, students)
                wait(lambda home=home: os.path.ismount(home))
                latencies["add"].append(time.monotonic() - t0)
            time.sleep(0.3)  # let the pass finish writing its status before the next save
        rss_after = rss_kib(daemon.pid)

        cpu0 = cpu_seconds(daemon.pid)
        time.sleep(args.idle)
        idle_cpu = (cpu_seconds(daemon.pid) - cpu0) / args.idle

        every = sorted(latencies["quota"] + latencies["add"])
        p95 = every[max(0, int(round(0.95 * len(every))) - 1)]
        print(
            f"edit -> converged over {len(every)} saves (N={args.n}): p50 {statistics.median(every):.3f} s, "
            f"p95 {p95:.3f} s (target p95 <= 0.3 s, issue #14)"
        )
        print(
            f"  quota raised: median {statistics.median(latencies['quota']):.3f} s; "
            f"student added: median {statistics.median(latencies['add']):.3f} s"
        )
        print(f"daemon RSS: {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after {len(every)} passes")
        print(f"daemon idle CPU: {100 * idle_cpu:.2f} % of one core over {args.idle:g} s")
        return 0
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        cleanup(room)


if __name__ == "__main__":
    sys.exit(main())
