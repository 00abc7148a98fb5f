"""The teacher page's table from the daemon's last snapshot (engine.passes.daemon_snapshot): only when the daemon
saw the roster as it is now and is alive; parsed once per write."""

import json
import os
import time

from reconciler.config.site import Site
from reconciler.core.actual import to_json
from reconciler.engine.passes import daemon_snapshot
from test_plan_golden import snapshot


def write(site: Site, classroom: str = "c1", age: float = 0.0) -> float:
    path = site.paths.snapshot
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"classroom": classroom, "observed": to_json(snapshot())}))
    when = time.time() - age
    os.utime(path, (when, when))
    return when


def test_used_only_when_newer_than_the_roster_and_recent(tmp_path):
    site = Site(state_dir=tmp_path / "state", resync_interval=60)
    assert daemon_snapshot(site, "c1", 0) is None  # no daemon has written one
    when = write(site)
    found = daemon_snapshot(site, "c1", when - 10)
    assert found is not None and found[1] == when
    assert daemon_snapshot(site, "c1", when - 10)[0] is found[0]  # parsed once per write
    assert daemon_snapshot(site, "c1", when + 1) is None  # the roster changed after: the daemon has not seen it
    assert daemon_snapshot(site, "other", when - 10) is None  # another classroom's
    when = write(site, age=200)  # older than two resync intervals: the daemon is not running
    assert daemon_snapshot(site, "c1", when - 10) is None
    site.paths.snapshot.write_text("{not json")
    assert daemon_snapshot(site, "c1", 0) is None
