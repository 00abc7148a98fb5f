"""The classroom's people cannot use the host's sshd, not even `ssh -N` to forward ports (a real sshd).

Debian's own sshd (openssh-server and libwrap0, downloaded with apt-get and unpacked into a cache, never
installed: no service starts) runs on 127.0.0.1 with a throw-away configuration that includes a drop-in
directory, as Debian's does.  A student with a nologin shell first gets a port-forwarding session, which
is what the drop-in is for; after `deny_ssh` writes it and reloads sshd, the same login is refused, while
a host account outside the classroom still logs in.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hostkit import host_ready
from hubkit import free_port
from reconciler.hub.launch import deny_ssh

CACHE = Path("/var/cache/classroom-test-sshd")
pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")


def debian_sshd() -> Path:
    """sshd from Debian's packages, unpacked once (downloads need only the Debian mirror)."""
    sshd = CACHE / "root" / "usr" / "sbin" / "sshd"
    if not sshd.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        for package in ("openssh-server", "libwrap0"):
            subprocess.run(["apt-get", "download", "-qq", package], cwd=CACHE, check=True, capture_output=True)
        for deb in CACHE.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE / "root")], check=True)
            deb.unlink()
    return sshd


@pytest.fixture
def sshd(classroom, tmp_path):
    binary = debian_sshd()
    env = {**os.environ, "LD_LIBRARY_PATH": f"{CACHE}/root/lib/x86_64-linux-gnu:{CACHE}/root/usr/lib/x86_64-linux-gnu"}
    made = []  # sshd's privilege separation user and directory, when this host has none
    try:  # set-up inside the cleanup's reach
        if subprocess.run(["getent", "passwd", "sshd"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-r", "-M", "-d", "/run/sshd", "-s", "/usr/sbin/nologin", "sshd"], check=True)
            made.append("user")
        if not Path("/run/sshd").exists():
            Path("/run/sshd").mkdir(mode=0o755)
            made.append("dir")
        drop_ins = tmp_path / "sshd_config.d"
        drop_ins.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")], check=True)
        port = free_port()
        (tmp_path / "sshd_config").write_text(
            f"Include {drop_ins}/*.conf\nHostKey {tmp_path / 'hostkey'}\nListenAddress 127.0.0.1:{port}\n"
            f"PidFile {tmp_path / 'sshd.pid'}\nUsePAM no\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\n"
        )
        subprocess.run(
            [str(binary), "-f", str(tmp_path / "sshd_config"), "-E", str(tmp_path / "sshd.log")], env=env, check=True
        )
        yield port, drop_ins, tmp_path
    finally:
        pid = tmp_path / "sshd.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGTERM)
        time.sleep(0.3)
        if "user" in made:
            subprocess.run(["userdel", "sshd"], capture_output=True)
            subprocess.run(["groupdel", "sshd"], capture_output=True)
        if "dir" in made:
            shutil.rmtree("/run/sshd", ignore_errors=True)


def forward(port: int, user: str, secret: str, where: Path) -> str:
    """`ssh -N -L`: 'connected' when the session stays up (a tunnel into the host), else why it ended."""
    askpass = where / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{secret}'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": "none"}
    proc = subprocess.Popen(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-p",
            str(port),
            "-N",
            "-L",
            f"{free_port()}:127.0.0.1:{port}",
            f"{user}@127.0.0.1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=4)
        return err.strip().splitlines()[-1] if err.strip() else f"exited {proc.returncode}"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "connected"


def test_students_cannot_tunnel_through_sshd(classroom, sshd):
    port, drop_ins, where = sshd
    room = classroom
    room.write([{"username": "ann"}])
    assert room.cli().returncode == 0
    ann = room.user("ann")
    subprocess.run(["chpasswd"], input=f"{ann}:Ann-pass-123\n", text=True, check=True)
    outsider = room.user("out")
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", outsider], check=True)
    subprocess.run(["chpasswd"], input=f"{outsider}:Out-pass-123\n", text=True, check=True)

    assert forward(port, ann, "Ann-pass-123", where) == "connected"  # nologin alone does not stop a tunnel

    assert deny_ssh(room.name, drop_ins, where / "sshd.pid") == "written, sshd reloaded"
    time.sleep(1)  # sshd re-executes itself on SIGHUP
    assert "Permission denied" in forward(port, ann, "Ann-pass-123", where)
    assert forward(port, outsider, "Out-pass-123", where) == "connected"  # the admin's other accounts are untouched
    assert "not allowed because listed in DenyUsers" in (where / "sshd.log").read_text()
