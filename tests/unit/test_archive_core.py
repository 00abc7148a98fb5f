"""The end of term's pure part: archive names, the manifest's round trip, the restore guard (core/archive.py)."""

from datetime import date

import pytest

from reconciler.core.archive import Entry, Existing, Manifest, archive_name, manifest_name, needs, restore_problems

DAY = date(2027, 6, 30)
A, B = "a" * 64, "b" * 64


def manifest(*entries: Entry) -> Manifest:
    return Manifest(
        user="ann",
        created="2027-06-30T10:00:00+00:00",
        view="the unmounted volume",
        archive="ann-20270630.tar.zst",
        archive_bytes=123,
        archive_sha256="c" * 64,
        volume_size=1 << 27,
        entries=entries,
    )


@pytest.mark.parametrize(
    "existing, expected",
    [
        ([], "ann-20270630.tar.zst"),
        (["ann-20270630.tar.zst"], "ann-20270630-101500.tar.zst"),
        (["ann-20270630.manifest.json"], "ann-20270630-101500.tar.zst"),  # a manifest alone also takes the name
        (["ann-20270630.tar.zst", "ann-20270630-101500.tar.zst"], "ann-20270630-101500-2.tar.zst"),
        (["bob-20270630.tar.zst"], "ann-20270630.tar.zst"),
    ],
)
def test_an_archive_is_never_overwritten(existing, expected):
    assert archive_name("ann", DAY, "101500", existing) == expected


def test_the_manifest_sits_beside_its_archive():
    assert manifest_name("ann-20270630-101500.tar.zst") == "ann-20270630-101500.manifest.json"


def test_the_manifest_round_trips_and_counts():
    m = manifest(
        Entry("work", "dir", 0o750),
        Entry("work/a.py", "file", 0o754, 10, 4096, A),
        Entry("huge", "file", 0o644, 1 << 40, 8192),
        Entry("link", "symlink", 0o777, target="work/a.py"),
        Entry("pipe", "other", 0o640),
    )
    again = Manifest.from_json(m.to_json())
    assert again == m
    assert (again.files, again.content_bytes) == (2, 10 + (1 << 40))
    assert [e.sparse for e in again.entries] == [False, False, True, False, False]
    assert '"mode": "0754"' in m.to_json()  # octal, as people read modes


def test_a_manifest_of_another_format_is_refused():
    text = manifest().to_json().replace('"format": 1', '"format": 2')
    with pytest.raises(ValueError, match="format 2"):
        Manifest.from_json(text)


def test_what_a_restore_needs_counts_blocks_not_holes():
    entries = [
        Entry("d", "dir", 0o755),
        Entry("d/one", "file", 0o644, 1, 4096, A),
        Entry("sparse", "file", 0o644, 1 << 40, 8192),
        Entry("l", "symlink", 0o777, target="d"),
    ]
    assert needs(entries) == 4096 + 4096 + 8192


FILE = Entry("essay.txt", "file", 0o644, 6, 4096, A)
DIR = Entry("work", "dir", 0o755)


@pytest.mark.parametrize(
    "existing, free, into, into_exists, expected",
    [
        ({}, 1 << 20, None, False, []),
        ({"essay.txt": Existing("file", A)}, 4096, None, False, []),  # the same file takes no room: only the folder
        ({"work": Existing("dir")}, 4096, None, False, []),
        ({"essay.txt": Existing("file", B)}, 1 << 20, None, False, ["1 path(s) of the archive already exist"]),
        ({"essay.txt": Existing("symlink")}, 1 << 20, None, False, ["1 path(s)"]),  # a link is not the file
        ({"work": Existing("file", None)}, 1 << 20, None, False, ["1 path(s)"]),
        ({}, 4096, None, False, ["the archive needs 8192 bytes on the volume and it has 4096 free"]),
        ({}, 1 << 20, "from-ann", True, ["'from-ann' already exists in the home"]),
        ({}, 1 << 20, "from-ann", False, []),
    ],
)
def test_the_restore_guard(existing, free, into, into_exists, expected):
    problems = restore_problems(manifest(DIR, FILE), free, existing, into, into_exists)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=False):
        assert start in problem


def test_many_conflicts_are_named_a_few_at_a_time():
    entries = [Entry(f"f{i}", "file", 0o644, 1, 4096, A) for i in range(8)]
    problems = restore_problems(manifest(*entries), 1 << 30, {f"f{i}": Existing("file", B) for i in range(8)})
    assert "8 path(s)" in problems[0] and "f0, f1, f2, f3, f4 and 3 more" in problems[0]
