"""End to end: reconcile -> real JupyterHub + configurable-http-proxy + PAM -> DockerSpawner -> the student image.

One classroom and one hub for the module (a server start costs a few CPU-seconds on this 2-core box);
the tests run in file order and each leaves the class as it found it.
"""

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest
import yaml

from hostkit import host_ready, make_classroom
from hubkit import Hub, add_hub, hub_ready, server_of, start_server, stop_server, tear_down
from imagekit import TAG, build_test_image, image_unavailable, make_tiny_wheel
from reconciler.config.sizes import MiB
from reconciler.engine import journal

REASON = host_ready() or hub_ready() or image_unavailable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=str(REASON))

MEMORY, PIDS, TMP = 256 * MiB, 128, 32 * MiB
ROSTER = [{"username": "ann"}, {"username": "bob"}, {"username": "cat"}]
TEACHERS = [{"username": "tea"}]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    build_test_image()
    room, hub, sessions = make_classroom(), None, {}
    try:  # set-up inside the cleanup's reach
        add_hub(room, image=TAG, pids_limit=PIDS, tmp_size="32Mi")
        room.quotas = {"default": {"memory": "256Mi", "cpu": 1, "disk": "128Mi"}}
        room.write(ROSTER, admins=TEACHERS)
        room.cli()  # host part converges; the hub is not up yet
        hub = Hub(room)
        hub.start()
        wheel = make_tiny_wheel(tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheels"))
        yield room, hub, sessions, wheel
    finally:
        for name in list(sessions):
            with contextlib.suppress(Exception):  # best effort; the containers are removed below anyway
                stop_server(hub, sessions[name], name)
        tear_down(hub, room)


def password(room, short):
    return json.loads((room.paths.outbox / f"{room.user(short)}.json").read_text())["password"]


def running(room, hub, sessions, short):
    """Log in through the form and start the server (once); return (username, container)."""
    user = room.user(short)
    if user not in sessions:
        session = hub.login(user, password(room, short))
        assert session is not None, f"{user} could not log in"
        sessions[user] = session
    session = sessions[user]
    if not (server_of(hub, session, user) or {}).get("ready"):
        start_server(hub, session, user)
    (container,) = docker.from_env().containers.list(filters={"label": f"org.classroom.user={user}"})
    return user, container


def sh(container, script, timeout=120):
    """Run a shell snippet in the student's container, as the student (the container's user)."""
    result = subprocess.run(
        ["docker", "exec", container.id, "bash", "-c", script], capture_output=True, text=True, timeout=timeout
    )
    return result.returncode, result.stdout + result.stderr


def test_student_logs_in_and_gets_jupyterlab(env):
    room, hub, sessions, _ = env
    user, _ = running(room, hub, sessions, "ann")
    session = sessions[user]
    lab = session.get(f"{hub.url}/user/{user}/lab", timeout=30)  # follows the hub's OAuth dance, as a browser
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = session.get(f"{hub.url}/user/{user}/api/status", timeout=30)
    assert status.status_code == 200, status.text[:500]
    assert "kernels" in status.json()


def test_container_is_hardened_and_runs_as_the_student(env):
    room, hub, sessions, _ = env
    user, container = running(room, hub, sessions, "ann")
    account = room.observe().accounts[user]
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert config["User"] == f"{account.uid}:{account.gid}"
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True and host["PidsLimit"] == PIDS
    assert host["Memory"] == MEMORY and host["MemorySwap"] == MEMORY
    assert host["NanoCpus"] or host["CpuQuota"] == 100_000
    assert "/tmp" in host["Tmpfs"] and f"size={TMP}" in host["Tmpfs"]["/tmp"]
    assert host["AutoRemove"] is True
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10240k", "max-file": "3"}}
    binds = {m["Destination"]: m for m in container.attrs["Mounts"]}
    home = binds[f"/home/{user}"]
    assert home["Type"] == "bind" and home["Source"] == str(room.paths.home(user)) and home["RW"] is True
    assert not any("docker.sock" in m["Source"] for m in container.attrs["Mounts"])
    code, out = sh(container, "id -u; id -g; cat /proc/1/status | grep CapEff")
    assert code == 0 and out.split()[:2] == [str(account.uid), str(account.gid)]
    assert "0000000000000000" in out


def test_the_student_has_a_name_inside_the_container(env):
    """whoami, id, git and ssh-keygen need a passwd entry: the container gets the person's own, nobody else's."""
    room, hub, sessions, _ = env
    user, container = running(room, hub, sessions, "ann")
    code, out = sh(
        container,
        "whoami; id -un; hostname; getent passwd $(id -u) | cut -d: -f1,6; cut -d: -f1 /etc/passwd | tr '\\n' ' '",
    )
    lines = out.splitlines()
    assert code == 0 and lines[:3] == [user, user, room.name], out
    assert lines[3] == f"{user}:/home/{user}"
    assert room.user("bob") not in out and room.user("tea") not in out  # no one else's name
    code, out = sh(
        container,
        "cd /tmp && rm -rf g && git init -q g && cd g && git commit -q --allow-empty -m first "
        "&& git log --format='%an <%ae>' && ssh-keygen -q -t ed25519 -N '' -f /tmp/k "
        "&& cut -d' ' -f3 /tmp/k.pub; rm -rf /tmp/g /tmp/k /tmp/k.pub",
    )
    assert code == 0, out
    assert out.splitlines() == [f"Ann <{user}@{room.name}.invalid>", f"{user}@{room.name}"], out
    assert sh(container, "touch /etc/passwd")[0] != 0  # read-only


def test_quotas_are_enforced_inside_the_container(env):
    room, hub, sessions, _ = env
    _, container = running(room, hub, sessions, "ann")
    code, out = sh(container, "dd if=/dev/zero of=$HOME/fill bs=1M count=300 2>&1; rm -f $HOME/fill")
    assert "No space left on device" in out
    code, out = sh(container, "dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>&1; rm -f /tmp/fill")
    assert "No space left on device" in out
    code, out = sh(container, "touch /usr/x 2>&1 || echo refused")
    assert "Read-only file system" in out
    code, out = sh(container, "python3 -c 'x = b\"x\" * (600 << 20); print(len(x))'")
    assert code == 137, out  # the kernel's OOM killer, inside the container's cgroup
    code, out = sh(
        container,
        """python3 - <<'EOF'
import os
children, stopped = [], None
try:
    while len(children) < 1000:
        pid = os.fork()
        if pid == 0:
            os.execv("/bin/sleep", ["sleep", "60"])
        children.append(pid)
except OSError as exc:
    stopped = exc.errno
for pid in children:
    os.kill(pid, 9)
print(len(children), stopped)
EOF""",
    )
    forked, errno = out.split()[-2:]
    assert errno == "11" and int(forked) < PIDS, out  # EAGAIN at the pids limit
    assert container.reload() is None and container.status == "running"


def test_isolation_between_students_and_from_the_host(env):
    room, hub, sessions, _ = env
    _, a = running(room, hub, sessions, "ann")
    _, b = running(room, hub, sessions, "bob")
    settings = hub.settings
    b_ip = b.attrs["NetworkSettings"]["Networks"][settings.network]["IPAddress"]
    gateway = settings.subnet.rsplit(".", 1)[0] + ".1"

    def connect(host, port):
        script = (
            f"python3 -c \"import socket\ntry:\n socket.create_connection(('{host}', {port}), timeout=3)\n"
            f" print('open')\nexcept Exception as e:\n print(type(e).__name__)\""
        )
        return sh(a, script)[1].strip()

    assert connect(b_ip, 8888) != "open"  # another student's server
    assert connect(gateway, settings.proxy_api_port) == "ConnectionRefusedError"  # the proxy API
    assert connect("127.0.0.1", settings.proxy_api_port) == "ConnectionRefusedError"
    public_port = int(settings.public_url.rsplit(":", 1)[1])
    assert connect(gateway, public_port) == "ConnectionRefusedError"  # other host services
    code, out = sh(
        a,
        f"python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{gateway}:8081/hub/api/').status)\"",
    )
    assert out.strip() == "200"  # the hub API is the one host service they reach


def test_files_and_pip_installs_survive_a_restart(env):
    room, hub, sessions, wheel = env
    user, container = running(room, hub, sessions, "cat")
    home = room.paths.home(user)
    account = room.observe().accounts[user]
    shutil.copy(wheel, home / wheel.name)
    (home / wheel.name).chmod(0o644)
    os.chown(home / wheel.name, account.uid, account.gid)
    code, out = sh(container, f"echo homework > ~/notes.txt && pip install --no-index ~/{wheel.name} && hello-student")
    assert code == 0, out
    assert "hello from" in out
    stop_server(hub, sessions[user], user)
    _, again = running(room, hub, sessions, "cat")
    assert again.id != container.id
    code, out = sh(again, "cat ~/notes.txt && python3 -c 'import hello_student; print(hello_student.__file__)'")
    assert code == 0 and "homework" in out and f"/home/{user}/.local/lib/python3.11/site-packages" in out, out


def test_memory_quota_change_reaches_the_running_server(env):
    room, hub, sessions, _ = env
    user, container = running(room, hub, sessions, "ann")
    room.write([{"username": "ann", "memory": "384Mi"}, *ROSTER[1:]], admins=TEACHERS)
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and "~ container" in preview.stdout
    assert room.cli().returncode == 0
    container.reload()
    assert container.attrs["HostConfig"]["Memory"] == 384 * MiB == container.attrs["HostConfig"]["MemorySwap"]
    assert room.cli("--dry-run").returncode == 0
    room.write(ROSTER, admins=TEACHERS)
    assert room.cli().returncode == 0


def test_a_disk_change_waits_for_the_running_server_or_restarts_it(env):
    """Online growth is denied to room.cli (it runs without CAP_SYS_RESOURCE): the resize needs the volume offline, and
    ann's running server holds it.  The plan says it waits; resize_running: restart stops the server first."""
    room, hub, sessions, _ = env
    user, container = running(room, hub, sessions, "ann")
    (room.paths.home(user) / "keep.txt").write_text("mine")
    room.write([{"username": "ann", "disk": "256Mi"}, *ROSTER[1:]], admins=TEACHERS)
    preview = room.cli("--dry-run")
    assert preview.returncode == 2 and f"waits: {user}'s server is running; applies when it stops" in preview.stdout
    out = room.cli()
    assert out.returncode == 4, out.stdout + out.stderr
    assert room.observe().volumes[user].fs.size == 128 * MiB
    code, df = sh(container, "df -B1 --output=size ~ | tail -1")
    assert code == 0 and int(df) < 200 * MiB  # the server's view did not change under it
    status = json.loads(room.cli("status", "--json").stdout)
    assert {p["username"]: p for p in status["people"]}[user]["server"] == "running"

    site = yaml.safe_load(room.site.read_text())
    room.site.write_text(yaml.safe_dump({**site, "resize_running": "restart"}))
    try:
        preview = room.cli("--dry-run")
        assert f"- server     {user}" in preview.stdout and "starts again at the next login" in preview.stdout
        out = room.cli()
        assert out.returncode == 0, out.stdout + out.stderr
        volume = room.observe().volumes[user]
        assert volume.size == volume.fs.size == 256 * MiB
        assert (room.paths.home(user) / "keep.txt").read_text() == "mine"
        assert server_of(hub, sessions[user], user) is None  # stopped; ann starts it again
    finally:
        room.site.write_text(yaml.safe_dump(site))
    room.write(ROSTER, admins=TEACHERS)  # back to 128 MiB, as the other tests expect: offline, nothing holds it
    assert room.cli().returncode == 0
    assert room.observe().volumes[user].fs.size == 128 * MiB


def test_disable_stops_the_server_and_refuses_login_then_reenable(env):
    room, hub, sessions, _ = env
    user, _ = running(room, hub, sessions, "bob")
    (room.paths.home(user) / "keep.txt").write_text("mine")
    room.write([{"username": "ann"}, {"username": "bob", "status": "disabled"}, {"username": "cat"}], admins=TEACHERS)
    out = room.cli()
    assert out.returncode == 0, out.stdout + out.stderr
    assert not docker.from_env().containers.list(all=True, filters={"label": f"org.classroom.user={user}"})
    assert hub.login(user, password(room, "bob")) is None
    sessions.pop(user)
    room.write(ROSTER, admins=TEACHERS)
    assert room.cli().returncode == 0
    user, container = running(room, hub, sessions, "bob")
    assert sh(container, "cat ~/keep.txt")[1].strip() == "mine"


def test_disabled_while_the_hub_is_down_the_server_is_stopped_through_docker(env):
    """The hub is down (cleanup_servers is off: its servers go on), a student is disabled: the pass stops the
    container through Docker before it unmounts the home, so the student no longer writes to it."""
    room, hub, sessions, _ = env
    user, container = running(room, hub, sessions, "cat")
    hub.stop()
    try:
        container.reload()
        assert container.status == "running"  # the hub's end left the server running
        room.write(
            [{"username": "ann"}, {"username": "bob"}, {"username": "cat", "status": "disabled"}], admins=TEACHERS
        )
        preview = room.cli("--dry-run")
        assert "the hub cannot be reached: the server is stopped through Docker" in preview.stdout, preview.stdout
        out = room.cli()
        assert out.returncode == 1 and "hub API" in out.stdout, out.stdout + out.stderr  # its part is retried
        assert not docker.from_env().containers.list(filters={"label": f"org.classroom.user={user}"})  # stopped
        actual = room.observe()
        assert actual.accounts[user].locked and str(room.paths.home(user)) not in actual.mounts
        entries = [e for e in journal.read(room.paths.journal) if e.get("kind") == "server" and e["target"] == user]
        assert entries and "through Docker" in entries[-1]["detail"], entries
    finally:
        hub.start()
    room.write(ROSTER, admins=TEACHERS)
    assert room.cli().returncode == 0
    sessions.pop(user, None)
    user, container = running(room, hub, sessions, "cat")  # enabled again: the server starts on its home
    assert sh(container, "test -w ~ && echo ok")[1].strip() == "ok"


def test_teacher_writes_the_shared_folder_but_cannot_open_a_students_server(env):
    room, hub, sessions, _ = env
    teacher, t = running(room, hub, sessions, "tea")
    assert hub.api("GET", f"/users/{teacher}").json()["admin"] is False
    student, _ = running(room, hub, sessions, "ann")
    # one origin (no subdomain_host): the student's JavaScript would run as the teacher, so no access:servers
    opened = sessions[teacher].get(f"{hub.url}/user/{student}/lab", timeout=30)
    assert opened.status_code == 403 or "/hub/login" in opened.url, (opened.status_code, opened.url)
    assert "JupyterLab" not in opened.text
    code, out = sh(t, "echo lesson1 > ~/shared/lesson1.txt && cat ~/shared/lesson1.txt")
    assert code == 0 and "lesson1" in out, out
    stop_server(hub, sessions[teacher], teacher)
    _, a = running(room, hub, sessions, "ann")
    code, out = sh(a, "cat ~/shared/lesson1.txt; touch ~/shared/x 2>&1")
    assert "lesson1" in out and "Read-only file system" in out


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def test_real_browser_logs_in_and_sees_jupyterlab(env):
    """Headless Chromium (Debian's) through the login form to a loaded JupyterLab; the screenshot is kept."""
    from playwright.sync_api import sync_playwright

    room, hub, sessions, _ = env
    user = room.user("cat")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{hub.url}/hub/login")
            page.fill("#username_input", user)
            page.fill("#password_input", password(room, "cat"))
            page.click("#login_submit")
            page.wait_for_url(f"**/user/{user}/lab**", timeout=180_000)
            page.wait_for_selector(".jp-LauncherCard", timeout=120_000)  # the Launcher: JupyterLab is up
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-student.png"))
            assert "JupyterLab" in page.title()
        finally:
            browser.close()
    assert (ARTIFACTS / "jupyterlab-student.png").stat().st_size > 10_000
