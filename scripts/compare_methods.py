#!/usr/bin/env python
"""Train masking arms for the same budget; plot validation loss (fixed standard
mask) against updates, tokens processed and wall-clock seconds.

    python scripts/compare_methods.py --data DIR --arms random,fully_explored \\
        --updates 400 --validate-every 50 --out runs/compare

Writes OUT/curves.png, OUT/curves.md (table), OUT/curves.json and each arm's
fairseq log and checkpoints.
"""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from fairseq_maskplug.methods import METHODS
from maskplug_lab.experiments.configurations import ENCODERS, TINY
from maskplug_lab.experiments.learning_curves import parse_arm, run_arm, save


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/quickstart/data", help="prepared data dir (default: the quickstart's)")
    parser.add_argument(
        "--arms",
        default="random,fully_explored",
        help=f"comma list of {', '.join(METHODS)}; NAME@B gives that arm batch size B",
    )
    parser.add_argument("--updates", type=int, default=TINY.updates)
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--model", default="tiny", choices=sorted(ENCODERS), help="encoder size (default tiny)")
    parser.add_argument("--batch-size", type=int, default=TINY.batch_size, help="unique sequences per update")
    parser.add_argument("--tokens-per-sample", type=int, default=TINY.tokens_per_sample)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    config = dataclasses.replace(
        TINY, encoder=ENCODERS[args.model], batch_size=args.batch_size, tokens_per_sample=args.tokens_per_sample
    )
    arms = [a for a in args.arms.split(",") if a]
    try:
        for arm in arms:
            parse_arm(arm, args.batch_size)
    except ValueError as error:
        sys.exit(f"--arms: {error}")
    if not (Path(args.data) / "dict.txt").exists():
        sys.exit(f"--data {args.data}: no dict.txt (run scripts/quickstart.sh or scripts/prepare_corpus.py first)")
    out = Path(args.out)
    existing = [a for a in arms if (out / a).exists()]
    if existing:
        sys.exit(f"--out {out} already holds runs of {', '.join(existing)}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for arm in arms:
        print(f"==> {arm}", flush=True)
        results.append(run_arm(arm, args.data, out, config, args.updates, args.validate_every, args.seed))
        last = results[-1].points[-1]
        print(
            f"    {last.updates} updates: valid loss {last.valid_loss:.4f} bits, "
            f"{last.tokens_processed:,} tokens, {last.seconds:.1f} s",
            flush=True,
        )
    title = f"{args.model} RoBERTa, {args.batch_size} sequences x {args.tokens_per_sample} tokens, data {args.data}"
    save(results, out, title)
    print((out / "curves.md").read_text())
    print(f"wrote {out / 'curves.png'}, {out / 'curves.md'}, {out / 'curves.json'}")


if __name__ == "__main__":
    main()
