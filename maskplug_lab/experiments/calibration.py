"""One calibration try: train stock ``masked_lm`` in a named configuration
with extra ``fairseq-train`` flags on one CPU thread, time it, score the last
checkpoint at the ``<mask>`` positions against both references, and append
the record to ``OUT/calibration.jsonl`` (docs/STUDY.md tables them).

    python scripts/calibrate.py --data DIR --out DIR --name NAME [--configuration study] [--updates N] \\
        [-- EXTRA FAIRSEQ FLAGS]
    python scripts/calibrate.py --table OUT/calibration.jsonl    (the tries as a Markdown table)

A try whose record exists is not run again; a killed one resumes from its
last checkpoint.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import List

from ..paths import REPO_ROOT
from .configurations import CONFIGURATIONS


def train_command(data: str, save_dir: Path, configuration: str, updates: int, extra: List[str], seed: int) -> List[str]:
    config = CONFIGURATIONS[configuration]
    return [
        sys.executable, "-m", "fairseq_cli.train", data, "--task", "masked_lm", "--criterion", "masked_lm",
        *config.flags(updates), "--seed", str(seed), *extra, "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--save-interval-updates", str(max(1, updates // 4)), "--keep-interval-updates", "1",
        "--validate-interval-updates", str(max(1, updates // 4)), "--log-format", "simple",
        "--log-interval", str(max(1, updates // 20)),
    ]  # fmt: skip


def run_try(data: str, out: Path, name: str, configuration: str, updates: int, extra: List[str], seed: int = 1) -> dict:
    from fairseq_maskplug.scoring.validation import validation_scores

    records = out / "calibration.jsonl"
    if records.exists():
        for line in records.read_text().splitlines():
            if json.loads(line)["name"] == name:
                return json.loads(line)
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(data, run_dir / "checkpoints", configuration, updates, extra, seed)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    started = time.time()
    with open(run_dir / "train.log", "a") as log:
        code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    minutes = (time.time() - started) / 60
    if code != 0:
        raise SystemExit(f"calibration {name}: fairseq-train failed ({code}); see {run_dir / 'train.log'}")
    scores = validation_scores(str(run_dir / "checkpoints" / "checkpoint_last.pt"), data)
    record = {
        "name": name, "configuration": configuration, "updates": updates, "extra_flags": extra, "seed": seed,
        "data": data, "vocab_size": json.loads((Path(data) / "manifest.json").read_text())["vocab_size"],
        "train_minutes": round(minutes, 2), "below_unigram": round(scores.below_unigram, 4),
        "scores": asdict(scores),
    }  # fmt: skip
    with open(records, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def markdown_table(records: List[dict]) -> str:
    """The tries as a Markdown table, in the order they were recorded."""
    rows = [
        "| try | configuration + flags | updates | vocabulary | loss at `<mask>` | train unigram | below unigram | "
        "two neighbours | all predicted (copying) | train min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        s = r["scores"]
        flags = " ".join(r["extra_flags"]) or "(none)"
        rows.append(
            f"| {r['name']} | {r['configuration']} {flags} | {r['updates']} | {r['vocab_size']} | "
            f"{s['at_mask']['loss_bits']:.3f} | {s['unigram_at_mask_bits']:.3f} | {r['below_unigram']:+.3f} | "
            f"{s['neighbours_at_mask_bits']:.3f} | {s['all_predicted_bits']:.3f} | {r['train_minutes']:.1f} |"
        )
    return "\n".join(rows)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=None, help="print this calibration.jsonl as a table and stop")
    parser.add_argument("--data")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--name")
    parser.add_argument("--configuration", default="study", choices=sorted(CONFIGURATIONS))
    parser.add_argument("--updates", type=int, default=None, help="default: the configuration's")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table([json.loads(line) for line in args.table.read_text().splitlines()]))
        return
    if not (args.data and args.out and args.name):
        parser.error("--data, --out and --name are required to run a try")
    updates = args.updates or CONFIGURATIONS[args.configuration].updates
    record = run_try(os.path.abspath(args.data), args.out, args.name, args.configuration, updates, extra, args.seed)
    print(
        f"{record['name']}: {record['train_minutes']:.1f} min, loss at <mask> "
        f"{record['scores']['at_mask']['loss_bits']:.3f} bits, {record['below_unigram']:+.3f} below the unigram "
        f"({record['scores']['unigram_at_mask_bits']:.3f}); two neighbours {record['scores']['neighbours_at_mask_bits']:.3f}"
    )


if __name__ == "__main__":
    main()
