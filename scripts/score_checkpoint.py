#!/usr/bin/env python
"""Score a masked-LM checkpoint (stock masked_lm, masked_lm_plus with any method,
MAE-LM) on the fixed standard validation mask: the loss and top-1 accuracy at the
positions whose input is <mask> (the ranking figure), at the unchanged and the
randomised positions, over all predicted positions (copying included), and the two
references on the <mask> positions (train unigram, two-neighbour count model).

    python scripts/score_checkpoint.py CHECKPOINT --data DIR [--split valid] [--json OUT]
"""

import argparse
import json
import logging
import warnings
from dataclasses import asdict

from fairseq_maskplug.scoring.validation import validation_scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True, help="the fairseq data dir the checkpoint was trained on")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--json", default=None, help="also write the scores here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    warnings.filterwarnings("ignore", module="fairseq|torch")
    scores = validation_scores(args.checkpoint, args.data, split=args.split)
    print(scores.table())
    print()
    print(scores.summary())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(asdict(scores), handle, indent=2)


if __name__ == "__main__":
    main()
