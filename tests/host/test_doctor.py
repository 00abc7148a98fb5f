"""`reconcile doctor` on the real host: a healthy classroom passes, and each thing broken for real is named
with its fix (exit 1): a volume not mounted, Docker that does not answer, an expiring or expired certificate."""

import datetime
import os
import subprocess
import sys

from hubkit import add_hub
from reconciler.cli.doctor import FAIL, WARN, check_certificate


def doctor(room, env=None):
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "doctor", "--site", str(room.site), "-f", str(room.file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_healthy_classroom_then_a_volume_not_mounted(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}])
    assert room.cli().returncode == 0
    healthy = doctor(room)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "ok    volumes: all 2 volumes in the manifest are mounted" in healthy.stdout
    assert "ok    state: " in healthy.stdout and healthy.stdout.rstrip().endswith("no problems found")
    home = room.paths.homes / room.user("ann")
    subprocess.run(["umount", str(home)], check=True)  # what a reboot without the mount unit leaves
    broken = doctor(room)
    assert broken.returncode == 1
    assert f"FAIL  volumes: 1 of 2 not mounted: {home}" in broken.stdout
    assert "fix: reconcile mount-all" in broken.stdout and "1 problem(s)" in broken.stdout
    assert room.cli("mount-all").returncode == 0
    assert doctor(room).returncode == 0


def test_docker_that_does_not_answer(classroom):
    room = classroom
    add_hub(room)
    (room.root / "state").mkdir(mode=0o700, exist_ok=True)
    (room.root / "state" / "hub-token").write_text("x" * 64)
    room.write([{"username": "ann"}])
    env = {**os.environ, "DOCKER_HOST": f"unix://{room.root}/no-docker.sock"}
    out = doctor(room, env)
    assert out.returncode == 1
    assert "FAIL  docker: not reachable" in out.stdout and "fix: start dockerd" in out.stdout


def test_certificates_near_and_past_their_end(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3",
            "-subj",
            "/CN=hub",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    (soon,) = check_certificate(cert)
    assert soon.verdict == WARN and "expires in 2 day(s)" in soon.detail, soon  # 2 days 23 h and some
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=4)
    (expired,) = check_certificate(cert, now=later)
    assert expired.verdict == FAIL and "expired on" in expired.detail and "certbot renew" in expired.fix
    (garbage,) = check_certificate(key)  # a key is not a certificate
    assert garbage.verdict == FAIL
