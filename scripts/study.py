#!/usr/bin/env python
"""The study: every masking method as an arm on the STUDY configuration
(maskplug_lab/experiments/configurations.py), each at its own learning rate (chosen from
a grid on seed 1 by the valid split's loss at <mask>, the grid extended past
a winning edge), then several seeds at that rate reported on the test split,
with downstream probes, each paper's mechanism re-measured, verdicts against
random masking and plots.

    python scripts/study.py [--data DIR] [--out DIR] [--arms a,b] [--seeds 1,2,3] [--jobs 2] [--parity]
                            [--lr-grid 5e-4,1e-3,2e-3,3e-3,5e-3] [--lr-limits 1e-4,2e-2] [--quick] [--report-only]

Resumable: a rerun skips finished jobs and continues a killed one from its
last checkpoint; what to run next is planned from the result files. One CPU
thread per job, --jobs at a time. Writes OUT/study.md (tables and verdicts),
OUT/study.json, OUT/curves.png, OUT/probes.png, OUT/mechanisms/*.json and
each job's logs under OUT/runs/ARM/lrLR/seedS. --quick: the tests' version
(a 60-document slice, 30 updates, small probes, one rate).
"""

import argparse
import logging
from pathlib import Path

from maskplug_lab.experiments.configurations import STUDY_LR_GRID, STUDY_LR_LIMITS, STUDY_QUICK
from maskplug_lab.experiments.study import ARMS, Job
from maskplug_lab.experiments.study_runner import run_study


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/study_data", help="Brown with --pos at 1,000 pieces (prepared if missing)")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--arms", default=",".join(arm.name for arm in ARMS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--jobs", type=int, default=2, help="arm-seeds at a time (one CPU thread each)")
    parser.add_argument("--lr-grid", default=None,
                        help="learning rates every arm tries on seed 1 (default: the study's; --quick: 0.003)")  # fmt: skip
    parser.add_argument("--lr-limits", default=None,
                        help="LOW,HIGH: the grid is extended by factors of 2 past a winning edge, within these "
                        "(default: the study's; --quick: 0.003,0.003, no extension)")  # fmt: skip
    parser.add_argument("--parity", action="store_true",
                        help="also the parity runs: masked_lm_plus's defaults (3 seeds), stock masked_lm and "
                        "--never-mask-bos-eos (seed 1) at lr 3e-3")  # fmt: skip
    parser.add_argument("--tries", default="",
                        help="ARM:LR:SEED,...: single jobs to run first (no downstream probes), reported apart; for "
                        "the levers tried on an arm whose chosen rate fails (LEVER_ARMS, "
                        "maskplug_lab/experiments/study.py)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a tiny version (tests): 30 updates on a 60-document slice")
    parser.add_argument("--no-mechanisms", action="store_true", help="skip re-measuring the mechanisms")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the tables, plots and mechanisms from the arm-seeds finished so far")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    arms = [a for a in args.arms.split(",") if a]
    quick_rate = str(STUDY_QUICK.optimizer.lr) if args.quick else None
    lr_grid = args.lr_grid or quick_rate or ",".join(map(str, STUDY_LR_GRID))
    lr_limits = args.lr_limits or (f"{quick_rate},{quick_rate}" if quick_rate else ",".join(map(str, STUDY_LR_LIMITS)))
    rates = [float(r) for r in lr_grid.split(",") if r]
    limits = tuple(float(r) for r in lr_limits.split(","))
    if len(limits) != 2 or limits[0] > limits[1]:
        parser.error(f"--lr-limits {args.lr_limits}: give LOW,HIGH with LOW <= HIGH")
    tries = []
    for item in filter(None, args.tries.split(",")):
        parts = item.split(":")
        if len(parts) != 3:
            parser.error(f"--tries {item}: give ARM:LR:SEED")
        tries.append(Job(parts[0], int(parts[2]), float(parts[1]), False))
    text = run_study(Path(args.data), Path(args.out), arms, seeds, args.jobs, args.quick, not args.no_mechanisms,
                     args.report_only, rates, limits, args.parity, tries)  # fmt: skip
    print(text)
    print(f"\nwrote {args.out}/study.md, study.json, headline.md, curves.png, probes.png")


if __name__ == "__main__":
    main()
