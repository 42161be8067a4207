"""The study: every method as an arm, trained at several learning rates and
seeds under the STUDY configuration, then probed downstream. One arm-seed at
one rate is one job (a child process, one CPU thread): it trains with
fairseq-train's main in its own process (resuming from its last checkpoint
if it was killed; its console goes to ``train.log``), scores the result and
writes ``result.json``; a job whose ``result.json`` exists is skipped (or, when
its downstream probes are now wanted, only evaluated again).

    python -m maskplug_lab.experiments.study JOB_JSON   (one job; scripts/study.py runs them)

Per job: the curve of the loss at the ``<mask>`` positions of the fixed
standard mask and of the whole-word yardstick (fairseq's validation of
``masked_lm_plus`` logs them as ``loss_at_mask`` and ``loss_at_mask_ww``;
stock ``masked_lm``'s interval checkpoints are re-scored on them) against
updates, tokens processed and training seconds; the final scores at full
precision on the valid split (the learning rate is chosen on them) and on
the test split (the study reports those): every kind of predicted position,
both references, the spread of the predictions (collapse), the whole-word
yardstick (``fairseq_maskplug.scoring.validation``); with ``downstream``, the POS probe of
every layer and the Brown genre task fine-tuned with stock fairseq (MAE-LM
through ``export_roberta``).
"""

import json
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from fairseq_maskplug.methods import FE_COPIES, is_mae_lm
from fairseq_maskplug.safe_loading import STOCK_FAIRSEQ_TRAIN

from ..paths import PLUGIN_DIR
from .configurations import CONFIGURATIONS, EncoderSize, TrainingConfiguration, method_flags

FAIRSEQ_TRAIN_LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"  # fairseq_cli/train.py's console


@dataclass(frozen=True)
class StudyArm:
    """``method`` (a METHODS name) with the batch divided by ``batch_divisor``
    (fully-explored at equal compute: B/K sequences, K copies each) and
    ``extra_flags`` after the method's (later flags win)."""

    name: str
    method: str
    batch_divisor: int = 1
    extra_flags: Tuple[str, ...] = ()

    def method_flags(self, encoder: EncoderSize) -> List[str]:
        return [*method_flags(self.method, encoder), *self.extra_flags]


DECODER4 = ("--decoder-layers", "4")
ARMS: List[StudyArm] = [
    StudyArm("stock", "stock"),
    StudyArm("random", "random"),
    StudyArm("fully_explored", "fully_explored"),  # equal updates: K times the copies of the others
    StudyArm("fully_explored_compute", "fully_explored", FE_COPIES),  # equal compute
    StudyArm("linear", "linear"),
    StudyArm("cosine", "cosine"),
    StudyArm("whole_word", "whole_word"),
    StudyArm("pos", "pos"),
    StudyArm("mapnet", "mapnet"),
    StudyArm("mapnet_reference", "mapnet_reference"),
    StudyArm("mae_lm", "mae_lm"),
    # the tiny encoder's one-layer decoder does not learn to read the encoder within 1,500 steps of the pair-copy
    # task (docs/STUDY.md); four layers here and in the combinations
    StudyArm("mae_lm_decoder4", "mae_lm", extra_flags=DECODER4),
    StudyArm("cosine_mae_lm", "cosine_mae_lm", extra_flags=DECODER4),
    StudyArm("fully_explored_mae_lm", "fully_explored_mae_lm", FE_COPIES, extra_flags=DECODER4),
]
# arms whose training masks are whole words: their rate is chosen, and they are ranked, on the whole-word yardstick
WHOLE_WORD_ARMS = ("whole_word", "pos")
# the parity check's arm (docs/STUDY.md): masked_lm_plus as it trained before 0.3.0, <s> and </s> never selected
PARITY_ARMS: List[StudyArm] = [StudyArm("random_never_bos_eos", "random", extra_flags=("--never-mask-bos-eos",))]
# the reference's levers, tried on MAE-LM with the 4-layer decoder where its chosen rate leaves a seed collapsed
# (docs/STUDY.md, "MAE-LM"): pre-LN layers, the decoder reading the encoder's positions, twice the warm-up
# share, the reference's clipping
LEVER_ARMS: List[StudyArm] = [
    StudyArm("mae_lm_decoder4_pre_ln", "mae_lm", extra_flags=(*DECODER4, "--encoder-normalize-before")),
    StudyArm("mae_lm_decoder4_shared_positions", "mae_lm", extra_flags=(*DECODER4, "--decoder-positions", "encoder")),
    StudyArm("mae_lm_decoder4_warmup20", "mae_lm", extra_flags=(*DECODER4, "--warmup-updates", "1200")),
    StudyArm("mae_lm_decoder4_clip2", "mae_lm", extra_flags=(*DECODER4, "--clip-norm", "2.0")),
]
ARM_BY_NAME = {arm.name: arm for arm in ARMS + PARITY_ARMS + LEVER_ARMS}


@dataclass(frozen=True)
class Job:
    """One arm-seed at one learning rate (None: the configuration's);
    ``downstream``: with the POS probe and the genre task."""

    arm: str
    seed: int
    lr: Optional[float] = None
    downstream: bool = True


@dataclass
class StudySettings:
    """What every job of one study shares."""

    data: str  # prepared with --pos, at the configuration's vocabulary size
    out: str
    configuration: str = "study"  # a name of experiments.configurations.CONFIGURATIONS
    validate_every: int = 0  # 0 = a tenth of the updates
    probe_tokens: int = 20000  # tagged tokens the POS probe trains and is scored on; 0 skips the probe
    genre_dir: Optional[str] = None  # the genre task (corpus/genres.py); None skips it
    genre_epochs: int = 3
    device: str = "cpu"  # "cuda": train with --fp16 on the GPU and score there (at full precision)
    stop_seconds: float = 0.0  # > 0: fairseq-train stops cleanly after this much training (--stop-time-hours)
    updates: int = 0  # > 0: in place of the configuration's

    def __post_init__(self):
        self.data, self.out = os.path.abspath(self.data), os.path.abspath(self.out)
        self.genre_dir = os.path.abspath(self.genre_dir) if self.genre_dir else None

    @property
    def config(self) -> TrainingConfiguration:
        config = CONFIGURATIONS[self.configuration]
        return replace(config, updates=self.updates) if self.updates else config

    @property
    def interval(self) -> int:
        return self.validate_every or max(1, self.config.updates // 10)


@dataclass
class ArmSeedResult:
    arm: str
    seed: int
    flags: List[str]
    curve: List[Dict[str, float]]  # updates, at_mask_bits (and at_mask_ww_bits where logged), tokens, seconds
    final_at_mask_bits: float  # valid: loss at the <mask> positions of the fixed standard mask (MAE-LM: its decoder's)
    final_scores: (
        Dict  # valid: fairseq_maskplug.scoring.validation.ValidationScores (every kind of position, references, spread, ww)
    )
    train_seconds: float
    test_top1_at_mask: float  # top-1 accuracy at the <mask> positions of the test split
    pos_probe: Optional[Dict]  # None: not probed (probe_tokens 0, or not downstream)
    genre_accuracy: Optional[float]
    decoder_loss: bool  # MAE-LM: the loss above is its pre-training decoder's
    evaluation_seconds: float = 0.0
    notes: List[str] = field(default_factory=list)
    lr: Optional[float] = None  # None: the configuration's
    test_scores: Optional[Dict] = None  # the same as final_scores, on the test split
    collapsed: bool = False  # valid: one prediction at every <mask> position, at the unigram's loss


def lr_label(lr: float) -> str:
    """A learning rate as the study's folders and tables name it: 0.002 -> "0.002"."""
    return f"{lr:g}"


def arm_dir(settings: StudySettings, arm: str, seed: int, lr: Optional[float] = None) -> Path:
    """Where one job writes: ``OUT/runs/ARM/seedS``, or ``OUT/runs/ARM/lrLR/seedS`` at a rate of its own."""
    base = Path(settings.out) / "runs" / arm
    return (base if lr is None else base / f"lr{lr_label(lr)}") / f"seed{seed}"


def train_args(arm: StudyArm, seed: int, settings: StudySettings, save_dir: Path, lr: Optional[float] = None) -> List[str]:
    """The job's ``fairseq-train`` arguments (``lr``: in place of the configuration's)."""
    config = settings.config
    keep = arm.name in ("stock", "pos")  # stock is re-scored on the fixed mask; pos's early state is a mechanism
    return [
        settings.data, "--user-dir", str(PLUGIN_DIR),
        "--criterion", "masked_lm", *config.flags(cpu=settings.device == "cpu"), *arm.method_flags(config.encoder),
        *(["--fp16"] if settings.device == "cuda" else []),
        *(["--stop-time-hours", f"{settings.stop_seconds / 3600:.6f}"] if settings.stop_seconds > 0 else []),
        "--batch-size", str(max(1, config.batch_size // arm.batch_divisor)), "--batch-size-valid", str(config.batch_size),
        "--seed", str(seed),
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--validate-interval-updates", str(settings.interval),
        "--save-interval-updates", str(settings.interval), "--keep-interval-updates", "-1" if keep else "1",
        "--log-format", "json", "--log-interval", str(max(1, settings.interval // 5)),
        *(["--lr", lr_label(lr)] if lr is not None else []),
    ]  # fmt: skip


def parse_log(log: Path):
    """(train records, valid records) from a json-format fairseq log; a record
    repeated after a resume replaces the earlier one. The train records are
    the ``train_inner`` ones, and the last epoch summary (``train``) where it
    reaches past them: a run stopped by its time limit between two
    ``train_inner`` lines is covered to its end, at its epoch's mean rate."""
    train, valid, epochs = {}, {}, {}
    for line in log.read_text().splitlines():
        match = re.search(r"\| (train_inner|train|valid) \| (\{.*\})", line)
        if match:
            record = json.loads(match.group(2))
            if match.group(1) == "valid":
                valid[int(record["valid_num_updates"])] = record
            else:
                records = train if match.group(1) == "train_inner" else epochs
                key = "num_updates" if match.group(1) == "train_inner" else "train_num_updates"
                records[int(record[key])] = {k.removeprefix("train_"): v for k, v in record.items()}
    if epochs and max(epochs) > max(train, default=0):
        train[max(epochs)] = epochs[max(epochs)]
    return [train[k] for k in sorted(train)], [valid[k] for k in sorted(valid)]


def curve(log: Path, interval: int, rescore=None) -> List[Dict[str, float]]:
    """Validation points (updates, loss at ``<mask>`` in bits and, where
    logged, the whole-word yardstick's, tokens processed, training seconds);
    ``rescore(update)`` replaces fairseq's logged figures with a dict of
    them (stock ``masked_lm`` validates on masks of its own and logs no such
    key). Training seconds are the updates' own time, each logged interval's
    updates over its ``ups``: fairseq's ``wall`` restarts at 0 (and stays
    there) when a run resumes from a checkpoint."""
    train, valid = parse_log(log)
    tokens, seconds, seen, trained = 0.0, 0.0, 0, {}
    cumulative = {}
    # fairseq logs ups 0 for a run's first record (its meter has no elapsed time yet): that interval
    # is counted at the next record's rate
    rates = [float(r["ups"]) for r in train]
    for i in range(len(rates) - 2, -1, -1):
        if rates[i] <= 0:
            rates[i] = rates[i + 1]
    for record, rate in zip(train, rates):  # wpb and ups are the means over the records' interval
        updates = int(record["num_updates"])
        tokens += float(record["wpb"]) * (updates - seen)
        seconds += (updates - seen) / rate if rate > 0 else 0.0
        seen = updates
        cumulative[updates] = tokens
        trained[updates] = seconds
    points = []
    for record in valid:
        updates = int(record["valid_num_updates"])
        known = [u for u in cumulative if u <= updates] or [min(cumulative)]
        at = max(known)
        if rescore:
            figures = rescore(updates)
        else:
            figures = {"at_mask_bits": float(record["valid_loss_at_mask"])}
            if "valid_loss_at_mask_ww" in record:
                figures["at_mask_ww_bits"] = float(record["valid_loss_at_mask_ww"])
        if figures is None:  # an end-of-epoch validation without an interval checkpoint to re-score
            continue
        points.append({"updates": updates, **figures, "tokens": cumulative[at] * updates / at,
                       "seconds": trained[at] * updates / at})  # fmt: skip
    return points


def job_done(settings: StudySettings, arm: str, seed: int, lr: Optional[float], downstream: bool) -> bool:
    """The job's result.json exists, with the downstream probes when they are wanted."""
    path = arm_dir(settings, arm, seed, lr) / "result.json"
    if not path.exists():
        return False
    return not downstream or not settings.probe_tokens or json.loads(path.read_text())["pos_probe"] is not None


def run_job(arm_name: str, seed: int, settings: StudySettings, lr: Optional[float] = None,
            downstream: bool = True) -> ArmSeedResult:  # fmt: skip
    """Train (or resume) one arm-seed at ``lr``, evaluate it, write its
    result.json; a job trained already (its result.json without the
    downstream probes, now wanted) is only evaluated again, from its checkpoint."""
    arm = ARM_BY_NAME[arm_name]
    out = arm_dir(settings, arm_name, seed, lr)
    out.mkdir(parents=True, exist_ok=True)
    save_dir, log = out / "checkpoints", out / "train.log"
    if not (out / "result.json").exists():
        try:
            train_logged_to(train_args(arm, seed, settings, save_dir, lr), log)
        except (Exception, SystemExit) as error:
            raise RuntimeError(f"{arm_name} seed {seed}: fairseq-train failed ({error!r}); see {log}") from error
    started = time.time()
    result = evaluate(arm, seed, settings, out, log, lr, downstream)
    result.evaluation_seconds = time.time() - started
    (out / "result.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def train_logged_to(args: List[str], log: Path):
    """``fairseq-train ARGS`` run by its main in this process (the job's: it
    has fairseq imported already, a child would import it again), with its
    console appended to ``log`` as fairseq-train writes it (its log format on
    stdout, at INFO; :func:`parse_log` reads it), the traceback of a failure
    included. File descriptors 1 and 2 point to ``log`` meanwhile (native
    code's output goes there too); the root logger is restored afterwards."""
    from fairseq import distributed_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(FAIRSEQ_TRAIN_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    with open(log, "a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        root.handlers[:] = [console]
        root.setLevel(logging.INFO)
        try:
            namespace = options.parse_args_and_arch(options.get_training_parser(), input_args=args)
            distributed_utils.call_main(convert_namespace_to_omegaconf(namespace), train.main)
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def curve_figures(scores) -> Dict[str, float]:
    """A curve point's figures from a checkpoint's :class:`ValidationScores`."""
    figures = {"at_mask_bits": scores.at_mask.loss_bits}
    if scores.whole_words is not None:
        figures["at_mask_ww_bits"] = scores.whole_words.loss_bits
    return figures


def evaluate(arm: StudyArm, seed: int, settings: StudySettings, out: Path, log: Path, lr: Optional[float] = None,
             downstream: bool = True) -> ArmSeedResult:  # fmt: skip
    from fairseq_maskplug.scoring.validation import load_for_masking, validation_scores

    from ..diagnostics.probes import pos_probe

    save_dir = out / "checkpoints"
    last = save_dir / "checkpoint_last.pt"
    loaded = load_for_masking(str(last), settings.data)  # scored on valid and test without loading it twice
    final = validation_scores(str(last), settings.data, loaded=loaded, device=settings.device)
    rescore = None
    if arm.method == "stock":
        last_update = int(parse_log(log)[1][-1]["valid_num_updates"])

        def rescore(update):  # an interval checkpoint, or the last (a run stopped by its time limit has no other)
            if update == last_update:
                return curve_figures(final)
            found = list(save_dir.glob(f"checkpoint_*_{update}.pt"))  # checkpoint_EPOCH_UPDATE.pt
            return curve_figures(validation_scores(str(found[0]), settings.data, device=settings.device)) if found else None

    points = curve(log, settings.interval, rescore)
    test = validation_scores(str(last), settings.data, split="test", loaded=loaded, device=settings.device)
    probe = None
    if settings.probe_tokens and downstream:
        task, model = load_for_masking(str(last), settings.data, content_weighting="pos")
        for split in ("train", "test"):
            task.load_dataset(split)
        probe = asdict(pos_probe(task, model, settings.probe_tokens, settings.probe_tokens))
    flags = arm.method_flags(settings.config.encoder) + (["--lr", lr_label(lr)] if lr is not None else [])
    reached, planned = (int(points[-1]["updates"]) if points else 0), settings.config.updates
    notes = [f"stopped by its time limit at update {reached} of {planned}"] if reached < planned else []
    genre = genre_accuracy(last, is_mae_lm(flags), seed, settings, out) if settings.genre_dir and downstream else None
    return ArmSeedResult(
        arm=arm.name, seed=seed, flags=flags, curve=points, final_at_mask_bits=final.at_mask.loss_bits,
        final_scores=asdict(final), train_seconds=points[-1]["seconds"] if points else 0.0,
        test_top1_at_mask=test.at_mask.top1, pos_probe=probe, genre_accuracy=genre,
        decoder_loss=is_mae_lm(flags), notes=notes, lr=lr, test_scores=asdict(test), collapsed=final.collapsed,
    )  # fmt: skip


def genre_accuracy(checkpoint: Optional[Path], mae_lm: bool, seed: int, settings: StudySettings, out: Path) -> float:
    """Stock fairseq sentence_prediction fine-tuning (no --user-dir; safe
    loading with fairseq's one extra type allowed: ``STOCK_FAIRSEQ_TRAIN``) from the
    checkpoint (None: a randomly initialised encoder), MAE-LM through
    export_roberta; the held-out accuracy after the last epoch (no selection on it)."""
    restore = checkpoint
    if mae_lm:
        from fairseq_maskplug.models.export import export_roberta

        restore = Path(export_roberta(str(checkpoint), str(out / "exported"), force=True))
    config = settings.config
    command = [
        sys.executable, "-c", STOCK_FAIRSEQ_TRAIN, settings.genre_dir, "--task", "sentence_prediction",
        "--num-classes", str(genre_classes(settings.genre_dir)), "--criterion", "sentence_prediction",
        *(["--restore-file", str(restore)] if restore else []), "--reset-optimizer", "--reset-dataloader",
        "--reset-meters", "--reset-lr-scheduler", *config.encoder.flags(), "--arch", "roberta",
        "--max-positions", str(config.tokens_per_sample), "--init-token", "0", "--separator-token", "2",
        "--shorten-method", "truncate", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--lr", "1e-3",
        "--lr-scheduler", "polynomial_decay", "--warmup-updates", "20", "--total-num-update", "100000",
        "--max-epoch", str(settings.genre_epochs), "--batch-size", "32", "--cpu", "--num-workers", "0",
        "--seed", str(seed), "--no-save", "--log-format", "json", "--log-interval", "100",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # stock fairseq: the plugin is not importable
    run = subprocess.run(command, env=env, capture_output=True, text=True, cwd=out)
    (out / "genre.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"genre fine-tuning failed ({run.returncode}); see {out / 'genre.log'}")
    _, valid = parse_log(out / "genre.log")
    return float(valid[-1]["valid_accuracy"]) / 100 if valid else float("nan")


def genre_classes(genre_dir: str) -> int:
    with open(os.path.join(genre_dir, "label", "dict.txt")) as handle:
        return sum(1 for line in handle if line.strip())


def main(argv=None):
    job = json.loads((argv or sys.argv[1:])[0])
    run_job(job["arm"], job["seed"], StudySettings(**job["settings"]), job.get("lr"), job.get("downstream", True))


if __name__ == "__main__":
    main()
