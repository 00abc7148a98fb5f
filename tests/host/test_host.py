"""Integration on the real host (root): real users, PAM logins, loop images, ext4, mounts.

Each test works in a throw-away classroom (random name and usernames, its own
temp dirs) that the `classroom` fixture removes completely afterwards.
"""

import errno
import fcntl
import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pamela
import pytest
import yaml
from hostkit import full_filesystem

from reconciler.config.sizes import MiB
from reconciler.host import facts

SIZE = 128 * MiB


def login_ok(username: str, password: str) -> bool:
    """A real PAM login through the same service JupyterHub's PAMAuthenticator uses."""
    try:
        pamela.authenticate(username, password, service="login", resetcred=0)
        return True
    except pamela.PAMError:
        return False


def outbox_password(room, short: str) -> str:
    item = room.paths.outbox / f"{room.user(short)}.json"
    assert stat.S_IMODE(item.stat().st_mode) == 0o600
    return json.loads(item.read_text())["password"]


def snapshot(room) -> tuple:
    """What a failed or refused pass must leave untouched."""
    actual = room.observe()
    accounts = {k: v for k, v in actual.accounts.items() if k.startswith(room.prefix)}
    manifest = room.paths.manifest.read_text() if room.paths.manifest.exists() else None
    journal = room.paths.journal.read_text() if room.paths.journal.exists() else None
    return accounts, dict(actual.volumes), dict(actual.mounts), manifest, journal


def test_create_then_second_pass_changes_nothing(classroom):
    room = classroom
    room.write(
        [{"username": "ann", "email": "ann@example.org"}, {"username": "bob", "disk": "256Mi"}],
        admins=[{"username": "tea"}],
    )
    first = room.cli()
    assert first.returncode == 0, first.stderr
    assert "Plan: " in first.stdout and "Converged" in first.stderr

    again = room.cli("--dry-run")
    assert again.returncode == 0, again.stdout
    assert "No changes" in again.stdout

    for short, group in (
        ("ann", f"{room.name}-students"),
        ("bob", f"{room.name}-students"),
        ("tea", f"{room.name}-teachers"),
    ):
        user = room.user(short)
        entry = pwd.getpwnam(user)
        assert entry.pw_shell == "/usr/sbin/nologin"
        assert entry.pw_gecos.endswith(f",,,,classroom={room.name}")
        assert entry.pw_dir == str(room.paths.home(user))
        assert user in facts.read_groups(Path("/etc/group"))[group].members
        home = room.paths.home(user)
        st = os.stat(home)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (entry.pw_uid, entry.pw_gid, 0o700)
        mount = room.observe().mounts[str(home)]
        assert mount.fstype == "ext4" and {"nodev", "nosuid"} <= mount.options
        assert login_ok(user, outbox_password(room, short))
        assert not login_ok(user, "wrong-password")
        # generated passwords are SHA-512 crypt, not the system's yescrypt (host.accounts.CRYPT_METHOD: a login checks
        # in ~2 ms instead of ~37)
        assert facts.read_shadow(Path("/etc/shadow"))[user][0].startswith("$6$")
        for ids in ("/etc/subuid", "/etc/subgid"):  # no subordinate ids: no user namespaces of their own
            assert not any(line.startswith(f"{user}:") for line in Path(ids).read_text().splitlines())

    volumes = room.observe().volumes
    assert volumes[room.user("ann")].size == SIZE and volumes[room.user("bob")].size == 2 * SIZE
    assert volumes[room.user("tea")].allocated < SIZE  # sparse: only what mkfs wrote
    manifest = room.paths.manifest.read_text()
    assert f"{room.volumes.image(room.user('ann'))} {room.paths.home(room.user('ann'))} ext4 " in manifest
    assert stat.S_IMODE(room.paths.outbox.stat().st_mode) == 0o700


def test_password_appears_only_in_the_outbox(classroom):
    room = classroom
    room.write([{"username": "ann"}])
    plan_json = room.cli("--dry-run", "--json")
    applied = room.cli()
    assert applied.returncode == 0, applied.stderr
    password = outbox_password(room, "ann")
    assert len(password) >= 12
    status = room.cli("status", "--json")
    for text in (
        plan_json.stdout,
        applied.stdout,
        applied.stderr,
        status.stdout,
        room.paths.journal.read_text(),
        room.paths.manifest.read_text(),
    ):
        assert password not in text
    entries = [json.loads(line) for line in room.paths.journal.read_text().splitlines()]
    assert {e["kind"] for e in entries} >= {"account", "password", "volume", "mount"}
    assert all(e["result"] == "ok" for e in entries)
    disks = json.loads(status.stdout)["disks"]
    assert disks and "the volume images" in disks[0]["what"] and disks[0]["free"] > 0
    text = room.cli("status").stdout
    assert "disk: the volume images, the state (" in text and " free of " in text


def test_removing_a_student_disables_and_keeps_files_then_reenable(classroom):
    room = classroom
    people = [{"username": n} for n in ("ann", "bob", "cat")]
    room.write(people)
    assert room.cli().returncode == 0
    ann = room.user("ann")
    password = outbox_password(room, "ann")
    note = room.paths.home(ann) / "notebook.ipynb"
    note.write_text("my homework")

    room.write(people[1:])
    preview = room.cli("--dry-run")
    assert preview.returncode == 2
    assert "not in classroom.yaml" in preview.stdout
    assert room.cli().returncode == 0
    actual = room.observe()
    account = actual.accounts[ann]
    assert account.locked and account.expire_day is not None
    assert str(room.paths.home(ann)) not in actual.mounts
    assert str(room.paths.home(ann)) not in room.paths.manifest.read_text()
    assert room.volumes.image(ann).exists() and actual.volumes[ann].loop is None
    assert not login_ok(ann, password)
    # the bare mount point is root's and closed: nothing lands on the host disk by mistake
    st = os.stat(room.paths.home(ann))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0)
    assert room.cli("--dry-run").returncode == 0

    room.write(people)
    assert room.cli().returncode == 0
    assert note.read_text() == "my homework"
    assert login_ok(ann, password)
    assert room.cli("--dry-run").returncode == 0


def test_status_disabled_in_file(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}])
    assert room.cli().returncode == 0
    room.write([{"username": "ann", "status": "disabled"}, {"username": "bob"}, {"username": "cat"}])
    out = room.cli()
    assert out.returncode == 0, out.stderr
    rows = {r["username"]: r for r in json.loads(room.cli("status", "--json").stdout)["people"]}
    assert rows[room.user("ann")]["account"] == "disabled" and not rows[room.user("ann")]["mounted"]
    assert rows[room.user("bob")]["account"] == "enabled" and rows[room.user("bob")]["mounted"]


def test_grow_keeps_data_and_shrink_is_guarded(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}])
    assert room.cli().returncode == 0
    ann = room.user("ann")
    data = room.paths.home(ann) / "data.bin"
    data.write_bytes(os.urandom(60 * MiB))
    before = data.read_bytes()

    room.write([{"username": "ann", "disk": "384Mi"}, {"username": "bob"}])
    grow = room.cli()
    assert grow.returncode == 0, grow.stderr
    volume = room.observe().volumes[ann]
    assert volume.size == 3 * SIZE and volume.fs.size == 3 * SIZE
    assert data.read_bytes() == before
    assert room.cli("--dry-run").returncode == 0

    # lowering the quota while the data still fits: shrunk offline and remounted
    room.write([{"username": "ann", "disk": "128Mi"}, {"username": "bob"}])
    shrink = room.cli()
    assert shrink.returncode == 0, shrink.stderr
    assert room.observe().volumes[ann].size == SIZE
    assert data.read_bytes() == before
    assert str(room.paths.home(ann)) in room.observe().mounts

    # below what is stored: ann is blocked and keeps her volume as it is; bob's change goes ahead
    data.write_bytes(os.urandom(100 * MiB))
    before = data.read_bytes()
    room.write([{"username": "ann", "disk": "384Mi"}, {"username": "bob"}])
    assert room.cli().returncode == 0
    room.write([{"username": "ann", "disk": "64Mi"}, {"username": "bob", "disk": "256Mi"}])
    blocked = room.cli()
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "uses" in blocked.stdout and "raise the quota" in blocked.stdout
    volumes = room.observe().volumes
    assert volumes[ann].size == volumes[ann].fs.size == 3 * SIZE and data.read_bytes() == before
    assert volumes[room.user("bob")].size == 2 * SIZE
    assert room.cli("--dry-run").returncode == 1  # still blocked, nothing else pending


def test_purge_needs_a_tombstone_and_the_flag(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}])
    assert room.cli().returncode == 0
    ann = room.user("ann")
    room.write([{"username": "ann", "status": "purged"}, {"username": "bob"}, {"username": "cat"}])
    before = snapshot(room)
    refused = room.cli()
    assert refused.returncode == 3 and "--allow-destroy" in refused.stdout
    assert snapshot(room) == before
    assert room.cli("--dry-run").returncode == 3

    done = room.cli("--allow-destroy")
    assert done.returncode == 0, done.stderr
    with pytest.raises(KeyError):
        pwd.getpwnam(ann)
    assert not room.volumes.image(ann).exists()
    assert not (room.paths.outbox / f"{ann}.json").exists()
    assert room.cli("--dry-run", "--allow-destroy").returncode == 0


def test_mass_disable_guard(classroom):
    room = classroom  # the fixture's site allows disabling half the class in one pass
    people = [{"username": f"s{i}"} for i in range(6)]
    room.write(people)
    assert room.cli().returncode == 0
    room.write(people[:2])  # a truncated file: 4 of 6 would go
    before = snapshot(room)
    refused = room.cli()
    assert refused.returncode == 3 and "--allow-mass-disable" in refused.stdout
    assert snapshot(room) == before
    allowed = room.cli("--allow-mass-disable")
    assert allowed.returncode == 0, allowed.stderr
    assert sum(1 for a in room.observe().accounts.values() if a.username.startswith(room.prefix) and a.locked) == 4


def test_disables_paced_one_save_at_a_time_are_refused_within_the_window(classroom):
    room = classroom  # half the class may go in one window
    people = [{"username": f"s{i}"} for i in range(6)]
    room.write(people)
    assert room.cli().returncode == 0
    for gone in (5, 4, 3):  # one save at a time, each alone under the limit
        room.write(people[:gone])
        assert room.cli().returncode == 0
    room.write(people[:2])  # the fourth of six within the window
    refused = room.cli()
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "with the 3 disabled in the last 24 h that makes 4 of the 6" in refused.stdout
    assert not room.observe().accounts[room.user("s2")].locked
    assert room.cli("--allow-mass-disable").returncode == 0
    assert room.observe().accounts[room.user("s2")].locked
    recorded = json.loads(room.paths.disables.read_text())
    assert set(recorded) == {room.user(f"s{i}") for i in (2, 3, 4, 5)}


def test_the_state_directory_and_its_files_are_root_only(classroom):
    room = classroom
    room.write([{"username": "ann"}])
    assert room.cli().returncode == 0
    assert stat.S_IMODE(room.paths.state.stat().st_mode) == 0o700
    for name in ("mounts.fstab", "journal.jsonl", "reconcile.lock"):
        assert stat.S_IMODE((room.paths.state / name).stat().st_mode) == 0o600, name


def test_foreign_account_blocks_that_person_only_and_is_untouched(classroom):
    room = classroom
    intruder = room.user("host")
    subprocess.run(["useradd", "--no-create-home", "--comment", "Somebody Else", intruder], check=True)
    before = pwd.getpwnam(intruder)
    room.write([{"username": "host"}, {"username": "ann"}])
    out = room.cli()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "was not created by reconcile" in out.stdout
    assert pwd.getpwnam(intruder) == before
    assert room.user("ann") in room.observe().accounts  # the rest of the class is not held up


def test_a_username_that_is_a_system_group_blocks_only_that_person(classroom):
    """A teacher adds a name that is an existing group (like ssl-cert): the others still converge, also a disable."""
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "dan"}])
    assert room.cli().returncode == 0
    clash = room.user("certs")
    subprocess.run(["groupadd", clash], check=True)
    try:
        room.write(
            [
                {"username": "ann", "status": "disabled"},
                {"username": "bob"},
                {"username": "dan"},
                {"username": "certs"},
                {"username": "cat"},
            ]
        )
        out = room.cli()
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"a group named '{clash}' already exists" in out.stdout
        accounts = room.observe().accounts
        assert accounts[room.user("ann")].locked and room.user("cat") in accounts and clash not in accounts
        assert clash in facts.read_groups(Path("/etc/group"))
    finally:
        subprocess.run(["groupdel", clash], capture_output=True)


def test_bad_input_changes_nothing(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "Bad!", "emial": "y"}])
    out = room.cli()
    assert out.returncode == 1
    assert f"{room.file}:" in out.stderr and "students[1].username" in out.stderr
    assert "students[1].emial: unknown key" in out.stderr
    assert not room.paths.state.exists()
    assert room.user("ann") not in room.observe().accounts


def test_mount_all_after_a_reboot(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat", "status": "disabled"}])
    assert room.cli().returncode == 0
    (room.paths.home(room.user("ann")) / "keep").write_text("x")
    for short in ("ann", "bob"):  # what a reboot does to loop mounts
        subprocess.run(["umount", str(room.paths.home(room.user(short)))], check=True)
    assert not room.observe().mounts
    drift = room.cli("--dry-run")
    assert drift.returncode == 2 and "Drift" in drift.stdout

    out = room.cli("mount-all")
    assert out.returncode == 0, out.stderr
    assert "2 of 2 volume(s) mounted" in out.stdout
    assert (room.paths.home(room.user("ann")) / "keep").read_text() == "x"
    assert room.cli("--dry-run").returncode == 0
    again = room.cli("mount-all")
    assert again.returncode == 0 and again.stdout.count("already") == 2


def test_drift_is_shown_apart_and_repaired(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}])
    assert room.cli().returncode == 0
    ann, bob = room.user("ann"), room.user("bob")
    subprocess.run(["usermod", "--lock", ann], check=True)
    os.chmod(room.paths.home(bob), 0o755)
    subprocess.run(["usermod", "--shell", "/bin/bash", bob], check=True)
    lines = room.paths.manifest.read_text().splitlines()
    room.paths.manifest.write_text("\n".join(line for line in lines if ann not in line) + "\n")

    preview = room.cli("--dry-run", "--json")
    assert preview.returncode == 2
    plan = json.loads(preview.stdout)
    assert plan["actions"] == []
    drift = {(d["kind"], d["target"]) for d in plan["drift"]}
    assert drift == {("account", ann), ("manifest", ann), ("ownership", bob), ("account", bob)}

    assert room.cli().returncode == 0
    assert room.cli("--dry-run").returncode == 0
    assert pwd.getpwnam(bob).pw_shell == "/usr/sbin/nologin"
    assert stat.S_IMODE(os.stat(room.paths.home(bob)).st_mode) == 0o700


def test_one_failing_student_does_not_stop_the_others(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}])
    room.volumes.directory.mkdir(parents=True)
    room.volumes.partial(room.user("bob")).mkdir()  # a directory where bob's image must go
    out = room.cli()
    assert out.returncode == 1
    assert f"failed: {room.user('bob')}" in out.stderr
    actual = room.observe()
    for short in ("ann", "cat"):
        assert str(room.paths.home(room.user(short))) in actual.mounts
    journal = [json.loads(line) for line in room.paths.journal.read_text().splitlines()]
    results = {(e["kind"], e["target"]): e["result"] for e in journal}
    assert results[("volume", room.user("bob"))] == "failed"
    assert results[("mount", room.user("bob"))] == "skipped"

    room.volumes.partial(room.user("bob")).rmdir()
    assert room.cli().returncode == 0
    assert room.cli("--dry-run").returncode == 0


def test_blocked_student_is_skipped_others_proceed(classroom):
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}])
    room.volumes.directory.mkdir(parents=True)
    room.volumes.image(room.user("ann")).write_bytes(b"not ext4 but someone's data" * 1000)
    out = room.cli()
    assert out.returncode == 1
    assert "never formatted automatically" in out.stdout
    assert room.volumes.image(room.user("ann")).read_bytes().startswith(b"not ext4")
    assert str(room.paths.home(room.user("bob"))) in room.observe().mounts


def test_second_pass_waits_then_names_the_holder(classroom):
    room = classroom
    room.write([{"username": "ann"}])
    site = room.site.read_text().replace("lock_timeout: 60", "lock_timeout: 1")
    room.site.write_text(site)
    room.paths.state.mkdir(parents=True)
    with open(room.paths.lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("pid 4242, started 2026-01-01T00:00:00Z: reconcile watch\n")
        handle.flush()
        out = room.cli()
    assert out.returncode == 1
    assert "another reconcile pass holds" in out.stderr and "pid 4242" in out.stderr
    assert room.user("ann") not in room.observe().accounts
    assert room.cli().returncode == 0


def test_a_full_disk_under_the_journal_fails_the_pass_cleanly(classroom):
    """ENOSPC while journaling: exit 1 with the reason, no traceback, the journal still one JSON per line, and no
    action taken that the journal could not record (room for its entry is taken first)."""
    room = classroom
    room.write([{"username": "ann"}])
    assert room.cli().returncode == 0
    with full_filesystem(room.root / "full", keep={"journal.jsonl": room.paths.journal.read_bytes()}) as full:
        journal = full / "journal.jsonl"
        subprocess.run(["mount", "--bind", str(journal), str(room.paths.journal)], check=True)
        try:
            room.write([{"username": "ann"}, {"username": "bob"}])
            out = room.cli()
            assert out.returncode == 1, out.stdout + out.stderr
            assert "No space left on device" in out.stderr and "Traceback" not in out.stderr
            assert all(json.loads(line) for line in room.paths.journal.read_text().splitlines())
            assert room.user("bob") not in room.observe().accounts  # journal first: nothing done unrecorded
        finally:
            subprocess.run(["umount", str(room.paths.journal)], check=True)
    again = room.cli()  # room again: the next pass finishes what the full disk stopped
    assert again.returncode == 0, again.stdout + again.stderr
    assert room.user("bob") in room.observe().accounts


def test_a_teacher_write_that_cannot_be_journaled_is_not_made(classroom):
    """The teacher API on a full disk under the journal: the roster edit, the reset and the slips' hand-out are
    refused with the reason (the API answers 507), and classroom.yaml and the outbox are as they were."""
    from reconciler.config.load import load_site
    from reconciler.engine.journal import Unwritable
    from reconciler.service import teacher

    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}])
    assert room.cli().returncode == 0
    with full_filesystem(room.root / "full", keep={"journal.jsonl": room.paths.journal.read_bytes()}) as full:
        journal = full / "journal.jsonl"
        subprocess.run(["mount", "--bind", str(journal), str(room.paths.journal)], check=True)
        try:
            desk = teacher.Room(load_site(room.site), room.file)
            before, waiting = room.file.read_bytes(), outbox_password(room, "bob")
            for attempt in (
                lambda: teacher.add_student(desk, "tea", {"name": "New One"}),
                lambda: teacher.change_student(desk, "tea", room.user("ann"), {"name": "Ann Changed"}),
                lambda: teacher.reset_and_deliver(desk, "tea", room.user("ann")),
                lambda: teacher.hand_out(desk, "tea", [{"username": room.user("bob"), "password": waiting}]),
            ):
                with pytest.raises(Unwritable, match="No space left on device"):
                    attempt()
            assert room.file.read_bytes() == before and outbox_password(room, "bob") == waiting
        finally:
            subprocess.run(["umount", str(room.paths.journal)], check=True)


def test_volumes_promising_more_than_the_images_filesystem_holds_are_refused(classroom):
    """Sparse images on a small filesystem: two fit, a third would let one student's writes fill it for everyone."""
    room = classroom
    small = room.root / "small.img"
    with open(small, "wb") as handle:
        handle.truncate(400 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(small)], check=True)
    room.volumes.directory.mkdir(parents=True)
    subprocess.run(["mount", "-o", "loop", str(small), str(room.volumes.directory)], check=True)
    try:
        room.write([{"username": "ann"}, {"username": "bob"}])
        assert room.cli().returncode == 0
        room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}])
        refused = room.cli()
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "the volumes would add up to 384 MiB, more than 1 x the space of the filesystem" in refused.stdout
        assert room.user("cat") not in room.observe().accounts  # nothing applied
        site = yaml.safe_load(room.site.read_text())
        site["volumes"] = {"backend": "loop", "max_overcommit": 2.0, "preallocate": True}
        room.site.write_text(yaml.safe_dump(site))
        assert room.cli().returncode == 0  # knowingly over-committed; cat's image is reserved on disk
        cat = room.volumes.image(room.user("cat"))
        assert cat.stat().st_blocks * 512 >= 128 * MiB
        assert room.volumes.image(room.user("ann")).stat().st_blocks * 512 < 64 * MiB  # made sparse, before
    finally:
        for user in ("ann", "bob", "cat"):
            subprocess.run(["umount", str(room.paths.home(room.user(user)))], capture_output=True)
        subprocess.run(["umount", str(room.volumes.directory)], check=True)


def test_a_removed_person_is_locked_out_even_when_the_unmount_fails(classroom):
    """Disabling locks the login first: a busy home (a process inside it) cannot leave the person able to log in."""
    room = classroom
    room.write([{"username": "ann"}, {"username": "bob"}, {"username": "cat"}])
    assert room.cli().returncode == 0
    ann = room.user("ann")
    password = outbox_password(room, "ann")
    assert login_ok(ann, password)
    busy = subprocess.Popen(["sleep", "600"], cwd=room.paths.home(ann))  # keeps the mount busy
    try:
        room.write([{"username": "bob"}, {"username": "cat"}])
        out = room.cli()
        assert out.returncode == 1, out.stdout + out.stderr
        assert "cannot unmount" in out.stderr
        assert not login_ok(ann, password)
        assert room.observe().accounts[ann].locked
    finally:
        busy.kill()
        busy.wait()
    assert room.cli().returncode == 0  # the next pass finishes the unmount
    assert str(room.paths.home(ann)) not in room.observe().mounts


def test_a_hub_whose_database_disk_is_full_is_named_as_such(tmp_path):
    """A hub whose SQLite database sits on a full disk refuses every token (403): reconcile names the full disk,
    not its token.  The hub is stood in for by a loopback server answering as JupyterHub does (a real hub on a
    full disk fails its own start-up writes first); the full filesystem is real."""
    import http.server
    import threading

    from reconciler.host import hubusers

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": 403, "message": "Forbidden"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "token").write_text("t\n")
        url = f"http://127.0.0.1:{server.server_port}/hub/api"
        roomy = tmp_path / "roomy" / "jupyterhub.sqlite"  # the same database on a disk with room
        roomy.parent.mkdir()
        roomy.write_bytes(b"SQLite format 3\0")
        said = hubusers.snapshot(hubusers.HubClient(url, tmp_path / "token", 5, roomy)).error
        assert "refused reconcile's token (403: Forbidden)" in said
        with full_filesystem(tmp_path / "full", keep={"jupyterhub.sqlite": b"SQLite format 3\0"}) as full:
            database = full / "jupyterhub.sqlite"
            said = hubusers.snapshot(hubusers.HubClient(url, tmp_path / "token", 5, database)).error
            assert f"its database {database} is on a full disk" in said and "token_file" not in said
    finally:
        server.shutdown()


def test_state_files_written_on_a_full_disk_keep_their_old_content(tmp_path):
    """status.json and the mount manifest on a real full filesystem: the write fails with ENOSPC, the old file
    stays whole, and no temp file is left (write_atomic: a temp file beside it, renamed only once written)."""
    from reconciler.config.site import Paths
    from reconciler.core.actual import ManifestEntry
    from reconciler.host.fsutil import write_atomic
    from reconciler.host.mounts import _write_manifest

    with full_filesystem(
        tmp_path / "full", keep={"status.json": b'{"result": "converged"}\n', "mounts.fstab": b"# old manifest\n"}
    ) as full:
        status, paths = full / "status.json", Paths(full, full / "homes")
        with pytest.raises(OSError) as refused:
            write_atomic(status, '{"result": "waiting"}\n' * 1000)
        assert refused.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as refused:
            _write_manifest(
                paths,
                {
                    str(full / "homes" / f"u{n}"): ManifestEntry(
                        f"/x/u{n}.img", str(full / "homes" / f"u{n}"), "ext4", "rw"
                    )
                    for n in range(2000)
                },
            )
        assert refused.value.errno == errno.ENOSPC
        assert status.read_text() == '{"result": "converged"}\n'
        assert paths.manifest.read_text() == "# old manifest\n"
        assert sorted(p.name for p in full.iterdir()) == ["filler", "mounts.fstab", "status.json"]
