#!/usr/bin/env python3
"""Benchmark of the no-op pass: how long `reconcile --dry-run` takes once a classroom has converged.

Not a pytest test (nothing here asserts on time).  Needs root: for each N it makes a
throw-away classroom with tests/hostkit.py (N real accounts, N loop-image ext4 volumes
mounted under a temp dir), converges it with one real apply pass, then times

  * the no-op `reconcile --dry-run` as a subprocess (the real CLI, Python start-up included),
  * observe() + plan() in-process (the engine alone), with a per-stage split,
  * optionally (--ansible) ansible.builtin.user over the same N accounts, also a no-op,

and removes everything again (in a finally, also on Ctrl-C / SIGTERM), then checks that no
user, group, mount or attached loop device of the classroom is left.

    .venv/bin/python tests/bench/bench_noop.py [--n 100 1000] [--repeat 7] [--ansible]
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import json
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent

# Freeze the code under test: a copy of reconciler/ taken now is what this run imports, in-process
# and in every child (PYTHONPATH comes before the editable install), so edits landing in the work
# tree during a long run cannot mix two versions into one table.
CODE = Path(tempfile.mkdtemp(prefix="bench-noop-code-"))
shutil.copytree(REPO / "reconciler", CODE / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
atexit.register(shutil.rmtree, CODE, True)
sys.path.insert(0, str(CODE))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(TESTS))

from hostkit import Classroom, cleanup, host_ready, make_classroom  # noqa: E402

from reconciler.config import load as spec  # noqa: E402
from reconciler.config.classroom import group_name  # noqa: E402
from reconciler.core import render  # noqa: E402
from reconciler.core.actions import Policy  # noqa: E402
from reconciler.core.plan import plan  # noqa: E402
from reconciler.engine.passes import desire  # noqa: E402
from reconciler.host import facts as obs  # noqa: E402
from reconciler.host.observe import observe as host_observe  # noqa: E402
from reconciler.host.volumes import backend_for  # noqa: E402
from reconciler.host.volumes.loop import read_volumes  # noqa: E402
import contextlib

TARGET_N, TARGET_S = 1000, 0.3  # issue #14: a no-op dry run at N = 1000, median wall time
# A 128 MiB ext4 image holds ~17 MiB of real blocks after mkfs (the 16 MiB journal is written);
# round up for the estimate of free disk needed.
BYTES_PER_VOLUME = 20 * 1024 * 1024
VENV_BIN = Path(sys.executable).parent


# --- child processes: own session, so Ctrl-C reaches only us and we stop them cleanly -------------


class Interrupted(KeyboardInterrupt):
    pass


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise Interrupted(f"signal {signum}")


def _stop_group(proc: subprocess.Popen) -> None:
    """End the process group we started (and everything in it), then reap the leader."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            continue
        break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class Ran:
    code: int
    out: str
    err: str
    seconds: float
    cpu: float  # user + system CPU seconds of the child and what it waited for (robust to a busy host)


def run(argv: list[str], *, env: dict | None = None, timeout: float | None = None) -> Ran:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env, cwd=CODE
    )  # cwd: `python -c` puts it first on sys.path
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _stop_group(proc)
        raise
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Ran(proc.returncode, out, err, elapsed, cpu)


def reconcile_argv(room: Classroom, *args: str) -> list[str]:
    script = VENV_BIN / "reconcile"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]
    return [*base, "--site", str(room.site), "-f", str(room.file), *args]


def tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


# --- preflight: how many loop mounts can this host have? ------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def loop_capacity(wanted: int) -> tuple[int, list[str]]:
    """The largest N this host can take (loop devices, mounts, disk), and what limits it."""
    notes, limits = [], {}
    max_loop = _read("/sys/module/loop/parameters/max_loop")
    cmdline = _read("/proc/cmdline") or ""
    hard = re.search(r"(?:^|\s)(?:loop\.)?max_loop=(\d+)", cmdline)
    devices = [d for d in os.listdir("/sys/block") if d.startswith("loop")]
    attached = sum(1 for d in devices if os.path.exists(f"/sys/block/{d}/loop/backing_file"))
    control = os.path.exists("/dev/loop-control")
    devtmpfs = any(line.split()[1:3] == ["/dev", "devtmpfs"] for line in open("/proc/mounts"))
    if hard and int(hard.group(1)) > 0:
        limits["max_loop (kernel command line, a hard limit)"] = int(hard.group(1)) - attached
    elif not control:
        limits["no /dev/loop-control: only existing free loop devices"] = len(devices) - attached
    # else: max_loop is only the number created at boot; /dev/loop-control adds more on demand
    # (up to 2^20 minors with max_part=0).
    if not devtmpfs:
        notes.append("/dev is not devtmpfs: new /dev/loopN nodes may not appear (mount -o loop would fail)")
    mount_max = int(_read("/proc/sys/fs/mount-max") or 100000)
    mounted = sum(1 for _ in open("/proc/self/mountinfo"))
    limits["fs.mount-max"] = mount_max - mounted
    usage = shutil.disk_usage(tempfile.gettempdir())
    limits[f"free disk in {tempfile.gettempdir()} (~{BYTES_PER_VOLUME >> 20} MiB/volume)"] = (
        usage.free // BYTES_PER_VOLUME
    )
    reachable = min([wanted, *limits.values()])
    notes.insert(
        0,
        f"loop: max_loop={max_loop} ({'hard, from the command line' if hard else 'boot-time count only, not a limit'}), "
        f"{len(devices)} loop devices exist, {attached} attached, /dev/loop-control "
        f"{'present' if control else 'MISSING'}, /dev {'devtmpfs' if devtmpfs else 'not devtmpfs'}; "
        f"mounts {mounted}/{mount_max}; disk free {usage.free / 2**30:.0f} GiB",
    )
    for name, value in limits.items():
        if value < wanted:
            notes.append(f"LIMIT: {name} allows only {max(value, 0)} more volumes")
    return max(reachable, 0), notes


# --- the classroom under test ---------------------------------------------------------------------


def write_roster(room: Classroom, n: int) -> None:
    width = len(str(n))
    room.write(
        [
            {"username": f"s{i:0{width}d}", "name": f"Student {i}", "email": f"s{i}@school.example"}
            for i in range(1, n + 1)
        ]
    )


def mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as handle:
        targets = [obs.unescape(line.split()[4]) for line in handle]
    return [t for t in targets if t.startswith(prefix)]


def leftovers(room: Classroom) -> dict[str, int]:
    grep = subprocess.run(["grep", "-c", room.name, "/etc/passwd"], capture_output=True, text=True)
    passwd = int(grep.stdout.strip() or 0)
    users = sum(1 for line in open("/etc/passwd") if line.startswith(room.prefix))
    groups = sum(1 for line in open("/etc/group") if line.startswith(room.name + "-") or line.startswith(room.prefix))
    loops = sum(1 for image in obs.read_loops(Path("/sys/block")) if image.startswith(str(room.root) + "/"))
    return {
        "grep -c name /etc/passwd": passwd,
        "users": users,
        "groups": groups,
        "mounts": len(mounts_under(room.root)),
        "attached loops": loops,
        "dir": int(room.root.exists()),
    }


def clean(room: Classroom) -> bool:
    """hostkit.cleanup, shielded from a second Ctrl-C, then verified (retried once)."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"  cleanup {room.name} ({room.root}) ...", flush=True)
        start = time.perf_counter()
        left = {}
        for _attempt in range(2):
            cleanup(room)
            time.sleep(0.5)  # lazy unmounts release their loop devices asynchronously
            left = leftovers(room)
            if not any(left.values()):
                break
        status = ", ".join(f"{k} {v}" for k, v in left.items())
        ok = not any(left.values())
        print(
            f"  cleanup check {room.name}: {status} -> {'clean' if ok else 'LEFTOVERS'} "
            f"({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        return ok
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# --- in-process engine timing -----------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def engine_times(room: Classroom, repeat: int) -> dict[str, float]:
    """Medians of: loading classroom.yaml, observe()'s stages, plan(), render; and observe+plan together."""
    site = spec.load_site(room.site)
    paths = site.paths
    policy = Policy(False, False, site.max_disable_fraction)
    samples: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        samples.setdefault(key, []).append(seconds)

    spec.load_classroom(room.file, spec.load_site(room.site, remember=True), remember=True)  # remembered now
    for _ in range(repeat):
        t0 = time.perf_counter()
        classroom = spec.load_classroom(room.file, site)
        desired = desire(site, classroom)
        add("load", time.perf_counter() - t0)
        t0 = time.perf_counter()
        spec.load_classroom(room.file, spec.load_site(room.site, remember=True), remember=True)
        add("load_remembered", time.perf_counter() - t0)

        t0 = time.perf_counter()
        actual = host_observe(paths, backend_for(site))
        t1 = time.perf_counter()
        the_plan = plan(desired, actual, policy)
        t2 = time.perf_counter()
        render.render_text(the_plan)
        t3 = time.perf_counter()
        add("engine", t2 - t0)
        add("observe", t1 - t0)
        add("plan", t2 - t1)
        add("render", t3 - t2)
        if the_plan.actions or the_plan.blocked or the_plan.refused:
            raise RuntimeError(f"in-process plan is not empty: {the_plan.summary}")

        # The same reads as observe(), one at a time (mirrors reconciler/host/observe.py and volumes/loop.py).
        host = obs.HostFiles()
        t = time.perf_counter()
        groups = obs.read_groups(host.etc / "group")
        add("groups", time.perf_counter() - t)
        t = time.perf_counter()
        shadow = obs.read_shadow(host.etc / "shadow")
        add("shadow", time.perf_counter() - t)
        t = time.perf_counter()
        obs.read_accounts(host.etc / "passwd", groups, shadow)
        add("passwd", time.perf_counter() - t)
        t = time.perf_counter()
        loops = obs.read_loops(host.sys_block)
        add("loops", time.perf_counter() - t)
        t = time.perf_counter()
        mounts = obs.read_mounts(host.mountinfo, loops, under=str(paths.homes), also=[str(paths.course_folder)])
        add("mounts", time.perf_counter() - t)
        t = time.perf_counter()
        read_volumes(paths.state / "volumes", loops, mounts, paths.home)
        add("volumes", time.perf_counter() - t)
        t = time.perf_counter()
        obs.read_manifest(paths.manifest)
        add("manifest", time.perf_counter() - t)
    return {key: median(values) for key, values in samples.items()}


def profile_engine(room: Classroom, top: int = 18) -> str:
    """cProfile of what the CLI does in a dry run minus argparse and the lock: load, observe, plan, render."""
    site = spec.load_site(room.site)
    policy = Policy(False, False, site.max_disable_fraction)

    def one_pass():
        desired = desire(site, spec.load_classroom(room.file, site))
        render.render_text(plan(desired, host_observe(site.paths, backend_for(site)), policy))

    one_pass()  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    one_pass()
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    text = (
        buffer.getvalue()
        .replace(str(Path(sys.prefix)), "<venv>")
        .replace(str(CODE), "<code>")
        .replace(str(REPO), "<repo>")
        .replace(str(Path(sys.base_prefix)), "<python>")
    )
    return "\n".join(line for line in text.splitlines() if line.strip())


# --- ansible -------------------------------------------------------------------------------------------

PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: the classroom's accounts, exactly as reconcile made them (a no-op check)
      ansible.builtin.user:
        name: "{{ item.name }}"
        comment: "{{ item.comment }}"
        group: "{{ item.name }}"
        groups: ["{{ item.group }}"]
        append: false
        home: "{{ item.home }}"
        create_home: false
        shell: "{{ item.shell }}"
        state: present
      loop: "{{ users }}"
      loop_control:
        label: "{{ item.name }}"
"""


def ensure_ansible() -> str:
    playbook = VENV_BIN / "ansible-playbook"
    if not playbook.exists():
        print("ansible-core is not in the venv: pip install ansible-core ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "ansible-core"], check=True)
    out = subprocess.run([str(playbook), "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def ansible_setup(room: Classroom) -> tuple[list[str], dict]:
    """Playbook + vars matching the accounts reconcile created (GECOS, groups, home, shell)."""
    from reconciler.core.desired import SHELL  # the same conventions the drivers use

    site = spec.load_site(room.site)
    desired = desire(site, spec.load_classroom(room.file, site))
    users = [
        {
            "name": m.username,
            "comment": obs.gecos(m.name, desired.classroom),
            "group": group_name(desired.classroom, m.role),
            "home": str(site.paths.home(m.username)),
            "shell": SHELL,
        }
        for m in desired.members
    ]
    work = room.root / "ansible"
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    (work / "playbook.yml").write_text(PLAYBOOK)
    (work / "users.json").write_text(json.dumps({"users": users, "ansible_python_interpreter": sys.executable}))
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(work),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_REMOTE_TEMP=str(work / "tmp"),
        ANSIBLE_PIPELINING="True",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_LOCALHOST_WARNING="False",
    )
    argv = [
        str(VENV_BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"@{work / 'users.json'}",
        str(work / "playbook.yml"),
    ]
    return argv, env


def time_ansible(room: Classroom, repeat: int) -> tuple[list[float], str]:
    argv, env = ansible_setup(room)
    times, note = [], ""
    for i in range(repeat):
        ran = run(argv, env=env)
        recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", ran.out)
        if ran.code != 0 or not recap or recap.group(2) != "0":
            raise RuntimeError(
                f"ansible run {i + 1} was not a clean no-op (exit {ran.code}, "
                f"recap {recap.group(0) if recap else 'missing'}):\n{tail(ran.out + ran.err)}"
            )
        times.append(ran.seconds)
        note = recap.group(0)
        print(f"    ansible run {i + 1}/{repeat}: {ran.seconds:.2f} s ({note})", flush=True)
    return times, note


# --- one N ----------------------------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    apply_s: float | None = None
    dry: list[float] = field(default_factory=list)
    dry_cpu: list[float] = field(default_factory=list)
    dry_cached: list[float] = field(default_factory=list)
    dry_validated: list[float] = field(default_factory=list)
    load: str = ""
    engine: dict[str, float] = field(default_factory=dict)
    startup: dict[str, float] = field(default_factory=dict)
    ansible: list[float] = field(default_factory=list)
    error: str = ""
    clean: bool = True


def bench_one(n: int, args: argparse.Namespace, profiles: dict[int, str]) -> Row:
    row = Row(n)
    load_before = os.getloadavg()[0]
    # N sparse 128 MiB images promise more than this disk holds; they never fill (the benchmark writes nothing)
    room = make_classroom(volumes={"backend": "loop", "max_overcommit": 1000})
    print(f"\n== N={n}: classroom {room.name}, users {room.prefix}*, in {room.root}", flush=True)
    # the CLI's configuration cache (reconciler.config.cache) for this classroom's runs, removed with it
    os.environ["RECONCILE_CACHE"] = str(room.root / "config-cache")
    try:
        write_roster(room, n)
        print(f"  apply: creating {n} accounts, {n} volumes, {n} mounts ...", flush=True)
        ran = run(reconcile_argv(room))
        row.apply_s = ran.seconds
        print(
            f"  apply: exit {ran.code} in {ran.seconds:.1f} s; {ran.err.strip().splitlines()[-1] if ran.err.strip() else ''}",
            flush=True,
        )
        if ran.code != 0:
            reached = len(mounts_under(room.root))
            row.error = f"apply exited {ran.code}; {reached} of {n} volumes mounted (N reachable here: {reached})"
            print(tail(ran.err), flush=True)
            return row

        check = run(reconcile_argv(room, "--dry-run"))
        if check.code != 0:
            row.error = f"the dry run after apply exited {check.code} (expected 0: no changes)"
            print(tail(check.out + check.err, 25), flush=True)
            return row
        print(f"  dry-run after apply: exit 0 ({check.out.strip().splitlines()[0]})", flush=True)

        for _ in range(args.repeat):
            ran = run(reconcile_argv(room, "--dry-run"))
            if ran.code != 0:
                row.error = f"a timed dry run exited {ran.code}"
                return row
            row.dry.append(ran.seconds)
            row.dry_cpu.append(ran.cpu)
        print(
            "  dry-run times: "
            + " ".join(f"{t:.3f}" for t in row.dry)
            + "  (CPU: "
            + " ".join(f"{t:.3f}" for t in row.dry_cpu)
            + ")",
            flush=True,
        )

        # The same as the first run after each edit of classroom.yaml or site.yaml: both files validated again
        validated = dict(os.environ, RECONCILE_CACHE="off")
        row.dry_validated = [run(reconcile_argv(room, "--dry-run"), env=validated).seconds for _ in range(args.repeat)]
        print(
            "  dry-run times, files validated (as after an edit; RECONCILE_CACHE=off): "
            + " ".join(f"{t:.3f}" for t in row.dry_validated),
            flush=True,
        )

        # The same with a bytecode cache (as a pip-installed package has): it is kept under the
        # classroom's temp dir, so the work tree gets no __pycache__ and cleanup removes it.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(room.root / "pycache")
        run(reconcile_argv(room, "--dry-run"), env=cached)  # fills the cache
        row.dry_cached = [run(reconcile_argv(room, "--dry-run"), env=cached).seconds for _ in range(args.repeat)]
        print("  dry-run times with a bytecode cache: " + " ".join(f"{t:.3f}" for t in row.dry_cached), flush=True)

        for key, argv, env in (
            ("python", [sys.executable, "-c", "pass"], None),
            ("imports", [sys.executable, "-c", "import reconciler.cli.main"], None),
            ("imports_cached", [sys.executable, "-c", "import reconciler.cli.main"], cached),
        ):
            row.startup[key] = median([run(argv, env=env).seconds for _ in range(args.repeat)])
        row.engine = engine_times(room, args.repeat)
        row.load = f"{load_before:.2f} before apply, {os.getloadavg()[0]:.2f} after the timings"
        if args.profile and n == max(args.n):
            profiles[n] = profile_engine(room)

        if args.ansible:
            print(f"  ansible.builtin.user over {n} users, {args.ansible_repeat} run(s) ...", flush=True)
            row.ansible, _ = time_ansible(room, args.ansible_repeat)
        return row
    except Exception as exc:  # report and go on to cleanup; KeyboardInterrupt passes through
        row.error = f"{type(exc).__name__}: {exc}"
        return row
    finally:
        row.clean = clean(room)


# --- report -----------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print("\n" + "=" * 100)
    print(
        f"{'N':>5}  {'apply_s':>8}  {'dryrun_median_s':>15}  {'dryrun_min_s':>12}  {'dryrun_max_s':>12}  "
        f"{'dryrun_cpu_median_s':>19}  {'engine_median_s':>15}  {'ansible_median_s':>16}  {'ratio':>6}"
    )
    for r in rows:
        dry = median(r.dry) if r.dry else None
        ans = median(r.ansible) if r.ansible else None
        ratio = f"{ans / dry:.1f}" if dry and ans else "-"
        print(
            f"{r.n:>5}  {fmt(r.apply_s, 1):>8}  {fmt(dry):>15}  {fmt(min(r.dry) if r.dry else None):>12}  "
            f"{fmt(max(r.dry) if r.dry else None):>12}  {fmt(median(r.dry_cpu) if r.dry_cpu else None):>19}  {fmt(r.engine.get('engine')):>15}  {fmt(ans, 2):>16}  {ratio:>6}"
        )
    print(
        f"(dry-run: {args.repeat} runs of the real CLI as a subprocess; engine: observe()+plan() in-process, "
        f"median of {args.repeat}; dryrun_cpu: user+system CPU of the dry-run process; ansible: median of "
        f"{args.ansible_repeat}; ratio = ansible / dry-run median)"
    )
    for r in rows:
        if r.load:
            print(f"load average N={r.n}: {r.load} ({os.cpu_count()} CPUs)")
    for r in rows:
        if r.error:
            print(f"N={r.n}: FAILED: {r.error}")
        if r.dry:
            dry = median(r.dry)
            verdict = "MET" if dry <= TARGET_S else "MISSED"
            scope = "" if r.n == TARGET_N else f" (the target is set at N={TARGET_N}; shown for reference)"
            print(f"target N={r.n}: dry-run median {dry:.3f} s vs <= {TARGET_S:.1f} s -> {verdict}{scope}")
            if r.dry_cached:
                cached = median(r.dry_cached)
                print(
                    f"  with a bytecode cache (as an installed package runs): {cached:.3f} s -> "
                    f"{'MET' if cached <= TARGET_S else 'MISSED'}"
                )
            if r.dry_validated:
                print(
                    f"  the first run after an edit (site.yaml and classroom.yaml validated, not remembered): "
                    f"{median(r.dry_validated):.3f} s"
                )
            if r.engine:
                print(
                    f"  floor: observe (reading /etc/passwd, group, shadow, mountinfo, the loop devices and {r.n} "
                    f"ext4 superblocks) {r.engine['observe'] * 1000:.0f} ms; plus Python's own start-up "
                    f"{r.startup['python'] * 1000:.0f} ms"
                )
    for r in rows:
        if r.dry and r.engine:
            e, s = r.engine, r.startup
            stages = ", ".join(
                f"{k} {e[k] * 1000:.1f}"
                for k in ("groups", "shadow", "passwd", "loops", "mounts", "volumes", "manifest")
            )
            rest = median(r.dry) - s["imports"] - e["load_remembered"] - e["engine"] - e["render"]
            print(
                f"split N={r.n} (ms): python start-up {s['python'] * 1000:.0f}, + imports {(s['imports'] - s['python']) * 1000:.0f}, "
                f"site.yaml + classroom.yaml remembered {e['load_remembered'] * 1000:.1f} (validating classroom.yaml: "
                f"{e['load'] * 1000:.0f}), observe {e['observe'] * 1000:.1f} "
                f"[{stages}], plan {e['plan'] * 1000:.1f}, render {e['render'] * 1000:.1f}, "
                f"other (argparse, lock, cold first calls, exit) {rest * 1000:.0f}"
            )
            if r.dry_cached:
                print(
                    f"  with a bytecode cache N={r.n}: dry-run median {median(r.dry_cached):.3f} s "
                    f"(min {min(r.dry_cached):.3f}, max {max(r.dry_cached):.3f}), imports "
                    f"{(s['imports_cached'] - s['python']) * 1000:.0f} ms instead of {(s['imports'] - s['python']) * 1000:.0f}"
                )
    bad = [r.n for r in rows if not r.clean]
    print(
        "cleanup: "
        + (
            "every classroom removed (no users, groups, mounts or attached loop devices left)"
            if not bad
            else f"LEFTOVERS for N={bad}; see above"
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000], help="class sizes (default: 100 1000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed dry runs per N (default: 7)")
    parser.add_argument("--ansible", action="store_true", help="also time ansible.builtin.user (installs ansible-core)")
    parser.add_argument("--ansible-repeat", type=int, default=3, help="ansible runs per N (default: 3)")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of one in-process pass at the largest N"
    )
    args = parser.parse_args()

    reason = host_ready()
    if reason:
        print(f"cannot run here: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _on_sigterm)
    print(
        f"host: {platform.node()} {platform.release()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    head = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "reconciler"], capture_output=True, text=True
    ).stdout.strip()
    child = run([sys.executable, "-c", "import reconciler; print(reconciler.__file__)"]).out.strip()
    if not child.startswith(str(CODE)) or not spec.__file__.startswith(str(CODE)):
        print(f"cannot pin the code under test (a child imports {child})", file=sys.stderr)
        return 1
    print(
        f"code: {head or 'unknown'}{' + uncommitted changes in reconciler/' if dirty else ''}, "
        f"copied to {CODE} for this run"
    )
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print(
            "note: PYTHONDONTWRITEBYTECODE is set: each plain run compiles reconciler/*.py (no .pyc is kept); "
            "the 'bytecode cache' line shows runs that do not"
        )
    ansible_version = ensure_ansible() if args.ansible else None
    if ansible_version:
        print(f"ansible: {ansible_version} (connection: local, pipelining on)")

    reachable, notes = loop_capacity(max(args.n))
    for note in notes:
        print(note)
    sizes = []
    for n in args.n:
        if n > reachable:
            print(f"N={n} is not reachable on this host (limit above); using N={reachable} instead")
            n = reachable
        if n > 0 and n not in sizes:
            sizes.append(n)
    print(f"reachable N here: {reachable} (asked for {max(args.n)})")

    rows: list[Row] = []
    profiles: dict[int, str] = {}
    try:
        for n in sizes:
            rows.append(bench_one(n, args, profiles))
    except KeyboardInterrupt:
        print("\ninterrupted; the classroom in progress was cleaned up", file=sys.stderr)
        report(rows, args)
        return 130
    report(rows, args)
    for n, text in profiles.items():
        print(f"\ncProfile of one in-process pass (load + observe + plan + render) at N={n}:\n{text}")
    print(f"load at the end: {os.getloadavg()[0]:.2f}")
    return 0 if all(r.clean and not r.error for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
