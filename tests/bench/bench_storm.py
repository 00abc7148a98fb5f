#!/usr/bin/env python3
"""Class-start storm: N students press "Start My Server" at the same instant.

Not a pytest test (nothing here asserts on time).  Needs root, dockerd, configurable-http-proxy and
the student image (tests/imagekit.py builds it, cached).  For each N it makes a throw-away classroom
(tests/hostkit.py: N real accounts and loop volumes; memory 256Mi, disk 128Mi), converges it with one
`reconcile` pass, starts `reconcile hub` (tests/hubkit.py), logs everyone in through the real login
form, then releases N threads from a barrier; each POSTs /hub/api/users/<name>/server with its
browser cookie and follows the spawn page's progress stream until the hub says ready (or the spawn
fails, or --deadline passes).  It prints

  * failures (target 0), with the reason of each, and the hub log's error lines when there are any,
  * the time until all were ready, p50 / p95 per-student time-to-ready (POST -> ready), split into
    the wait before the container started (admission queue) and the boot (container start -> ready),
  * CPU-seconds per start, read from each container's cgroup (v1 cpuacct.usage) the moment it was
    ready, and the CPU-bound floor N x (mean CPU-seconds per start) / cores,
  * idle memory per student server (memory cgroup, after --idle seconds), median,
  * where the host's CPU went during the storm (containers, hub + proxy, docker, everything else:
    other people's work on this machine shows up there).

Everything is removed in a finally (also on Ctrl-C / SIGTERM): the hub's process group, the
containers, the bridge and its firewall chain, the classroom; then it checks nothing is left.

    .venv/bin/python tests/bench/bench_storm.py [--n 30 50] [--deadline 900] [--idle 20] [--start-slots K]

--start-slots K is an experiment: the same `reconcile hub`, with --ClassroomSpawner.start_slots=K
appended to the jupyterhub command line it execs (the packaged config has one slot per core).
"""

from __future__ import annotations

import contextlib
import argparse
import os
import platform
import shutil
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hubbench as hb  # noqa: E402  (puts tests/ on sys.path)

from traitlets.config import Config  # noqa: E402

from hostkit import cleanup, make_classroom  # noqa: E402
from hubkit import Hub, add_hub  # noqa: E402
from imagekit import TAG, build_test_image  # noqa: E402

from reconciler.config.load import load_site  # noqa: E402
from reconciler.hub.config import configure  # noqa: E402
from reconciler.hub.spawner import ClassroomSpawner  # noqa: E402

CORES = os.cpu_count() or 1
MiB = 1 << 20


@dataclass
class Result:
    n: int
    room: str = ""
    apply_s: float | None = None
    logins_s: float | None = None
    spawns: list[hb.Spawn] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # user -> CPU-seconds at ready
    throttled: dict[str, float] = field(default_factory=dict)  # user -> seconds held back by cpu_limit
    queued: dict[str, float] = field(default_factory=dict)  # user -> POST sent -> container started
    boot: dict[str, float] = field(default_factory=dict)  # user -> container started -> ready
    detect: dict[str, float] = field(default_factory=dict)  # user -> server logs "is running at" -> ready
    memory: dict[str, dict] = field(default_factory=dict)  # user -> idle memory cgroup numbers
    all_ready_s: float | None = None
    window: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    settings: str = ""
    outside: str = ""
    error: str = ""
    leftovers: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[hb.Spawn]:
        return [s for s in self.spawns if not s.ok]


def docker_daemon_cpu() -> float:
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if raw[raw.index("(") + 1 : raw.rindex(")")] in ("dockerd", "containerd"):
                fields = raw.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    return total / hb.CLK_TCK


class SlotsHub(Hub):
    """`reconcile hub` exactly, plus `--ClassroomSpawner.start_slots=K` on the jupyterhub command line
    that it execs (an experiment: the packaged config has no such knob in site.yaml)."""

    WRAPPER = (
        "import os, sys; real, extra = os.execve, sys.argv.pop(); "
        "os.execve = lambda path, argv, env: real(path, [*argv, extra], env); "
        "from reconciler.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )

    def __init__(self, room, slots: int):
        super().__init__(room)
        self.slots = slots

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            self.WRAPPER,
            "hub",
            "--site",
            str(self.room.site),
            "-f",
            str(self.room.file),
            f"--ClassroomSpawner.start_slots={self.slots}",
        ]


def effective_settings(room, slots_override: int | None = None) -> str:
    c = Config()
    configure(c, load_site(room.site), room.file)
    slots = c.ClassroomSpawner.get("start_slots", ClassroomSpawner.class_traits()["start_slots"].default())
    if slots_override:
        slots = f"{slots_override} (EXPERIMENT: --ClassroomSpawner.start_slots={slots_override}; default {slots})"
    return (
        f"start_slots {slots}, concurrent_spawn_limit {c.JupyterHub.concurrent_spawn_limit}, "
        f"start_timeout {c.Spawner.start_timeout} s, http_timeout {c.Spawner.http_timeout} s"
    )


def bench_one(n: int, args: argparse.Namespace) -> Result:
    res = Result(n)
    room = make_classroom()
    res.room = room.name
    add_hub(room, image=TAG)
    room.quotas = {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}}
    width = len(str(n))
    room.write([{"username": f"s{i:0{width}d}"} for i in range(1, n + 1)])
    users = [room.user(f"s{i:0{width}d}") for i in range(1, n + 1)]
    hub = SlotsHub(room, args.start_slots) if args.start_slots else Hub(room)
    events: list[str] = []
    streams: list = []
    print(f"\n== N={n}: classroom {room.name}, users {room.prefix}*, in {room.root}", flush=True)
    try:
        start = time.perf_counter()
        ran = room.cli(timeout=3600)
        res.apply_s = time.perf_counter() - start
        print(f"  reconcile: exit {ran.returncode} in {res.apply_s:.1f} s{hb.hub_not_up_note(ran)}", flush=True)
        if not hb.host_converged(ran):
            res.error = f"reconcile exited {ran.returncode}: {(ran.stdout + ran.stderr)[-1500:]}"
            return res

        hub.start(timeout=180)
        res.settings = effective_settings(room, args.start_slots)
        print(f"  hub up at {hub.url}; {res.settings}", flush=True)

        start = time.perf_counter()
        sessions: dict[str, object] = {}
        with ThreadPoolExecutor(max_workers=4) as pool:
            for user, session in zip(
                users, pool.map(lambda u: hub.login(u, hb.password(room, u)), users), strict=False
            ):
                if session is None:
                    res.error = f"{user} could not log in"
                    return res
                sessions[user] = session
        res.logins_s = time.perf_counter() - start
        print(f"  {n} logins through the form in {res.logins_s:.1f} s", flush=True)

        threading.Thread(target=hb.docker_events, args=(room.name, events, streams), daemon=True).start()
        print(
            f"  load before the storm {os.getloadavg()[0]:.2f}; busiest processes now: "
            f"{', '.join(hb.top_cpu_users()) or '-'}",
            flush=True,
        )

        barrier = threading.Barrier(n + 1)
        results: dict[str, hb.Spawn] = {}
        lock = threading.Lock()

        def student(user: str) -> None:
            barrier.wait()
            outcome = hb.spawn_and_wait(
                hub.url,
                sessions[user],
                user,
                args.deadline,
                hub_alive=lambda: hub.proc is not None and hub.proc.poll() is None,
            )
            if outcome.ok:
                cid = hb.container_id(label_user=user)
                if cid:
                    cpu = hb.cpu_seconds(cid)
                    held = hb.throttled(cid)
                    begun = hb.started_at(cid)
                    running = hb.listening_at(cid)
                    with lock:
                        if cpu is not None:
                            res.cpu[user] = cpu
                        if held is not None:
                            res.throttled[user] = held
                        if begun is not None:
                            res.queued[user] = begun - outcome.t_sent
                            res.boot[user] = outcome.t_ready - begun
                            if running is not None:
                                res.detect[user] = outcome.t_ready - running
            with lock:
                results[user] = outcome

        threads = [threading.Thread(target=student, args=(u,), daemon=True, name=u) for u in users]
        for thread in threads:
            thread.start()
        hub_pids = [pid for pid, _ in hb.hub_processes((room.root,))[0]]  # hub, proxy, culler
        before = {
            "busy": hb.host_busy_seconds(),
            "hub": hb.pids_cpu(hub_pids),
            "docker": docker_daemon_cpu(),
            "containers": hb.docker_cgroup_cpu(),
        }
        snapshot = hb.cpu_snapshot()
        barrier.wait()
        t0 = time.perf_counter()
        last_print = t0
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if time.perf_counter() - last_print >= 15:
                last_print = time.perf_counter()
                with lock:
                    ok = sum(1 for s in results.values() if s.ok)
                    bad = len(results) - ok
                print(
                    f"    {last_print - t0:5.0f} s: {ok} ready, {bad} failed, {n - ok - bad} waiting; "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        res.all_ready_s = time.perf_counter() - t0
        res.window = {
            "busy": hb.host_busy_seconds() - before["busy"],
            "hub": hb.pids_cpu(hub_pids) - before["hub"],
            "docker": docker_daemon_cpu() - before["docker"],
            "wall": res.all_ready_s,
            "containers": hb.docker_cgroup_cpu() - before["containers"],
        }
        label = {pid: "our hub/proxy/culler" for pid in hub_pids} | {os.getpid(): "this script"}
        res.outside = hb.cpu_outside_containers(snapshot, hb.cpu_snapshot(), label)
        res.spawns = [results[u] for u in users]
        print(
            f"  storm over after {res.all_ready_s:.1f} s: {n - len(res.failures)} ready, {len(res.failures)} failed",
            flush=True,
        )

        print(f"  idle {args.idle:.0f} s, then reading each server's memory cgroup ...", flush=True)
        time.sleep(args.idle)
        for spawn in res.spawns:
            if spawn.ok:
                cid = hb.container_id(label_user=spawn.user)
                numbers = hb.memory(cid) if cid else None
                if numbers:
                    res.memory[spawn.user] = numbers
        time.sleep(1)
        res.events = list(events)
        if res.failures:
            keep = Path(f"/tmp/bench_storm-{room.name}-hub.log")
            shutil.copy(hub.log, keep)
            print(
                f"  FAILURES: hub log kept in {keep}; its error / warning lines:\n{hb.hub_log_excerpt(hub.log)}",
                flush=True,
            )
        return res
    except Exception as exc:  # report and clean up; KeyboardInterrupt passes through (after the finally)
        res.error = f"{type(exc).__name__}: {exc}"
        if hub.log.exists():
            print(f"  hub log error lines:\n{hb.hub_log_excerpt(hub.log)}", flush=True)
        return res
    finally:
        res.leftovers = hb.shielded(teardown, room, hub, streams)


def teardown(room, hub: Hub, streams: list) -> list[str]:
    print(f"  cleanup {room.name} ...", flush=True)
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.close()
    steps = (
        ("stop the hub's process group", hub.stop),
        ("stop a proxy or culler the hub left behind", lambda: hb.kill_ours((room.root,))),
        ("remove containers", lambda: hb.remove_containers(room.name, (f"jupyter-{room.name}",))),
        ("remove the bridge and firewall chain", hub.remove_network),
        ("remove the classroom", lambda: cleanup(room)),
    )
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - go on with the next step; the check below reports
            print(f"  cleanup: {what} failed: {type(exc).__name__}: {exc}", flush=True)
    time.sleep(0.5)
    problems, others = hb.verify_clean(room, (f"jupyter-{room.name}",), (room.root,))
    if problems:  # once more: lazy unmounts and AutoRemove finish asynchronously
        time.sleep(2)
        hb.remove_containers(room.name, (f"jupyter-{room.name}",))
        cleanup(room)
        problems, others = hb.verify_clean(room, (f"jupyter-{room.name}",), (room.root,))
    print(
        f"  cleanup check {room.name}: "
        + (
            "; ".join(problems)
            if problems
            else "clean (no containers, clsrm networks, hub/proxy processes, users, mounts of ours)"
        ),
        flush=True,
    )
    for note in others:
        print(f"  note, not ours (another run on this host): {note}", flush=True)
    return problems


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: list[Result]) -> None:
    print("\n" + "=" * 100)
    print(f"host: {CORES} cores; student servers: memory 256Mi, cpu 1, disk 128Mi; image {TAG}")
    for r in results:
        print(f"\nN={r.n} (classroom {r.room})")
        if r.settings:
            print(f"  hub admission settings: {r.settings}")
        if r.error:
            print(f"  ERROR: {r.error}")
        if not r.spawns:
            continue
        ok = [s for s in r.spawns if s.ok]
        times = [s.ready_s for s in ok]
        print(f"  failures: {len(r.failures)} of {r.n} (target 0)")
        for s in r.failures:
            print(
                f"    {s.user}: {s.failure}"
                + (f" [POST {s.post_status} after {fmt(s.post_s)} s]" if s.post_status else "")
            )
        label = "time until all ready" if not r.failures else "time until every start had an outcome"
        print(f"  {label}: {fmt(r.all_ready_s)} s")
        if times:
            print(
                f"  per-student time-to-ready (POST -> ready): p50 {fmt(statistics.median(times))} s, "
                f"p95 {fmt(hb.percentile(times, 95))} s, min {fmt(min(times))} s, max {fmt(max(times))} s"
            )
        if r.queued:
            q, b = list(r.queued.values()), list(r.boot.values())
            print(
                f"    of which waiting before the container started: p50 {fmt(statistics.median(q))} s, "
                f"p95 {fmt(hb.percentile(q, 95))} s; container start -> ready (boot): "
                f"p50 {fmt(statistics.median(b))} s, p95 {fmt(hb.percentile(b, 95))} s"
            )
        if r.detect:
            d = list(r.detect.values())
            print(
                f"    of the boot, server running (its log) -> the hub says ready (the hub's polling, "
                f"slot still held): p50 {fmt(statistics.median(d))} s, p95 {fmt(hb.percentile(d, 95))} s, "
                f"sum {sum(d):.0f} s"
            )
        posts = [s.post_status for s in r.spawns]
        print("  POST answers: " + ", ".join(f"{code}: {posts.count(code)}" for code in sorted(set(posts), key=str)))
        if r.cpu:
            cpu = list(r.cpu.values())
            mean = statistics.fmean(cpu)
            floor = r.n * mean / CORES
            print(
                f"  CPU-seconds per start (container cgroup at ready, {len(cpu)} servers): mean {mean:.2f}, "
                f"median {statistics.median(cpu):.2f}, min {min(cpu):.2f}, max {max(cpu):.2f}"
                + (
                    f"; held back by the cpu quota (CFS throttling): median {statistics.median(r.throttled.values()):.2f} s"
                    if r.throttled
                    else ""
                )
            )
            print(
                f"  CPU-bound floor = N x mean CPU-s per start / cores = {r.n} x {mean:.2f} / {CORES} = {floor:.1f} s"
                + (
                    f"; all ready after {r.all_ready_s / floor:.2f} x the floor"
                    if r.all_ready_s and not r.failures
                    else ""
                )
            )
        if r.window:
            w = r.window
            other = w["busy"] - w["containers"] - w["hub"] - w["docker"]
            print(
                f"  host CPU during the storm ({w['wall']:.1f} s x {CORES} cores = {w['wall'] * CORES:.0f} CPU-s): "
                f"busy {w['busy']:.0f} CPU-s = student containers {w['containers']:.0f} (docker cgroup; "
                f"{sum(r.cpu.values()):.0f} of it before each was ready) + hub, proxy, culler {w['hub']:.0f} "
                f"+ dockerd/containerd {w['docker']:.0f} + everything else {other:.0f} (kernel, runc and shims, "
                f"this script, other people's work on this host)"
            )
            print(f"    CPU-s outside containers by process name during the storm (approximate): {r.outside}")
        if r.memory:
            usage = [m["usage"] / MiB for m in r.memory.values()]
            rss = [m["rss"] / MiB for m in r.memory.values()]
            print(
                f"  idle memory per student server ({len(usage)} servers): median usage_in_bytes {statistics.median(usage):.0f} MiB "
                f"(min {min(usage):.0f}, max {max(usage):.0f}), median rss {statistics.median(rss):.0f} MiB; "
                f"all {sum(usage):.0f} MiB; OOM kills {sum(m['oom_kill'] for m in r.memory.values())}"
            )
        if r.events:
            print(f"  container die/oom/kill events during the run: {r.events[:20]}")
        print(f"  (reconcile pass {fmt(r.apply_s)} s, {r.n} logins {fmt(r.logins_s)} s)")
    bad = [r.n for r in results if r.leftovers]
    print(
        "\ncleanup: "
        + (
            "nothing of ours left (containers, clsrm networks, hub/proxy processes, users, mounts)"
            if not bad
            else f"LEFTOVERS for N={bad}; see above"
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[30, 50], help="class sizes (default: 30 50)")
    parser.add_argument("--deadline", type=float, default=900, help="per student, POST -> ready (default 900 s)")
    parser.add_argument(
        "--start-slots",
        type=int,
        default=None,
        help="experiment: override ClassroomSpawner.start_slots (default: the config's, one per core)",
    )
    parser.add_argument("--idle", type=float, default=20, help="idle seconds before reading memory (default 20)")
    args = parser.parse_args()
    reason = hb.cannot_run()
    if reason:
        print(f"cannot run here: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, hb.on_sigterm)
    print(
        f"host: {platform.node()} {platform.release()}, {CORES} CPUs, "
        f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB RAM, load {os.getloadavg()[0]:.2f}"
    )
    start = time.perf_counter()
    built = build_test_image()
    print(
        f"student image {TAG}: ready in {time.perf_counter() - start:.1f} s ({getattr(built, 'tag', built)})",
        flush=True,
    )
    results: list[Result] = []
    try:
        for n in args.n:
            results.append(bench_one(n, args))
    except KeyboardInterrupt:
        print("\ninterrupted; the classroom in progress was cleaned up", file=sys.stderr)
        report(results)
        return 130
    report(results)
    print(f"load at the end: {os.getloadavg()[0]:.2f}")
    return 0 if all(not r.error and not r.failures and not r.leftovers for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
