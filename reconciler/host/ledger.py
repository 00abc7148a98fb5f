"""The ledgers of the teaching cycle: who got which handout, whose work was collected, whose feedback returned.

Each is one JSON file in the state directory, ``{"format_version": 1, "assignments": {name: {user: entry}}}``,
every entry carrying the uid of the account it was made for: an account made again under the same name is
someone new.  A ledger is read whole and checked; one that cannot be read raises ``LedgerDamaged`` (carrying on
as if it were empty could hand out again over students' work, or collect or return everything again), and the
plan blocks that step of the cycle until it is repaired.  A pass runs the drivers of several students side by
side: each ledger is rewritten (atomically) under its own lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from .fsutil import write_atomic

FORMAT = 1


class LedgerDamaged(RuntimeError):
    """A ledger exists but cannot be read: what it stops is said in the message."""


class Ledger:
    """One ledger file.  ``stops``: what a damaged one stops ("no assignment is handed out"); ``check``: raises
    ValueError (or KeyError, TypeError) for an entry that is not one of this ledger's."""

    _locks: dict[Path, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path, stops: str, check: Callable[[dict], None] = lambda entry: None) -> None:
        self.path, self.stops, self.check = path, stops, check
        with Ledger._guard:
            self.lock = Ledger._locks.setdefault(path, threading.Lock())

    def load(self) -> dict:
        """The ledger as written, checked whole; a new one when there is none yet.  Raises LedgerDamaged."""
        try:
            data = json.loads(self.path.read_text())
            if data.get("format_version") != FORMAT:
                raise ValueError(f"format {data.get('format_version')!r}, not {FORMAT}")
            for people in data["assignments"].values():
                for entry in people.values():
                    if not isinstance(entry["uid"], int) or isinstance(entry["uid"], bool):
                        raise ValueError(f"uid {entry['uid']!r}")
                    self.check(entry)
            return data
        except FileNotFoundError:
            return {"format_version": FORMAT, "assignments": {}}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerDamaged(f"{self.path} cannot be read ({exc}); {self.stops} until it is repaired") from exc

    def entries(self, uids: Mapping[str, int]) -> dict[str, dict[str, dict]]:
        """Assignment -> user -> entry, counting only the entries of the account that has the name now
        (``uids``: username -> uid).  Raises LedgerDamaged."""
        return {
            name: {user: entry for user, entry in people.items() if uids.get(user) == entry["uid"]}
            for name, people in self.load()["assignments"].items()
        }

    def entry(self, name: str, user: str) -> dict | None:
        """The entry as written (whatever its uid).  Raises LedgerDamaged."""
        return self.load()["assignments"].get(name, {}).get(user)

    def record(self, name: str, user: str, entry: dict) -> None:
        """Write ``user``'s entry for ``name`` (with its "uid"), replacing theirs."""
        with self.lock:
            data = self.load()
            data["assignments"].setdefault(name, {})[user] = entry
            write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
