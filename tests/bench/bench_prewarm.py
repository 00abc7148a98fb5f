#!/usr/bin/env python3
"""The start of a lesson, cold and pre-warmed, side by side in the same run (same N, same machine).

Not a pytest test (nothing here asserts on time).  Needs root, dockerd, configurable-http-proxy and the student
image.  A throw-away classroom of N students (memory 256Mi, cpu 1, disk 128Mi) is converged, `reconcile hub`
started, and everyone logs in once (so the hub knows them, as after a first lesson).  Then:

- cold: N students log in at the same instant (threads behind a barrier) with a fresh browser session each, press
  start, follow the spawn page's progress stream, and open JupyterLab: login -> JupyterLab (HTTP 200) per student.
  All servers are stopped again.
- pre-warmed: classroom.yaml gets a lesson that is on now; `reconcile prewarm --wait` starts the servers one per
  hub.prewarm.pace (what the daemon does before a lesson) until all are ready; then the same N log in at the same
  instant and open JupyterLab (their server is up: login, the server's OAuth round trip with the hub, the page).

Prints failures, p50/p95/max of login -> JupyterLab for both, the ratio, and how long the pre-warm took at its
pace (the work moved before the lesson).  Target: pre-warmed p95 <= 2 s, 0 failures.

    .venv/bin/python tests/bench/bench_prewarm.py [--n 50] [--deadline 900]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hubbench as hb  # noqa: E402  (puts tests/ on sys.path)
import requests  # noqa: E402

from hostkit import cleanup, make_classroom  # noqa: E402
from hubkit import Hub, add_hub  # noqa: E402
from imagekit import TAG, build_test_image  # noqa: E402

CORES = os.cpu_count() or 1
UTC = dt.UTC


def open_lab(hub: Hub, session: requests.Session, user: str) -> str:
    """GET /user/<user>/lab through the proxy, following the server's OAuth round trip: '' or what failed."""
    response = session.get(f"{hub.url}/user/{user}/lab", timeout=120)
    if response.status_code != 200 or "JupyterLab" not in response.text:
        return f"/user/{user}/lab -> HTTP {response.status_code}"
    return ""


def storm(hub: Hub, room, users: list[str], warm: bool, deadline: float) -> dict:
    times: dict[str, float] = {}
    failures: dict[str, str] = {}

    def student(user: str) -> None:
        start = time.perf_counter()
        try:
            session = hub.login(user, hb.password(room, user))
            if session is None:
                failures[user] = "login refused"
                return
            if not warm:
                spawn = hb.spawn_and_wait(hub.url, session, user, deadline)
                if not spawn.ok:
                    failures[user] = spawn.failure
                    return
            problem = open_lab(hub, session, user)
            if problem:
                failures[user] = problem
                return
            times[user] = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - a benchmark reports, never raises
            failures[user] = f"{type(exc).__name__}: {exc}"

    pids = hb.hub_processes((room.root,))[0]
    hub_pid = [pid for pid, cmd in pids if "configurable-http-proxy" not in cmd and "culler" not in cmd]
    proxy_pid = [pid for pid, cmd in pids if "configurable-http-proxy" in cmd]
    before = (
        hb.host_busy_seconds(),
        hb.pids_cpu(hub_pid),
        hb.pids_cpu(proxy_pid),
        hb.docker_cgroup_cpu(),
        time.process_time(),
    )
    all_s = hb.at_once(users, student)
    after = (
        hb.host_busy_seconds(),
        hb.pids_cpu(hub_pid),
        hb.pids_cpu(proxy_pid),
        hb.docker_cgroup_cpu(),
        time.process_time(),
    )
    busy, hub_cpu, proxy_cpu, servers, client = (b - a for a, b in zip(before, after, strict=False))
    cpu = {"wall": all_s, "busy": busy, "hub": hub_cpu, "proxy": proxy_cpu, "servers": servers, "client": client}
    return {"all_s": all_s, "times": list(times.values()), "failures": failures, "cpu": cpu}


def cpu_line(cpu: dict) -> str:
    """Where the machine's CPU went while the class logged in (CPU-seconds over the storm's wall time)."""
    other = cpu["busy"] - cpu["hub"] - cpu["proxy"] - cpu["servers"] - cpu["client"]
    return (
        f"{cpu['wall']:.1f} s wall x {CORES} cores = {cpu['wall'] * CORES:.1f} CPU-s; busy {cpu['busy']:.1f} = "
        f"hub {cpu['hub']:.1f} (its process: {cpu['hub'] / cpu['wall']:.0%} of one core) + proxy "
        f"{cpu['proxy']:.1f} + student servers {cpu['servers']:.1f} + this script's browsers {cpu['client']:.1f} "
        f"+ other {other:.1f}"
    )


def stop_all(hub: Hub, users: list[str]) -> None:
    for user in users:
        hub.api("DELETE", f"/users/{user}/server")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if not any(hub.api("GET", f"/users/{u}").json().get("servers", {}).get("") for u in users):
            return
        time.sleep(2)


def all_ready(hub: Hub, users: list[str], timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        models = [hub.api("GET", f"/users/{u}").json() for u in users]
        if all((m.get("servers", {}).get("") or {}).get("ready") for m in models):
            return time.perf_counter() - start
        time.sleep(2)
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="students who log in at the same instant")
    parser.add_argument("--deadline", type=float, default=900, help="seconds each cold start may take")
    parser.add_argument("--skip-cold", action="store_true", help="only the pre-warmed lesson")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="pre-warmed logins this many times (fresh sessions each), figures over all of them",
    )
    parser.add_argument("--pace", type=float, help="hub.prewarm.pace (default: the site's default)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the hub's processes with py-spy (pip install py-spy) during the pre-warmed "
        "logins: collapsed stacks, one per line with its sample count",
    )
    args = parser.parse_args()
    reason = hb.cannot_run()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    build_test_image()
    room = make_classroom()
    add_hub(room, image=TAG, **({"prewarm": {"pace": args.pace}} if args.pace else {}))
    room.quotas = {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}}
    width = len(str(args.n))
    people = [{"username": f"s{i:0{width}d}"} for i in range(1, args.n + 1)]
    room.write(people)
    users = [room.user(p["username"]) for p in people]
    hub = Hub(room)
    results = {}
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "reconciler", "--site", str(room.site), "-f", str(room.file)],
            capture_output=True,
            text=True,
        )
        if not hb.host_converged(ran):
            print(f"reconcile failed: {(ran.stdout + ran.stderr)[-800:]}")
            return 1
        hub.start(timeout=180)
        with ThreadPoolExecutor(max_workers=4) as pool:  # everyone logged in once: the hub knows them
            assert all(pool.map(lambda u: hub.login(u, hb.password(room, u)) is not None, users))

        if not args.skip_cold:
            print(f"== cold: {args.n} log in at once and start their servers", flush=True)
            results["cold"] = storm(hub, room, users, warm=False, deadline=args.deadline)
            stop_all(hub, users)

        now = dt.datetime.now(UTC)
        start, end = now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=60)
        if end.date() != start.date():
            end = start.replace(hour=23, minute=59)
        room.write(
            people,
            schedule=[
                {"date": start.date().isoformat(), "start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "tz": "UTC"}
            ],
        )
        print("== pre-warm: reconcile prewarm --wait", flush=True)
        t0 = time.perf_counter()
        warm = subprocess.run(
            [sys.executable, "-m", "reconciler", "--site", str(room.site), "-f", str(room.file), "prewarm", "--wait"],
            capture_output=True,
            text=True,
        )
        results["prewarm_s"] = time.perf_counter() - t0
        results["prewarm_text"] = (warm.stdout.strip().splitlines() or [""])[-1] + (warm.stderr.strip()[-300:])
        results["ready_after_s"] = all_ready(hub, users, 600)
        print(f"== pre-warmed: {args.n} log in at once", flush=True)
        spy = None
        if args.profile:
            # --nonblocking: the hub is never paused for a sample (a paused loop would be the bound it measures)
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--format",
                    "raw",
                    "-o",
                    str(args.profile),
                    "--pid",
                    str(hub.proc.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--rate",
                    "200",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(2)
        rounds = []
        for index in range(args.rounds):  # each round: fresh browser sessions, the same running servers
            rounds.append(storm(hub, room, users, warm=True, deadline=args.deadline))
            if args.rounds > 1:
                times = rounds[-1]["times"]
                print(
                    f"   round {index + 1}: {len(rounds[-1]['failures'])} failures, p50 "
                    f"{statistics.median(times) if times else float('nan'):.2f} s, p95 "
                    f"{hb.percentile(times, 95) if times else float('nan'):.2f} s; {cpu_line(rounds[-1]['cpu'])}",
                    flush=True,
                )
                time.sleep(3)
        results["warm"] = {
            "all_s": max(r["all_s"] for r in rounds),
            "cpu": rounds[-1]["cpu"],
            "times": [t for r in rounds for t in r["times"]],
            "failures": {f"{u} (round {i + 1})": why for i, r in enumerate(rounds) for u, why in r["failures"].items()},
        }
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)
    finally:
        hub.stop()
        hb.remove_containers(room.name, (f"jupyter-{room.name}",))
        hub.remove_network()
        time.sleep(2)
        cleanup(room)

    print("\n" + "=" * 90)
    print(f"machine: {CORES} cores; N={args.n}, servers 256Mi, cpu 1; login -> JupyterLab page per student")
    for name in ("cold", "warm"):
        r = results.get(name)
        if r is None:
            continue
        times = r["times"]
        rounds = f", {args.rounds} rounds of {args.n}" if name == "warm" and args.rounds > 1 else ""
        print(f"\n{'cold (log in, start, wait)' if name == 'cold' else 'pre-warmed (log in)'}{rounds}:")
        tries = args.n * (args.rounds if name == "warm" else 1)
        print(
            f"  failures: {len(r['failures'])} of {tries}"
            + "".join(f"\n    {u}: {why}" for u, why in sorted(r["failures"].items()))
        )
        if times:
            print(
                f"  p50 {statistics.median(times):.2f} s, p95 {hb.percentile(times, 95):.2f} s, "
                f"max {max(times):.2f} s; all done after {r['all_s']:.1f} s"
            )
        if r.get("cpu"):
            print(f"  CPU{' (last round)' if name == 'warm' and args.rounds > 1 else ''}: {cpu_line(r['cpu'])}")
    if "prewarm_s" in results:
        print(
            f"\npre-warm: `reconcile prewarm --wait` {results['prewarm_s']:.1f} s, all ready "
            f"{results['ready_after_s']:.1f} s after it ({results['prewarm_text']})"
        )
    cold, warm_r = results.get("cold"), results.get("warm")
    if cold and warm_r and cold["times"] and warm_r["times"]:
        print(
            f"pre-warmed / cold, p95 login -> JupyterLab: "
            f"{hb.percentile(warm_r['times'], 95) / hb.percentile(cold['times'], 95):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
