"""The student container image, built on this host with no registry: debootstrap, host wheels, docker import.

    Debian 12 minbase rootfs (debootstrap)            cached as <cache>/debs-<key>.tgz (the .debs)
      + wheels downloaded on the host (pip download)  cached as <cache>/wheels-<key>/
      + pip install --no-index inside a chroot        into /usr/local (the system site-packages)
      -> tar -> docker import, labelled with the hash of every input

An image whose label carries the same inputs hash is reused as it is (``build`` returns at once,
running nothing but ``docker``).  The inputs are the Debian suite and packages, the exact Python
packages in ``PINNED``, the wheel platform tags and this file's own source.

Why wheels come from the host: pip inside the chroot cannot verify PyPI's TLS, and a host
``pip download`` with explicit target tags gets exactly the wheels Debian 12's python (3.11.2,
glibc 2.36) can run.  pip's ``--platform`` takes each tag literally (a manylinux_2_28 tag does not
imply manylinux_2_17), and these wheels are spread from manylinux1 to manylinux_2_34 (debugpy), so
every manylinux tag that glibc 2.36 satisfies is passed.

How the image is run: the spawner runs each container as the student's own UID:GID (no passwd
entry in the image), sets HOME to the student's bind-mounted volume, and may make / read-only.
Debian's PEP 668 marker is removed, so a student's plain ``pip install X`` defaults to a user
install into ~/.local, i.e. onto their volume, and survives a new container.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


from ..host.run import CommandFailed, run
from ..config.site import CourseImage
from .course import NO_COURSE, Course, CourseError, differences, pins_state, prepare, summary

DEFAULT_TAG = "classroom-student:latest"
LABEL = "org.classroom.student-image.inputs"  # the inputs hash; an image carrying it is reused
JUPYTERHUB_LABEL = "org.classroom.student-image.jupyterhub"  # for the hub to check it matches

SUITE = "bookworm"
APT_SOURCES = Path("/etc/apt")
VARIANT = "minbase"
# python3-venv so students can make venvs; git and ssh-keygen (openssh-client) for course work in git; C.UTF-8 is
# built into Debian 12's libc, so no `locales`.
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini", "git", "openssh-client")

PYTHON_VERSION = "3.11"  # Debian 12's python3 is 3.11.2
PYTHON_ABI = "cp311"
GLIBC = (2, 36)  # Debian 12
# Every platform tag Debian 12's pip itself accepts on x86_64 (newest first), plus pure wheels.
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC[1], 16, -1)),
    "manylinux2014_x86_64",
    *(f"manylinux_2_{minor}_x86_64" for minor in range(16, 4, -1)),
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "any",
)

# What the students get.  jupyterhub provides jupyterhub-singleuser and must match the hub's version.
# nbgitpuller: classroom.yaml's course_repo link pulls the course material into each home.
REQUESTED = ("jupyterhub==6.1.1", "jupyterlab", "ipywidgets", "numpy", "pandas", "matplotlib", "pip", "nbgitpuller")

# REQUESTED resolved with every dependency, one pin per line (`--resolve` writes a fresh set).
PINS_FILE = Path(__file__).with_name("pins.txt")


def read_pins(path: Path = PINS_FILE) -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return tuple(line for line in lines if line)


PINNED = read_pins()

PEP668_MARKER = Path("usr/lib/python3.11/EXTERNALLY-MANAGED")
IMPORT_CHANGES = (
    'ENTRYPOINT ["/usr/bin/tini", "--"]',
    'CMD ["jupyterhub-singleuser"]',
    "ENV PATH=/usr/local/bin:/usr/bin:/bin",
    "ENV LANG=C.UTF-8",
)
# Left out of the rootfs tar: docker provides /dev, /proc and /sys itself.
TAR_EXCLUDES = ("./dev/*", "./proc/*", "./sys/*")
# Removed from the rootfs before import (relative globs): caches, docs, logs, bundled test suites.
SLIM_GLOBS = (
    "tmp/*",
    "var/tmp/*",
    "root/.cache",
    "var/log/*.log",
    "var/log/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*_*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/lintian/*",
    "usr/share/locale/*/LC_MESSAGES",
    "usr/local/lib/python3.11/dist-packages/pandas/tests",
    "usr/local/lib/python3.11/dist-packages/numpy/*/tests",
    "usr/local/lib/python3.11/dist-packages/numpy/tests",
    "usr/local/lib/python3.11/dist-packages/matplotlib/tests",
    "usr/local/lib/python3.11/dist-packages/mpl_toolkits/*/tests",
)


_TMP_PREFIX = "tmp-"  # work directories inside the cache directory


class ImageBuildError(RuntimeError):
    """A build step failed; the message names the step and carries the tool's own error."""


@dataclass(frozen=True)
class Built:
    image_id: str
    tag: str
    inputs_hash: str
    cached: bool  # True: an image with this inputs hash already existed and nothing was built
    seconds: float


def inputs_hash(course: Course = NO_COURSE) -> str:
    """sha256 over everything that decides the image's content (the course's packages too, when it has any)."""
    digest = hashlib.sha256()
    for part in (
        SUITE,
        VARIANT,
        DEBIAN_PACKAGES,
        PYTHON_VERSION,
        PYTHON_ABI,
        PLATFORMS,
        PINNED,
        IMPORT_CHANGES,
        *course.parts(),
    ):
        digest.update(repr(part).encode() + b"\0")
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """<state dir>/image-cache of the site in force ($RECONCILE_SITE, /etc/classroom/site.yaml, built in)."""
    from ..config.load import load_site
    from ..config.site import find_site

    return load_site(find_site(None)).state_dir / "image-cache"


def build(tag: str = DEFAULT_TAG, cache_dir: Path | None = None, force: bool = False) -> str:
    """Build (or reuse) the student image and tag it; returns the image id."""
    return build_image(tag, cache_dir, force).image_id


def build_image(
    tag: str = DEFAULT_TAG,
    cache_dir: Path | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda text: None,
    course: Course = NO_COURSE,
) -> Built:
    """Like ``build``, and tells whether anything was built; ``progress`` hears each step as it starts.
    ``course``: the course's own packages (image/course.py), resolved."""
    started = time.monotonic()
    if os.geteuid() != 0:
        raise ImageBuildError("building the student image needs root (debootstrap, chroot)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache.resolve()
    key = inputs_hash(course)
    _step("checking docker", ["docker", "version", "--format", "{{.Server.Version}}"])
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "build.lock"):
        for stale in cache.glob(f"{_TMP_PREFIX}*"):  # left by a killed build; the lock says none is running
            _remove_tree(stale)
        if not force:
            existing = _image_with_inputs(key)
            if existing:
                progress(f"the image with these inputs exists ({existing[:19]}): tagging it {tag}")
                _step("tagging the cached image", ["docker", "tag", existing, tag])
                return Built(existing, tag, key, True, time.monotonic() - started)
        for tool in ("debootstrap", "chroot", "tar"):
            if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
                raise ImageBuildError(f"{tool} is not installed (apt-get install debootstrap coreutils tar)")
        progress("the Debian packages (debootstrap --download-only, cached)")
        debs = _debs_tarball(cache, course.apt)
        progress("the Python wheels (pip download, cached)")
        wheels = _wheels(cache, course)
        work = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}build-", dir=cache))  # /tmp may be nodev, noexec
        try:
            rootfs = work / "rootfs"
            progress("unpacking Debian into the image's root (debootstrap)")
            _debootstrap(rootfs, ["--unpack-tarball=" + str(debs)], course.apt)
            progress("installing the wheels")
            _install_wheels(rootfs, wheels, course.pins)
            _slim(rootfs)
            tarball = work / "rootfs.tar"
            _unmount_under(work)
            progress("packing the root filesystem")
            _step(
                "packing the rootfs",
                [
                    "tar",
                    "--numeric-owner",
                    *(f"--exclude={x}" for x in TAR_EXCLUDES),
                    "-C",
                    str(rootfs),
                    "-cf",
                    str(tarball),
                    ".",
                ],
            )
            progress("docker import")
            image_id = _import(tarball, tag, key, course.labels() if not course.empty else {})
        finally:
            _remove_tree(work)
        _prune_replaced(image_id)
        return Built(image_id, tag, key, False, time.monotonic() - started)


# --- steps ------------------------------------------------------------------------------------


def _step(what: str, argv: Sequence[str]) -> str:
    try:
        return run(argv)
    except CommandFailed as exc:
        raise ImageBuildError(f"{what} failed: {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageBuildError(f"{what} failed: {argv[0]} is not installed") from exc


def _image_with_inputs(key: str) -> str | None:
    out = _step(
        "looking for a cached image", ["docker", "images", "--quiet", "--no-trunc", "--filter", f"label={LABEL}={key}"]
    )
    ids = sorted(set(out.split()))
    return ids[0] if ids else None


def _debs_key(apt: Sequence[str] = ()) -> str:
    packages = DEBIAN_PACKAGES + tuple(sorted(apt))
    return hashlib.sha256(repr((SUITE, VARIANT, packages, host_mirror())).encode()).hexdigest()[:16]


def _debs_tarball(cache: Path, apt: Sequence[str] = ()) -> Path:
    """The .debs debootstrap needs (the course's own packages too), downloaded once into a tarball
    (``--make-tarball``)."""
    final = cache / f"debs-{SUITE}-{_debs_key(apt)}.tgz"
    if final.is_file():
        return final
    partial = final.with_name(final.name + ".partial")
    work = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}debs-", dir=cache))
    try:
        _debootstrap(work / "target", ["--make-tarball=" + str(partial)], apt)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
        _remove_tree(work)
    _forget_others(cache, "debs-*", final)
    return final


def _debootstrap(target: Path, extra: list[str], apt: Sequence[str] = ()) -> None:
    argv = [
        "debootstrap",
        f"--variant={VARIANT}",
        "--include=" + ",".join(DEBIAN_PACKAGES + tuple(sorted(apt))),
        *extra,
        SUITE,
        str(target),
        host_mirror(),
    ]
    try:
        run(argv)
    except CommandFailed as exc:
        log = target / "debootstrap" / "debootstrap.log"
        tail = ""
        if log.is_file():
            tail = "\n  debootstrap.log (last lines):\n    " + "\n    ".join(
                log.read_text(errors="replace").splitlines()[-15:]
            )
        raise ImageBuildError(f"debootstrap failed: {exc}{tail}") from exc
    except FileNotFoundError as exc:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)") from exc


def host_mirror(apt: Path = APT_SOURCES) -> str:
    """The Debian mirror this host's apt already uses for SUITE: debootstrap fetches from the same place.

    $RECONCILE_DEBIAN_MIRROR overrides it.
    """
    if os.environ.get("RECONCILE_DEBIAN_MIRROR"):
        return os.environ["RECONCILE_DEBIAN_MIRROR"]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else ():
            words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []) and fields.get("uris"):
                return fields["uris"][0]
    raise ImageBuildError(f"no apt source for Debian {SUITE} on this host; set RECONCILE_DEBIAN_MIRROR")


def _wheels_key(course: Course = NO_COURSE) -> str:
    extra = (course.pins, course.options) if course.pins else ()
    return hashlib.sha256(repr((PYTHON_VERSION, PYTHON_ABI, PLATFORMS, PINNED, *extra)).encode()).hexdigest()[:16]


def _download_argv(dest: Path, requirements: Sequence[str], deps: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        PYTHON_ABI,
        *(f"--platform={p}" for p in PLATFORMS),
        *([] if deps else ["--no-deps"]),
        *requirements,
    ]


def _wheels(cache: Path, course: Course = NO_COURSE) -> Path:
    """Every wheel in PINNED (and the course's pins, from its own index options), downloaded on the host (where
    PyPI's TLS verifies) for Debian 12's python."""
    final = cache / f"wheels-{_wheels_key(course)}"
    if final.is_dir():
        return final
    partial = final.with_name(final.name + ".partial")  # kept on failure: pip skips what it already has
    partial.mkdir(exist_ok=True)
    _step("downloading wheels on the host (pip download)", _download_argv(partial, PINNED, deps=False))
    if course.pins:
        _step(
            "downloading the course's wheels (pip download)",
            _download_argv(partial, [*course.options, *course.pins], deps=False),
        )
    have = {_wheel_name(w.name) for w in partial.glob("*.whl")}
    missing = [p for p in (*PINNED, *course.pins) if _pin_name(p) not in have]
    if missing:
        raise ImageBuildError(f"pip download left out {', '.join(missing)} (in {partial})")
    os.replace(partial, final)
    _forget_others(cache, "wheels-*", final)
    return final


def _install_wheels(rootfs: Path, wheels: Path, extra: Sequence[str] = ()) -> None:
    """pip install --no-index into the chroot's system site-packages (/usr/local), then pip check."""
    (rootfs / PEP668_MARKER).unlink(missing_ok=True)  # so students' `pip install` goes to ~/.local
    inside = rootfs / "tmp" / "wheels"
    shutil.copytree(wheels, inside)
    pip_wheel = next(inside.glob("pip-*.whl"), None)
    if pip_wheel is None:
        raise ImageBuildError(f"no pip wheel in {wheels}")
    chroot = ["chroot", str(rootfs), "/usr/bin/python3"]
    _step(
        "installing the Python packages in the chroot",
        [
            *chroot,
            f"/tmp/wheels/{pip_wheel.name}/pip",
            "install",
            "--no-index",
            "--find-links",
            "/tmp/wheels",
            "--no-cache-dir",
            "--root-user-action=ignore",
            "--disable-pip-version-check",
            *PINNED,
            *extra,
        ],
    )
    _step("checking the installed packages (pip check)", [*chroot, "-m", "pip", "check", "--disable-pip-version-check"])
    if (rootfs / PEP668_MARKER).exists():
        raise ImageBuildError(f"/{PEP668_MARKER} came back: students could not pip install")
    _write_lab_settings(rootfs)


# JupyterLab defaults for a classroom: no pop-up asking children about Jupyter news, and no
# calls from students' servers to the internet to check for it or for updates.
LAB_OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


def _write_lab_settings(rootfs: Path) -> None:
    target = rootfs / "usr/local/share/jupyter/lab/settings/overrides.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(LAB_OVERRIDES, indent=2) + "\n")


def _slim(rootfs: Path) -> None:
    for pattern in SLIM_GLOBS:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    # Docker bind-mounts these at run time; don't ship the build host's.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/hosts"):
        path = rootfs / name
        if path.is_file() and not path.is_symlink():
            path.write_text("")
    _drop_setuid(rootfs)


def _drop_setuid(rootfs: Path) -> None:
    """No setuid or setgid programs (su, mount, passwd, ...): nothing in a student's server may gain privileges.

    DockerSpawner also sets no-new-privileges, but swarm services cannot (Docker's service API has no such
    option before API 1.46): without these bits there is nothing for it to stop.
    """
    for directory, _, files in os.walk(rootfs):
        for name in files:
            path = Path(directory, name)
            mode = path.lstat().st_mode
            if mode & 0o6000 and not path.is_symlink():
                path.chmod(mode & 0o1777)


def _import(tarball: Path, tag: str, key: str, labels: dict[str, str] | None = None) -> str:
    changes = [
        *IMPORT_CHANGES,
        f"LABEL {LABEL}={key}",
        f"LABEL {JUPYTERHUB_LABEL}={_pinned('jupyterhub')}",
        *(f"LABEL {name}={json.dumps(value)}" for name, value in (labels or {}).items()),
    ]
    argv = [
        "docker",
        "import",
        *(a for c in changes for a in ("--change", c)),
        "--message",
        f"classroom student image, inputs {key[:12]}",
        str(tarball),
        tag,
    ]
    out = _step("docker import", argv).strip()
    if not out.startswith("sha256:"):
        raise ImageBuildError(f"docker import printed no image id: {out!r}")
    return out


def _prune_replaced(keep: str) -> None:
    """Remove earlier builds left untagged by this one; images still used by a container stay."""
    out = _step(
        "listing replaced images",
        ["docker", "images", "--quiet", "--no-trunc", "--filter", "dangling=true", "--filter", f"label={LABEL}"],
    )
    for image_id in set(out.split()) - {keep}:
        _remove(image_id)


def _remove(image_id: str) -> None:
    with contextlib.suppress(CommandFailed):  # in use by a (stopped) container: it goes once that does
        run(["docker", "rmi", image_id])


# --- helpers ----------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin_name(pin: str) -> str:
    return _canonical(pin.split("==")[0])


def _wheel_name(filename: str) -> str:
    return _canonical(filename.split("-")[0])


def _pinned(name: str) -> str:
    return next(p.split("==")[1] for p in PINNED if _pin_name(p) == name)


def _forget_others(cache: Path, pattern: str, keep: Path) -> None:
    """Drop what earlier inputs left in the cache (half-done downloads included)."""
    for old in cache.glob(pattern):
        if old != keep:
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:  # not inherited by children (O_CLOEXEC)
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    root = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unmount_under(path: Path) -> None:
    """Unmount whatever debootstrap (or a failed step) left mounted below ``path``."""
    for _ in range(3):
        points = _mounts_under(path)
        if not points:
            return
        for point in points:
            try:
                run(["umount", point])
            except CommandFailed:
                with suppress(CommandFailed):
                    run(["umount", "--lazy", point])
    points = _mounts_under(path)
    if points:
        raise ImageBuildError(f"could not unmount {', '.join(points)}; {path} was left in place")


def _remove_tree(path: Path) -> None:
    """Remove a build directory, never following a mount out of it (a bound /dev, say)."""
    if not path.exists():
        return
    _unmount_under(path)
    _step(f"removing {path}", ["rm", "-rf", "--one-file-system", str(path)])


def resolve_pins() -> tuple[str, ...]:
    """Resolve REQUESTED now (pip download with dependencies) and return exact pins, for PINNED."""
    with tempfile.TemporaryDirectory(prefix="resolve-") as tmp:
        _step("resolving REQUESTED (pip download)", _download_argv(Path(tmp), REQUESTED, deps=True))
        pins = set()
        for wheel in Path(tmp).glob("*.whl"):
            name, version = wheel.name.split("-")[:2]
            pins.add(f"{_canonical(name)}=={version}")
    return tuple(sorted(pins))


def course_for(
    settings: CourseImage, pins_file: Path, update: bool = False, progress: Callable[[str], None] = lambda text: None
) -> Course:
    """site.yaml's image: section resolved (image/course.py): pins reused, or resolved now and written."""

    def download(dest: Path, pip_args: list[str]) -> None:
        _step(f"resolving {settings.requirements} (pip download)", _download_argv(dest, pip_args, deps=True))

    try:
        return prepare(settings.requirements, settings.apt, pins_file, PINNED, download, update, progress)
    except CourseError as exc:
        raise ImageBuildError(str(exc)) from None


def image_labels(tag: str) -> dict[str, str] | None:
    """The labels of the image ``tag`` names now (None: there is none)."""
    try:
        out = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag])
    except CommandFailed:
        return None
    return json.loads(out) or {}


def preview(settings: CourseImage, pins_file: Path, tag: str) -> list[str]:
    """What `reconcile image build` would change (``--dry-run``): empty when the image ``tag`` is up to date.
    Resolves nothing: requirements changed since their pins are said to need resolving."""
    state, current = pins_state(settings.requirements, pins_file, PINNED)
    labels = image_labels(tag)
    if state in ("missing", "stale"):
        why = "no pins yet" if state == "missing" else "changed since its pins were made"
        lines = [f"{settings.requirements}: {why}: the build resolves it again (pip download) into {pins_file}"]
        return lines + [
            line
            for line in differences(labels, Course(tuple(settings.apt)), None, LABEL)
            if line.startswith("apt") or labels is None
        ]
    course = Course(
        tuple(settings.apt), *((current.pins, current.options, current.requirements_sha) if current is not None else ())
    )
    if settings.dockerfile is None:
        lines = differences(labels, course, inputs_hash(course), LABEL)
        return lines + (["Dockerfile: removed"] if labels and labels.get(DOCKERFILE_LABEL) else [])
    base = image_labels(base_tag(tag))
    lines = differences(base if labels is not None else None, course, inputs_hash(course), LABEL)
    if (
        labels is not None
        and settings.dockerfile.is_file()
        and labels.get(DOCKERFILE_LABEL) != context_sha(settings.dockerfile)
    ):
        lines.append(
            f"Dockerfile: {'changed' if labels.get(DOCKERFILE_LABEL) else 'added'} ({settings.dockerfile} "
            "or its folder)"
        )
    elif not settings.dockerfile.is_file():
        lines.append(f"Dockerfile: {settings.dockerfile} does not exist")
    return lines


# --- the course's Dockerfile, on top of the built image ----------------------------------------------

DOCKERFILE_LABEL = "org.classroom.student-image.dockerfile"  # sha256 of the Dockerfile and its folder


def base_tag(tag: str) -> str:
    """Where the image under a course's Dockerfile is tagged: <repository>-base:latest."""
    repository = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
    return f"{repository}-base:latest"


def context_sha(dockerfile: Path) -> str:
    """sha256 of the Dockerfile and every file of its folder (the build context; .git left out)."""
    digest = hashlib.sha256()
    root = dockerfile.parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(b"dockerfile\0" + dockerfile.name.encode())
    return digest.hexdigest()


def build_layer(
    base: Built, dockerfile: Path, tag: str, force: bool = False, progress: Callable[[str], None] = lambda text: None
) -> Built:
    """The course's Dockerfile built on ``base`` (docker-py's build API, ``BASE`` as a build argument, no pull),
    cached by the base's inputs and the Dockerfile's folder; then checked: no setuid or setgid program, and the
    hub's jupyterhub still the one inside."""
    import docker

    started = time.monotonic()
    if not dockerfile.is_file():
        raise ImageBuildError(f"image.dockerfile: {dockerfile} does not exist")
    sha = context_sha(dockerfile)
    key = hashlib.sha256(f"{base.inputs_hash}\0{sha}".encode()).hexdigest()
    existing = None if force else _image_with_inputs(key)
    if existing:
        progress(f"the image with this Dockerfile exists ({existing[:19]}): tagging it {tag}")
        _step("tagging the cached image", ["docker", "tag", existing, tag])
        return Built(existing, tag, key, True, time.monotonic() - started)
    progress(f"building {dockerfile} on the image (docker build)")
    network = {
        name: os.environ[name]
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
        if os.environ.get(name)
    }
    client = docker.from_env(timeout=3600)
    try:
        image, _ = client.images.build(
            path=str(dockerfile.parent),
            dockerfile=dockerfile.name,
            pull=False,
            rm=True,
            forcerm=True,
            buildargs={"BASE": base.image_id, **network},
            labels={LABEL: key, DOCKERFILE_LABEL: sha},
        )
    except docker.errors.BuildError as exc:
        lines = [str(item.get("stream", item.get("error", ""))).strip() for item in exc.build_log]
        tail = "\n    ".join(line for line in lines if line)[-2000:]
        raise ImageBuildError(f"the Dockerfile {dockerfile} failed: {exc.msg}\n    {tail}") from None
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"the Dockerfile {dockerfile} could not be built: {exc.explanation or exc}") from None
    try:
        check_layer(image.id, dockerfile)  # before it is tagged: a refused image never becomes the one in use
    except ImageBuildError:
        _remove(image.id)  # nor stays on the server (it holds what was refused)
        raise
    _step("tagging the image", ["docker", "tag", image.id, tag])
    _prune_replaced(image.id)
    return Built(image.id, tag, key, False, time.monotonic() - started)


def check_layer(image_id: str, dockerfile: Path) -> None:
    """What the Dockerfile must not change: no setuid or setgid program (nothing in a student's server may gain
    privileges), and jupyterhub-singleuser the hub's version."""
    out = _step(
        "checking the built image",
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "0",
            "--entrypoint",
            "/bin/sh",
            image_id,
            "-c",
            "find / -xdev -type f -perm /6000 2>/dev/null; echo version $(jupyterhub-singleuser --version 2>&1)",
        ],
    )
    lines = out.split()
    setuid = [line for line in out.splitlines() if line.startswith("/")]
    if setuid:
        raise ImageBuildError(
            f"{dockerfile} left setuid or setgid programs: {', '.join(setuid[:10])}; remove "
            "them (RUN chmod u-s,g-s ...) so nothing in a student's server gains privileges"
        )
    version = lines[lines.index("version") + 1] if "version" in lines[:-1] else "(none)"
    if version != _pinned("jupyterhub"):
        raise ImageBuildError(
            f"{dockerfile} changed jupyterhub-singleuser to {version}; the hub runs "
            f"{_pinned('jupyterhub')}: leave jupyterhub as the image has it"
        )


def report(
    tag: str,
    cache_dir: Path | None,
    force: bool,
    progress: Callable[[str], None] = lambda text: None,
    settings: CourseImage | None = None,
    pins_file: Path | None = None,
    update_pins: bool = False,
) -> int:
    """Build and print one line about it; the exit code for the CLI."""
    try:
        course = NO_COURSE
        if settings is not None and pins_file is not None:
            course = course_for(settings, pins_file, update_pins, progress)
        dockerfile = settings.dockerfile if settings is not None else None
        result = build_image(base_tag(tag) if dockerfile else tag, cache_dir, force, progress, course)
        if dockerfile is not None:
            result = build_layer(result, dockerfile, tag, force, progress)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", result.image_id]))
    print(
        f"{result.tag} {result.image_id} {'cached' if result.cached else 'built'} in {result.seconds:.1f} s, "
        f"{size / 1e6:.0f} MB, inputs {result.inputs_hash[:12]}"
        + (f"; course: {summary(course.labels())}" if not course.empty else "")
    )
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reconciler.image.build", description=__doc__.split("\n")[0])
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: <state dir>/image-cache")
    parser.add_argument("--force", action="store_true", help="rebuild even if an image with these inputs exists")
    parser.add_argument("--resolve", action="store_true", help="print freshly resolved pins for PINNED and exit")
    args = parser.parse_args()
    if args.resolve:
        print("\n".join(resolve_pins()))
        sys.exit(0)
    sys.exit(report(args.tag, args.cache_dir, args.force))
