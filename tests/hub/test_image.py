"""The student image, built for real (debootstrap + docker import) and run in real containers.

Every container runs the way the spawner (reconciler/hub/spawner.py) runs a student's: as an arbitrary
UID:GID with no passwd entry, HOME a bind-mounted directory, the root filesystem read-only with a
tmpfs /tmp, no capabilities, no-new-privileges; and here with no network at all.

The image is built once per session into a fixed cache directory, so a rerun on the same machine
reuses the debootstrap tarball and the wheels, or the finished image when nothing changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from reconciler.host.run import run
from reconciler.image import build as image

from imagekit import CACHE, TAG, build_test_image, image_unavailable, make_tiny_wheel

UID = GID = 12345  # nobody in the image's /etc/passwd
HOME = "/home/student"  # where the test mounts the home; the spawner chooses its own path


@pytest.fixture(scope="module")
def built() -> image.Built:
    reason = image_unavailable()
    if reason:
        pytest.skip(reason)
    result = build_test_image()
    size = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", result.image_id]))
    print(
        f"\nstudent image {result.image_id[:19]}: {'cached' if result.cached else 'built'} "
        f"in {result.seconds:.1f} s, {size / 1e6:.0f} MB"
    )
    return result


@pytest.fixture
def home():
    """A student's home on the host, owned by the student's UID, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="classroom-home-"))
    os.chown(path, UID, GID)
    path.chmod(0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_student(
    built: image.Built,
    home: Path,
    *command: str,
    env: dict[str, str] | None = None,
    volumes: tuple[str, ...] = (),
    timeout: int = 300,
) -> subprocess.CompletedProcess:
    """One throw-away container, as the spawner would start it, always removed."""
    name = f"classroom-test-{uuid.uuid4().hex[:12]}"
    argv = [
        "docker",
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "none",
        "--user",
        f"{UID}:{GID}",
        "--read-only",
        "--tmpfs",
        "/tmp:mode=1777,nosuid,nodev",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--pids-limit",
        "256",
        "-e",
        f"HOME={HOME}",
        "-e",
        "USER=student",
        "-e",
        "SHELL=/bin/bash",
        "-v",
        f"{home}:{HOME}",
        "-w",
        HOME,
    ]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    for volume in volumes:
        argv += ["-v", volume]
    argv += [built.image_id, *command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_image_is_labelled_and_configured(built):
    config = json.loads(run(["docker", "image", "inspect", "--format", "{{json .Config}}", built.image_id]))
    assert config["Labels"][image.LABEL] == image.inputs_hash() == built.inputs_hash
    assert config["Labels"][image.JUPYTERHUB_LABEL] == "6.1.1"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--"]
    assert config["Cmd"] == ["jupyterhub-singleuser"]
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in config["Env"] and "LANG=C.UTF-8" in config["Env"]
    assert not config.get("WorkingDir") and not config.get("User")
    tagged = run(["docker", "image", "inspect", "--format", "{{.Id}}", TAG]).strip()
    assert tagged == built.image_id


def test_singleuser_version_as_arbitrary_uid(built, home):
    out = ok(
        run_student(
            built,
            home,
            "sh",
            "-c",
            "id -u; python3 -c 'import pwd; pwd.getpwuid(12345)' 2>/dev/null && echo HAS-PASSWD-ENTRY;"
            "jupyterhub-singleuser --version",
        )
    )
    assert out.split() == ["12345", "6.1.1"], out  # no passwd entry for the UID; the hub's version


def test_scientific_stack_imports(built, home):
    out = ok(
        run_student(
            built,
            home,
            "python3",
            "-c",
            "import numpy, pandas, matplotlib, ipywidgets, jupyterlab;"
            "print(numpy.__version__, pandas.__version__, matplotlib.__version__,"
            " ipywidgets.__version__, jupyterlab.__version__)",
        )
    )
    pins = dict(p.split("==") for p in image.PINNED)
    assert out.split() == [pins[n] for n in ("numpy", "pandas", "matplotlib", "ipywidgets", "jupyterlab")]


@pytest.fixture(scope="module")
def tiny_wheel(tmp_path_factory) -> Path:
    return make_tiny_wheel(tmp_path_factory.mktemp("hello-student-src"), tmp_path_factory.mktemp("wheels"))


def test_student_pip_install_lands_in_home_and_persists(built, home, tiny_wheel):
    wheels = (f"{tiny_wheel.parent}:/wheels:ro",)
    installed = run_student(built, home, "pip", "install", "--no-index", f"/wheels/{tiny_wheel.name}", volumes=wheels)
    ok(installed)
    assert "externally-managed" not in installed.stderr
    site = home / ".local" / "lib" / "python3.11" / "site-packages"
    module = site / "hello_student" / "__init__.py"
    assert module.is_file(), f"not a user install into ~/.local:\n{installed.stdout}\n{installed.stderr}"
    assert (module.stat().st_uid, module.stat().st_gid) == (UID, GID)
    assert (home / ".local" / "bin" / "hello-student").is_file()

    # A new container with the same home (a restart): the package is still there.
    again = ok(
        run_student(
            built,
            home,
            "sh",
            "-c",
            "python3 -c 'import hello_student; hello_student.main()'; python3 -m pip list --user --format=freeze",
        )
    )
    assert f"hello from {HOME}/.local/lib/python3.11/site-packages/hello_student/__init__.py" in again
    assert "hello-student==0.1" in again


NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {
            "cell_type": "code",
            "id": "c1",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": "import numpy as np, pandas as pd, matplotlib.pyplot as plt, ipywidgets as w\n"
            "df = pd.DataFrame({'x': np.arange(5), 'y': np.arange(5) ** 2})\n"
            "df.plot(x='x', y='y'); plt.savefig('plot.png')\n"
            "w.IntSlider(value=3)\n"
            "print('sum', int(df.y.sum()))\n",
        }
    ],
}


def test_notebook_kernel_runs_as_arbitrary_uid(built, home):
    (home / "lesson.ipynb").write_text(json.dumps(NOTEBOOK))
    os.chown(home / "lesson.ipynb", UID, GID)
    ok(
        run_student(
            built,
            home,
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "lesson.ipynb",
            "--output",
            "lesson.out.ipynb",
        )
    )
    outputs = json.loads((home / "lesson.out.ipynb").read_text())["cells"][0]["outputs"]
    assert any("sum 30" in "".join(o.get("text", "")) for o in outputs), outputs
    assert (home / "plot.png").read_bytes()[:4] == b"\x89PNG"


FAKE_HUB_AND_PROBE = r"""
python3 - >/tmp/hub.log 2>&1 <<'PY' &
import http.server, json
class Hub(http.server.BaseHTTPRequestHandler):  # just enough of the hub API for the version check
    def do_GET(self):
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", "6.1.1")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"version": "6.1.1"}).encode())
    do_POST = do_GET
http.server.HTTPServer(("127.0.0.1", 8081), Hub).serve_forever()
PY
jupyterhub-singleuser --ip 127.0.0.1 --port 8888 >/tmp/server.log 2>&1 &
for i in $(seq 240); do
  python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8888/user/jdoe/api").read().decode())' 2>/dev/null && exit 0
  sleep 0.5
done
cat /tmp/server.log /tmp/hub.log; exit 1
"""


def test_singleuser_server_starts_as_arbitrary_uid(built, home):
    env = {
        "JUPYTERHUB_API_TOKEN": "not-a-real-token",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_USER": "jdoe",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-jdoe",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/jdoe/",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:8888/user/jdoe/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/jdoe/oauth_callback",
    }
    out = ok(run_student(built, home, "sh", "-c", FAKE_HUB_AND_PROBE, env=env))
    assert json.loads(out.strip().splitlines()[-1])["version"]
    assert (home / ".local" / "share" / "jupyter" / "runtime").is_dir()  # state went to HOME, not /


def test_unchanged_inputs_reuse_the_image_without_building(built, monkeypatch):
    calls: list[list[str]] = []
    real_run = image.run  # the build's own reference to host.run.run

    def spy(argv, *args, **kwargs):
        calls.append(list(argv))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(image, "run", spy)
    again = image.build_image(tag=TAG, cache_dir=CACHE)
    assert again.cached and again.image_id == built.image_id
    assert image.build(tag=TAG, cache_dir=CACHE) == built.image_id
    assert {argv[0] for argv in calls} == {"docker"}, calls  # no debootstrap, pip, chroot or tar
    assert not any(argv[:2] == ["docker", "import"] for argv in calls)


def test_build_directory_removal_unmounts_and_never_follows_a_mount(tmp_path):
    """What debootstrap may leave mounted (/proc, a bound /dev) is unmounted, and rm never crosses into it."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    work = tmp_path / "tmp-build-x"
    (work / "rootfs" / "proc").mkdir(parents=True)
    (work / "rootfs" / "dev").mkdir()
    run(["mount", "-t", "tmpfs", "tmpfs", str(work / "rootfs" / "proc")])
    run(["mount", "--bind", str(outside), str(work / "rootfs" / "dev")])
    try:
        image._remove_tree(work)
        assert not work.exists()
        assert (outside / "precious").read_text() == "keep me"
    finally:
        for point in image._mounts_under(work):
            run(["umount", "--lazy", point])


def test_jupyterlab_classroom_defaults(built, home):
    out = ok(run_student(built, home, "cat", "/usr/local/share/jupyter/lab/settings/overrides.json"))
    assert json.loads(out) == image.LAB_OVERRIDES
