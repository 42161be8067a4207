#!/usr/bin/env python
"""One calibration try of the study's regime (maskplug_lab/experiments/calibration.py):
stock masked_lm in a named configuration plus extra fairseq-train flags, one CPU
thread, timed, scored at the <mask> positions against the unigram and the
two-neighbour references; appended to OUT/calibration.jsonl.

    python scripts/calibrate.py --data DIR --out DIR --name NAME [--configuration study] [--updates N] [-- FLAGS]
"""

from maskplug_lab.experiments.calibration import main

if __name__ == "__main__":
    main()
