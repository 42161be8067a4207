#!/usr/bin/env python
"""The study: every masking method as an arm, several seeds, on the STUDY
configuration (experiments/configurations.py), with downstream probes, each
paper's mechanism re-measured, verdicts against random masking and plots.

    python scripts/study.py [--data DIR] [--out DIR] [--arms a,b] [--seeds 1,2,3] [--jobs 2] [--quick] [--report-only]

Resumable: a rerun skips finished arm-seeds and continues a killed one from
its last checkpoint. One CPU thread per arm-seed, --jobs at a time. Writes
OUT/study.md (tables and verdicts), OUT/study.json, OUT/curves.png,
OUT/probes.png, OUT/mechanisms/*.json and each arm-seed's logs under OUT/runs.
--quick: the tests' version (a 60-document slice, 30 updates, small probes).
"""

import argparse
import logging
from pathlib import Path

from fairseq_maskplug.experiments.study import ARMS
from fairseq_maskplug.experiments.study_runner import run_study


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/study_data", help="Brown with --pos at 4,000 pieces (prepared if missing)")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--arms", default=",".join(arm.name for arm in ARMS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--jobs", type=int, default=2, help="arm-seeds at a time (one CPU thread each)")
    parser.add_argument("--quick", action="store_true", help="a tiny version (tests): 30 updates on a 60-document slice")
    parser.add_argument("--no-mechanisms", action="store_true", help="skip re-measuring the mechanisms")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the tables, plots and mechanisms from the arm-seeds finished so far")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    arms = [a for a in args.arms.split(",") if a]
    text = run_study(Path(args.data), Path(args.out), arms, seeds, args.jobs, args.quick, not args.no_mechanisms,
                     args.report_only)  # fmt: skip
    print(text)
    print(f"\nwrote {args.out}/study.md, study.json, curves.png, probes.png")


if __name__ == "__main__":
    main()
