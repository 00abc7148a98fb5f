"""The course's own image (site.yaml's image: section): a real build with a course requirement from a local index
and an extra Debian package, its pins reused, its labels, and `image build --dry-run` reading them.

The course's wheel comes from a folder on this host (`--no-index --find-links`), so the build resolves it without
any index; the extra Debian package comes from the host's own Debian mirror, like the base's.  Cached in
/var/cache/classroom-test-course-image across runs on this machine (the first run builds, later ones reuse the image
whose labels carry the same inputs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagekit import build_test_image, image_unavailable, make_tiny_wheel
from reconciler.image import build as image
from reconciler.image.course import APT_LABEL, PINS_LABEL, REQUIREMENTS_LABEL

pytestmark = pytest.mark.skipif(bool(image_unavailable()), reason=str(image_unavailable()))

CACHE = Path("/var/cache/classroom-test-course-image")
TAG = "classroom-course:test"


def reconcile(site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "image",
            "build",
            "--site",
            str(site),
            "--tag",
            TAG,
            "--cache-dir",
            str(CACHE / "build"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = CACHE / "course-wheels"  # a fixed place: the pins name it, and the image's inputs with them
    if not (wheels / "hello_student-0.1-py3-none-any.whl").exists():
        make_tiny_wheel(tmp_path_factory.mktemp("src"), wheels)
    root = tmp_path_factory.mktemp("course")
    requirements = root / "requirements.txt"
    requirements.write_text(f"# the course's packages\n--no-index\n--find-links {wheels}\nhello-student\n")
    site = root / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "state_dir": "state",
                "image": {"requirements": str(requirements), "apt": ["jq"], "pins": str(root / "requirements.pins")},
            }
        )
    )
    return site, requirements, root / "requirements.pins"


def test_dry_run_before_the_first_build_says_the_requirements_are_resolved(course):
    site, requirements, pins = course
    preview = reconcile(site, "--dry-run")
    assert preview.returncode == 2, preview.stdout + preview.stderr
    assert f"{requirements}: no pins yet" in preview.stdout and f"{TAG}: would change" in preview.stdout
    assert not pins.exists()  # a dry run resolves nothing and writes nothing


def test_build_puts_the_course_in_and_labels_it(course):
    site, requirements, pins = course
    done = reconcile(site)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "course: apt jq; python hello-student==0.1" in done.stdout
    text = pins.read_text()
    assert "hello-student==0.1" in text and "# requirements-sha256: " in text and "--no-index" in text
    labels = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", TAG],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert labels[APT_LABEL] == "jq" and labels[PINS_LABEL] == "hello-student==0.1"
    assert len(labels[REQUIREMENTS_LABEL]) == 64 and labels[image.JUPYTERHUB_LABEL] == "6.1.1"
    ran = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--user",
            "12345:12345",
            "--network",
            "none",
            TAG,
            "sh",
            "-c",
            "hello-student && jq --version && jupyterhub-singleuser --version",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "hello from" in ran.stdout and "jq-1." in ran.stdout and "6.1.1" in ran.stdout


def test_unchanged_course_is_up_to_date_and_reuses_its_pins(course):
    site, requirements, pins = course
    before = pins.read_text()
    preview = reconcile(site, "--dry-run")
    assert preview.returncode == 0 and f"{TAG}: up to date" in preview.stdout, preview.stdout + preview.stderr
    again = reconcile(site)
    assert again.returncode == 0 and " cached " in again.stdout, again.stdout + again.stderr
    assert pins.read_text() == before


def test_a_changed_course_is_seen_by_the_dry_run(course):
    site, requirements, pins = course
    settings = yaml.safe_load(site.read_text())
    settings["image"]["apt"] = ["jq", "make"]
    site.write_text(yaml.safe_dump(settings))
    preview = reconcile(site, "--dry-run")
    assert preview.returncode == 2 and "apt: + make" in preview.stdout, preview.stdout + preview.stderr
    requirements.write_text(requirements.read_text() + "# a comment changes the file: its pins are made again\n")
    preview = reconcile(site, "--dry-run")
    assert preview.returncode == 2 and "changed since its pins were made" in preview.stdout


LAYER = "classroom-layer:test"


@pytest.fixture
def layered(tmp_path):
    build_test_image()  # the base under the Dockerfile is this image: only tagged again, never rebuilt or removed
    context = tmp_path / "course"
    context.mkdir()
    (context / "course.txt").write_text("week 1: variables\n")
    (context / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nCOPY course.txt /usr/local/share/course.txt\n")
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"state_dir": "state", "image": {"dockerfile": str(context / "Dockerfile")}}))
    try:
        yield site, context
    finally:
        for name in (LAYER, "classroom-layer-base:latest"):
            subprocess.run(["docker", "rmi", "--force", name], capture_output=True)


def build_layer(site: Path, *args: str) -> subprocess.CompletedProcess:
    """On the plain test image's cache: the base under the Dockerfile is that image, reused as it is."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "image",
            "build",
            "--site",
            str(site),
            "--tag",
            LAYER,
            "--cache-dir",
            "/var/cache/classroom-test-image",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )


def test_a_course_dockerfile_is_built_on_the_image_checked_and_cached(layered):
    site, context = layered
    done = build_layer(site)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--user",
            "12345:12345",
            "--network",
            "none",
            LAYER,
            "cat",
            "/usr/local/share/course.txt",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.stdout == "week 1: variables\n", ran.stderr
    assert build_layer(site, "--dry-run").returncode == 0
    again = build_layer(site)
    assert again.returncode == 0 and " cached " in again.stdout, again.stdout + again.stderr

    (context / "course.txt").write_text("week 2: loops\n")
    preview = build_layer(site, "--dry-run")
    assert preview.returncode == 2 and "Dockerfile: changed" in preview.stdout, preview.stdout + preview.stderr
    assert build_layer(site).returncode == 0
    ran = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", LAYER, "cat", "/usr/local/share/course.txt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.stdout == "week 2: loops\n"
    good = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", LAYER], capture_output=True, text=True
    ).stdout

    (context / "Dockerfile").write_text(
        context.joinpath("Dockerfile").read_text()
        + "RUN cp /bin/true /usr/local/bin/su2 && chmod u+s /usr/local/bin/su2\n"
    )
    refused = build_layer(site)
    assert refused.returncode == 1 and "setuid" in refused.stderr and "/usr/local/bin/su2" in refused.stderr
    assert (
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", LAYER], capture_output=True, text=True
        ).stdout
        == good
    )  # the refused image never took the tag
    left = subprocess.run(
        [
            "docker",
            "images",
            "--quiet",
            "--filter",
            "dangling=true",
            "--filter",
            "label=org.classroom.student-image.dockerfile",
        ],
        capture_output=True,
        text=True,
    ).stdout
    assert left.split() == []  # nor stayed on the server: removed once refused (the week 1 image once replaced)
