"""The documentation site (docs/, Sphinx with myst-parser) builds without a single warning, nitpicky: a broken link
between pages or to a heading, a page outside every toctree, a reference page the code no longer generates fails
here.  The README's links into the tree must point at files that exist, and docs/architecture.md's module map must
name every module of reconciler/ (and no module that is gone).  External links are not checked: no network here."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "reconciler"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_site_builds_without_a_warning(tmp_path):
    assert importlib.util.find_spec("sphinx") and importlib.util.find_spec("myst_parser"), (
        "sphinx and myst-parser are in the test extras (tests/bootstrap.sh installs them)"
    )
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stdout + done.stderr
    assert (tmp_path / "html" / "index.html").is_file()
    # the generated reference is really there: every command, every path of the API, the nested models
    cli = (tmp_path / "html" / "reference" / "cli.html").read_text()
    assert "reconcile image push-nodes" in cli and "--allow-mass-disable" in cli
    api = (tmp_path / "html" / "reference" / "rest-api.html").read_text()
    assert "/api/students/{username}/reset-password" in api
    assert "HubSettings" in (tmp_path / "html" / "reference" / "site-yaml.html").read_text()


def relative_links(markdown: Path) -> list[str]:
    """The links of a Markdown file that point into the tree (not a URL, not an anchor of the same page)."""
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.S)  # links in code blocks are not links
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


def test_readme_links_point_at_files_that_exist():
    broken = []
    for readme in (ROOT / "README.md", ROOT / "tests" / "bench" / "README.md"):
        links = relative_links(readme)
        assert links, f"{readme}: no links found (the pattern is wrong)"
        for target in links:
            if not (readme.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{readme.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_readme_stays_short():
    """A newcomer's first page: what it is, the two commands, a minimal file, where to read next."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def module_map() -> str:
    text = (DOCS / "architecture.md").read_text()
    start = text.index("\n## Modules\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_module_map_names_every_module():
    """docs/architecture.md's map of the code names every module file of reconciler/ by its path, so a module
    added without a line there fails (package __init__.py and __main__.py may be left out)."""
    named = module_map()
    modules = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py")
    ]
    assert len(modules) > 50
    missing = [module for module in modules if f"| `{module}` |" not in named]
    assert not missing, f"modules missing from the module map in docs/architecture.md: {missing}"


def test_the_module_map_names_no_module_that_is_gone():
    named = re.findall(r"^\| `([^`]+\.py)` \|", module_map(), flags=re.M)
    assert named
    gone = [module for module in named if not (PACKAGE / module).is_file()]
    assert not gone, f"docs/architecture.md's module map names modules that do not exist: {gone}"
