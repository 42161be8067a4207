"""The GPU study kit: one seed of the methods that matter most at scale, side
by side on one GPU under the GPU_STUDY configuration (experiments/
configurations.py), inside a time budget, scored on the loss at the
``<mask>`` positions of the fixed standard mask against the train unigram
and the two-neighbour count model on the same positions.

    python -m maskplug_lab.experiments.gpu_study [--data DIR] [--out DIR] [--budget S] [--arms a,b]
        [--seeds 1] [--updates N] [--device cuda|cpu] [--quick] [--publish]

(``scripts/gpu_study.sh`` runs it.) Every arm-seed starts at once (one
``fairseq-train`` each, ``--fp16`` on CUDA); each is told to stop cleanly
(``--stop-time-hours``: it validates and saves) when the budget, less the
start-up and scoring allowances, is spent, and the kit stops whatever still
runs at the budget's end plus a grace. What finished is scored and kept:
OUT/study_gpu.json, OUT/study_gpu.md and each arm-seed's logs under
OUT/runs (the study's layout, so ``scripts/study.py`` tools read them);
``--publish`` copies the two files to docs/. ``--quick``: the machinery on
the CPU in seconds (GPU_STUDY_QUICK on a 60-document slice).
"""

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..paths import REPO_ROOT
from .configurations import CONFIGURATIONS, GPU_STUDY_VOCABULARY
from .study import Job, StudySettings, arm_dir
from .study_report import load_results, loss_at, mean_sd, verdict
from .study_runner import ensure_data, run_jobs

# stock, random masking, fully-explored at equal compute, the cosine schedule, POS weighting, MAPNet's defaults,
# MAE-LM with the decoder depth of the medium encoder (2 layers)
GPU_ARMS = ["stock", "random", "fully_explored_compute", "cosine", "pos", "mapnet", "mae_lm"]
# a fairseq-train's start (imports, data, model, CUDA context) before its training clock runs, and an arm's
# scoring after it stops (valid and test at full precision; stock: its interval checkpoints too)
ALLOWANCES = {"full": {"startup": 40.0, "scoring": 60.0}, "quick": {"startup": 10.0, "scoring": 10.0}}
GRACE_SECONDS = 30.0  # past the budget, before the kit stops what still runs
DECODER_NOTE = (
    "MAE-LM: the loss at `<mask>` is its pre-training decoder's prediction from the same visible tokens (it ranks "
    "the pre-training systems); the kit runs no probes, so its encoder alone is not judged here"
)


@dataclasses.dataclass(frozen=True)
class KitPlan:
    """What one run of the kit does: ``configuration`` (a CONFIGURATIONS
    name) with ``updates`` planned, each arm-seed's training stopped after
    ``train_seconds``, everything stopped at ``deadline`` (a time.time())."""

    configuration: str
    updates: int
    train_seconds: float
    deadline: float


MIN_TRAIN_SECONDS = 5.0


def plan(budget: float, started: float, quick: bool, updates: Optional[int]) -> KitPlan:
    """The time plan from what is left of ``budget`` seconds counted from
    ``started``; refused when less than MIN_TRAIN_SECONDS of training would
    be left."""
    name = "gpu_study_quick" if quick else "gpu_study"
    allowance = ALLOWANCES["quick" if quick else "full"]
    spent = time.time() - started
    train_seconds = budget - spent - allowance["startup"] - allowance["scoring"]
    if train_seconds < MIN_TRAIN_SECONDS:
        raise SystemExit(
            f"--budget {budget:g}: starting and scoring the arms take {allowance['startup'] + allowance['scoring']:.0f} s"
            f" and {spent:.0f} s are spent already (preparing the data); give at least "
            f"{spent + allowance['startup'] + allowance['scoring'] + MIN_TRAIN_SECONDS:.0f} s"
        )
    return KitPlan(name, updates or CONFIGURATIONS[name].updates, train_seconds, started + budget + GRACE_SECONDS)


def arm_row(seeds: List[dict], random: List[dict]) -> Dict:
    """One arm's figures: the loss at ``<mask>`` where it stopped, both
    references, the updates it reached, and the difference against random
    masking at equal updates (the fewer of the two arms', read off the
    curves) with its call (one seed a side: "too few seeds")."""
    scores = [r["final_scores"] for r in seeds]
    reached = min(int(r["curve"][-1]["updates"]) for r in seeds)
    row = {
        "seeds": [r["seed"] for r in seeds],
        "decoder_loss": seeds[0]["decoder_loss"],
        "updates": reached,
        "at_mask_bits": mean_sd([r["final_at_mask_bits"] for r in seeds]),
        "unigram_at_mask_bits": mean_sd([s["unigram_at_mask_bits"] for s in scores]),
        "neighbours_at_mask_bits": mean_sd([s["neighbours_at_mask_bits"] for s in scores]),
        "at_unchanged_bits": mean_sd([s["at_unchanged"]["loss_bits"] for s in scores]),
        "test_top1_at_mask": mean_sd([r["test_top1_at_mask"] for r in seeds]),
        "tokens": mean_sd([r["curve"][-1]["tokens"] for r in seeds]),
        "train_seconds": mean_sd([r["train_seconds"] for r in seeds]),
        "notes": sorted({note for r in seeds for note in r["notes"]}),
    }
    if random and seeds is not random:
        common = min(reached, min(int(r["curve"][-1]["updates"]) for r in random))
        row["vs_random_equal_updates"] = dict(
            verdict([loss_at(r["curve"], "updates", common) for r in seeds],
                    [loss_at(r["curve"], "updates", common) for r in random]), at_updates=common)  # fmt: skip
    return row


def markdown(rows: Dict[str, Dict], missing: Dict[str, List[str]], kit: Dict) -> str:
    config = kit["configuration"]
    encoder = config["encoder"]
    lines = [
        f"GPU study kit on {kit['device']} (torch {kit['torch']}): {encoder['layers']} x {encoder['dim']} RoBERTa, "
        f"{config['batch_size']} x {config['tokens_per_sample']} tokens per update, {kit['precision']}, "
        f"{kit['updates_planned']} updates planned, each arm-seed stopped after {kit['train_seconds_limit']:.0f} s of "
        f"training; the kit took {kit['elapsed_seconds']:.0f} s of a {kit['budget_seconds']:.0f} s budget.",
        "",
        "Loss at the `<mask>` positions of the fixed standard validation mask (bits), against what ignoring context "
        "scores there (train unigram) and the two-neighbour count model; difference against random masking at the "
        "fewer updates of the two (one seed a side makes no call).",
        "",
        "| arm | seeds | updates | loss at `<mask>` | train unigram | below unigram | two neighbours | "
        "at unchanged | top-1 (test) | vs random at equal updates | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]  # fmt: skip
    for arm, row in rows.items():
        loss, unigram = row["at_mask_bits"], row["unigram_at_mask_bits"]
        against = row.get("vs_random_equal_updates")
        call = f"{against['difference']:+.3f} at {against['at_updates']}, {against['verdict']}" if against else ""
        name = f"{arm} (decoder)" if row["decoder_loss"] else arm
        lines.append(
            f"| {name} | {len(row['seeds'])} | {row['updates']} | {loss[0]:.3f} ± {loss[1]:.3f} | {unigram[0]:.3f} | "
            f"{unigram[0] - loss[0]:.3f} | {row['neighbours_at_mask_bits'][0]:.3f} | {row['at_unchanged_bits'][0]:.3f} "
            f"| {row['test_top1_at_mask'][0]:.3f} | {call} | {row['train_seconds'][0]:.0f} |"
        )  # fmt: skip
    lines.append("")
    notes = [f"{arm}: {note}" for arm, row in rows.items() for note in row["notes"]]
    notes += [f"{arm}: {what}" for what, arms in missing.items() for arm in arms]
    if any(row["decoder_loss"] for row in rows.values()):
        notes.append(DECODER_NOTE)
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def run_gpu_study(data: Path, out: Path, arms: List[str], seeds: List[int], budget: float, device: str,
                  quick: bool = False, updates: Optional[int] = None) -> Dict:  # fmt: skip
    """Run the kit; returns what OUT/study_gpu.json holds."""
    started = time.time()
    unknown = [a for a in arms if a not in GPU_ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown {', '.join(unknown)}; valid: {', '.join(GPU_ARMS)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to this Python (--device cpu runs on the CPU)")
    if updates is not None and updates < 1:
        raise SystemExit(f"--updates {updates}: give a positive number of updates")
    plan(budget, started, quick, updates)  # refuses a budget too short before anything is written
    out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(data, quick, GPU_STUDY_VOCABULARY)
    kit = plan(budget, started, quick, updates)
    settings = StudySettings(data=str(data), out=str(out), configuration=kit.configuration, probe_tokens=0,
                             validate_every=max(1, kit.updates // 5), device=device, stop_seconds=kit.train_seconds,
                             updates=kit.updates)  # fmt: skip
    jobs = [Job(arm, seed) for seed in seeds for arm in arms if not (arm_dir(settings, arm, seed) / "result.json").exists()]
    print(f"==> GPU study kit: {len(arms)} arms x {len(seeds)} seeds on {device} ({len(arms) * len(seeds) - len(jobs)} "
          f"done already), side by side, {kit.updates} updates planned, each stopped after {kit.train_seconds:.0f} s "
          f"of training; budget {budget:.0f} s", flush=True)  # fmt: skip
    outcome = run_jobs(jobs, settings, parallel=max(1, len(jobs)), deadline=kit.deadline)
    results = load_results(out, arms)
    random = results.get("random", [])
    rows = {arm: arm_row(found, random) for arm, found in results.items()}
    missing = {
        "failed (its job.log under runs/)": sorted({job.arm for job in outcome["failed"]}),
        "stopped by the kit at the end of its budget, nothing scored": sorted({job.arm for job in outcome["stopped"]}),
    }
    report = {
        "configuration": dataclasses.asdict(settings.config),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "precision": "fp16" if device == "cuda" else "fp32",
        "updates_planned": kit.updates,
        "budget_seconds": budget,
        "train_seconds_limit": kit.train_seconds,
        "elapsed_seconds": time.time() - started,
        "arms": rows,
        "missing": {what: arms for what, arms in missing.items() if arms},
    }
    (out / "study_gpu.json").write_text(json.dumps(report, indent=2))
    (out / "study_gpu.md").write_text(markdown(rows, report["missing"], report))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/brown_pos",
                        help=f"Brown with --pos at {GPU_STUDY_VOCABULARY} pieces (prepared if missing)")  # fmt: skip
    parser.add_argument("--out", default="runs/gpu_study")
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds for the whole kit, data preparation included (default 330: 5.5 minutes)")  # fmt: skip
    parser.add_argument("--arms", default=",".join(GPU_ARMS))
    parser.add_argument("--seeds", default="1", help="seeds, every arm-seed side by side (a call needs two a side)")
    parser.add_argument("--updates", type=int, help="updates planned (default: the configuration's)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="the machinery on the CPU in seconds (tests)")
    parser.add_argument("--publish", action="store_true", help="copy study_gpu.json and study_gpu.md to docs/")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    device = "cpu" if args.quick else args.device
    report = run_gpu_study(Path(args.data), Path(args.out), [a for a in args.arms.split(",") if a], seeds,
                           args.budget, device, args.quick, args.updates)  # fmt: skip
    out = Path(args.out)
    print((out / "study_gpu.md").read_text())
    if args.publish:
        docs = REPO_ROOT / "docs"
        for name in ("study_gpu.json", "study_gpu.md"):
            shutil.copy(out / name, docs / name)
        print(f"wrote docs/study_gpu.json and docs/study_gpu.md ({len(report['arms'])} arms)")
    if len(report["arms"]) < len(args.arms.split(",")):
        raise SystemExit(f"gpu_study: {len(report['arms'])} of the arms were scored (the notes above say why)")


if __name__ == "__main__":
    main()
