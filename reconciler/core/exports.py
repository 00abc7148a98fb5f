"""The NFS exports the swarm's workers mount the homes from (``hub.swarm.homes: nfs``), as data.

One export per mounted home (and the course folder), each limited to the workers' addresses in site.yaml:

    /srv/classroom/homes/ann 10.0.5.11(rw,sync,root_squash,sec=sys,no_subtree_check,mountpoint) 10.0.5.12(...)

- ``root_squash`` and ``sec=sys``: a worker's root is nobody on the manager; the person's server runs as their
  UID, which the home's 0700 mode lets in, and nobody else;
- ``mountpoint``: mountd refuses the export while the quota volume is not mounted there, so a worker can never
  write into the directory below it (onto the manager's own disk, past the quota);
- ``sync``: a write is on the manager's disk when the worker's write returns, and the quota's ENOSPC reaches the
  student's program.

The same lines are what the driver writes to the classroom's file in /etc/exports.d (so exports survive a reboot:
nfs-server runs ``exportfs -r`` at boot) and what the kernel's table (/var/lib/nfs/etab) must show.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping

from ..config.site import HubSettings

HOME_OPTIONS = ("rw", "sync", "root_squash", "sec=sys", "no_subtree_check")
# What the kernel's table must show for an export of ours to count as in force (etab spells every option out,
# "secure" included: requests only from privileged ports, which a student's server cannot use), and what it
# must not (an option added by hand that opens the homes).
REQUIRED = frozenset({"rw", "sync", "root_squash", "sec=sys", "no_subtree_check", "secure"})
FORBIDDEN = frozenset({"insecure", "no_root_squash", "async", "all_squash"})


@dataclass(frozen=True)
class ExportPolicy:
    """What the site wants exported, and where the classroom's exports file lives."""

    clients: tuple[str, ...]  # the workers' addresses
    file: str  # /etc/exports.d/classroom-<name>.exports

    def export(self, path: str, *, mountpoint: bool = True) -> Export:
        options = HOME_OPTIONS + (("mountpoint",) if mountpoint else ())
        return Export(path, self.clients, ",".join(options))


@dataclass(frozen=True)
class Export:
    path: str
    clients: tuple[str, ...]
    options: str

    @property
    def line(self) -> str:
        """The exports(5) line."""
        return f"{self.path} " + " ".join(f"{client}({self.options})" for client in self.clients)

    def in_force(self, live: Mapping[str, frozenset[str]] | None) -> bool:
        """Does the kernel's table (client -> options) export exactly this?"""
        if live is None or set(live) != set(self.clients):
            return False
        required = REQUIRED | ({"mountpoint"} if "mountpoint" in self.options.split(",") else set())
        return all(required <= options and not FORBIDDEN & options for options in live.values())


DEFAULT_DIR = "/etc/exports.d"


def exports_file(hub: HubSettings | None, classroom: str) -> str:
    """The classroom's exports file (also when NFS is off: exports left from before are withdrawn)."""
    where = hub.swarm.exports_dir if hub is not None and hub.swarm is not None else DEFAULT_DIR
    return f"{str(where).rstrip('/')}/classroom-{classroom}.exports"


def policy(hub: HubSettings | None, classroom: str) -> ExportPolicy | None:
    """None unless the students' servers run on swarm workers that mount the homes over NFS."""
    if hub is None or hub.spawner != "swarm" or hub.swarm is None or hub.swarm.homes != "nfs":
        return None
    return ExportPolicy(
        tuple(sorted({w.address for w in hub.swarm.workers}, key=_address_key)), exports_file(hub, classroom)
    )


def _address_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))


def parse_exports(text: str) -> dict[str, str]:
    """path -> its line, from an exports(5) file written by render_file (comments and blank lines skipped)."""
    lines = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines[line.split()[0]] = line
    return lines


def parse_etab(text: str) -> dict[str, dict[str, frozenset[str]]]:
    """path -> client -> options, from the kernel's export table as exportfs keeps it (/var/lib/nfs/etab:
    one ``path<TAB>client(options)`` line per client)."""
    table: dict[str, dict[str, frozenset[str]]] = {}
    for raw in text.splitlines():
        path, _, rest = raw.strip().partition("\t") if "\t" in raw else raw.strip().partition(" ")
        rest = rest.strip()
        if not path or "(" not in rest or not rest.endswith(")"):
            continue
        client, _, options = rest[:-1].partition("(")
        table.setdefault(path, {})[client] = frozenset(options.split(","))
    return table


HEADER = (
    "# Written by reconcile (hub.swarm.homes: nfs): one line per mounted home, for the workers only.\n"
    "# Edits are undone by the next pass; change site.yaml instead.\n"
)


def render_file(lines: Mapping[str, str]) -> str:
    """The classroom's exports file: the header, then the lines by path."""
    return HEADER + "".join(lines[path] + "\n" for path in sorted(lines))
