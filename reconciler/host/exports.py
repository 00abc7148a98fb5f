"""The homes over NFS for the swarm's workers: observed from two files, changed with exportfs.

Observing reads the kernel's export table as exportfs keeps it (/var/lib/nfs/etab) and the classroom's exports
file, once each, keeping our paths only (the homes and the course folder: an admin's own exports are not ours).
The drivers write the file first (so a reboot brings back what is in force) and then change the kernel's table
one client at a time with ``exportfs -i -o`` / ``exportfs -u``, and read the table back: an export is never
claimed that the kernel does not show.  A home is exported only while its quota volume is mounted there (checked
just before, and the ``mountpoint`` option makes mountd refuse it otherwise).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping

from ..config.site import SHARED_VOLUME, Paths
from ..core.actions import Action, Kind, Op
from ..core.exports import Export, ExportPolicy, parse_etab, parse_exports, render_file
from .drivers import Context, driver
from .facts import HostFiles
from .fsutil import write_atomic
from .mounts import mounted_source
from .run import CommandFailed

Live = Mapping[str, Mapping[str, frozenset[str]]]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def observe(paths: Paths, file: Path, host: HostFiles = HostFiles()) -> tuple[Live, Mapping[str, str]]:
    """The kernel's table and the exports file, our paths only (one read of each)."""
    live = {
        path: MappingProxyType(clients)
        for path, clients in parse_etab(_read(host.nfs_etab)).items()
        if paths.volume_of(path) is not None
    }
    lines = {path: line for path, line in parse_exports(_read(file)).items() if paths.volume_of(path) is not None}
    return MappingProxyType(live), MappingProxyType(lines)


def _live(ctx: Context, path: str) -> Mapping[str, frozenset[str]]:
    return parse_etab(_read(ctx.host.nfs_etab)).get(path, {})


FILE_LOCK = threading.Lock()  # people are applied side by side (engine/apply.py): one rewrite at a time


def _write_line(file: Path, path: str, line: str | None) -> bool:
    """Put (or, with None, drop) the path's line in the exports file; True when the file changed."""
    with FILE_LOCK:
        return _rewrite(file, path, line)


def _rewrite(file: Path, path: str, line: str | None) -> bool:
    lines = parse_exports(_read(file))
    if lines.get(path) == line:
        return False
    if line is None:
        lines.pop(path)
    else:
        lines[path] = line
    if not lines:
        file.unlink(missing_ok=True)
    else:
        write_atomic(file, render_file(lines), mode=0o644)  # exports(5) files are readable; nothing secret
    return True


def wanted(ctx: Context, username: str) -> Export:
    """The export this person's home (or the course folder) should have, re-checked against the host now."""
    policy: ExportPolicy | None = ctx.exports
    if policy is None:
        raise RuntimeError("hub.swarm.homes is not nfs: nothing is exported")
    home = ctx.paths.home(username)
    mounted = mounted_source(ctx.host, home) is not None
    if username == SHARED_VOLUME and not mounted:
        if not home.is_dir():
            raise RuntimeError(f"the course folder {home} does not exist yet (`reconcile hub` makes it)")
        return policy.export(str(home), mountpoint=False)  # a plain folder on this server's disk
    if not mounted:
        raise RuntimeError(f"{home} has no volume mounted: it is exported only once it has (never the folder below)")
    return policy.export(str(home))


@driver(Kind.EXPORT, Op.CREATE)
@driver(Kind.EXPORT, Op.UPDATE)
def export(action: Action, ctx: Context) -> str:
    want = wanted(ctx, action.target)
    assert ctx.exports is not None
    changed = _write_line(Path(ctx.exports.file), want.path, want.line)  # first: what a reboot brings back
    live = _live(ctx, want.path)
    if want.in_force(live) and not changed:
        return "already"
    for client in want.clients:
        _exportfs(ctx, ["-i", "-o", want.options, f"{client}:{want.path}"])
    for client in sorted(set(live) - set(want.clients)):
        _exportfs(ctx, ["-u", f"{client}:{want.path}"])
    now = _live(ctx, want.path)
    if not want.in_force(now):
        raise RuntimeError(f"exportfs succeeded but the kernel's table shows {dict(now) or 'nothing'} for {want.path}")
    return "exported"


@driver(Kind.EXPORT, Op.DISABLE)
def withdraw(action: Action, ctx: Context) -> str:
    """Withdraw every client's export of the home, then its line in the file."""
    path = str(ctx.paths.home(action.target))
    live = _live(ctx, path)
    for client in sorted(live):
        _exportfs(ctx, ["-u", f"{client}:{path}"])
    changed = ctx.exports_file is not None and _write_line(Path(ctx.exports_file), path, None)
    if _live(ctx, path):
        raise RuntimeError(f"exportfs -u succeeded but {path} is still in the kernel's export table")
    return "withdrawn" if live or changed else "already"


def _exportfs(ctx: Context, args: list[str]) -> None:
    try:
        ctx.run.run(["exportfs", *args])
    except FileNotFoundError:
        raise RuntimeError(
            "exportfs is not installed: hub.swarm.homes: nfs needs nfs-kernel-server on this server "
            "(apt install nfs-kernel-server)"
        ) from None
    except CommandFailed as exc:
        raise RuntimeError(f"exportfs {' '.join(args)}: {exc.stderr or exc}") from None
