"""CLI conventions: exit 64 for usage errors, --version, help for every option, completion, colour, and no
host change with the built-in site outside the checkout.  The real command, as a subprocess (no root)."""

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.main import build_parser
from reconciler.core.actions import Action, Kind, Op, Plan
from reconciler.core.render import render_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "classroom.yaml"


def cli(*args, cwd=ROOT, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("RECONCILE_SITE", "NO_COLOR")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, cwd=cwd, env={**environment, **env}
    )


@pytest.mark.parametrize("args", [["--dryrun"], ["status", "--jsn"], ["image", "buidl"], ["completion", "fish"]])
def test_usage_errors_exit_64_never_2(args):
    done = cli(*args)
    assert done.returncode == 64, done.stderr  # 2 is "changes pending": a typo must never pass a CI check
    assert "usage:" in done.stderr and "(exit 64)" in done.stderr


def test_version_names_the_package_the_hub_and_the_site(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("state_dir: state\n")
    done = cli("--site", str(site), "--version")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("reconcile ") and lines[1].startswith("jupyterhub 6.1.1")
    assert lines[2] == f"site: {site}"


def walk(parser: argparse.ArgumentParser, path: str = "reconcile"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_command_and_option_has_help():
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in walk(build_parser())
        if not action.help
    ]
    assert missing == []
    assert len({path for path, _ in walk(build_parser())}) > 20  # every subcommand was walked into


def test_shell_completion_knows_the_commands():
    done = cli("completion", "bash")
    assert done.returncode == 0
    for word in ("mount-all", "import-csv", "--dry-run", "--allow-mass-disable", "render"):
        assert word in done.stdout


def test_the_built_in_site_outside_the_checkout_says_so_and_refuses_to_change_the_host(tmp_path):
    (tmp_path / "classroom.yaml").write_text(EXAMPLE.read_text())
    applied = cli(cwd=tmp_path)
    assert applied.returncode == 64
    assert applied.stderr.startswith("site: built in")  # the first line says which site is in use
    assert "pass --site site.yaml or set RECONCILE_SITE" in applied.stderr
    assert not (tmp_path / "state").exists()  # nothing made
    for command in (["mount-all"], ["watch"], ["up"], ["reset-password", "jdoe"]):
        assert cli(*command, cwd=tmp_path).returncode == 64, command
    looked = cli("validate", cwd=tmp_path)  # reading is fine, and it still says which site
    assert looked.returncode == 0 and looked.stderr.startswith("site: built in")


def test_plans_are_coloured_only_when_asked():
    plan = Plan(
        "c", (Action(Op.CREATE, Kind.GROUP, "c-students"), Action(Op.DISABLE, Kind.MOUNT, "ann", before="/h/ann"))
    )
    coloured, plain = render_text(plan, colour=True), render_text(plan)
    assert "\x1b[32m+\x1b[0m group" in coloured and "\x1b[31m-\x1b[0m mount" in coloured
    assert "\x1b[" not in plain
    piped = cli("-f", str(EXAMPLE), "--site", str(ROOT / "examples" / "site.yaml"), "validate")
    assert "\x1b[" not in piped.stdout + piped.stderr  # a pipe is never a terminal


class Terminal:
    def __init__(self):
        self.lines = []

    def isatty(self):
        return True

    def write(self, text):
        self.lines.append(text)

    def flush(self):
        pass


def test_progress_only_on_a_terminal_and_never_with_quiet(monkeypatch):
    from reconciler.cli.progress import Progress

    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = Terminal()
    Progress(stream=terminal)("debootstrap")
    assert "s] debootstrap" in "".join(terminal.lines)
    silent = Terminal()
    Progress(quiet=True, stream=silent)("debootstrap")
    assert silent.lines == []
    piped = io.StringIO()  # a pipe or a log file
    Progress(stream=piped)("debootstrap")
    assert piped.getvalue() == ""


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("", True), ("1", False), ("0", False)])
def test_no_color_turns_off_colour_only_and_only_when_not_empty(monkeypatch, no_color, coloured):
    """https://no-color.org: NO_COLOR "present and not an empty string" (any value, "0" too) means no colour
    codes; the progress lines stay, they are a terminal's, not a colour."""
    from reconciler.cli.progress import Progress, colour_on

    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    terminal = Terminal()
    plan = Plan("c", (Action(Op.CREATE, Kind.GROUP, "c-students"),))
    print(render_text(plan, colour=colour_on(terminal)), file=terminal)
    Progress(stream=terminal)("applying")
    out = "".join(terminal.lines)
    assert ("\x1b[32m+\x1b[0m group" in out) is coloured
    assert ("\x1b[" in out) is coloured
    assert "s] applying" in out  # progress, with or without colour
    assert colour_on(io.StringIO()) is False  # never in a pipe


def test_a_subcommand_option_is_never_taken_for_an_abbreviation_of_a_top_level_one():
    args = build_parser().parse_args(["credentials", "slips", "--all", "--out", "slips.html"])
    assert args.all is True and str(args.out) == "slips.html"  # not --allow-mass-disable, not "ambiguous"
    assert cli("--allow-mass", "--dry-run").returncode == 64  # and no guessing at the top level either


def test_commands_remember_validated_files_until_they_change(tmp_path):
    """The real CLI keeps what it validated (config.cache) and validates again on the first changed byte."""
    cache = tmp_path / "cache"
    site = tmp_path / "site.yaml"
    site.write_text(f"state_dir: {tmp_path / 'state'}\n")
    roster = tmp_path / "classroom.yaml"
    roster.write_text(EXAMPLE.read_text())
    first = cli("--site", str(site), "validate", "-f", str(roster), RECONCILE_CACHE=str(cache))
    assert first.returncode == 0, first.stderr
    assert len(list(cache.glob("*.pickle"))) == 2  # site.yaml and classroom.yaml
    again = cli("--site", str(site), "validate", "-f", str(roster), RECONCILE_CACHE=str(cache))
    assert again.stdout == first.stdout
    roster.write_text(EXAMPLE.read_text().replace("version: 1", "version: 2", 1))
    broken = cli("--site", str(site), "validate", "-f", str(roster), RECONCILE_CACHE=str(cache))
    assert broken.returncode != 0 and f"{roster}:" in broken.stderr and "version" in broken.stderr
    off = cli("--site", str(site), "validate", "-f", str(tmp_path / "classroom.yaml"), RECONCILE_CACHE="off")
    assert off.returncode == broken.returncode


def _funcs(parser: argparse.ArgumentParser) -> dict[str, object]:
    """Every (sub)command's function, by its full name: "image build" -> image_build."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                func = child.get_default("func")
                if func is not None:
                    out[name] = func
                out |= {f"{name} {inner}": f for inner, f in _funcs(child).items()}
    return out


def test_every_command_module_registers_its_own_commands_and_only_those():
    from reconciler.cli.main import COMMAND_MODULES
    from reconciler.cli.parser import Parser

    registered = {}
    for module in COMMAND_MODULES:
        top = Parser(prog="reconcile")
        module.register(top.add_subparsers())
        funcs = _funcs(top)
        assert funcs, f"{module.__name__} registers nothing"
        assert {f.__module__ for f in funcs.values()} == {module.__name__}, funcs
        registered |= funcs
    whole = _funcs(build_parser())
    assert set(whole) - set(registered) == {"completion"}  # the parser's own: it prints the parser
    assert all(whole[name] is registered[name] for name in registered)
