#!/usr/bin/env bash
# Install everything into .venv, prepare a corpus and pre-train a small RoBERTa
# with masked_lm_plus on the CPU, in the study's configuration (the tiny
# encoder on 16-piece blocks of 1,000 pieces, lr 3e-3;
# maskplug_lab/experiments/configurations.py: STUDY), then show what it learned: the loss at
# the <mask> positions against the unigram, and fill-mask guesses.
#   bash scripts/quickstart.sh [--corpus PATH] [--updates N] [--out DIR]
# Re-running with the same --out reuses the prepared corpus and resumes from
# the last checkpoint (nothing is overwritten).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

CORPUS=""
UPDATES=""
OUT="$REPO_ROOT/runs/quickstart"
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus) CORPUS="$2"; shift 2 ;;
        --updates) UPDATES="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "quickstart.sh: unknown option $1 (valid: --corpus PATH, --updates N, --out DIR)" >&2; exit 2 ;;
    esac
done
case "$UPDATES" in '') ;; *[!0-9]*|0) echo "quickstart.sh: --updates must be a positive integer, got '$UPDATES'" >&2; exit 2 ;; esac

source scripts/setup_env.sh
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
VOCABULARY="$(python -c 'from maskplug_lab.experiments.configurations import STUDY_VOCABULARY; print(STUDY_VOCABULARY)')"
DATA="$(python -m maskplug_lab.corpus.quickstart data "$OUT" --vocab-size "$VOCABULARY" ${CORPUS:+--corpus "$CORPUS"})"
UPDATES="${UPDATES:-$(python -c 'from maskplug_lab.experiments.configurations import STUDY; print(STUDY.updates)')}"
# the study configuration's model, blocks, batch and optimizer, $UPDATES long
read -r -a CONFIGURATION <<< "$(python -c "from maskplug_lab.experiments.configurations import STUDY
print(' '.join(STUDY.flags($UPDATES)))")"
SAVE_DIR="$OUT/checkpoints"
LOG_FILE="$OUT/train.log"
VALIDATE_EVERY=$(( UPDATES < 1000 ? UPDATES : 1000 ))

TRAIN=(fairseq-train "$DATA" --user-dir "$REPO_ROOT/fairseq_maskplug"
    --task masked_lm_plus --criterion masked_lm "${CONFIGURATION[@]}" --seed 1
    --validate-interval-updates "$VALIDATE_EVERY" --save-interval-updates "$VALIDATE_EVERY"
    --keep-interval-updates 1 --no-epoch-checkpoints --save-dir "$SAVE_DIR" --best-checkpoint-metric loss_at_mask
    --log-format json --log-interval 100)
printf '%q ' "${TRAIN[@]}" > "$OUT/train_command.sh"; echo >> "$OUT/train_command.sh"
echo "==> pre-training: $UPDATES updates on the CPU (the command: $OUT/train_command.sh; fairseq's log: $LOG_FILE)"
python -m maskplug_lab.experiments.train_console "$LOG_FILE" "$UPDATES" -- "${TRAIN[@]}"

echo
echo "==> done"
python -m maskplug_lab.experiments.quickstart summary "$SAVE_DIR" "$LOG_FILE" "$DATA"
