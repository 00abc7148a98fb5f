"""Shared helpers of bench_storm.py and bench_spawn.py: spawning through the hub's API as a browser
does, reading a container's cgroup (v1), and the clean-up checks.  Not a benchmark by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import docker  # noqa: E402
import requests  # noqa: E402

from hubkit import xsrf  # noqa: E402

from reconciler.host.containers import LABEL_CLASSROOM, LABEL_USER  # noqa: E402
import contextlib

CGROUP = Path("/sys/fs/cgroup")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Interrupted(KeyboardInterrupt):
    pass


def on_sigterm(signum, frame):  # noqa: ARG001
    raise Interrupted(f"signal {signum}")


def shielded(fn, *args, **kwargs):
    """Run a clean-up step with Ctrl-C / SIGTERM ignored, so a second Ctrl-C cannot leave debris."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return fn(*args, **kwargs)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def big_class(n: int):
    """A throw-away classroom of ``n`` students (s0000...) and a teacher (tea) with a hub section, on loop volumes
    that may over-commit the disk (a class of a thousand 128 MiB volumes is mostly empty): not converged yet."""
    import yaml

    from hostkit import make_classroom
    from hubkit import add_hub

    room = make_classroom(max_disable_fraction=1.0)
    site = yaml.safe_load(room.site.read_text())
    site["volumes"] = {"backend": "loop", "max_overcommit": 10}
    room.site.write_text(yaml.safe_dump(site))
    add_hub(room)
    room.write([{"username": f"s{i:04d}"} for i in range(n)], admins=[{"username": "tea"}])
    return room


def converge_and_start(room, hub, n: int) -> bool:
    """One real apply of the class (the hub is not up yet: only its part may fail), then the hub; False when the
    host did not converge (said on stdout)."""
    t0 = time.perf_counter()
    ran = subprocess.run(
        [sys.executable, "-m", "reconciler", "--site", str(room.site), "-f", str(room.file)],
        capture_output=True,
        text=True,
    )
    if not host_converged(ran):
        print(f"reconcile failed: {(ran.stdout + ran.stderr)[-800:]}")
        return False
    print(f"converged {n} students in {time.perf_counter() - t0:.1f} s", flush=True)
    hub.start(timeout=180)
    return True


def password(room, username: str) -> str:
    return json.loads((room.paths.outbox / f"{username}.json").read_text())["password"]


def host_converged(ran: subprocess.CompletedProcess) -> bool:
    """The first pass converged the host.  Its hub part fails (exit 1) while the hub is not up yet:
    the token file appears with the first `reconcile hub`, as in tests/test_e2e.py."""
    failed = [line for line in (ran.stdout + ran.stderr).splitlines() if line.startswith("failed:")]
    return ran.returncode == 0 or (
        ran.returncode == 1 and bool(failed) and all(f.startswith("failed: hub:") for f in failed)
    )


def hub_not_up_note(ran: subprocess.CompletedProcess) -> str:
    return (
        " (only its hub part failed: the hub is not up yet; host converged)"
        if ran.returncode == 1 and host_converged(ran)
        else ""
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# --- spawning as the browser's spawn page does ----------------------------------------------------------


@dataclass
class Spawn:
    user: str
    ok: bool = False
    post_status: int | None = None
    post_s: float | None = None  # how long the POST took (the hub waits up to slow_spawn_timeout = 10 s)
    ready_s: float | None = None  # POST sent -> the hub says ready
    t_sent: float | None = None  # time.time() when the POST was sent
    t_ready: float | None = None
    failure: str = ""
    events: list[str] = field(default_factory=list)


def spawn_and_wait(
    url: str, session: requests.Session, user: str, deadline_s: float, hub_alive=lambda: True, post_timeout: float = 300
) -> Spawn:
    """POST /hub/api/users/<user>/server, then follow /server/progress (the spawn page's event stream)
    until ready or failed; a closed stream falls back to polling the user model.  Never raises."""
    out = Spawn(user)
    start = time.perf_counter()
    out.t_sent = time.time()
    deadline = start + deadline_s
    try:
        response = session.post(f"{url}/hub/api/users/{user}/server", headers=xsrf(session), timeout=post_timeout)
    except requests.RequestException as exc:
        out.failure = f"POST failed after {time.perf_counter() - start:.1f} s: {type(exc).__name__}: {exc}"
        return out
    out.post_status, out.post_s = response.status_code, time.perf_counter() - start
    if response.status_code == 201:
        return _ready(out, start)
    if response.status_code != 202:
        out.failure = f"POST -> HTTP {response.status_code}: {response.text[:300]}"
        return out
    try:
        with session.get(f"{url}/hub/api/users/{user}/server/progress", stream=True, timeout=(10, 60)) as stream:
            if stream.status_code == 200:
                for line in stream.iter_lines(decode_unicode=True):
                    if time.perf_counter() > deadline:
                        out.failure = f"not ready after {deadline_s:.0f} s (progress stream)"
                        return out
                    if not line or not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    out.events.append(f"{time.perf_counter() - start:.1f}s {event.get('message', '')}")
                    if event.get("ready"):
                        return _ready(out, start)
                    if event.get("failed"):
                        out.failure = f"spawn failed: {event.get('message', '')}"
                        return out
            else:
                out.events.append(f"progress -> HTTP {stream.status_code}: {stream.text[:200]}")
    except (requests.RequestException, ValueError) as exc:
        out.events.append(f"progress stream broke: {type(exc).__name__}: {exc}")
    while time.perf_counter() < deadline:  # the stream ended without a verdict: poll
        if not hub_alive():
            out.failure = "the hub process died"
            return out
        try:
            model = session.get(f"{url}/hub/api/users/{user}", headers=xsrf(session), timeout=30).json()
        except (requests.RequestException, ValueError) as exc:
            out.events.append(f"poll: {type(exc).__name__}")
            time.sleep(1)
            continue
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return _ready(out, start)
        if not server:
            out.failure = "spawn failed: the server vanished (see the hub log)"
            return out
        time.sleep(0.5)
    out.failure = f"not ready after {deadline_s:.0f} s"
    return out


def _ready(out: Spawn, start: float) -> Spawn:
    out.ok, out.ready_s, out.t_ready = True, time.perf_counter() - start, time.time()
    return out


def stop_and_wait(
    url: str, session: requests.Session, user: str, container_name: str | None = None, timeout: float = 120
) -> None:
    """DELETE the server, wait until the hub has no server and (with remove=True) the container is gone."""
    response = session.delete(f"{url}/hub/api/users/{user}/server", headers=xsrf(session), timeout=120)
    if response.status_code not in (202, 204):
        raise RuntimeError(f"stopping {user}: HTTP {response.status_code} {response.text[:300]}")
    deadline = time.monotonic() + timeout
    client = docker.from_env()
    while time.monotonic() < deadline:
        model = session.get(f"{url}/hub/api/users/{user}", headers=xsrf(session), timeout=30).json()
        if not model.get("servers", {}).get("") and (
            container_name is None or not client.containers.list(all=True, filters={"name": container_name})
        ):
            return
        time.sleep(0.3)
    raise RuntimeError(f"{user}'s server did not stop within {timeout:.0f} s")


# --- cgroup v1 -----------------------------------------------------------------------------------------


def container_id(label_user: str | None = None, name: str | None = None) -> str | None:
    filters = {"label": f"{LABEL_USER}={label_user}"} if label_user else {"name": name}
    found = docker.from_env().containers.list(filters=filters)
    return found[0].id if found else None


def started_at(cid: str) -> float | None:
    """The container's State.StartedAt as a UNIX time (Docker prints nanoseconds; keep microseconds)."""
    try:
        raw = docker.from_env().api.inspect_container(cid)["State"]["StartedAt"]
    except docker.errors.APIError:
        return None
    return _unix(raw)


def listening_at(cid: str) -> float | None:
    """When the single-user server logged that it is running (docker logs --timestamps), as a UNIX time:
    the container's own boot, without the hub's polling (exponential backoff with full jitter)."""
    try:
        raw = docker.from_env().api.logs(cid, timestamps=True).decode(errors="replace")
    except docker.errors.APIError:
        return None
    for line in raw.splitlines():
        if "is running at" in line:
            return _unix(line.split(" ", 1)[0])
    return None


def _unix(stamp: str) -> float:
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def cpu_seconds(cid: str) -> float | None:
    try:
        return int((CGROUP / "cpuacct" / "docker" / cid / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return None


def throttled(cid: str) -> float | None:
    """Seconds the container's CFS quota (cpu_limit) held it back, from cpu.stat."""
    try:
        stat = dict(line.split() for line in (CGROUP / "cpu" / "docker" / cid / "cpu.stat").read_text().splitlines())
        return int(stat.get("throttled_time", 0)) / 1e9
    except (OSError, ValueError):
        return None


def memory(cid: str) -> dict[str, int] | None:
    """usage_in_bytes, rss, cache and oom_kill of one container's memory cgroup."""
    base = CGROUP / "memory" / "docker" / cid
    try:
        stat = dict(line.split() for line in (base / "memory.stat").read_text().splitlines())
        oom = dict(line.split() for line in (base / "memory.oom_control").read_text().splitlines())
        return {
            "usage": int((base / "memory.usage_in_bytes").read_text()),
            "rss": int(stat.get("total_rss", stat.get("rss", 0))),
            "cache": int(stat.get("total_cache", stat.get("cache", 0))),
            "oom_kill": int(oom.get("oom_kill", 0)),
        }
    except (OSError, ValueError):
        return None


def host_busy_seconds() -> float:
    """Busy CPU-seconds of the whole host since boot (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def docker_cgroup_cpu() -> float:
    """CPU-seconds of every Docker container since dockerd made its cgroup (hierarchical: exited
    containers' time stays counted)."""
    try:
        return int((CGROUP / "cpuacct" / "docker" / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return 0.0


def cpu_snapshot() -> dict[int, tuple[str, int, bool, int]]:
    """pid -> (command name, CPU ticks of it and its reaped children, runs in a Docker container, ppid)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()
        in_container = any(":cpuacct" in line and "/docker/" in line for line in cgroups.splitlines())
        ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        out[int(pid)] = (raw[raw.index("(") + 1 : raw.rindex(")")], ticks, in_container, int(fields[1]))
    return out


def cpu_outside_containers(before: dict, after: dict, label: dict[int, str], count: int = 6) -> str:
    """The biggest CPU users outside containers between two snapshots, by command name.  A process's
    children that exited (and were reaped) in between count for it, minus what they had used before
    the first snapshot; children of processes that are gone too are not seen.  ``label`` names our pids."""
    delta: dict[int, int] = {}
    for pid, (comm, ticks, _, _) in after.items():
        old = before.get(pid)
        delta[pid] = ticks - (old[1] if old and old[0] == comm else 0)
    for pid, (_comm, ticks, _, ppid) in before.items():
        if pid in after:
            continue
        # Exited during the window: its time from before the window reaches its nearest surviving
        # ancestor's cutime through every exited parent in between; it is not new there.
        seen = set()
        while ppid not in delta and ppid in before and ppid not in seen:
            seen.add(ppid)
            ppid = before[ppid][3]
        if ppid in delta:
            delta[ppid] -= ticks
    by_name: dict[str, int] = {}
    for pid, ticks in delta.items():
        comm, _, in_container, _ = after[pid]
        if in_container or ticks <= 0:
            continue
        name = f"{comm} ({label[pid]})" if pid in label else comm
        by_name[name] = by_name.get(name, 0) + ticks
    top = sorted(by_name.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{comm} {ticks / CLK_TCK:.1f}" for comm, ticks in top) or "-"


def top_cpu_users(seconds: float = 1.0, count: int = 4) -> list[str]:
    """The processes using the most CPU over a short window: to name contention."""

    def snap() -> dict[int, tuple[str, int]]:
        out = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    raw = Path(f"/proc/{pid}/stat").read_text()
                    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
                    fields = raw.rsplit(")", 1)[1].split()
                    out[int(pid)] = (comm, int(fields[11]) + int(fields[12]))
                except (OSError, ValueError):
                    pass
        return out

    before = snap()
    time.sleep(seconds)
    after = snap()
    used = sorted(((t - before.get(pid, (c, t))[1], c, pid) for pid, (c, t) in after.items()), reverse=True)
    return [f"{comm}[{pid}] {ticks / CLK_TCK / seconds * 100:.0f}%" for ticks, comm, pid in used[:count] if ticks > 0]


# --- clean-up and its verification ---------------------------------------------------------------------


def remove_containers(classroom: str, name_prefixes: tuple[str, ...] = ()) -> int:
    client = docker.from_env()
    found = {c.id: c for c in client.containers.list(all=True, filters={"label": f"{LABEL_CLASSROOM}={classroom}"})}
    for prefix in name_prefixes:
        found.update({c.id: c for c in client.containers.list(all=True, filters={"name": prefix})})
    for container in found.values():
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # "removal already in progress" (AutoRemove)
            if "in progress" not in str(exc):
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _ours(client, classroom, name_prefixes):
        time.sleep(0.5)
    return len(found)


def _ours(client, classroom: str, name_prefixes: tuple[str, ...]) -> list[str]:
    found = {c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL_CLASSROOM}={classroom}"})}
    for prefix in name_prefixes:
        found |= {c.name for c in client.containers.list(all=True, filters={"name": prefix})}
    return sorted(found)


def hub_processes(roots: tuple[Path, ...] = ()) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """jupyterhub / configurable-http-proxy / idle-culler processes as (pid, command): (ours, others).
    Ours run in, or were started with the environment of, one of our temp dirs (the proxy and the
    culler get their own session from JupyterHub, so killing the hub's process group misses them
    when the hub dies before stopping them)."""
    ours, others = [], []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "jupyterhub" not in cmd and "configurable-http-proxy" not in cmd:
            continue
        try:
            where = os.readlink(f"/proc/{pid}/cwd") + Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:
            where = ""
        mine = any(str(root) in where for root in roots)
        (ours if mine else others).append((int(pid), cmd[:160]))
    return ours, others


def pids_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def kill_ours(roots: tuple[Path, ...]) -> list[int]:
    """SIGTERM, then SIGKILL, the hub/proxy/culler processes started for our temp dirs (by pid)."""
    pids = [pid for pid, _ in hub_processes(roots)[0]]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
    return pids


def verify_clean(room, name_prefixes: tuple[str, ...], roots: tuple[Path, ...]) -> tuple[list[str], list[str]]:
    """What is left of this run (containers, clsrm networks, hub/proxy processes, users, mounts, dirs),
    and, apart, what other people's runs have on the host right now."""
    client = docker.from_env()
    problems, others = [], []
    left = _ours(client, room.name, name_prefixes)
    if left:
        problems.append(f"containers of {room.name}: {left}")
    foreign = [c.name for c in client.containers.list(all=True) if c.name not in left]
    if foreign:
        others.append(f"containers: {foreign}")
    nets = [n.name for n in client.networks.list() if n.name.startswith("clsrm")]
    mine = [n for n in nets if room.name in n]
    if mine:
        problems.append(f"clsrm networks: {mine}")
    if set(nets) - set(mine):
        others.append(f"clsrm networks: {sorted(set(nets) - set(mine))}")
    ours, theirs = hub_processes(roots)
    if ours:
        problems.append("jupyterhub / configurable-http-proxy processes: " + "; ".join(f"{p}: {c}" for p, c in ours))
    if theirs:
        others.append("jupyterhub / configurable-http-proxy processes: " + "; ".join(f"{p}: {c}" for p, c in theirs))
    if any(line.startswith(room.prefix) for line in open("/etc/passwd")):
        problems.append(f"users {room.prefix}* in /etc/passwd")
    with open("/proc/self/mountinfo") as handle:
        if any(str(room.root) in line for line in handle):
            problems.append(f"mounts under {room.root}")
    for root in roots:
        if root.exists():
            problems.append(f"{root} still exists")
    return problems, others


def hub_log_excerpt(log: Path, limit: int = 80) -> str:
    """The lines of a hub log that explain failures: errors, warnings, 429s, timeouts, OOM, tracebacks."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no hub log)"
    keys = ("[E ", "[W ", "[C ", "Traceback", "Error", "429", "imeout", "OOM", "oom", "failed", "Failed")
    picked = [line for line in lines if any(k in line for k in keys)]
    if len(picked) > limit:
        picked = picked[: limit // 2] + [f"... ({len(picked) - limit} more) ..."] + picked[-limit // 2 :]
    return "\n".join("    " + line[:400] for line in picked) or "    (no error or warning lines)"


def docker_events(classroom: str, sink: list, stop) -> None:
    """Collect die / oom / kill events of the classroom's containers (a thread; ends with `stop`)."""
    client = docker.from_env()
    stream = client.events(decode=True, filters={"label": f"{LABEL_CLASSROOM}={classroom}", "type": "container"})
    stop.append(stream)
    try:
        for event in stream:
            status = event.get("status") or event.get("Action")
            if status in ("die", "oom", "kill"):
                attrs = event.get("Actor", {}).get("Attributes", {})
                sink.append(
                    f"{status} {attrs.get(LABEL_USER, attrs.get('name'))} exitCode={attrs.get('exitCode', '-')}"
                )
    except Exception:  # noqa: BLE001 - the stream is closed from the main thread at the end
        pass


def run_quiet(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def at_once(users: list[str], work) -> float:
    """Run ``work(user)`` in one thread per user, all released at the same instant (a barrier); return the
    seconds from the release until the last one ended."""
    import threading

    barrier = threading.Barrier(len(users) + 1)

    def one(user: str) -> None:
        barrier.wait()
        work(user)

    threads = [threading.Thread(target=one, args=(u,), daemon=True) for u in users]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def cannot_run() -> str | None:
    """Why a hub benchmark cannot run on this machine (root, dockerd, the proxy, the student image), or None."""
    from hostkit import host_ready
    from hubkit import hub_ready
    from imagekit import image_unavailable

    return host_ready() or hub_ready() or image_unavailable()
