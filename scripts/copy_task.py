#!/usr/bin/env python
"""Can the model read its context? Train fresh models on the pair-copy task.

    python scripts/copy_task.py [--models roberta:1:0,mae_lm:2:1,mae_lm:2:2,mae_lm:2:4] \\
        [--steps 1500] [--words 200] [--json OUT] [--quick]

Each model is KIND:ENCODER_LAYERS:DECODER_LAYERS (width 64, two heads, no
dropout, Adam lr 1e-3, batch 16 x 64 tokens). Sequences are pairs of equal
random words with 15 % masked, never both of a pair: reading the neighbour
gives 0 bits, ignoring context leaves log2(words). Prints the masked-word
loss every --report-every steps and the final copy accuracy.
"""

import argparse
import dataclasses
import json
import logging

from maskplug_lab.diagnostics.copy_task import CopyTaskSettings, train_copy_task


def parse_model(text: str):
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("roberta", "mae_lm") or not all(p.isdigit() for p in parts[1:]):
        raise SystemExit(f"--models: {text!r} is not KIND:ENCODER_LAYERS:DECODER_LAYERS with KIND roberta or mae_lm")
    return parts[0], int(parts[1]), int(parts[2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="roberta:1:0,mae_lm:2:1,mae_lm:2:2,mae_lm:2:4")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--report-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the curves and accuracies here")
    parser.add_argument("--quick", action="store_true", help="20 steps per model: checks that it runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    models = [parse_model(m) for m in args.models.split(",") if m]
    steps = 20 if args.quick else args.steps
    settings = CopyTaskSettings(words=args.words, steps=steps, report_every=min(args.report_every, steps), seed=args.seed)
    results = []
    for kind, encoder_layers, decoder_layers in models:
        result = train_copy_task(kind, settings, encoder_layers, decoder_layers)
        curve = "  ".join(f"{s}: {b:.3f}" for s, b in zip(result.steps, result.loss_bits))
        print(f"{result.model}: loss bits by step {curve}; copy accuracy {result.accuracy:.3f} "
              f"(chance {result.chance_bits:.3f} bits)", flush=True)  # fmt: skip
        results.append(dataclasses.asdict(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": dataclasses.asdict(settings), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
