#!/usr/bin/env bash
# The test command (README): set up and start what the tests need, then run them all.
# As root nothing is skipped (in CI a skip fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/bootstrap.sh
tests/start-services.sh
exec .venv/bin/python -m pytest "$@"
