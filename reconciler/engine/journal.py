"""Append-only record of every applied action: <state_dir>/journal.jsonl.

It records what was done and how it ended, never a secret: password actions
carry only the placeholder the plan shows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..core.actions import Action


class Journal:
    def __init__(self, path: Path, pass_id: str, actor: str | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.pass_id, self.actor = path, pass_id, actor  # actor: the teacher behind an API write
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, action: Action, result: str, detail: str = "") -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "pass": self.pass_id,
            **({"actor": self.actor} if self.actor else {}),
            **action.to_json(),
            "result": result,
            "detail": detail,
        }
        line = (json.dumps(entry) + "\n").encode()
        end = os.fstat(self._fd).st_size
        try:
            while line:
                line = line[os.write(self._fd, line):]
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, end)  # never leave half a line: the journal stays one JSON per line
            except OSError:
                pass
            raise

    def close(self) -> None:
        os.close(self._fd)


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def record_edit(path: Path, actor: str, action: Action, detail: str = "", source: str = "edit") -> None:
    """One action done outside a pass (a roster edit, a password reset), in its own journal entry."""
    journal = Journal(path, time.strftime(f"{source}-%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}", actor=actor)
    try:
        journal.record(action, "ok", detail)
    finally:
        journal.close()
