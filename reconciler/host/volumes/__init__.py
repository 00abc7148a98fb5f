"""Volume backends: one quota-limited ext4 volume per person (the drivers that call them: ``drivers.py``).

A backend is chosen once from site.yaml's ``volumes:`` section (``BACKENDS``)
and owns everything about where a person's volume lives: its pure layout (the
source mounted at the home, the mount options: what the planner names), the
batch observation, and create / resize / detach / destroy / attach / release.
Nothing outside this package asks which backend is in use.

To add a backend (say btrfs): a settings model in config/site.py's ``volumes``
union, a module here with a layout and a class that satisfies
``VolumeBackend``, and one line in ``BACKENDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Mapping

from ...config.site import Site
from ...core.desired import VolumeLayout
from ..facts import HostFiles
from ..run import Runner
from .base import VolumeBackend, VolumeFacts

__all__ = [
    "BACKENDS",
    "Backend",
    "KernelNeed",
    "VolumeBackend",
    "VolumeFacts",
    "about",
    "backend_for",
    "layout_for",
    "places_for",
]


def _loop(site: Site, run: Runner, host: HostFiles) -> VolumeBackend:
    from .loop import LoopBackend

    return LoopBackend(site.paths, run, host, preallocate=getattr(site.volumes, "preallocate", False))


def _lvm(site: Site, run: Runner, host: HostFiles) -> VolumeBackend:
    from .lvm import LvmBackend

    return LvmBackend(site.volumes, site.paths, run, host)  # type: ignore[arg-type]


def _loop_layout(site: Site) -> VolumeLayout:
    from .loop import layout

    return layout(site.paths)


def _lvm_layout(site: Site) -> VolumeLayout:
    from .lvm import layout

    return layout(site.volumes)  # type: ignore[arg-type]


def _loop_places(site: Site) -> list[tuple[str, Path]]:
    return [("the volume images", site.paths.state / "volumes")]


def _lvm_places(site: Site) -> list[tuple[str, Path]]:
    return []  # the volume group's own space: `vgs` tells, and thin pools are guarded by max_overcommit


def _loop_images(site: Site) -> Path | None:
    from .loop import layout

    return layout(site.paths).directory


@dataclass(frozen=True)
class KernelNeed:
    """A kernel feature a backend needs, seen by its device node (below /dev), for `reconcile doctor`."""

    what: str  # "loop devices"
    device: str  # "loop-control", relative to /dev
    fix: str  # "modprobe loop"
    why: str = ""  # said after the missing node: "(LVM needs it)"


@dataclass(frozen=True)
class Backend:
    make: Callable[[Site, Runner, HostFiles], VolumeBackend]
    layout: Callable[[Site], VolumeLayout]  # pure naming, for the planner (also in CI, with no runner)
    places: Callable[[Site], list[tuple[str, Path]]]  # where the volumes' data takes disk space on this host
    tools: Mapping[str, str]  # the commands it runs -> the Debian package that has them
    kernel: KernelNeed
    images: Callable[[Site], Path | None] = lambda site: None  # where sparse images live (their promised space)
    views_elsewhere: bool = False  # an export's view may leave something outside the scratch folder (a snapshot)


COMMON_TOOLS = {"mkfs.ext4": "e2fsprogs", "resize2fs": "e2fsprogs", "e2fsck": "e2fsprogs", "mount": "mount"}

# site.yaml's volumes.backend -> the backend
BACKENDS: Mapping[str, Backend] = {
    "loop": Backend(
        _loop,
        _loop_layout,
        _loop_places,
        tools=COMMON_TOOLS | {"losetup": "mount"},
        kernel=KernelNeed("loop devices", "loop-control", "modprobe loop"),
        images=_loop_images,
    ),
    "lvm": Backend(
        _lvm,
        _lvm_layout,
        _lvm_places,
        tools=COMMON_TOOLS | {"losetup": "mount", "lvcreate": "lvm2", "lvs": "lvm2"},
        kernel=KernelNeed(
            "device-mapper", "mapper/control", "modprobe dm_mod (or a kernel with device-mapper)", "(LVM needs it)"
        ),
        views_elsewhere=True,
    ),
}


def about(site: Site) -> Backend:
    """What the chosen backend needs and where it keeps things: the questions asked of it outside this package."""
    return BACKENDS[site.volumes.backend]


def backend_for(site: Site, run: Runner | None = None, host: HostFiles | None = None) -> VolumeBackend:
    return BACKENDS[site.volumes.backend].make(site, run or Runner(), host or HostFiles())


def places_for(site: Site) -> list[tuple[str, Path]]:
    """The filesystems the volumes' data lives on, as (what, path), for the disk-space report."""
    return BACKENDS[site.volumes.backend].places(site)


def layout_for(site: Site) -> VolumeLayout:
    """The backend's naming alone: what the planner needs, with no runner (planning in CI)."""
    return BACKENDS[site.volumes.backend].layout(site)
