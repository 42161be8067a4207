#!/usr/bin/env bash
# Wheels for a GPU machine that has Python, a CUDA torch, numpy, sentencepiece
# and matplotlib but no network (a cluster node, a lent device): fairseq and what
# it needs beyond those, at this project's pinned versions (constraints.txt),
# for that machine's Python. scripts/gpu_session.sh installs them from the folder.
#   bash scripts/offline_wheels.sh [--python-version 3.12] [--out .whl]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VERSION=3.12
WHEELS=.whl
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) VERSION="$2"; shift 2 ;;
        --out) WHEELS="$2"; shift 2 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "offline_wheels.sh: unknown option $1 (valid: --python-version X.Y, --out DIR)" >&2; exit 2 ;;
    esac
done
pinned() { grep -i "^$1==" constraints.txt || { echo "offline_wheels.sh: $1 is not pinned in constraints.txt" >&2; exit 1; }; }
mkdir -p "$WHEELS"
PIP=(python3 -m pip --disable-pip-version-check)
# compiled ones for the target Python (the manylinux tags pip needs named one by one)
"${PIP[@]}" download --quiet --no-deps --only-binary=:all: --python-version "$VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "$(pinned fairseq-fixed)" "$(pinned bitarray)"
# pure-Python ones (antlr4's runtime is published as a source archive only: built into a wheel here)
"${PIP[@]}" download --quiet --no-deps --only-binary=:all: -d "$WHEELS" \
    "$(pinned hydra-core)" "$(pinned omegaconf)" "$(pinned tensorboardX)"
"${PIP[@]}" wheel --quiet --no-deps -w "$WHEELS" "$(pinned antlr4-python3-runtime)"
ls -1 "$WHEELS"
du -sh "$WHEELS"
