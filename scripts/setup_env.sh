#!/usr/bin/env bash
# Create or reuse .venv in the repository root and install what is missing.
# Sourced by quickstart.sh and test.sh. A stamp records what was installed;
# when constraints.txt and setup.py are unchanged a re-run takes a second.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.maskplug-installed"

pick_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            echo "$candidate"; return 0
        fi
    done
    echo "setup_env.sh: Python 3.11 is required (fairseq 0.12 does not run on other versions here)" >&2
    return 1
}

wanted="$(cat "$REPO_ROOT/constraints.txt" "$REPO_ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    return 0 2>/dev/null || exit 0
fi

[ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
LOG="$VENV/install.log"
: > "$LOG"
echo "==> setting up $VENV (first run: about 4 minutes, mostly compiling fairseq); pip's output goes to $LOG"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
PIP=(python -m pip install --disable-pip-version-check -c "$REPO_ROOT/constraints.txt")
pip_step() {  # pip_step STEP ARGS...: pip quietly into the log, the whole log on failure
    echo "    $1"
    shift
    if ! "${PIP[@]}" "$@" >>"$LOG" 2>&1; then
        echo "setup_env.sh: pip failed; its output ($LOG):" >&2
        cat "$LOG" >&2
        return 1
    fi
}
pip_step "torch 2.13.0, numpy, cython" torch==2.13.0 numpy cython setuptools wheel
# fairseq must compile against the torch just installed, not a build-isolation copy
pip_step "fairseq-fixed 0.12.3.1 (compiling, about 3 minutes)" --no-build-isolation fairseq-fixed==0.12.3.1
pip_step "fairseq-maskplug with its test, plots and hf extras" --no-build-isolation -e "$REPO_ROOT[test,plots,hf]"
# fairseq requires torchaudio and pip takes 2.11, which does not load with torch 2.13; transformers
# imports any torchaudio it finds and then fails. fairseq's text tasks never import it: remove it.
if ! python -c "import torchaudio" >/dev/null 2>&1; then
    echo "    removing torchaudio (fairseq's dependency; it does not load with this torch and nothing here uses it)"
    python -m pip uninstall --disable-pip-version-check -y torchaudio >>"$LOG" 2>&1
fi
echo "$wanted" > "$STAMP"
echo "==> installed into $VENV"
