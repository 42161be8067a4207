#!/usr/bin/env bash
# Everything that needs a GPU, in one command: the CUDA tests (masks identical
# on CPU and CUDA for every strategy, --fp16 for every method against fp32,
# --amp, --bf16, fp16 overflow), the benchmark with RoBERTa base and --fp16,
# and the masking-cost table on CUDA. Prints a summary table; a complete
# benchmark is written to docs/benchmark_gpu.json (a failed one changes nothing there).
#   bash scripts/gpu_check.sh [--data DIR] [--quick]
# Uses .venv's python when there is one, else python3 (PYTHON=... overrides);
# it must hold a CUDA build of torch. --data: a corpus prepared with --pos (default
# runs/brown_pos, prepared from the Brown corpus when missing); --quick: a
# short benchmark (for trying the script, not for figures).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATA=runs/brown_pos
QUICK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA="$2"; shift 2 ;;
        --quick) QUICK="--quick"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (valid: --data DIR, --quick)" >&2; exit 2 ;;
    esac
done

# shellcheck source=scripts/gpu_python.sh
source scripts/gpu_python.sh
require_cuda gpu_check.sh "It needs a machine with an NVIDIA GPU and a CUDA build of torch (docs/gpu.md)."

OUT=runs/gpu_check
mkdir -p "$OUT" docs
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
echo "==> $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)')"

echo "==> CUDA tests (pytest -m cuda)"
"$PYTHON" -m pytest -m cuda tests -q -p no:cacheprovider -n 4 -o junit_logging=system-out \
    --junitxml="$OUT/cuda_tests.xml" 2>&1 | tail -5
tests_status=${PIPESTATUS[0]}

if [ ! -f "$DATA/pos/dict.txt" ]; then
    BROWN="$("$PYTHON" -c 'from maskplug_lab.corpus.sources import find_brown; print(find_brown() or "")')"
    if [ -z "$BROWN" ]; then
        echo "gpu_check.sh: --data $DATA holds no corpus with the POS side input, and no Brown corpus was found to" \
            "prepare one: python scripts/prepare_corpus.py --input CORPUS --out $DATA --pos" >&2
        exit 2
    fi
    echo "==> preparing $DATA from $BROWN (POS side input)"
    "$PYTHON" scripts/prepare_corpus.py --input "$BROWN" --out "$DATA" --pos >/dev/null || exit 1
fi
echo "==> benchmark: RoBERTa base, --fp16, 64 x 512 tokens, every method against stock masked_lm; masking cost on CUDA"
rm -f "$OUT/benchmark_gpu.json"
"$PYTHON" scripts/benchmark.py --data "$DATA" --device cuda --encoder base --batch-size 64 --tokens-per-sample 512 \
    $QUICK --json "$OUT/benchmark_gpu.json" > "$OUT/benchmark.md" 2>&1
bench_status=$?
if [ $bench_status -ne 0 ]; then
    # a failed benchmark publishes nothing: docs/benchmark_gpu.json keeps the last complete run
    echo "gpu_check.sh: the benchmark failed (exit $bench_status); docs/benchmark_gpu.json is unchanged. Its last lines:" >&2
    tail -20 "$OUT/benchmark.md" >&2
    rm -f "$OUT/benchmark_gpu.json"
fi

"$PYTHON" -m maskplug_lab.experiments.gpu_check --junit "$OUT/cuda_tests.xml" --benchmark "$OUT/benchmark_gpu.json"
[ $bench_status -eq 0 ] && cp "$OUT/benchmark_gpu.json" docs/benchmark_gpu.json
[ $tests_status -eq 0 ] && [ $bench_status -eq 0 ]
