"""The course's own packages in the student image: site.yaml's ``image:`` section (requirements, apt, pins).

A course's requirements (``requirements: requirements.txt``, names with or without versions, plus pip's index
options: ``--index-url``, ``--extra-index-url``, ``--find-links``, ``--no-index``, ``--trusted-host``) are
resolved once, against the base image's own pins as constraints (a course never moves jupyterhub or numpy
under JupyterLab's feet), into exact pins written to the pins file with the hash of the requirements and of
the base they were made for.  Later builds reuse those pins while neither changed, so a rebuild installs
exactly the same versions; `reconcile image build --update-pins` resolves again.

What the image was built from is in its labels (``LABELS``), so `reconcile image build --dry-run` and
`reconcile status` can say whether the image in use is the one site.yaml now asks for.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Mapping

APT_LABEL = "org.classroom.student-image.apt"
REQUIREMENTS_LABEL = "org.classroom.student-image.requirements"  # sha256 of the requirements file
PINS_LABEL = "org.classroom.student-image.pins"  # the course's exact pins, comma-separated
HEADER = "# reconcile image pins: written by `reconcile image build`; reused while the two hashes below hold"
INDEX_OPTIONS = (
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--no-index",
    "--trusted-host",
    "--prefer-binary",
)


class CourseError(ValueError):
    """The course's requirements cannot be used as given (the message names the file and line)."""


@dataclass(frozen=True)
class Course:
    """What the course adds, resolved: extra Debian packages, exact extra pins and where pip finds them."""

    apt: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()  # name==version, beyond the base image's own
    options: tuple[str, ...] = ()  # pip index options from the requirements file
    requirements_sha: str = ""

    @property
    def empty(self) -> bool:
        return not self.apt and not self.pins

    def parts(self) -> tuple:
        """What the image's inputs hash adds for the course (nothing for none: the base keeps its hash)."""
        return () if self.empty else (tuple(sorted(self.apt)), self.pins, self.options)

    def labels(self) -> dict[str, str]:
        return {
            APT_LABEL: ",".join(sorted(self.apt)),
            REQUIREMENTS_LABEL: self.requirements_sha,
            PINS_LABEL: ",".join(self.pins),
        }


NO_COURSE = Course()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(requirement lines, index option words) of a requirements file; anything pip would read from elsewhere
    (-r, -c, -e, a URL or a local path) is refused with its line."""
    requirements, options = [], []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            word, _, value = line.replace("=", " ", 1).partition(" ")
            if word not in INDEX_OPTIONS:
                raise CourseError(
                    f"{path}:{number}: {word}: only package names and pip's index options "
                    f"({', '.join(INDEX_OPTIONS)}) may be used here"
                )
            options += [word, value.strip()] if value.strip() else [word]
            continue
        if "://" in line or line.startswith((".", "/")) or " @ " in line:
            raise CourseError(
                f"{path}:{number}: {line!r}: a URL or a path; name the package (and an index with "
                "--find-links or --index-url)"
            )
        requirements.append(line)
    return requirements, options


@dataclass(frozen=True)
class Pins:
    """A pins file as written: for which requirements and base, where pip finds them, and the pins."""

    requirements_sha: str
    base_sha: str
    options: tuple[str, ...]
    pins: tuple[str, ...]

    def text(self) -> str:
        lines = [HEADER, f"# requirements-sha256: {self.requirements_sha}", f"# base-sha256: {self.base_sha}"]
        if self.options:
            lines.append(" ".join(self.options))
        return "\n".join([*lines, *self.pins]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Pins | None:
        found: dict[str, str] = {}
        options: list[str] = []
        pins = []
        for line in text.splitlines():
            if line.startswith("# requirements-sha256: "):
                found["requirements"] = line.split(": ", 1)[1].strip()
            elif line.startswith("# base-sha256: "):
                found["base"] = line.split(": ", 1)[1].strip()
            elif line.startswith("-"):
                options += line.split()
            elif line.strip() and not line.startswith("#"):
                pins.append(line.strip())
        if set(found) != {"requirements", "base"}:
            return None
        return cls(found["requirements"], found["base"], tuple(options), tuple(pins))


def pins_state(requirements: Path | None, pins_file: Path, base: tuple[str, ...]) -> tuple[str, Pins | None]:
    """("none" | "fresh" | "stale" | "missing", the pins file) for the requirements as they are now."""
    if requirements is None:
        return "none", None
    current = Pins.parse(pins_file.read_text()) if pins_file.is_file() else None
    if current is None:
        return "missing", None
    fresh = current.requirements_sha == sha256(requirements.read_text()) and current.base_sha == base_sha(base)
    return ("fresh" if fresh else "stale"), current


def base_sha(base: tuple[str, ...]) -> str:
    return sha256("\n".join(base))


def prepare(
    requirements: Path | None,
    apt: list[str],
    pins_file: Path,
    base: tuple[str, ...],
    download: Callable[[Path, list[str]], None],
    update: bool = False,
    progress: Callable[[str], None] = lambda text: None,
) -> Course:
    """The course resolved: its pins reused from ``pins_file`` while the requirements and the base are unchanged
    (and not ``update``), else resolved now with ``download(dest, pip_args)`` and written back."""
    if requirements is None:
        return Course(apt=tuple(apt))
    if not requirements.is_file():
        raise CourseError(f"image.requirements: {requirements} does not exist")
    wanted, options = read_requirements(requirements)
    state, current = pins_state(requirements, pins_file, base)
    if state == "fresh" and not update and current is not None:
        return Course(tuple(apt), current.pins, current.options, current.requirements_sha)
    progress(f"resolving {requirements.name} against the base image's pins (pip download)")
    base_names = {_name(pin) for pin in base}
    with tempfile.TemporaryDirectory(prefix="course-") as tmp:
        constraints = Path(tmp) / "base-constraints.txt"
        constraints.write_text("\n".join(base) + "\n")
        wheels = Path(tmp) / "wheels"
        wheels.mkdir()
        download(wheels, [*options, "-c", str(constraints), *wanted])
        found = sorted({_pin_of(w.name) for w in wheels.glob("*.whl")})
    pins = tuple(pin for pin in found if _name(pin) not in base_names)
    written = Pins(sha256(requirements.read_text()), base_sha(base), tuple(options), pins)
    from ..host.fsutil import write_atomic

    # names, versions and index options; an index URL with a password in it keeps the file root's alone
    write_atomic(pins_file, written.text(), mode=0o600 if any("@" in option for option in options) else 0o644)
    return Course(tuple(apt), pins, tuple(options), written.requirements_sha)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(pin: str) -> str:
    return _canonical(pin.split("==")[0])


def _pin_of(wheel: str) -> str:
    name, version = wheel.split("-")[:2]
    return f"{_canonical(name)}=={version}"


def differences(labels: Mapping[str, str] | None, course: Course, key: str | None, inputs_label: str) -> list[str]:
    """What a build would change, from the labels of the image in use: empty when it is up to date."""
    if labels is None:
        return ["no image yet: the build makes it"]
    lines = []
    have_apt = {p for p in labels.get(APT_LABEL, "").split(",") if p}
    for package in sorted(set(course.apt) - have_apt):
        lines.append(f"apt: + {package}")
    for package in sorted(have_apt - set(course.apt)):
        lines.append(f"apt: - {package}")
    have_pins = dict(p.split("==", 1) for p in labels.get(PINS_LABEL, "").split(",") if "==" in p)
    want_pins = dict(p.split("==", 1) for p in course.pins)
    for name in sorted(set(want_pins) | set(have_pins)):
        before, after = have_pins.get(name), want_pins.get(name)
        if before != after:
            lines.append(f"python: {name} {before or '(none)'} -> {after or '(none)'}")
    if not lines and key is not None and labels.get(inputs_label) != key:
        lines.append("the base image's inputs changed (Debian packages, pinned Python packages or the build itself)")
    return lines


def summary(labels: Mapping[str, str]) -> str:
    """One line for status: what the course added to an image."""
    parts = []
    if labels.get(APT_LABEL):
        parts.append(f"apt {labels[APT_LABEL]}")
    if labels.get(PINS_LABEL):
        parts.append(f"python {labels[PINS_LABEL]}")
    return "; ".join(parts) or "no course packages"
