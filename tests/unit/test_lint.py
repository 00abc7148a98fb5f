"""ruff over the whole tree, with the rules in pyproject.toml: pyflakes (an undefined name or a broken import is a
bug that only shows on the one path that reaches it), bugbear, pyupgrade and simplify; and one format for every
file, so a diff shows what changed and nothing else."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is in the test extras (tests/bootstrap.sh installs it)"
    return ruff


def test_lint_rules_pass():
    done = subprocess.run(
        [_ruff(), "check", "--no-cache", "--output-format", "concise", "reconciler", "tests", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_tree_is_formatted():
    done = subprocess.run(
        [_ruff(), "format", "--no-cache", "--check", "reconciler", "tests", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, "run `ruff format reconciler tests docs`:\n" + done.stdout + done.stderr


def test_no_two_test_modules_share_a_name():
    """The tiers' folders are no packages: pytest imports each test module by its file name, and a second module
    of the same name stops the whole run at collection."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
