#!/usr/bin/env python3
"""Class-start storm on one server and on a swarm of two workers, side by side (same N, same machine).

Not a pytest test (nothing here asserts on time).  Needs what tests/swarm needs: root, dockerd,
configurable-http-proxy, the student image.  For each mode it makes a throw-away classroom of N students
(memory 256Mi, cpu 1, disk 128Mi), converges it, starts `reconcile hub`, logs everyone in through the real
form, then releases N threads at once; each POSTs /hub/api/users/<name>/server and follows the spawn
page's progress stream until ready.  It prints, per mode: failures, time until all were ready, p50/p95
time-to-ready, the hub's start slots, and (swarm) how the servers spread over the workers.

What this machine can and cannot show: the swarm's workers here are dockerd's in network namespaces of one
2-core machine (tests/swarmkit.py), so they share its CPU.  The comparison measures what the swarm path
costs (scheduling, volumes and configs per start, a host-mode port per worker), not the capacity more
machines add: on real workers each has cores of its own, and the hub's start slots grow with them
(hub/swarm.py: two per worker CPU).

    .venv/bin/python tests/bench/bench_swarm_storm.py [--n 30] [--deadline 900] [--only single|swarm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hubbench as hb  # noqa: E402  (puts tests/ on sys.path)

from hostkit import cleanup, make_classroom  # noqa: E402
from hubkit import Hub, add_hub  # noqa: E402
from imagekit import TAG, build_test_image  # noqa: E402
from swarmkit import HOST_ADDRESS, Swarm  # noqa: E402

CORES = os.cpu_count() or 1


def storm(n: int, deadline: float, swarm: Swarm | None) -> dict:
    room = make_classroom()
    extra = {}
    if swarm is not None:
        extra = {
            "spawner": "swarm",
            "swarm": {
                "address": HOST_ADDRESS,
                "homes": "shared",
                "workers": [{"address": w.address, "docker": w.endpoint} for w in swarm.workers],
            },
        }
    add_hub(room, image=TAG, **extra)
    room.quotas = {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}}
    width = len(str(n))
    room.write([{"username": f"s{i:0{width}d}"} for i in range(1, n + 1)])
    users = [room.user(f"s{i:0{width}d}") for i in range(1, n + 1)]
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if swarm is not None:
        env["DOCKER_HOST"] = swarm.manager.endpoint
    hub = Hub(room)
    out: dict = {"mode": "swarm (2 workers)" if swarm else "one server", "n": n}
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "reconciler", "--site", str(room.site), "-f", str(room.file)],
            capture_output=True,
            text=True,
            env=env,
        )
        if not hb.host_converged(ran):
            out["error"] = f"reconcile: {(ran.stdout + ran.stderr)[-800:]}"
            return out
        hub.start(timeout=180, env=env)
        with ThreadPoolExecutor(max_workers=4) as pool:
            sessions = dict(zip(users, pool.map(lambda u: hub.login(u, hb.password(room, u)), users), strict=False))
        results: dict[str, hb.Spawn] = {}

        def student(user: str) -> None:
            results[user] = hb.spawn_and_wait(hub.url, sessions[user], user, deadline)

        out["all_ready_s"] = hb.at_once(users, student)
        spawns = [results[u] for u in users]
        out["failures"] = [f"{s.user}: {s.failure}" for s in spawns if not s.ok]
        out["times"] = [s.ready_s for s in spawns if s.ok]
        if out["failures"]:
            keep = Path(f"/tmp/bench_swarm_storm-{room.name}-hub.log")
            shutil.copy(hub.log, keep)
            out["failures"].append(f"(the hub's log is kept in {keep})")
        slots = [line for line in hub.log.read_text().splitlines() if "start slots" in line]
        out["slots"] = slots[-1] if slots else ""
        if swarm is not None:
            api = swarm.manager.client().api
            nodes = {node["ID"]: node["Description"]["Hostname"] for node in api.nodes()}
            tasks = api.tasks(filters={"desired-state": "running"})
            out["spread"] = dict(Counter(nodes.get(t.get("NodeID"), "?") for t in tasks))
        return out
    finally:
        hub.stop()
        if swarm is not None:
            api = swarm.manager.client().api
            for service in api.services(filters={"label": f"org.classroom.classroom={room.name}"}):
                api.remove_service(service["ID"])
        else:
            hb.remove_containers(room.name, (f"jupyter-{room.name}",))
            hub.remove_network()
        time.sleep(2)
        cleanup(room)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="students who press start at the same instant")
    parser.add_argument("--deadline", type=float, default=900, help="seconds each start may take")
    parser.add_argument("--only", choices=("single", "swarm"), help="run one mode only")
    args = parser.parse_args()
    reason = hb.cannot_run()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    build_test_image()
    results = []
    if args.only != "swarm":
        print(f"== one server, N={args.n}", flush=True)
        results.append(storm(args.n, args.deadline, None))
    if args.only != "single":
        print(f"== swarm of 2 workers, N={args.n}", flush=True)
        swarm = Swarm(workers=2)
        swarm.start()
        try:
            from reconciler.config.site import SwarmWorker
            from reconciler.image.nodes import push

            pushed = push(TAG, [SwarmWorker(address=w.address, docker=w.endpoint) for w in swarm.workers])
            print("   image: " + ", ".join(f"{p.worker} {p.result}" for p in pushed), flush=True)
            results.append(storm(args.n, args.deadline, swarm))
        finally:
            swarm.stop()
    print("\n" + "=" * 90)
    print(f"machine: {CORES} cores (the swarm's workers share them: see the docstring); servers 256Mi, cpu 1")
    for r in results:
        print(f"\n{r['mode']}, N={r['n']}")
        if r.get("error"):
            print(f"  ERROR: {r['error']}")
            continue
        times = r["times"]
        failed = [f for f in r["failures"] if not f.startswith("(")]
        print(f"  failures: {len(failed)} of {r['n']}" + "".join(f"\n    {f}" for f in r["failures"]))
        print(f"  all ready after {r['all_ready_s']:.1f} s")
        if times:
            print(
                f"  time-to-ready p50 {statistics.median(times):.1f} s, p95 {hb.percentile(times, 95):.1f} s, "
                f"max {max(times):.1f} s"
            )
        if r.get("slots"):
            print(f"  hub: {r['slots'].split('] ', 1)[-1]}")
        if r.get("spread"):
            print(f"  servers per worker: {r['spread']}")
    if len(results) == 2 and all("all_ready_s" in r for r in results):
        print(
            f"\nswarm / one server, time until all ready: {results[1]['all_ready_s'] / results[0]['all_ready_s']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
