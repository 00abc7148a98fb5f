"""End of term: export a person's home to a checked archive, archive everyone in ``status: archived``, restore.

An export takes the pass lock only for the instant its consistent view is made (the volume backend's
``open_view``: a paused-writes copy, a snapshot or the unmounted volume), then reads that view without the
lock, so the daemon's passes go on while a whole class is exported.  One export runs at a time (its own lock:
the views live in one scratch directory that a new export clears of what a killed one left).

Each archive is verified against its manifest before it is reported done: what an ``archive`` disables has
been read back whole.  A restore holds the pass lock throughout (no pass may unmount the home under it),
checks the archive, runs tar as the student and never replaces a file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable

from ..config.classroom import Classroom
from ..config.site import Site
from ..core.actions import Action, Kind, Op
from ..core.archive import MANIFEST_SUFFIX, Manifest, archive_name, manifest_name, restore_problems
from ..host import tarball
from ..host import lock
from ..host.drivers import Busy
from ..host.facts import HostFiles
from ..host.fsutil import private_dir, write_atomic
from ..host.mounts import is_mounted
from ..host.run import CommandFailed, Runner
from ..host import volumes
from ..host.volumes import backend_for, layout_for
from ..host.volumes.base import NoVolume, View
from .journal import record_edit

SCRATCH = "snapshots"  # <state>/snapshots: views being read, copies of images


@dataclass(frozen=True)
class Exported:
    user: str
    archive: Path | None = None
    manifest: Manifest | None = None
    how: str = ""  # how the view was taken
    problem: str = ""  # why there is no archive (or why it does not verify)
    waiting: bool = False  # the volume cannot be read now (a server still ending): later
    missing: bool = False  # no volume yet (the next pass creates it)

    @property
    def ok(self) -> bool:
        return self.archive is not None and not self.problem


def exportable(classroom: Classroom) -> list[str]:
    """Everyone in classroom.yaml whose files still exist (every status but purged)."""
    return [p.username for p in classroom.people if p.status != "purged"]


def export(
    site: Site,
    users: Iterable[str],
    out: Path,
    *,
    now: dt.datetime | None = None,
    on_start: Callable[[str], None] = lambda user: None,
    actor: str = "root",
    source: str = "cli",
) -> list[Exported]:
    """Export each of ``users`` into ``out`` (made 0700 if new); one failing person never stops the others.
    Each archive written is journaled with ``actor`` (who read whose files)."""
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = private_dir(site.paths.state / SCRATCH)
    results = []
    with lock.hold(site.paths.state / "export.lock", exclusive=True, timeout=site.lock_timeout):
        _clear(site, scratch)
        for user in users:
            on_start(user)
            done = _export_one(site, user, out, scratch, now or dt.datetime.now(dt.UTC))
            if done.archive is not None:
                record_edit(
                    site.paths.journal,
                    actor,
                    Action(Op.CREATE, Kind.ARCHIVE, user, after=str(done.archive), reason=done.how),
                    "verified" if done.ok else f"does not verify: {done.problem}",
                    source=source,
                )
            results.append(done)
    return results


def _clear(site: Site, scratch: Path) -> None:
    """Unmount and remove the views a killed export left (their copies or snapshots too)."""
    if not any(scratch.iterdir()) and not volumes.about(site).views_elsewhere:
        return
    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout) as held:
        backend = backend_for(site, Runner().holding(held.fd))
        backend.clear_views(scratch)


def _export_one(site: Site, user: str, out: Path, scratch: Path, now: dt.datetime) -> Exported:
    try:
        with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout) as held:
            backend = backend_for(site, Runner().holding(held.fd))
            view = backend.open_view(user, scratch)
    except Busy as exc:
        return Exported(user, problem=str(exc), waiting=True)
    except NoVolume as exc:
        return Exported(user, problem=str(exc), missing=True)
    except (RuntimeError, OSError) as exc:  # no volume, no room for a copy, mount failed
        return Exported(user, problem=str(exc))
    try:
        done = _write(site, view, out, now)
    except (RuntimeError, OSError) as exc:
        done = Exported(user, how=view.how, problem=str(exc))
    except BaseException:
        _close(site, view)
        raise
    closing = _close(site, view)
    return dataclasses.replace(done, problem="; ".join(filter(None, [done.problem, closing])))


def _close(site: Site, view: View) -> str:
    """Unmount the view and drop its copy or snapshot, under the pass lock (an LV deactivated here must not race a
    pass that mounts it); what went wrong (the next pass clears what is left)."""
    try:
        with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout) as held:
            backend_for(site, Runner().holding(held.fd)).close_view(view)
    except (RuntimeError, OSError) as exc:
        return f"its view at {view.path} is left for the next pass to clear: {exc}"
    return ""


def clear_stale(site: Site, run: Runner) -> None:
    """Called by applying passes (which hold the pass lock): views a killed export left would keep their person's
    volume from being attached (a second loop device, a mounted snapshot); cleared when no export is running."""
    scratch = site.paths.state / SCRATCH
    if not scratch.is_dir() or not any(scratch.iterdir()):
        return
    try:
        with lock.hold(site.paths.state / "export.lock", exclusive=True, timeout=0):
            backend_for(site, run).clear_views(scratch)
    except lock.LockBusy:
        pass  # an export is running: its views are in use


def images_dir(site: Site) -> Path | None:
    """Where sparse volume images live (the loop backend), whose promised space an export must leave alone."""
    return volumes.about(site).images(site)


def _write(site: Site, view: View, out: Path, now: dt.datetime) -> Exported:
    entries = tarball.walk(view.path)
    images = images_dir(site)
    tarball.check_room(
        out,
        sum(e.allocated for e in entries if e.kind == "file") + (1 << 20),
        f"the archive of {view.username}",
        images,
    )
    name = archive_name(view.username, now.date(), f"{now:%H%M%S}", os.listdir(out))
    keep = tarball.reserve(out) + (tarball.promised(out, images) if images is not None else 0)
    size, digest = tarball.write(view.path, out / name, keep)
    manifest = Manifest(
        user=view.username,
        created=now.isoformat(timespec="seconds"),
        view=view.how,
        archive=name,
        archive_bytes=size,
        archive_sha256=digest,
        volume_size=_volume_size(view.path),
        entries=tuple(entries),
    )
    write_atomic(out / manifest_name(name), manifest.to_json())
    problems = tarball.verify(out / name, manifest)
    if problems:  # never taken for a good archive later (latest(), `archive`, a download): kept aside to look at
        bad = out / (name + ".bad")
        os.replace(out / name, bad)
        os.replace(out / manifest_name(name), out / (manifest_name(name) + ".bad"))
        return Exported(view.username, bad, manifest, view.how, "; ".join(problems[:3]))
    return Exported(view.username, out / name, manifest, view.how)


def _volume_size(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_blocks * vfs.f_frsize


def latest(out: Path, user: str) -> Path | None:
    """The newest archive of ``user`` in ``out`` whose manifest is beside it."""
    if not out.is_dir():
        return None
    found = []
    for path in out.glob(f"{user}-*{MANIFEST_SUFFIX}"):
        try:
            manifest = Manifest.from_json(path.read_text())
        except (OSError, ValueError, KeyError):  # not one of ours, or damaged: not an archive of theirs
            continue
        if manifest.user == user and (out / manifest.archive).exists():
            found.append((manifest.created, out / manifest.archive))
    return max(found)[1] if found else None


def to_archive(classroom: Classroom) -> list[str]:
    return [p.username for p in classroom.people if p.status == "archived"]


# --- restore -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    user: str
    target: Path | None = None
    files: int = 0
    problems: tuple[str, ...] = ()


def restore(
    site: Site, classroom: Classroom, user: str, archive: Path, into: str | None = None, actor: str = "root"
) -> Restored:
    """Unpack ``archive`` into ``user``'s mounted home (or a new folder ``into`` there): refused, with nothing
    changed, when the archive does not verify, a file would be replaced, or it does not fit."""
    person = next((p for p in classroom.people if p.username == user), None)
    if person is None or person.status != "active":
        return Restored(
            user,
            problems=(
                f"{user} is not an active person in classroom.yaml: a restore goes into an active person's volume",
            ),
        )
    if into is not None and (not into or "/" in into or into.startswith(".") or into in ("lost+found",)):
        return Restored(user, problems=(f"--into {into!r}: a new folder's name in the home (no '/', not hidden)",))
    side = archive.with_name(manifest_name(archive.name))
    if not side.exists():
        return Restored(user, problems=(f"{side} is missing: a restore checks the archive against its manifest",))
    manifest = Manifest.from_json(side.read_text())
    problems = tarball.verify(archive, manifest)
    if problems:
        return Restored(user, problems=tuple(problems))
    home = site.paths.home(user)
    with lock.hold(site.paths.lock, exclusive=True, timeout=site.lock_timeout):
        if not is_mounted(HostFiles(), home, layout_for(site).source(user)):
            return Restored(user, problems=(f"{user}'s volume is not mounted at {home}: run reconcile first",))
        account = pwd.getpwnam(user)
        target = home if into is None else home / into
        before = {} if into is not None else tarball.existing(home, manifest)
        problems = restore_problems(
            manifest, tarball.free(home), before, into, into is not None and os.path.lexists(target)
        )
        if problems:
            return Restored(user, problems=tuple(problems))
        try:
            tarball.restore(archive, home, account.pw_uid, account.pw_gid, into)
        except CommandFailed as exc:
            return Restored(user, target, problems=(str(exc),))
        after = tarball.check_restored(target, manifest, before)
    record_edit(
        site.paths.journal,
        actor,
        Action(Op.UPDATE, Kind.ARCHIVE, user, before=str(archive), after=str(target), reason="restored"),
        "checked" if not after else f"{len(after)} problem(s)",
        source="cli",
    )
    return Restored(user, target, manifest.files, tuple(after))
