#!/usr/bin/env bash
# One command for a lent GPU machine, prepared to end well inside 10 minutes:
# fairseq from the wheels folder when it is not importable, gpu_check.sh --quick
# (the CUDA tests, and the benchmark at RoBERTa base, 64 x 512 tokens, --fp16,
# for a few updates: its memory), then the GPU study kit; everything it wrote
# lands in OUT (at most 7 files) and its last lines are the two summaries.
#   bash scripts/gpu_session.sh OUT [--wheels DIR] [--check-seconds S] [--budget S]
# --wheels: from scripts/offline_wheels.sh (default .whl); --check-seconds: the
# limit of gpu_check.sh --quick (default 200); --budget: the kit's (default 300).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,9p' "$0" >&2; exit 2; }
OUT="$1"; shift
WHEELS=.whl
CHECK_SECONDS=200
BUDGET=300
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS="$2"; shift 2 ;;
        --check-seconds) CHECK_SECONDS="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        *) echo "gpu_session.sh: unknown option $1 (valid: --wheels DIR, --check-seconds S, --budget S)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
# shellcheck source=scripts/gpu_python.sh
source scripts/gpu_python.sh
started=$(date +%s)

# find_spec: installed or not, without the seconds an import of fairseq takes
if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("fairseq") is None)'; then
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "gpu_session.sh: fairseq is not importable by $PYTHON and $WHEELS holds no wheels (scripts/offline_wheels.sh makes them)" >&2
        exit 2
    fi
    # into the interpreter's own environment: the scripts' child processes set PYTHONPATH to the repository
    "$PYTHON" -m pip install -q --no-index --no-deps --no-cache-dir "$WHEELS"/*.whl || exit 1
fi
require_cuda gpu_session.sh ""
echo "==> $("$PYTHON" -c 'import torch, fairseq; print(torch.cuda.get_device_name(0), "| torch", torch.__version__, "| fairseq", fairseq.__version__)')"

timeout "$CHECK_SECONDS" bash scripts/gpu_check.sh --quick > "$OUT/gpu_check.log" 2>&1
check=$?
echo "==> gpu_check.sh --quick: exit $check after $(( $(date +%s) - started )) s"
timeout $(( ${BUDGET%.*} + 60 )) bash scripts/gpu_study.sh --budget "$BUDGET" > "$OUT/gpu_study.log" 2>&1
study=$?
echo "==> gpu_study.sh --budget $BUDGET: exit $study after $(( $(date +%s) - started )) s"

for file in runs/gpu_check/cuda_tests.xml runs/gpu_check/benchmark_gpu.json runs/gpu_study/study_gpu.json runs/gpu_study/study_gpu.md; do
    [ -f "$file" ] && cp "$file" "$OUT/"
done
tar czf "$OUT/logs.tar.gz" runs/gpu_check/benchmark.md runs/gpu_study/runs/*/seed*/*.log 2>/dev/null
echo; echo "==> gpu_check.sh summary"; sed -n '/^GPU check on/,$p' "$OUT/gpu_check.log" | head -60
echo; echo "==> GPU study kit"; cat "$OUT/study_gpu.md" 2>/dev/null || tail -20 "$OUT/gpu_study.log"
[ $check -eq 0 ] && [ $study -eq 0 ]
