"""The course's own packages (image/course.py): requirements read strictly, pins reused while nothing changed,
resolved against the base image's pins, and what a build would change told from the image's labels."""

from pathlib import Path

import pytest

from reconciler.image.course import (
    APT_LABEL,
    PINS_LABEL,
    Course,
    CourseError,
    Pins,
    differences,
    pins_state,
    prepare,
    read_requirements,
    summary,
)

BASE = ("jupyterhub==6.1.1", "numpy==2.1.0")


def test_requirements_keep_names_and_index_options(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# the course\n--find-links /srv/wheels\n--index-url=https://pypi.school/simple\n"
        "sympy>=1.12  # algebra\nnetworkx\n\n"
    )
    assert read_requirements(req) == (
        ["sympy>=1.12", "networkx"],
        ["--find-links", "/srv/wheels", "--index-url", "https://pypi.school/simple"],
    )


@pytest.mark.parametrize(
    "line, says",
    [
        ("-r other.txt", "-r: only package names"),
        ("-e git+https://x/y", "-e: only package names"),
        ("https://example.org/x.whl", "a URL or a path"),
        ("./local-package", "a URL or a path"),
        ("thing @ https://example.org/t.whl", "a URL or a path"),
    ],
)
def test_requirements_that_reach_elsewhere_are_refused_with_their_line(tmp_path, line, says):
    req = tmp_path / "requirements.txt"
    req.write_text(f"sympy\n{line}\n")
    with pytest.raises(CourseError, match=f"requirements.txt:2: .*{says}"):
        read_requirements(req)


def test_pins_round_trip():
    pins = Pins("a" * 64, "b" * 64, ("--find-links", "/srv/wheels"), ("mpmath==1.3.0", "sympy==1.13.1"))
    assert Pins.parse(pins.text()) == pins
    assert Pins.parse("sympy==1.13.1\n") is None  # not ours: no hashes


def fake_download(calls):
    def download(dest: Path, args: list[str]) -> None:
        calls.append(args)
        for wheel in (
            "sympy-1.13.1-py3-none-any.whl",
            "mpmath-1.3.0-py3-none-any.whl",
            "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        ):
            (dest / wheel).write_bytes(b"")

    return download


def test_pins_are_resolved_once_against_the_base_and_reused_until_something_changes(tmp_path):
    req, pins = tmp_path / "requirements.txt", tmp_path / "pins.txt"
    req.write_text("--find-links /srv/wheels\nsympy\n")
    calls: list = []
    first = prepare(req, ["graphviz"], pins, BASE, fake_download(calls))
    assert first.pins == ("mpmath==1.3.0", "sympy==1.13.1")  # numpy is the base's: not the course's
    assert first.apt == ("graphviz",) and first.options == ("--find-links", "/srv/wheels")
    (args,) = calls
    assert args[:2] == ["--find-links", "/srv/wheels"] and args[2] == "-c" and args[-1] == "sympy"
    assert pins_state(req, pins, BASE)[0] == "fresh"

    again = prepare(req, ["graphviz"], pins, BASE, fake_download(calls))
    assert again == first and len(calls) == 1  # reused: nothing resolved, the same versions
    assert len(prepare(req, [], pins, BASE, fake_download(calls), update=True).pins) == 2 and len(calls) == 2

    req.write_text("--find-links /srv/wheels\nsympy\nnetworkx\n")
    assert pins_state(req, pins, BASE)[0] == "stale"
    prepare(req, [], pins, BASE, fake_download(calls))
    assert len(calls) == 3
    assert pins_state(req, pins, ("jupyterhub==6.2.0",))[0] == "stale"  # a new base: resolve again


def test_no_requirements_means_no_pins_and_a_missing_file_is_said():
    assert prepare(None, ["jq"], Path("/nonexistent"), BASE, fake_download([])) == Course(apt=("jq",))
    assert Course().empty and Course().parts() == ()
    with pytest.raises(CourseError, match="does not exist"):
        prepare(Path("/nonexistent/requirements.txt"), [], Path("/x"), BASE, fake_download([]))


def test_differences_from_the_labels_of_the_image_in_use():
    course = Course(("graphviz", "jq"), ("sympy==1.13.1",))
    labels = {APT_LABEL: "jq,make", PINS_LABEL: "sympy==1.12", "inputs": "k1"}
    assert differences(labels, course, "k2", "inputs") == [
        "apt: + graphviz",
        "apt: - make",
        "python: sympy 1.12 -> 1.13.1",
    ]
    same = {APT_LABEL: "graphviz,jq", PINS_LABEL: "sympy==1.13.1", "inputs": "k1"}
    assert differences(same, course, "k1", "inputs") == []
    assert differences(same, course, "k2", "inputs") == [
        "the base image's inputs changed (Debian packages, pinned Python packages or the build itself)"
    ]
    assert differences(None, course, "k1", "inputs") == ["no image yet: the build makes it"]
    assert summary(same) == "apt graphviz,jq; python sympy==1.13.1" and summary({}) == "no course packages"
