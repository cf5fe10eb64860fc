#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite: lint, types, tests.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash scripts/install.sh --test
"$PYTHON" -m ruff check src tests
"$PYTHON" -m mypy src/isolate
# Tests import the installed package, not ./src: run from a directory without it on sys.path.
exec "$PYTHON" -m pytest -p no:cacheprovider "$@"
