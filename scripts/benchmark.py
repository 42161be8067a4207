#!/usr/bin/env python
"""Throughput, seconds per update and peak memory of every method against
stock masked_lm, and the cost of making masks.

    python scripts/benchmark.py [--data DIR] [--json OUT] [--quick] [--arms a,b]

Every arm trains the same encoder on the same corpus with the same batch in
its own process; medians over blocks of updates after a warm-up, the arms'
blocks interleaved, and ratios to stock masked_lm measured in the same run. On a machine with a GPU the arms run
there with --fp16 (and the Masker's cost is measured on it); --device cpu
forces the CPU. Prints two Markdown tables; --json writes everything.
"""

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch
from fairseq.data import Dictionary

from maskplug_lab.diagnostics.masking_cost import masking_cost
from maskplug_lab.experiments.benchmark import (
    ARMS,
    BenchmarkSettings,
    cost_json,
    flop_check_arms,
    markdown,
    masking_cost_markdown,
    measure_arms,
    ratios,
    save_json,
    summarise,
)
from maskplug_lab.experiments.configurations import ENCODERS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default="runs/brown_pos",
        help="prepared data dir with the POS side input (prepare_corpus.py --pos); default runs/brown_pos",
    )
    parser.add_argument("--json", help="write the measurements, ratios and masking cost to this file")
    parser.add_argument("--quick", action="store_true", help="few updates (a smoke run: 2 warm-up, 3 blocks of 3)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma list from {', '.join(ARMS)} (stock is always run)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), help="default: small on a CPU, base on a GPU")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens-per-sample", type=int, default=128)
    parser.add_argument(
        "--masking-sequences", type=int, default=1000, help="sequences of 512 tokens in the masking-cost table (--quick: 200)"
    )
    parser.add_argument("--masking-only", action="store_true", help="only the masking-cost table (no training; seconds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)

    arms = ["stock"] + [a for a in args.arms.split(",") if a and a != "stock"]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        sys.exit(f"--arms: unknown {', '.join(unknown)}; valid: {', '.join(ARMS)}")
    data = Path(args.data)
    if not (data / "dict.txt").exists():
        sys.exit(
            f"--data {data}: no dict.txt (prepare one: python scripts/prepare_corpus.py --input CORPUS --out {data} --pos)"
        )
    if "pos" in arms and not (data / "pos" / "dict.txt").exists():
        sys.exit(
            f"--data {data}: no POS side input for the pos arm (prepare the corpus with --pos, or leave pos out of --arms)"
        )
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible")
    sequences = min(args.masking_sequences, 200) if args.quick else args.masking_sequences
    if args.masking_only:
        cost = masking_cost(Dictionary.load(str(data / "dict.txt")), sequences=sequences, device=device)
        print(masking_cost_markdown(cost))
        if args.json:
            Path(args.json).write_text(json.dumps({"masking_cost": cost_json(cost)}, indent=2))
            print(f"\nwrote {args.json}")
        return
    settings = BenchmarkSettings(
        data=str(data),
        encoder=args.encoder or ("base" if device == "cuda" else "small"),
        batch_size=args.batch_size,
        tokens_per_sample=args.tokens_per_sample,
        device=device,
        fp16=device == "cuda",
        **({"warmup": 2, "updates": 3, "repeats": 3} if args.quick else {}),
    )

    if "mae_lm" in arms:
        arms += flop_check_arms(settings)
    with tempfile.TemporaryDirectory(prefix="benchmark-logs-") as log_dir:
        measurements = measure_arms(arms, settings, Path(log_dir))
    summaries = {arm: summarise(measurement) for arm, measurement in measurements.items()}
    cost = masking_cost(Dictionary.load(str(data / "dict.txt")), sequences=sequences, device=device)
    table = ratios(summaries, settings)
    print()
    print(markdown(summaries, table, cost, settings))
    if args.json:
        save_json(Path(args.json), settings, summaries, table, cost)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
