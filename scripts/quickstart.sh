#!/usr/bin/env bash
# Install everything into .venv, prepare a corpus and pre-train a small RoBERTa
# with masked_lm_plus on the CPU.
#   bash scripts/quickstart.sh [--corpus PATH] [--updates N] [--out DIR]
# Re-running with the same --out reuses the prepared corpus and resumes from
# the last checkpoint (nothing is overwritten).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

CORPUS=""
UPDATES=300
OUT="$REPO_ROOT/runs/quickstart"
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus) CORPUS="$2"; shift 2 ;;
        --updates) UPDATES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "quickstart.sh: unknown option $1 (valid: --corpus PATH, --updates N, --out DIR)" >&2; exit 2 ;;
    esac
done
case "$UPDATES" in ''|*[!0-9]*|0) echo "quickstart.sh: --updates must be a positive integer, got '$UPDATES'" >&2; exit 2 ;; esac

source scripts/setup_env.sh
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="$(python -m fairseq_maskplug.corpus.quickstart data "$OUT" ${CORPUS:+--corpus "$CORPUS"})"
SAVE_DIR="$OUT/checkpoints"
LOG_FILE="$OUT/train.log"
LOG_FORMAT=simple; [ -t 1 ] && LOG_FORMAT=tqdm
VALIDATE_EVERY=$(( UPDATES < 100 ? UPDATES : 100 ))

TRAIN=(fairseq-train "$DATA" --user-dir "$REPO_ROOT/fairseq_maskplug"
    --task masked_lm_plus --criterion masked_lm --sample-break-mode none --tokens-per-sample 128
    --arch roberta_base --encoder-layers 4 --encoder-embed-dim 256 --encoder-ffn-embed-dim 1024
    --encoder-attention-heads 4 --max-positions 128
    --optimizer adam --adam-betas "(0.9,0.98)" --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0
    --lr 1e-3 --lr-scheduler polynomial_decay --warmup-updates $(( UPDATES / 10 + 1 ))
    --total-num-update "$UPDATES" --max-update "$UPDATES" --batch-size 16
    --cpu --num-workers 1 --seed 1
    --validate-interval-updates "$VALIDATE_EVERY" --save-interval-updates "$VALIDATE_EVERY"
    --keep-interval-updates 1 --no-epoch-checkpoints --save-dir "$SAVE_DIR"
    --log-format "$LOG_FORMAT" --log-interval 10 --log-file "$LOG_FILE")
echo "==> pre-training ($UPDATES updates on the CPU):"
printf ' %q' "${TRAIN[@]}"; echo
"${TRAIN[@]}" 2> >(grep -v "tensorboardX\|pin_memory\|super().__init__(loader)\|autocast" >&2)

echo
echo "==> done"
python -m fairseq_maskplug.corpus.quickstart summary "$SAVE_DIR" "$LOG_FILE" "$DATA"
