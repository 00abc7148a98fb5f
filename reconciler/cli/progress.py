"""A progress line for long work, on a terminal only: quiet in logs, CI and pipes.

Off when stderr is not a TTY (a pipe, a log, CI) or with ``reconcile --quiet``.  NO_COLOR does not turn them off:
it is about colour only (https://no-color.org), and progress lines have none.  Each line carries the time since the
command started, so two minutes of image build are never two minutes of silence.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def terminal(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def colour_on(stream) -> bool:
    """Colour only on a terminal, and not when NO_COLOR is set to anything but "" (https://no-color.org: "present
    and not an empty string")."""
    return not os.environ.get("NO_COLOR") and terminal(stream)


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.on = not quiet and terminal(self.stream)
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        if self.on:
            print(f"[{time.monotonic() - self.started:6.1f} s] {text}", file=self.stream, flush=True)


def of(args) -> Progress:
    return Progress(quiet=getattr(args, "quiet", False))
