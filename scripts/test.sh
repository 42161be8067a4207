#!/usr/bin/env bash
# Set up (or reuse) .venv, check the style (ruff: lint and format), and run the
# test suite on 2 worker processes (pytest-xdist; expensive fixtures are built
# once per run and shared: tests/conftest.py). Extra arguments go to
# pytest: `-n 0 -s` runs in one process and shows what tests print.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh
echo "==> ruff check and ruff format --check"
ruff check --quiet .
ruff format --check --quiet .
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec python -m pytest -n 2 tests "$@"
