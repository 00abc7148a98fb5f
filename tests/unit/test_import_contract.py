"""The import contract: the layers of the architecture, checked on the source with ast.

The layers and their ranks are the table under "## Layers" in docs/architecture.md (read below):

    config  <  core  <  host  <  credentials, roster, image  <  engine  <  service, hub, k8s  <  cli

A package may import only packages below it (and itself); packages on the same
level are independent of each other; there is no import cycle between modules
anywhere; and core stays pure: no subprocess, no file I/O, no clock.  Imports
inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"

ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def read_layers(text: str) -> dict[str, int]:
    """The layer table of docs/architecture.md: the first Markdown table after its "## Layers" heading, one row per
    rank, ``| rank | layer | packages | what |`` with the packages in backticks (`reconciler` itself stands for the
    package's own top-level modules, __init__.py and __main__.py).  The page is the one source of truth: the test
    below checks the code against it."""
    lines = text.splitlines()
    start = lines.index("## Layers")
    layers: dict[str, int] = {}
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not cells[0].isdigit():
                continue  # the header and its rule
            for name in re.findall(r"`([^`]+)`", cells[2]):
                layers["" if name == "reconciler" else name] = int(cells[0])
        elif in_table or line.startswith("#"):
            break
    return layers


LAYERS = read_layers(ARCHITECTURE.read_text())
# What core may import from the standard library: nothing that reaches the system or the clock.
# datetime for its arithmetic (lessons, time zones given by config); what reads the clock is refused below.
# urllib.parse only quotes and splits strings (a link's query).
CORE_STDLIB = {
    "__future__",
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",
    "enum",
    "hashlib",
    "ipaddress",
    "json",
    "types",
    "typing",
    "urllib.parse",
}
CORE_FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}
CORE_CLOCK_METHODS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}  # the time is an argument


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # "from . import x" imports the submodule x: count it as such when it is one
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _is_module(candidate):
                    found.append((candidate, node.lineno))
    return found


def _is_module(name: str) -> bool:
    if not name.startswith("reconciler."):
        return False
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def violations(path: Path, source: str | None = None) -> list[str]:
    """Every way the file breaks the contract (empty when it keeps it)."""
    me = module_name(path)
    mine = layer_of(me)
    problems = []
    for target, line in imports(path, source):
        where = f"{path.relative_to(PACKAGE.parent)}:{line}"
        if target == "reconciler" or target.startswith("reconciler."):
            theirs = layer_of(target)
            if theirs == mine:
                continue
            if theirs not in LAYERS or mine not in LAYERS:
                problems.append(f"{where}: {target}: not a known layer (add it to the table in docs/architecture.md)")
            elif LAYERS[theirs] >= LAYERS[mine]:
                how = "a layer above it" if LAYERS[theirs] > LAYERS[mine] else "a layer beside it"
                problems.append(f"{where}: {mine or 'reconciler'} imports {target}, {how}")
        elif mine == "core" and target not in CORE_STDLIB:
            problems.append(f"{where}: core imports {target}: core is pure (no I/O, no subprocess, no clock)")
    if mine == "core":
        tree = ast.parse(source if source is not None else path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CORE_FORBIDDEN_CALLS:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: core calls {node.func.id}()")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CORE_CLOCK_METHODS
            ):
                problems.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: core reads the clock "
                    f"({node.func.attr}()): take the time as an argument"
                )
    return problems


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sources():
        me = module_name(path)
        edges[me] = {t for t, _ in imports(path) if t.startswith("reconciler.") and _is_module(t) and t != me}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-loops."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_layer_table_is_read():
    """Not vacuous: the table in docs/architecture.md gives the known ranks."""
    assert LAYERS["config"] == 0 and LAYERS["core"] == 1 and LAYERS["cli"] > LAYERS["engine"] > LAYERS["host"]
    assert LAYERS[""] == max(LAYERS.values())


def test_every_package_is_a_known_layer():
    """Every package of reconciler/ is in the table of docs/architecture.md, and every package there exists:
    adding or removing a package without updating the map fails here."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(packages - set(LAYERS))
    stale = sorted(set(LAYERS) - {""} - packages)
    assert not missing, f"packages not in the layer table of docs/architecture.md: {missing}"
    assert not stale, f"the layer table of docs/architecture.md names packages that do not exist: {stale}"


def test_every_module_keeps_the_layers():
    problems = [problem for path in sources() for problem in violations(path)]
    assert problems == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_engine_reaches_every_layer_it_needs():
    """Not vacuous: the graph sees real edges across layers."""
    edges = graph()
    assert "reconciler.core.plan" in edges["reconciler.engine.passes"]
    assert "reconciler.host.observe" in edges["reconciler.engine.passes"]
    assert "reconciler.engine.passes" in edges["reconciler.cli.commands"]


@pytest.mark.parametrize(
    "file,source,expected",
    [
        ("core/plan.py", "from ..host import run\n", "core imports reconciler.host.run, a layer above it"),
        ("core/plan.py", "import subprocess\n", "core imports subprocess"),
        ("core/plan.py", "def f():\n    import time\n", "core imports time"),
        ("core/render.py", "def f(p):\n    return open(p).read()\n", "core calls open()"),
        (
            "core/schedule.py",
            "import datetime as dt\ndef f():\n    return dt.datetime.now(dt.timezone.utc)\n",
            "core reads the clock (now())",
        ),
        ("config/load.py", "from ..core.plan import plan\n", "config imports reconciler.core.plan, a layer above it"),
        ("host/accounts.py", "from ..engine.journal import Journal\n", "a layer above it"),
        ("host/mounts.py", "def f():\n    from ..cli import commands\n", "host imports reconciler.cli.commands"),
        ("roster/edit.py", "from ..credentials import outbox\n", "a layer beside it"),
        (
            "service/app.py",
            "from ..hub.config import HUB_PORT\n",
            "service imports reconciler.hub.config, a layer beside it",
        ),
        ("engine/apply.py", "from ..service import teacher\n", "engine imports reconciler.service.teacher"),
    ],
)
def test_a_deliberate_wrong_import_is_caught(file, source, expected):
    problems = violations(PACKAGE / file, source)
    assert any(expected in problem for problem in problems), problems


def test_a_deliberate_cycle_is_caught():
    edges = graph()
    edges["reconciler.core.actions"] = edges["reconciler.core.actions"] | {"reconciler.core.plan"}
    assert any({"reconciler.core.actions", "reconciler.core.plan"} <= set(cycle) for cycle in cycles(edges))


def test_no_decision_reads_a_reason():
    """Reasons are words for people: the core never compares an action's reason to decide anything, so rewording
    a message can never change a plan (the shrink guard decides where the resize is planned)."""
    found = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(isinstance(side, ast.Attribute) and side.attr == "reason" for side in sides):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, found


def test_no_module_of_the_package_is_imported_under_another_name():
    """A module is imported by its own name (``from ..engine import passes``), never renamed on the way in: when
    its name is worse than an alias would be, the module is renamed.  Functions and classes may be aliased."""
    modules = {module_name(path) for path in PACKAGE.rglob("*.py")}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        package = here if path.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
                renamed = [a for a in node.names if a.asname and f"{source}.{a.name}" in modules]
            elif isinstance(node, ast.Import):
                renamed = [a for a in node.names if a.asname and a.name in modules]
            else:
                continue
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {a.name} as {a.asname}" for a in renamed]
    assert not found, found
