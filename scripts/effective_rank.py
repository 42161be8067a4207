#!/usr/bin/env python
"""Effective rank of real-token representations per encoder layer.

    python scripts/effective_rank.py --data DIR --checkpoint CKPT [--checkpoint CKPT2] --json OUT

For each checkpoint (roberta or mae_lm) and encoder layer: rank@90 %, rank@99 %
and the entropy rank of real-token vectors for inputs with the fixed standard
15 % mask and without any mask; for roberta also the <mask>-token vectors and
the principal angles between the two subspaces.
"""

import argparse
import json
import logging

from fairseq_maskplug.diagnostics.effective_rank import measure_checkpoint
from fairseq_maskplug.diagnostics.validation import load_for_masking


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", action="append", required=True, help="repeat to compare checkpoints")
    parser.add_argument("--json", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--max-tokens", type=int, default=10000, help="token vectors per layer and condition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    results = {}
    for checkpoint in args.checkpoint:
        task, model = load_for_masking(checkpoint, args.data)
        task.load_dataset(args.split)
        results[checkpoint] = measure_checkpoint(task, model, args.split, args.max_tokens)
        print(f"{checkpoint} ({results[checkpoint]['model']})")
        print("  layer  with<mask>: r90 r99 entropy | without: r90 r99 entropy | <mask> tokens r90 | mean angle")
        for layer in results[checkpoint]["layers"]:
            w, c = layer["with_mask_real"], layer["without_mask_real"]
            extra = ""
            if "mask_tokens" in layer:
                angles = layer["principal_angles_deg"]
                extra = f" | {layer['mask_tokens']['rank_90']:4d} | {sum(angles) / len(angles):5.1f}"
            print(
                f"  {layer['layer']:5d}  {w['rank_90']:4d} {w['rank_99']:4d} {w['entropy_rank']:7.2f} | "
                f"{c['rank_90']:4d} {c['rank_99']:4d} {c['entropy_rank']:7.2f}{extra}"
            )
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
