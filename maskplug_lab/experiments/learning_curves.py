"""Train several masking arms for the same budget and score them at the
``<mask>`` positions of the fixed standard validation mask at regular
intervals.

Each arm is a ``fairseq-train`` run (a child process) with the same data,
model, optimiser, batch size and seed, differing only in its masking flags.
Checkpoints are kept at every validation interval and re-scored with
:func:`~fairseq_maskplug.scoring.validation.validation_scores`, so
stock ``masked_lm`` (which validates on its own masks) compares with the rest.
"""

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from fairseq_maskplug.methods import METHODS, is_mae_lm
from fairseq_maskplug.scoring.validation import validation_scores

from ..paths import PLUGIN_DIR, REPO_ROOT
from .configurations import TrainingConfiguration, method_flags


@dataclass
class CurvePoint:
    updates: int
    valid_loss: float  # bits per <mask> position of the fixed standard mask
    tokens_processed: int  # tokens of all copies fed to the model so far
    seconds: float  # training wall-clock at that update


@dataclass
class ArmResult:
    arm: str
    flags: List[str]
    points: List[CurvePoint] = field(default_factory=list)
    train_seconds: float = 0.0


def parse_arm(spec: str, batch_size: int) -> Tuple[str, int]:
    """``NAME`` or ``NAME@BATCH`` (a batch size for this arm only) -> (name, batch size)."""
    name, _, batch = spec.partition("@")
    if name not in METHODS:
        raise ValueError(f"unknown arm {name!r}; valid: {', '.join(METHODS)} (optionally NAME@BATCH_SIZE)")
    return name, int(batch) if batch else batch_size


def arm_flags(arm: str, config: TrainingConfiguration) -> List[str]:
    """The method's flags and the arm's batch size."""
    name, batch_size = parse_arm(arm, config.batch_size)
    return [*method_flags(name, config.encoder), "--batch-size", str(batch_size)]


def arm_command(
    arm: str,
    data: str,
    save_dir: Path,
    config: TrainingConfiguration,
    updates: int,
    validate_every: int,
    seed: int,
    extra: Sequence[str],
) -> List[str]:
    return [
        sys.executable, "-m", "fairseq_cli.train", data, "--user-dir", str(PLUGIN_DIR), "--criterion", "masked_lm",
        *config.flags(updates), *arm_flags(arm, config),  # the arm's flags win
        "--seed", str(seed), "--save-dir", str(save_dir), "--save-interval-updates", str(validate_every),
        "--keep-interval-updates", "-1", "--no-epoch-checkpoints", "--validate-interval-updates", str(validate_every),
        "--log-format", "json", "--log-interval", "1", *extra,
    ]  # fmt: skip


def training_progress(log_file: Path) -> Dict[int, Dict[str, float]]:
    """{update: {"tokens": cumulative ntokens, "seconds": wall}} from the
    output of a json-format fairseq run with --log-interval 1."""
    progress, tokens = {}, 0.0
    for line in log_file.read_text().splitlines():
        match = re.search(r"\| train_inner \| (\{.*\})", line)
        if not match:
            continue
        record = json.loads(match.group(1))
        tokens += float(record["wpb"])
        progress[int(record["num_updates"])] = {"tokens": tokens, "seconds": float(record["wall"])}
    return progress


def run_arm(
    arm: str,
    data: str,
    out: Path,
    config: TrainingConfiguration,
    updates: int,
    validate_every: int,
    seed: int = 1,
    extra: Sequence[str] = (),
) -> ArmResult:
    """Train one arm and score its interval checkpoints."""
    save_dir, log_file = out / arm, out / f"{arm}.log"
    save_dir.mkdir(parents=True, exist_ok=True)
    command = arm_command(arm, data, save_dir, config, updates, validate_every, seed, extra)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    started = time.time()
    with open(log_file, "w") as log:
        returncode = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        raise RuntimeError(f"arm {arm} failed (exit {returncode}); its output is in {log_file}")
    arm_result = ArmResult(arm, arm_flags(arm, config) + list(extra), train_seconds=time.time() - started)
    progress = training_progress(log_file)
    for checkpoint in sorted(save_dir.glob("checkpoint_*_*.pt"), key=lambda p: int(p.stem.split("_")[-1])):
        step = int(checkpoint.stem.split("_")[-1])
        loss = validation_scores(str(checkpoint), data).at_mask.loss_bits
        at = progress[step]
        arm_result.points.append(CurvePoint(step, loss, int(at["tokens"]), at["seconds"]))
    return arm_result


def decoder_loss(result: ArmResult) -> bool:
    """MAE-LM's validation loss is its pre-training decoder's: not comparable
    with the encoder-only arms, so it is tabled and plotted apart."""
    return is_mae_lm(result.flags)


def markdown_table(results: List[ArmResult]) -> str:
    """Final and intermediate validation losses, one column per arm."""
    steps = sorted({p.updates for r in results for p in r.points})
    names = [f"{r.arm} (decoder loss)" if decoder_loss(r) else r.arm for r in results]
    lines = ["| updates | " + " | ".join(names) + " |", "|---" * (len(results) + 1) + "|"]
    for step in steps:
        cells = [next((f"{p.valid_loss:.4f}" for p in r.points if p.updates == step), "") for r in results]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append("| tokens processed | " + " | ".join(f"{r.points[-1].tokens_processed:,}" for r in results) + " |")
    lines.append("| train seconds | " + " | ".join(f"{r.points[-1].seconds:.1f}" for r in results) + " |")
    return "\n".join(lines)


def plot(results: List[ArmResult], path: Path, title: str):
    """Validation loss against updates, tokens processed and seconds; MAE-LM
    arms (their decoder's loss) in a second row of panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("loss at <mask>, bits\n(fixed standard 15% mask)", [r for r in results if not decoder_loss(r)]),
        ("MAE-LM: loss at <mask>, bits\n(its decoder's, same mask)", [r for r in results if decoder_loss(r)]),
    ]
    rows = [(label, arms) for label, arms in rows if arms]
    figure, axes = plt.subplots(len(rows), 3, figsize=(15, 4.2 * len(rows)), squeeze=False, sharey="row")
    for row, (label, arms) in zip(axes, rows):
        for result in arms:
            for axis, key in zip(row, ("updates", "tokens_processed", "seconds")):
                axis.plot(
                    [getattr(p, key) for p in result.points],
                    [p.valid_loss for p in result.points],
                    marker="o",
                    markersize=3,
                    label=result.arm,
                )
        for axis, xlabel in zip(row, ("updates", "tokens processed (all copies)", "training seconds (wall-clock)")):
            axis.set_xlabel(xlabel)
            axis.grid(alpha=0.3)
        row[1].ticklabel_format(style="sci", axis="x", scilimits=(0, 0))
        # the first evaluation sits far above the rest: let the later ones fill the panel
        later = [p.valid_loss for r in arms for p in r.points[1:]]
        if later:
            low, high = min(later), max(later)
            margin = 0.05 * (high - low) + 1e-3
            for axis in row:
                axis.set_ylim(low - margin, high + margin)
        row[0].set_ylabel(label)
        row[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save(results: List[ArmResult], out: Path, title: str):
    (out / "curves.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    (out / "curves.md").write_text(markdown_table(results) + "\n")
    plot(results, out / "curves.png", title)
