"""A progress line for long work, on a terminal only: quiet in logs, CI and pipes.

Off when stderr is not a TTY, when NO_COLOR is set, or with ``reconcile --quiet``.  Each line carries the
time since the command started, so two minutes of image build are never two minutes of silence.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.on = not quiet and "NO_COLOR" not in os.environ and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        if self.on:
            print(f"[{time.monotonic() - self.started:6.1f} s] {text}", file=self.stream, flush=True)


def of(args) -> Progress:
    return Progress(quiet=getattr(args, "quiet", False))
