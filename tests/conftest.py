from pathlib import Path

import pytest

from hostkit import cleanup, host_ready, make_classroom

# Tests live in one directory per tier, and carry its marker: `pytest -m unit` runs in seconds without root.
TIERS = ("unit", "host", "hub", "swarm", "vm")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def classroom():
    """A throw-away classroom on the real host (root only), removed afterwards."""
    reason = host_ready()
    if reason:
        pytest.skip(reason)
    room = make_classroom()
    try:
        yield room
    finally:
        cleanup(room)


# In CI every prerequisite is installed by tests/run.sh, so a skipped test means a missing
# install step: fail the run instead of letting it pass quietly.
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(f"{report.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}")


def pytest_sessionstart(session):
    session.config._leftovers_before = leftovers()


def pytest_sessionfinish(session, exitstatus):
    import os

    if os.environ.get("CI") and _skipped and exitstatus == 0:
        print("\nCI must skip nothing; skipped:\n  " + "\n  ".join(_skipped))
        session.exitstatus = 1
    # Every user, mount, loop device, container, network, namespace, firewall chain and process a test makes is
    # removed by its own cleanup, even when the test fails: what this run left behind fails it.
    before = getattr(session.config, "_leftovers_before", {})
    left = {kind: sorted(set(found) - set(before.get(kind, ()))) for kind, found in leftovers().items()}
    left = {kind: found for kind, found in left.items() if found}
    if left:
        print(
            "\nthe tests left these behind:\n  "
            + "\n  ".join(f"{kind}: {', '.join(found[:10])}" for kind, found in left.items())
        )
        session.exitstatus = 1


def leftovers() -> dict[str, list[str]]:
    """What the tests' classrooms (t<hex>, z<hex>, /tmp/reconcile-test-*) and test hosts (clsrm-*) may leave."""
    import os
    import re
    import subprocess

    if os.geteuid() != 0:
        return {}
    found: dict[str, list[str]] = {}
    with open("/proc/self/mountinfo") as handle:
        found["mounts"] = [line.split()[4] for line in handle if "/reconcile-test-" in line.split()[4]]
    try:
        found["loop devices"] = [
            p.parent.parent.name
            for p in Path("/sys/block").glob("loop*/loop/backing_file")
            if "/reconcile-test-" in p.read_text()
        ]
    except OSError:
        found["loop devices"] = []
    with open("/etc/passwd") as handle:
        found["accounts"] = [
            line.split(":")[0]
            for line in handle
            if re.search(r"classroom=t[0-9a-f]{6}\b", line) or re.match(r"z[0-9a-f]{6}", line)
        ]
    found["namespaces"] = [
        name for name in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else []) if name.startswith("clsrm-")
    ]
    chains = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    found["firewall chains"] = [line.split()[1] for line in chains.splitlines() if line.startswith("-N CLSRM-")]
    docker = subprocess.run(
        ["docker", "ps", "-a", "--format", '{{.Names}} {{.Label "org.classroom.classroom"}}'],
        capture_output=True,
        text=True,
    )
    found["containers"] = (
        [line.split()[0] for line in docker.stdout.splitlines() if re.search(r" t[0-9a-f]{6}$", line)]
        if docker.returncode == 0
        else []
    )
    networks = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True)
    found["docker networks"] = [n for n in networks.stdout.split() if re.fullmatch(r"clsrm-t[0-9a-f]{6}", n)]
    processes = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/reconcile-test-" in command and int(pid) != os.getpid():
            processes.append(f"{pid} {command[:80]}")
    found["processes"] = processes
    return found
