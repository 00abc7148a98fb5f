"""Pyflakes' checks (ruff's F rules) over the whole tree: an undefined name or a broken import is a bug that
only shows on the one path that reaches it, so it is caught here, in seconds, for every path."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_undefined_names_or_broken_imports():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is in the test extras (tests/bootstrap.sh installs it)"
    done = subprocess.run([ruff, "check", "--no-cache", "--select", "F,E9", "--output-format", "concise",
                           "reconciler", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
