"""Nothing outside ``reconciler/host/volumes/`` knows which volume backend is in use.

The backends (loop images, LVM) differ in where a volume lives, the commands and kernel features they need,
how letting go of a device is worded and where an export's views may linger; every such question is asked of
the backend (``host.volumes.about``, the layout, the ``VolumeBackend`` protocol).  This test reads the source:
a branch on the backend anywhere else is the leak the volume concept exists to prevent.  config/site.py is
where the settings models themselves are declared.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.config.classroom import Classroom
from reconciler.config.site import LvmVolumes, Site
from reconciler.core.actual import Volume
from reconciler.core.desired import Owner, resolve
from reconciler.host.volumes import BACKENDS, about, layout_for

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"
ALLOWED = (PACKAGE / "host" / "volumes", PACKAGE / "config" / "site.py")
LEAKS = {
    "a backend's settings model": re.compile(r"\b(LvmVolumes|LoopVolumes)\b"),
    "a backend's own class": re.compile(r"\b(LvmLayout|LoopLayout|LvmBackend|LoopBackend)\b"),
    "the backend's name": re.compile(r"\bvolumes\.backend\b|[=!]=\s*[\"'](lvm|loop)[\"']|[\"'](lvm|loop)[\"']\s*[=!]="),
    "a backend's attribute, guessed": re.compile(r"getattr\(\s*(layout|site\.volumes|self\.volumes)\b"),
    "a loop device or an LV's activation, read to decide": re.compile(r"\bvolume\.(loop|active)\b"),
}


def sources() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(path == allowed or allowed in path.parents for allowed in ALLOWED)
    ]


def leaks_in(text: str) -> list[str]:
    return [what for what, pattern in LEAKS.items() if pattern.search(text)]


def test_nothing_outside_the_volumes_package_asks_which_backend_is_in_use():
    found = []
    for path in sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            found += [f"{path.relative_to(PACKAGE.parent)}:{number}: {what}: {line.strip()}" for what in leaks_in(code)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "    if isinstance(site.volumes, LvmVolumes):",
        '    if not any(scratch.iterdir()) and site.volumes.backend != "lvm":',
        '    return getattr(layout_for(site), "directory", None) or getattr(layout, "directory", None)',
        "        if volume.loop:",
    ],
)
def test_the_leaks_it_was_written_for_are_caught(line):
    assert leaks_in(line)


def test_the_scan_reads_the_whole_package():
    names = {path.relative_to(PACKAGE).as_posix() for path in sources()}
    assert {"core/plan.py", "cli/doctor.py", "engine/end_of_term.py", "engine/passes.py"} <= names
    assert not any(name.startswith("host/volumes/") for name in names)


def site(volumes: dict | None = None) -> Site:
    return Site.model_validate({"volumes": volumes} if volumes else {})


def test_every_backend_answers_the_questions_asked_of_it(tmp_path):
    loop = site({"backend": "loop"})
    lvm = site({"backend": "lvm", "vg": "classroom"})
    assert isinstance(lvm.volumes, LvmVolumes)
    assert set(BACKENDS) == {"loop", "lvm"}
    assert about(loop).images(loop) == loop.paths.state / "volumes"  # sparse images: their promised space
    assert about(lvm).images(lvm) is None  # the volume group holds the data
    assert not about(loop).views_elsewhere and about(lvm).views_elsewhere  # LVM's snapshots live in the VG
    assert {"mkfs.ext4", "resize2fs", "e2fsck", "mount"} <= about(loop).tools.keys() & about(lvm).tools.keys()
    assert {"lvcreate", "lvs"} <= about(lvm).tools.keys() and "lvcreate" not in about(loop).tools
    assert (about(loop).kernel.device, about(lvm).kernel.device) == ("loop-control", "mapper/control")


def test_each_backend_words_the_release_of_its_device():
    volume = Volume("ann", "/x", True, 1 << 30, 0, None, "/dev/loop7", None, attached=True)
    loop = layout_for(site()).release(volume)
    assert (loop.before.to_json(), loop.after.to_json()) == ({"loop": "/dev/loop7"}, {"loop": None})
    lvm = layout_for(site({"backend": "lvm", "vg": "classroom"})).release(volume)
    assert (lvm.before.to_json(), lvm.after.to_json()) == ({"active": True}, {"active": False})
    assert loop.reason != lvm.reason


def test_a_home_and_the_course_folder_are_one_kind_of_volume():
    room = Classroom.model_validate(
        {
            "version": 1,
            "name": "py101",
            "quotas": {"default": {"memory": "1G", "cpu": 1, "disk": "1G"}},
            "students": [{"username": "ann", "name": "Ann"}],
        }
    )
    paths = site().paths
    desired = resolve(room, paths, layout_for(site()))
    home, folder = desired.home(desired.members[0]), desired.course_folder(2 << 30)
    assert (home.mount_point, home.owner, home.in_every_server) == (
        str(paths.homes / "ann"),
        Owner("ann", "ann", 0o700),
        False,
    )
    assert (folder.mount_point, folder.owner, folder.in_every_server) == (
        str(paths.course_folder),
        Owner("root", "py101-teachers", 0o2775),
        True,
    )
    assert Owner.parse(folder.owner.text) == folder.owner and folder.owner.text == "root:py101-teachers 2775"
    with pytest.raises(ValueError):
        Owner.parse("ann 0700")
