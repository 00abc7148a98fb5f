"""The student image for tests (built once into a fixed cache, reused across runs on this machine)
and a tiny wheel that a student can `pip install` offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from reconciler.image import build as image

CACHE = Path("/var/cache/classroom-test-image")
TAG = "classroom-student:test"


def image_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "building the student image needs root (debootstrap, chroot)"
    if not shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin"):
        return "debootstrap is not installed (apt-get install debootstrap)"
    if not shutil.which("docker"):
        return "the docker CLI is not installed (apt-get install docker.io)"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"docker info failed, is dockerd running? {probe.stderr.strip()[:200]}"
    return None


def build_test_image() -> image.Built:
    return image.build_image(tag=TAG, cache_dir=CACHE)


BACKEND = '''
"""A PEP 517 backend in 20 lines, so the test builds its wheel offline (no setuptools/wheel needed)."""
import base64, hashlib, zipfile
from pathlib import Path

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "hello_student-0.1.dist-info"
    files = {
        "hello_student/__init__.py": Path("hello_student/__init__.py").read_bytes(),
        f"{info}/METADATA": b"Metadata-Version: 2.1\\nName: hello-student\\nVersion: 0.1\\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{info}/entry_points.txt": b"[console_scripts]\\nhello-student = hello_student:main\\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    filename = "hello_student-0.1-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return filename
'''


def make_tiny_wheel(src: Path, dest: Path) -> Path:
    """hello-student 0.1, built on the host with `pip wheel` from a minimal local package."""
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""\
        [build-system]
        requires = []
        build-backend = "backend"
        backend-path = ["."]
    """)
    )
    (src / "backend.py").write_text(BACKEND)
    (src / "hello_student").mkdir()
    (src / "hello_student" / "__init__.py").write_text("def main():\n    print('hello from', __file__)\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(dest),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=src,
    )
    dest.chmod(0o755)
    (wheel,) = dest.glob("hello_student-0.1-py3-none-any.whl")
    wheel.chmod(0o644)
    return wheel
