#!/usr/bin/env python3
"""The teacher API at class size: GET /api/students (the page's table) with N converged students.

Not a pytest test (nothing here asserts on time).  Needs root, dockerd, configurable-http-proxy.  A throw-away
classroom of N students and a teacher is converged, `reconcile hub` started, the teacher makes a token with the
classroom scope, and `GET /services/classroom/api/students` is timed `--repeat` times through the proxy, one
after another (a teacher's page, not a crowd): first with no daemon (each request observes the host: the
baseline), then with `reconcile watch` running (the host part comes from its snapshot.json; the hub and Docker are
still asked per request).  Prints p50/p95/max of both, the size of the answer, and, for the same N, the engine's
dry run alone in-process.  Target (issue #14): p95 <= 150 ms at N = 1000.

    .venv/bin/python tests/bench/bench_api.py [--n 1000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hubbench as hb  # noqa: E402  (puts tests/ on sys.path)
import requests  # noqa: E402

from hostkit import cleanup  # noqa: E402
from hubkit import Hub, xsrf  # noqa: E402

SCOPE = "custom:classroom:manage"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="students in the class")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests")
    args = parser.parse_args()
    reason = hb.cannot_run()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    room = hb.big_class(args.n)
    hub = Hub(room)
    times: list[float] = []
    size = 0
    try:
        if not hb.converge_and_start(room, hub, args.n):
            return 1
        teacher = room.user("tea")
        session = hub.login(teacher, hb.password(room, teacher))
        made = session.post(
            f"{hub.url}/hub/api/users/{teacher}/tokens",
            json={"note": "bench", "scopes": [SCOPE]},
            headers=xsrf(session),
            timeout=30,
        )
        token = made.json()["token"]
        api = requests.Session()
        api.headers["Authorization"] = f"token {token}"
        url = f"{hub.url}/services/classroom/api/students"
        deadline = time.monotonic() + 60
        while api.get(url, timeout=60).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)  # the service is still starting

        def timed() -> list[float] | None:
            nonlocal size
            out = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                response = api.get(url, timeout=60)
                out.append(time.perf_counter() - start)
                if response.status_code != 200:
                    print(f"HTTP {response.status_code}: {response.text[:300]}")
                    return None
                size = len(response.content)
            return out

        baseline = timed()
        if baseline is None:
            return 1
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            snapshot = room.paths.snapshot
            deadline = time.monotonic() + 120
            while not (snapshot.exists() and snapshot.stat().st_mtime > room.file.stat().st_mtime):
                if time.monotonic() > deadline:
                    print("the daemon wrote no snapshot.json")
                    return 1
                time.sleep(0.5)
            api.get(url, timeout=60)  # the service parses the new snapshot once
            found = timed()
            seen = api.get(url, timeout=60).json()["host_seen"]
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
        if found is None:
            return 1
        times = found
        from reconciler.config.load import load_classroom, load_site
        from reconciler.engine import passes as engine

        settings = load_site(room.site)
        classroom = load_classroom(room.file, settings)
        engine_times = []
        for _ in range(5):
            start = time.perf_counter()
            engine.look(settings, classroom, locked=False)
            engine_times.append(time.perf_counter() - start)
    finally:
        hub.stop()
        hub.remove_network()
        cleanup(room)
    print("\n" + "=" * 90)
    print(f"machine: {os.cpu_count()} cores; N={args.n}; GET /api/students x{args.repeat}, {size / 1024:.0f} KiB each")
    print(
        f"no daemon, host observed per request: p50 {statistics.median(baseline) * 1000:.0f} ms, "
        f"p95 {hb.percentile(baseline, 95) * 1000:.0f} ms, max {max(baseline) * 1000:.0f} ms"
    )
    print(
        f"with the daemon (host part from its snapshot, {seen:.0f} s old): p50 {statistics.median(times) * 1000:.0f} "
        f"ms, p95 {hb.percentile(times, 95) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (target p95 <= 150 ms); "
        f"ratio p95 {hb.percentile(times, 95) / hb.percentile(baseline, 95):.2f}"
    )
    print(
        f"the engine's dry run alone (observe incl. the hub's users and Docker, plan), in-process: median "
        f"{statistics.median(engine_times) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
