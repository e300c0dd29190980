#!/usr/bin/env bash
# Set up (scripts/setup.sh), check the style with ruff, and run the whole test suite on all cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# style first: lint and format findings fail the run like a failing test
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
exec .venv/bin/python -m pytest -n "${FORMULAC_TEST_WORKERS:-auto}" -q "$@"
