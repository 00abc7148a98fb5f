#!/usr/bin/env bash
# The test command (README): set up what the tests need, then run them all.  As root, nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
