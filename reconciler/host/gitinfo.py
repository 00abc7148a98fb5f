"""Which git commit a file comes from, for status.json and the teacher API's git refusal."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision(path: Path) -> dict | None:
    """The commit the file comes from, when it lives in a git checkout (and whether it has local edits)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = (
            subprocess.run(
                ["git", "-C", str(path.parent), "status", "--porcelain", "--", path.name],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            != ""
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": head.stdout.strip(), "dirty": dirty}


def log_line(path: Path) -> str | None:
    """The last commit that changed the file: "abc1234 by Ann Teacher, 2 hours ago: add the new students"."""
    try:
        done = subprocess.run(
            ["git", "-C", str(path.parent), "log", "-1", "--format=%h by %an, %ar: %s", "--", path.name],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None
