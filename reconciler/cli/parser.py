"""The parser's parts every command module registers its subcommands with (``command`` adds one).

Each command module has ``register(sub)``, which adds its own subcommands to the top-level parser's
subparsers (``cli.main`` calls them in order); no module registers another's.  Every command module is
imported to build the parser, so what only one command needs (the hub's code, the image build, jinja2,
psutil, cryptography) is imported inside that command's functions: `reconcile --dry-run` loads none of it.
"""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 64  # EX_USAGE: a mistyped option, or a command that needs a site file it was not given


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which is also "changes pending": here it is 64 (EX_USAGE).

    No abbreviations: they are guesses, and the top level would take a subcommand's `--all` for an abbreviation
    of `--allow-mass-disable` (or refuse it as ambiguous).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (exit {EXIT_USAGE})\n")


class Version(argparse.Action):
    """--version: the package, JupyterHub, and the site file in use (looked up only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        from ..config.site import find_site

        def of(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        site = find_site(getattr(namespace, "site", None))
        print(
            f"reconcile {of('classroom-reconciler')}\njupyterhub {of('jupyterhub')}, dockerspawner "
            f"{of('dockerspawner')}\nsite: {site if site is not None else 'built in (no site.yaml found)'}"
        )
        parser.exit(0)


def add_common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """-f and --site: on the top level, and on every subcommand that reads the files (suppressed there, so a
    value given before the subcommand is kept)."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-f",
        "--file",
        default=default,
        metavar="classroom.yaml",
        help="the desired state (default: site.yaml's classroom_file, else ./classroom.yaml)",
    )
    parser.add_argument(
        "--site",
        default=default,
        metavar="site.yaml",
        help="host settings (default: $RECONCILE_SITE, else /etc/classroom/site.yaml, else built in)",
    )


def command(sub, name: str, func, text: str, *, common: bool = True) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` running ``func``, with -f and --site unless ``common`` is False."""
    parser = sub.add_parser(name, help=text, description=text)  # a Parser too (argparse uses the parent's class)
    if common:
        add_common_options(parser, suppress=True)
    parser.set_defaults(func=func)
    return parser
