"""Convergence on the real host: any sequence of roster edits, and SIGKILL at random points.

Property (hypothesis): after each applied edit the next plan is empty and the
host matches the file.  Crash safety: an apply killed with SIGKILL anywhere is
finished by the next pass, and no file a student wrote is lost.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostkit import cleanup, host_ready, make_classroom
from reconciler.cli import main as cli  # the module: cli.main([...])
from reconciler.config.load import load_classroom, load_site
from reconciler.config.sizes import parse_size
from reconciler.core.actions import Policy
from reconciler.core.actual import is_disabled, is_enabled
from reconciler.core.plan import plan
from reconciler.engine.passes import desire

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")

NAMES = ("ann", "bob", "cat", "dan")
person = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["active", "active", "disabled", "absent", "purged"]),
        "disk": st.sampled_from(["128Mi", "256Mi"]),
        "role": st.sampled_from(["student", "student", "teacher"]),
    }
)
roster = st.fixed_dictionaries({name: person for name in NAMES})


def write(room, edit):
    students, admins = [], []
    for name, p in edit.items():
        if p["status"] == "absent":
            continue
        (admins if p["role"] == "teacher" else students).append(
            {"username": name, "status": p["status"], "disk": p["disk"]}
        )
    room.write(students, admins=admins)


def check_matches(room, edit):
    site = load_site(room.site)
    desired = desire(site, load_classroom(room.file, site))
    actual = room.observe()
    leftover = plan(desired, actual, Policy(allow_destroy=True, allow_mass_disable=True))
    assert leftover.empty, [a.to_json() for a in leftover.actions] + [n.message for n in leftover.blocked]
    for name, p in edit.items():
        user = room.user(name)
        account = actual.accounts.get(user)
        home = str(site.paths.home(user))
        if p["status"] == "active":
            group = f"{room.name}-{'teachers' if p['role'] == 'teacher' else 'students'}"
            assert account is not None and is_enabled(account, actual.today) and account.groups == {group}
            assert home in actual.mounts and actual.mounts[home].owner == (account.uid, account.gid, 0o700)
            assert actual.volumes[user].size == parse_size(p["disk"]) == actual.volumes[user].fs.size
        elif p["status"] == "purged":
            assert account is None and user not in actual.volumes
        else:
            assert account is None or is_disabled(account, actual.today)
            assert home not in actual.mounts and home not in actual.manifest


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(roster, min_size=1, max_size=4))
def test_any_sequence_of_edits_converges(edits):
    room = make_classroom()
    try:
        for edit in edits:
            write(room, edit)
            code = cli.main(["--site", str(room.site), "-f", str(room.file), "--allow-destroy", "--allow-mass-disable"])
            assert code == 0
            check_matches(room, edit)
    finally:
        cleanup(room)


def _apply(room, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "--site",
            str(room.site),
            "-f",
            str(room.file),
            "--allow-mass-disable",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sigkill_at_random_points_then_rerun_converges(classroom):
    room = classroom
    base = [{"username": n} for n in ("s0", "s1", "s2", "s3")]
    other = [
        {"username": "s0", "disk": "256Mi"},
        {"username": "s1", "status": "disabled"},
        {"username": "s2"},
        {"username": "s3", "disk": "384Mi"},
        *({"username": f"s{i}"} for i in range(4, 8)),
    ]
    room.write(base)
    assert _apply(room).returncode == 0
    markers = {}
    for name in ("s0", "s1", "s2", "s3"):
        path = room.paths.home(room.user(name)) / "precious.txt"
        markers[path] = os.urandom(4096)
        path.write_bytes(markers[path])
        os.sync()

    # How long one whole apply of the edit takes here (start-up included): kills land inside it.
    room.write(other)
    started = time.monotonic()
    assert _apply(room).returncode == 0
    span = time.monotonic() - started
    room.write(base)
    assert _apply(room).returncode == 0

    rng = random.Random(20261126)
    kills = 0
    for trial in range(20):
        room.write(other if trial % 2 == 0 else base)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "--site",
                str(room.site),
                "-f",
                str(room.file),
                "--allow-mass-disable",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 0.9) * span)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        rerun = _apply(room)  # waits for any orphaned mkfs/resize2fs: they inherit the lock
        assert rerun.returncode == 0, f"trial {trial}: {rerun.stdout}\n{rerun.stderr}"
        assert _apply(room, "--dry-run").returncode == 0, f"trial {trial}"
    assert kills >= 10, "the kills must land mid-apply for this test to mean anything"

    room.write([{"username": f"s{i}"} for i in range(8)])
    assert _apply(room).returncode == 0
    for path, content in markers.items():
        assert path.read_bytes() == content
