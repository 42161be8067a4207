#!/usr/bin/env bash
# Set up (or reuse) .venv, check the style (ruff: lint and format), and run the
# test suite on 2 worker processes (pytest-xdist; expensive fixtures are built
# once per run and shared: tests/conftest.py, tests/harness.py: built_once). Extra arguments go to
# pytest: `-n 0 -s` runs in one process and shows what tests print.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
echo "==> ruff check and ruff format --check"
ruff check --quiet .
ruff format --check --quiet .
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# the suite starts about a hundred Python processes: let them cache the plugin's bytecode
unset PYTHONDONTWRITEBYTECODE
# worksteal: an idle worker takes queued tests from the busy one (no long test left alone at the end)
exec python -m pytest -n 2 --dist worksteal tests "$@"
