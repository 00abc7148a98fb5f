"""Planning in CI without the server: `reconcile --dry-run --observed snapshot.json`, and the CI files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hostkit import host_ready

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"


@pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")
def test_plan_against_a_snapshot_matches_the_live_plan(classroom, tmp_path):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}])
    assert room.cli().returncode == 0
    status = room.cli("status", "--json")
    assert status.returncode == 0
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(status.stdout)

    # the change a teacher proposes in a pull request
    room.write([{"username": "ann", "disk": "256Mi"}, {"username": "bob"}, {"username": "dan"}])
    live = room.cli("--dry-run", "--json")
    # CI: another directory, no site.yaml, nothing read from this host but the two files
    offline = subprocess.run(
        [sys.executable, "-m", "reconciler", "--dry-run", "--json", "--observed", str(snapshot), "-f", str(room.file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "RECONCILE_SITE": "", "RECONCILE_CACHE": os.environ["RECONCILE_CACHE"]},
    )
    assert offline.returncode == live.returncode == 2, offline.stderr
    assert json.loads(offline.stdout) == json.loads(live.stdout)
    assert not (tmp_path / "state").exists()

    # a truncated roster is refused in CI just as on the server
    room.write([{"username": "ann"}])
    refused = subprocess.run(
        [sys.executable, "-m", "reconciler", "--dry-run", "--observed", str(snapshot), "-f", str(room.file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert refused.returncode == 3 and "--allow-mass-disable" in refused.stdout


def test_observed_needs_dry_run(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "reconciler", "--observed", "x.json", "-f", str(ROOT / "examples" / "classroom.yaml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 64 and "add --dry-run" in out.stderr  # a usage error, before anything is read


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_files_validate_plan_and_gate_on_exit_codes(name):
    text = (GITOPS / name).read_text()
    yaml.safe_load(text)  # well-formed
    assert "reconcile validate -f classroom.yaml" in text
    assert "reconcile --dry-run --observed snapshot.json -f classroom.yaml" in text
    assert '[ "$code" -eq 0 ] || [ "$code" -eq 2 ]' in text
    assert "<!-- reconcile-plan -->" in text  # one comment, updated in place
    assert "rsync" in text and "/etc/classroom/classroom.yaml" in text
