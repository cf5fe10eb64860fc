#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite: lint, types, tests.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh --test
"$PYTHON" -m ruff check src tests docs/examples
"$PYTHON" -m mypy src/isolate
# The example programs use only the public API, and must type-check against it (strict).
"$PYTHON" -m mypy docs/examples
# Not exec'd: where CI starts this script as pid 1 of a pid namespace, bash stays pid 1 and
# reaps what is reparented to it, so pytest's own check for leftover children sees only its own.
"$PYTHON" -m pytest -p no:cacheprovider "$@"
