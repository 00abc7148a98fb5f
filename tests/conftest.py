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


def pytest_sessionfinish(session, exitstatus):
    import os

    if os.environ.get("CI") and _skipped and exitstatus == 0:
        print("\nCI must skip nothing; skipped:\n  " + "\n  ".join(_skipped))
        session.exitstatus = 1
