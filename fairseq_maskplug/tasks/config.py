"""Options of ``masked_lm_plus`` and its presets, their validation, and the
masking objects they describe.

Every check runs when the task is built, before any data is read or any
update is made, and names the option and what would be valid. Checks of the
masking objects themselves live in :mod:`fairseq_maskplug.masking`, which
names its own parameters; :func:`options_named` turns those names into the
flags here, once.
"""

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks.masked_lm import MaskedLMConfig
from omegaconf import II

from ..errors import MaskingOptionError
from ..masking import CorruptionRule, FullyExploredOptions, RatioSchedule, default_segments
from ..masking.class_losses import check_tracker_options
from ..masking.fully_explored import MASK_SIZES, PARTITIONS
from ..masking.schedules import SCHEDULES
from ..masking.strategies import WEIGHTED_LAWS, SpanUnits

MASKING_CHOICES = ("random", "fully_explored")
VALID_WHOLE_WORDS = ("auto", "yes", "no")
CONTENT_WEIGHTINGS = ("none", "pos")


@dataclass
class MaskedLMPlusConfig(MaskedLMConfig):
    valid_mask_prob: float = field(
        default=0.15,
        metadata={
            "help": "ratio of the fixed standard validation mask (uniform tokens, 80/10/10, "
            "fixed seed), used whatever the training masking, so validation losses compare"
        },
    )
    valid_mask_seed: int = field(default=1, metadata={"help": "seed of the fixed validation mask (independent of --seed)"})
    valid_whole_words: ChoiceEnum(VALID_WHOLE_WORDS) = field(
        default="auto",
        metadata={
            "help": "also score a fixed whole-word mask at validation (--valid-mask-prob of the words, every piece of "
            "a chosen word, 80/10/10 per word, its own seed): loss_at_mask_ww against unigram_at_mask_ww, the "
            "yardstick of whole-word methods. auto: when word starts are known (--bpe, or sentencepiece pieces "
            "in dict.txt); yes: required; no: off"
        },
    )
    masking: ChoiceEnum(MASKING_CHOICES) = field(
        default="random",
        metadata={
            "help": "training masks: random (one mask per sequence, stock) or fully_explored "
            "(K disjoint segments per sequence, one masked copy each, all in the same update)"
        },
    )
    fe_segments: int = field(
        default=0,
        metadata={
            "help": "fully_explored: copies K per sequence, >= 2; 0 = round(1 / mask_prob). "
            "--batch-size/--max-tokens count unique sequences, so an update holds K times as many copies"
        },
    )
    fe_partition: ChoiceEnum(PARTITIONS) = field(
        default="random", metadata={"help": "fully_explored: random (permute units, then cut) or contiguous (spans)"}
    )
    fe_mask_size: ChoiceEnum(MASK_SIZES) = field(
        default="segment",
        metadata={
            "help": "fully_explored: segment (mask the whole segment, ratio 1/K) or ratio "
            "(ceil(mask_prob * n) units per copy, disjoint chunks of one permutation; K * mask_prob <= 1)"
        },
    )
    mask_schedule: ChoiceEnum(SCHEDULES) = field(
        default="constant",
        metadata={
            "help": "mask ratio over updates: constant (--mask-prob), linear (2p -> 0), cosine "
            "(p(1 + cos(pi t/T)) + 0.02), asc, square_above, square_below, poly_asc, poly_desc, "
            "lin_warm_decay, step; see README for the formulas"
        },
    )
    mask_schedule_start: Optional[float] = field(
        default=None, metadata={"help": "ratio at update 0 (default: the schedule's reference value for --mask-prob)"}
    )
    mask_schedule_end: Optional[float] = field(
        default=None,
        metadata={"help": "ratio at the last scheduled update (poly_asc/poly_desc: at its middle); default: reference"},
    )
    mask_schedule_updates: int = field(default=0, metadata={"help": "length T of the schedule in updates (0 = --max-update)"})
    mask_schedule_warmup: int = field(
        default=0, metadata={"help": "lin_warm_decay: updates of linear warm-up from 0 to the start ratio"}
    )
    content_weighting: ChoiceEnum(CONTENT_WEIGHTINGS) = field(
        default="none",
        metadata={
            "help": "none (uniform content) or pos: units drawn with weight sigmoid(T * z-score of the running "
            "loss of their POS tag), needs DIR/pos from prepare_corpus.py --pos"
        },
    )
    pos_selection: ChoiceEnum(WEIGHTED_LAWS) = field(
        default="reference",
        metadata={
            "help": "content-weighting pos: reference (the PTW code's law: units in random order, each offered with "
            "probability w and taken while it fits the budget; may fall short of it) or race (drawn without "
            "replacement proportionally to w until the budget is filled exactly; less selective)"
        },
    )
    pos_momentum: float = field(
        default=0.999, metadata={"help": "content-weighting pos: momentum of the running loss per tag"}
    )
    pos_temperature: float = field(default=2.0, metadata={"help": "content-weighting pos: T in sigmoid(T * z)"})
    pos_bias_correction: bool = field(
        default=False,
        metadata={
            "help": "content-weighting pos: divide each tag's running loss by 1 - momentum^(steps that saw it) "
            "(the reference does not, so rarely predicted tags start with low weights)"
        },
    )
    never_mask_bos_eos: bool = field(
        default=False,
        metadata={
            "help": "never select <s> and </s> for prediction in the training masks (this plugin's default before "
            "0.3.0). By default they are selected like any token, as stock masked_lm does: at 16-piece blocks that "
            "trains 0.3-0.4 bit better at <mask> (docs/STUDY.md). The validation masks never select them"
        },
    )
    # mirrors of other groups' options, read by the task (no help: not task options)
    word_bpe: Any = II("bpe")  # the --bpe group (not "bpe": the argparse namespace would fill it with the name alone)
    max_update: int = II("optimization.max_update")
    lr: Any = II("optimization.lr")
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    reset_dataloader: bool = II("checkpoint.reset_dataloader")


def flag(option: str) -> str:
    """The command-line flag of a config field: ``mask_prob`` -> ``--mask-prob``."""
    return "--" + option.replace("_", "-")


@contextlib.contextmanager
def options_named(parameters: Dict[str, str]):
    """Re-raise a ``ValueError`` of :mod:`~fairseq_maskplug.masking` as a
    :class:`MaskingOptionError` whose ```parameter``` names are replaced by
    the options ``parameters`` maps them to (config field names)."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        for parameter, option in parameters.items():
            message = message.replace(f"`{parameter}`", flag(option))
        raise MaskingOptionError(message) from error


def _check_unit_interval(name: str, value: float, *, open_low: bool, open_high: bool):
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise MaskingOptionError(f"{flag(name)} must lie in {interval}, got {value}")


def corruption_rule(cfg: MaskedLMPlusConfig) -> CorruptionRule:
    """The training masks' 80/10/10 shares."""
    with options_named({"leave_unmasked_prob": "leave_unmasked_prob", "random_token_prob": "random_token_prob"}):
        return CorruptionRule(cfg.leave_unmasked_prob, cfg.random_token_prob)


def fully_explored_options(cfg: MaskedLMPlusConfig) -> Optional[FullyExploredOptions]:
    """The validated fully-explored options, or None for ``--masking random``."""
    if cfg.masking != "fully_explored":
        if cfg.fe_segments:
            raise MaskingOptionError("--fe-segments needs --masking fully_explored (or the fully_explored_masked_lm task)")
        return None
    segments = cfg.fe_segments or default_segments(cfg.mask_prob)
    parameters = {
        "segments": "fe_segments",
        "partition": "fe_partition",
        "mask_size": "fe_mask_size",
        "mask_prob": "mask_prob",
    }
    with options_named(parameters):
        options = FullyExploredOptions(segments, str(cfg.fe_partition), str(cfg.fe_mask_size), cfg.mask_prob)
    most = cfg.tokens_per_sample - (2 if cfg.never_mask_bos_eos else 0)
    if segments > most:
        raise MaskingOptionError(
            f"--fe-segments {segments} is larger than any sequence can hold: --tokens-per-sample "
            f"{cfg.tokens_per_sample} leaves at most {most} maskable tokens"
        )
    return options


def resolved(cfg, key: str, default):
    """``cfg.key``, or ``default`` where it is an interpolation that cannot be
    resolved (a config built outside fairseq-train)."""
    try:
        value = getattr(cfg, key)
    except Exception:  # omegaconf raises several resolution errors
        return default
    return default if isinstance(value, str) and value.startswith("${") else value


def ratio_schedule(cfg: MaskedLMPlusConfig) -> RatioSchedule:
    """The training mask-ratio schedule (constant --mask-prob by default)."""
    for name in ("mask_schedule_updates", "mask_schedule_warmup"):
        if getattr(cfg, name) < 0:
            raise MaskingOptionError(
                f"{flag(name)} must be >= 0{' (0 = --max-update)' if name.endswith('updates') else ''}, "
                f"got {getattr(cfg, name)}"
            )
    updates = cfg.mask_schedule_updates or resolved(cfg, "max_update", 0) or 0
    parameters = {
        "name": "mask_schedule",
        "start": "mask_schedule_start",
        "end": "mask_schedule_end",
        "updates": "mask_schedule_updates",
        "warmup": "mask_schedule_warmup",
    }
    with options_named(parameters):
        schedule = RatioSchedule.build(
            str(cfg.mask_schedule),
            cfg.mask_prob,
            updates,
            cfg.mask_schedule_start,
            cfg.mask_schedule_end,
            cfg.mask_schedule_warmup,
        )
    if schedule.name != "constant" and cfg.masking != "random":
        raise MaskingOptionError(
            f"--mask-schedule {schedule.name} needs --masking random (fully-explored copies have ratio 1/K)"
        )
    return schedule


def uses_spans(cfg: MaskedLMPlusConfig) -> bool:
    """Stock span masking is asked for (``--mask-multiple-length`` > 1 or ``--mask-stdev`` > 0)."""
    return cfg.mask_multiple_length != 1 or cfg.mask_stdev != 0


def check_spans(cfg: MaskedLMPlusConfig):
    """Span masking combines with ratio schedules and whole words; the
    strategies that choose units their own way refuse it."""
    if not uses_spans(cfg):
        return
    with options_named({"length": "mask_multiple_length", "stdev": "mask_stdev"}):
        SpanUnits.check(cfg.mask_multiple_length, cfg.mask_stdev)
    if cfg.masking != "random":
        raise MaskingOptionError(
            "--mask-multiple-length / --mask-stdev (span masking) need --masking random: fully-explored copies "
            "partition the units into K segments (--fe-partition contiguous gives span-shaped segments)"
        )
    if cfg.content_weighting != "none":
        raise MaskingOptionError(
            "--mask-multiple-length / --mask-stdev (span masking) cannot be combined with --content-weighting pos, "
            "which chooses units by their POS weights"
        )


def check_pos_weighting(cfg: MaskedLMPlusConfig):
    """The options of ``--content-weighting pos`` (POS weighting)."""
    if cfg.content_weighting == "none":
        return
    if cfg.masking != "random":
        raise MaskingOptionError("--content-weighting pos needs --masking random")
    with options_named({"momentum": "pos_momentum", "temperature": "pos_temperature"}):
        check_tracker_options(cfg.pos_momentum, cfg.pos_temperature)
    if cfg.shorten_method != "none":
        raise MaskingOptionError(
            "--content-weighting pos cannot follow --shorten-method (the POS blocks would not be cut alike); "
            "use --shorten-method none"
        )


def check_masking_options(cfg: MaskedLMPlusConfig):
    """Raise :class:`MaskingOptionError` for task option values that no
    masking object checks (ratios, block length, stock options not supported)."""
    _check_unit_interval("mask_prob", cfg.mask_prob, open_low=True, open_high=True)
    _check_unit_interval("valid_mask_prob", cfg.valid_mask_prob, open_low=True, open_high=True)
    if cfg.d2v2_multi or cfg.include_target_tokens or cfg.skip_masking:
        raise MaskingOptionError(
            "--d2v2-multi / --include-target-tokens / --skip-masking are data2vec options; masked_lm_plus "
            "does not support them (its datasets never mask: masks are drawn per update)"
        )
    if cfg.tokens_per_sample < 2:
        raise MaskingOptionError(f"--tokens-per-sample must be at least 2 (<s> and one token), got {cfg.tokens_per_sample}")
    if not 0 <= cfg.valid_mask_seed < 2**32:  # --seed: fairseq-train checks it (numpy's message)
        raise MaskingOptionError(f"--valid-mask-seed must be >= 0 (and < 2**32), got {cfg.valid_mask_seed}")
    if str(cfg.sample_break_mode) == "eos" and not hasattr(np, "compat"):
        raise MaskingOptionError(
            f"--sample-break-mode eos fails in fairseq 0.12 under numpy {np.__version__} (its TokenBlockDataset "
            "uses np.compat, removed in numpy 2): use none, complete or complete_doc, or install numpy<2"
        )


@dataclass
class FullyExploredMaskedLMConfig(MaskedLMPlusConfig):
    masking: ChoiceEnum(MASKING_CHOICES) = field(
        default="fully_explored", metadata={"help": "training masks (this preset defaults to fully_explored)"}
    )


@dataclass
class TimeVariantMaskedLMConfig(MaskedLMPlusConfig):
    mask_schedule: ChoiceEnum(SCHEDULES) = field(
        default="cosine",
        metadata={"help": "mask ratio over updates (this preset defaults to cosine: p(1 + cos(pi t/T)) + 0.02)"},
    )
