"""`reconcile storage init`: LVM storage for servers without a spare disk.

A volume group on a sparse file behind a loop device; ``attach_pv`` attaches
that file again at boot (mount-all runs it before mounting the homes).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..facts import HostFiles
from ..run import Runner


def attach_pv(file: Path, run: Runner, host: HostFiles = HostFiles()) -> str:
    """The loop device that carries the VG; attached once, then found again by its backing file."""
    loop = host.loops().get(str(file.resolve()))
    if loop is not None:
        return f"{file}: attached at {loop}"
    loop = run.run(["losetup", "--find", "--show", str(file)]).strip()
    run.run(["pvscan", "--cache", loop], ok_codes=(0, 5))
    return f"{file}: attached at {loop}"


def storage_init(vg: str, file: Path, size: int, run: Runner, host: HostFiles = HostFiles()) -> str:
    """The seed's layout: a VG on a sparse file behind a loop device.

    Idempotent: an existing VG is left alone; the file is attached if it is not.
    """
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "wb") as handle:
            handle.truncate(size)
    loop = host.loops().get(str(file.resolve()))
    if loop is None:
        loop = run.run(["losetup", "--find", "--show", str(file)]).strip()
    vgs = run.run(["vgs", "--reportformat", "json", "-o", "vg_name"])
    if any(row["vg_name"] == vg for row in json.loads(vgs)["report"][0]["vg"]):
        return f"{vg} exists ({loop})"
    run.run(["pvcreate", "--yes", loop])
    run.run(["vgcreate", vg, loop])
    return f"{vg} created on {loop}"
