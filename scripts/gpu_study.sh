#!/usr/bin/env bash
# The GPU study kit: one seed of stock, random masking, fully-explored at equal
# compute, the cosine schedule, POS weighting, MAPNet and MAE-LM, side by side
# on one GPU (GPU_STUDY: 6 x 512 RoBERTa, 64 x 128 tokens, --fp16), inside a
# time budget (default 330 s, data preparation included), scored on the loss at
# <mask> against the train unigram and the two-neighbour model. Writes
# runs/gpu_study/study_gpu.{json,md} and, from a CUDA run, docs/study_gpu.{json,md}.
#   bash scripts/gpu_study.sh [--data DIR] [--out DIR] [--budget S] [--arms a,b] [--seeds 1,2] [--updates N] [--quick]
# --quick: the machinery on the CPU in seconds (the tests run it). Uses .venv's
# python when there is one, else python3 (PYTHON=... overrides).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=""
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    esac
done
# shellcheck source=scripts/gpu_python.sh
source scripts/gpu_python.sh
if [ -n "$QUICK" ]; then
    exec "$PYTHON" -m maskplug_lab.experiments.gpu_study --out runs/gpu_study_quick --data runs/gpu_study_quick_data "$@"
fi
require_cuda gpu_study.sh "(--quick runs the machinery on the CPU)"
exec "$PYTHON" -m maskplug_lab.experiments.gpu_study --publish "$@"
