"""`reconcile watch` as a real process on the real host: saves, invalid saves, resync, SIGHUP, SIGTERM."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from hostkit import host_ready, wait_for

pytestmark = pytest.mark.skipif(host_ready() is not None, reason=host_ready() or "")


def save_by_rename(room, students):
    """What editors do: write a temp file, then rename it over classroom.yaml."""
    tmp = room.file.with_name(".classroom.yaml.swp")
    doc = {
        "version": 1,
        "name": room.name,
        "quotas": room.quotas,
        "students": [{"username": room.user(s), "name": s.capitalize()} for s in students],
    }
    tmp.write_text(yaml.safe_dump(doc))
    os.replace(tmp, room.file)
    return hashlib.sha256(room.file.read_bytes()).hexdigest()


def status(room):
    path = room.paths.state / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def daemon(classroom):
    room = classroom
    site = yaml.safe_load(room.site.read_text())
    site["resync_interval"] = 3
    room.site.write_text(yaml.safe_dump(site))
    save_by_rename(room, ["ann", "bob"])
    log = open(room.root / "watch.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield room, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_saves_are_applied_and_invalid_saves_are_not(daemon):
    room, proc = daemon
    first = hashlib.sha256(room.file.read_bytes()).hexdigest()
    wait_for(
        lambda: status(room).get("file_sha256") == first and status(room)["result"] == "converged",
        what="the first pass",
    )
    assert {room.user("ann"), room.user("bob")} <= set(room.observe().accounts)
    assert status(room)["people"][room.user("ann")] == {"condition": "ok"}

    second = save_by_rename(room, ["ann", "bob", "cat"])
    wait_for(
        lambda: status(room).get("file_sha256") == second and status(room)["result"] == "converged",
        timeout=30,
        what="the save to be applied",
    )
    assert room.user("cat") in room.observe().accounts

    room.file.write_text(room.file.read_text().replace("version: 1", "version: 1\nstudnets: []"))
    bad = hashlib.sha256(room.file.read_bytes()).hexdigest()
    wait_for(lambda: status(room).get("file_sha256") == bad, timeout=30, what="the invalid save to be seen")
    current = status(room)
    assert current["result"] == "invalid"
    assert any(f"{room.file}:" in p and "studnets: unknown key" in p for p in current["problems"])
    assert current["last_applied"]["sha256"] == second
    assert "studnets" in (room.root / "watch.log").read_text()
    kept = room.paths.in_force  # the roster in force, for the teacher page while the file is broken
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == second and kept.stat().st_mode & 0o777 == 0o600

    third = save_by_rename(room, ["ann", "cat"])  # a valid save again: bob is disabled
    wait_for(
        lambda: status(room).get("file_sha256") == third and status(room)["result"] == "converged",
        timeout=30,
        what="the next valid save",
    )
    assert room.observe().accounts[room.user("bob")].locked
    assert proc.poll() is None


def test_resync_repairs_drift_and_sighup_runs_a_pass_now(daemon):
    room, proc = daemon
    first = hashlib.sha256(room.file.read_bytes()).hexdigest()
    wait_for(
        lambda: status(room).get("file_sha256") == first and status(room)["result"] == "converged",
        what="the first pass",
    )
    subprocess.run(["usermod", "--lock", room.user("ann")], check=True)
    wait_for(
        lambda: not room.observe().accounts[room.user("ann")].locked,
        timeout=20,
        what="the resync to unlock the account",
    )

    site = yaml.safe_load(room.site.read_text())  # a long resync, so only SIGHUP can explain a quick pass
    site["resync_interval"] = 600
    room.site.write_text(yaml.safe_dump(site))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log = open(room.root / "watch2.log", "w")
    proc2 = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: status(room).get("time") and "watching" in (room.root / "watch2.log").read_text(),
            what="the restarted daemon",
        )
        before = status(room)["time"]
        time.sleep(1.1)  # status times have one-second resolution
        subprocess.run(["usermod", "--lock", room.user("bob")], check=True)
        proc2.send_signal(signal.SIGHUP)
        wait_for(lambda: status(room)["time"] != before, timeout=15, what="a pass after SIGHUP")
        wait_for(lambda: not room.observe().accounts[room.user("bob")].locked, timeout=15, what="the repair")
        proc2.send_signal(signal.SIGTERM)
        assert proc2.wait(timeout=30) == 0
    finally:
        if proc2.poll() is None:
            proc2.kill()
        log.close()


def test_status_names_the_git_commit(daemon):
    room, proc = daemon
    wait_for(lambda: status(room).get("result") == "converged", what="the first pass")  # signal handlers are set
    subprocess.run(["git", "init", "-q", str(room.root)], check=True)
    subprocess.run(["git", "-C", str(room.root), "add", "classroom.yaml"], check=True)
    subprocess.run(
        ["git", "-C", str(room.root), "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "roster"],
        check=True,
    )
    commit = subprocess.run(
        ["git", "-C", str(room.root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: (status(room).get("git") or {}).get("commit") == commit, timeout=20, what="the commit")
    assert status(room)["git"]["dirty"] is False


def test_no_pass_without_a_reason(classroom):
    """Its own reads of the file must not wake the daemon: with no save and no resync due, nothing runs."""
    room = classroom
    site = yaml.safe_load(room.site.read_text())
    site["resync_interval"] = 600
    room.site.write_text(yaml.safe_dump(site))
    save_by_rename(room, ["ann"])
    log = open(room.root / "watch.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: status(room).get("result") == "converged", what="the first pass")
        first = (room.paths.state / "status.json").stat().st_mtime_ns
        time.sleep(3)
        assert (room.paths.state / "status.json").stat().st_mtime_ns == first
        save_by_rename(room, ["ann", "bob"])  # while a real save still wakes it
        wait_for(lambda: room.user("bob") in room.observe().accounts, timeout=30, what="the save")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_a_file_written_in_place_is_read_once_its_writer_closes_it(classroom):
    """scp or `cat > classroom.yaml` write the file in place: cut at a line's end it may be valid YAML with people
    missing, so a save wakes the daemon only when the writer closes the file (resync is 10 minutes here), and a pass
    woken while it is open for writing does not read it ("busy": the last good state stays in force)."""
    room = classroom
    site = yaml.safe_load(room.site.read_text())
    site["resync_interval"] = 600
    room.site.write_text(yaml.safe_dump(site))
    first = save_by_rename(room, ["ann", "bob"])
    log = open(room.root / "watch.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: status(room).get("file_sha256") == first and status(room)["result"] == "converged",
            what="the first pass",
        )
        whole = room.file.read_text().replace(
            f"- name: Ann\n  username: {room.user('ann')}\n",
            f"- name: Ann\n  username: {room.user('ann')}\n- name: Cat\n  username: {room.user('cat')}\n",
        )
        assert whole.index(room.user("cat")) < whole.index(room.user("bob"))
        cut = whole.index("- name: Bob")
        with open(room.file, "w") as writer:  # in place, slowly: first everything up to bob
            writer.write(whole[:cut])
            writer.flush()
            # a pass now (SIGHUP, the resync, a save's event) would disable bob: the daemon must not read the file
            proc.send_signal(signal.SIGHUP)
            seen = wait_for(
                lambda: status(room).get("result") == "busy" and status(room),
                timeout=30,
                what="the pass that finds the file being written",
            )
            assert f"pid {os.getpid()}" in seen["problems"][0] and seen["last_applied"]["sha256"] == first
            assert not room.observe().accounts[room.user("bob")].locked
            writer.write(whole[cut:])
        final = hashlib.sha256(room.file.read_bytes()).hexdigest()
        wait_for(
            lambda: status(room).get("file_sha256") == final and status(room)["result"] == "converged",
            timeout=30,
            what="the save, once closed",
        )
        accounts = room.observe().accounts
        assert room.user("cat") in accounts and not accounts[room.user("bob")].locked
    finally:
        proc.kill()
        proc.wait()
        log.close()


def test_the_daemon_says_it_is_alive_to_systemd_status_and_the_page(classroom):
    """Type=notify: READY=1 once it watches, WATCHDOG=1 from its heartbeat; `reconcile status` tells a running
    daemon from one that was killed (edits are then not applied) and from one stopped on purpose."""
    import socket

    room = classroom
    save_by_rename(room, ["ann"])
    address = str(room.root / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": address}
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            heard = [systemd.recv(4096).decode()]
            while "WATCHDOG=1" not in heard[-1]:
                heard.append(systemd.recv(4096).decode())
            assert heard[0].startswith("READY=1")
            shown = wait_for(
                lambda: (out := room.cli("status").stdout) and "daemon: running" in out and out,
                what="status to see the daemon",
            )
            assert f"pid {proc.pid}" in shown
            proc.kill()  # no goodbye: the heartbeat stays, from a process that is gone
            proc.wait()
            assert "daemon: NOT RUNNING" in room.cli("status").stdout
            again = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "watch", "--site", str(room.site), "-f", str(room.file)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_for(lambda: f"pid {again.pid}" in room.cli("status").stdout, what="the new daemon")
                again.terminate()  # stopped on purpose: "not running", not "last heard from"
                assert again.wait(timeout=60) == 0
                out = room.cli("status").stdout
                assert "daemon: not running" in out and "NOT RUNNING" not in out
            finally:
                if again.poll() is None:
                    again.kill()
                    again.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
