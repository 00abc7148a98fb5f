"""examples/install.sh, run twice into temp paths: the second run changes nothing (CI runs as root, no systemd)."""

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from imagekit import CACHE, TAG, build_test_image, image_unavailable

ROOT = Path(__file__).resolve().parents[2]
REASON = image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))


def digest(paths):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def test_install_twice_is_idempotent(tmp_path):
    build_test_image()  # the install reuses it through the shared cache instead of building again
    env = {
        **os.environ,
        "PREFIX": str(tmp_path / "opt"),
        "ETC": str(tmp_path / "etc"),
        "STATE": str(tmp_path / "state"),
        "HOMES": str(tmp_path / "srv" / "homes"),
        "SYSTEMD_DIR": str(tmp_path / "systemd"),
        "LINK_DIR": str(tmp_path / "bin"),
        "IMAGE_CACHE": str(CACHE),
        "IMAGE_TAG": TAG,
        "SKIP_APT": "1",
    }
    first = subprocess.run(
        ["bash", str(ROOT / "examples" / "install.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert first.returncode == 0, first.stdout + first.stderr
    etc = tmp_path / "etc"
    for secret in ("hub-token", "jupyterhub_cookie_secret"):
        assert stat.S_IMODE((etc / secret).stat().st_mode) == 0o600
        assert len((etc / secret).read_text().strip()) == 64
    # HTTPS by default: a self-signed certificate it says it made, the key root's alone, the hub on https
    assert "self-signed certificate" in first.stdout
    assert stat.S_IMODE((etc / "tls" / "key.pem").stat().st_mode) == 0o600
    assert (
        "tls: {cert: " in (etc / "site.yaml").read_text() and "public_url: https://" in (etc / "site.yaml").read_text()
    )
    kept = sorted(etc.iterdir()) + sorted((etc / "tls").iterdir()) + sorted((tmp_path / "systemd").iterdir())
    before = digest(kept)
    (etc / "classroom.yaml").write_text((etc / "classroom.yaml").read_text() + "# the teacher's own edit\n")
    before[str(etc / "classroom.yaml")] = hashlib.sha256((etc / "classroom.yaml").read_bytes()).hexdigest()

    second = subprocess.run(
        ["bash", str(ROOT / "examples" / "install.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert digest(kept) == before  # nothing overwritten, the teacher's edit kept
    assert "already installed" in second.stdout and "exists: kept" in second.stdout
    assert "systemd is not PID 1" in second.stdout and "reconcile hub" in second.stdout

    units = sorted((tmp_path / "systemd").glob("*.service"))
    assert len(units) == 3 and all(str(tmp_path / "opt" / "venv") in u.read_text() for u in units)
    assert shutil.which("systemd-analyze"), "tests/bootstrap.sh installs systemd's systemd-analyze"
    verify = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    reconcile = tmp_path / "bin" / "reconcile"
    out = subprocess.run(
        [str(reconcile), "validate"],
        env={"RECONCILE_SITE": str(etc / "site.yaml"), "RECONCILE_CACHE": os.environ["RECONCILE_CACHE"]},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "classroom my-class, 0 people" in out.stdout
