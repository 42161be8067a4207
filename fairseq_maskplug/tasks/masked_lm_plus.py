"""``masked_lm_plus``: stock ``masked_lm`` data, masks drawn on the device per update.

The datasets deliver clean token blocks; :class:`~fairseq_maskplug.masking.Masker`
turns each batch into the stock masked-LM batch (``net_input.src_tokens``
corrupted, ``target`` the original id at predicted positions and pad elsewhere)
inside :meth:`train_step` / :meth:`valid_step`. Training masks are a pure
function of (``--seed``, update number, the batch's sample ids); validation
always uses one fixed standard mask (uniform tokens, ``--valid-mask-prob``,
80/10/10, fixed seed) so that validation losses of different arms compare.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq import metrics, utils
from fairseq.dataclass import ChoiceEnum
from fairseq.data import (
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from ..data.vocab_check import VocabCheckedDataset
from ..data.vocabulary import build_masker
from ..masking import (
    CorruptionRule,
    FullyExploredOptions,
    MaskDraws,
    MaskedTokens,
    Masker,
    default_segments,
    fully_explored_masks,
)
from ..masking.fully_explored import MASK_SIZES, PARTITIONS

logger = logging.getLogger(__name__)

STANDARD_VALID_RULE = CorruptionRule(leave_unmasked_prob=0.1, random_token_prob=0.1)
MASKING_CHOICES = ("random", "fully_explored")


class MaskingOptionError(ValueError):
    """An option of ``masked_lm_plus`` has a value it cannot train with."""


@dataclass
class MaskedLMPlusConfig(MaskedLMConfig):
    valid_mask_prob: float = field(
        default=0.15,
        metadata={
            "help": "ratio of the fixed standard validation mask (uniform tokens, 80/10/10, "
            "fixed seed), used whatever the training masking, so validation losses compare"
        },
    )
    valid_mask_seed: int = field(
        default=1,
        metadata={"help": "seed of the fixed validation mask (independent of --seed)"},
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
        default="random",
        metadata={"help": "fully_explored: random (permute units, then cut) or contiguous (spans)"},
    )
    fe_mask_size: ChoiceEnum(MASK_SIZES) = field(
        default="segment",
        metadata={
            "help": "fully_explored: segment (mask the whole segment, ratio 1/K) or ratio "
            "(ceil(mask_prob * n) units per copy, disjoint chunks of one permutation; K * mask_prob <= 1)"
        },
    )


def repeat_per_copy(sample, copies: int):
    """``sample`` with every per-sequence tensor repeated ``copies`` times,
    sequence-major, and the counts scaled."""

    def repeat(value):
        return value.repeat_interleave(copies, dim=0) if torch.is_tensor(value) and value.dim() > 0 else value

    sample = {key: repeat(value) for key, value in sample.items() if key != "net_input"} | {
        "net_input": {key: repeat(value) for key, value in sample["net_input"].items()}
    }
    sample["nsentences"] = sample["nsentences"] * copies
    sample["ntokens"] = sample["ntokens"] * copies
    return sample


def _check_unit_interval(name: str, value: float, *, open_low: bool, open_high: bool):
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise MaskingOptionError(f"--{name.replace('_', '-')} must lie in {interval}, got {value}")


def fully_explored_options(cfg: MaskedLMPlusConfig) -> Optional[FullyExploredOptions]:
    """The validated fully-explored options, or None for ``--masking random``."""
    if cfg.masking != "fully_explored":
        if cfg.fe_segments:
            raise MaskingOptionError("--fe-segments needs --masking fully_explored (or the fully_explored_masked_lm task)")
        return None
    segments = cfg.fe_segments or default_segments(cfg.mask_prob)
    try:
        options = FullyExploredOptions(segments, str(cfg.fe_partition), str(cfg.fe_mask_size), cfg.mask_prob)
    except ValueError as error:
        raise MaskingOptionError(str(error)) from error
    if segments > cfg.tokens_per_sample - 2:
        raise MaskingOptionError(
            f"--fe-segments {segments} is larger than any sequence can hold: --tokens-per-sample "
            f"{cfg.tokens_per_sample} leaves at most {cfg.tokens_per_sample - 2} maskable tokens"
        )
    return options


def check_masking_options(cfg: MaskedLMPlusConfig):
    """Raise :class:`MaskingOptionError` for option values masking cannot honour."""
    _check_unit_interval("mask_prob", cfg.mask_prob, open_low=True, open_high=True)
    _check_unit_interval("valid_mask_prob", cfg.valid_mask_prob, open_low=True, open_high=True)
    _check_unit_interval("leave_unmasked_prob", cfg.leave_unmasked_prob, open_low=False, open_high=False)
    _check_unit_interval("random_token_prob", cfg.random_token_prob, open_low=False, open_high=False)
    if cfg.leave_unmasked_prob + cfg.random_token_prob > 1:
        raise MaskingOptionError(
            "--leave-unmasked-prob + --random-token-prob must be at most 1 (they are shares of the "
            f"predicted positions), got {cfg.leave_unmasked_prob} + {cfg.random_token_prob}"
        )
    if cfg.mask_multiple_length != 1 or cfg.mask_stdev != 0:
        raise MaskingOptionError(
            "--mask-multiple-length / --mask-stdev (span masking) are not supported by "
            "masked_lm_plus; leave them at 1 / 0"
        )
    if cfg.d2v2_multi or cfg.include_target_tokens:
        raise MaskingOptionError(
            "--d2v2-multi / --include-target-tokens are data2vec options; masked_lm_plus does not support them"
        )


@register_task("masked_lm_plus", dataclass=MaskedLMPlusConfig)
class MaskedLMPlusTask(MaskedLMTask):
    """Masked-LM training whose masks are made on the device, per update."""

    cfg: MaskedLMPlusConfig

    def __init__(self, cfg: MaskedLMPlusConfig, dictionary=None):
        check_masking_options(cfg)
        super().__init__(cfg, dictionary)
        self.num_data_symbols = len(self.dictionary) - 1  # ids the .bin files may hold
        self.train_masker = self.build_masker(
            CorruptionRule(cfg.leave_unmasked_prob, cfg.random_token_prob),
            whole_words=cfg.mask_whole_words,
            frequency_weighted=cfg.freq_weighted_replacement,
        )
        self.valid_masker = self.build_masker(STANDARD_VALID_RULE, whole_words=False, frequency_weighted=False)
        self.fully_explored = fully_explored_options(cfg)
        if self.fully_explored is not None:
            logger.info("fully-explored masking: %s", self.fully_explored)

    @classmethod
    def load_dict(cls, cfg):
        paths = utils.split_paths(cfg.data)
        if not paths:
            raise MaskingOptionError("task.data is empty: give the prepared data directory")
        dict_path = os.path.join(paths[0], "dict.txt")
        if not os.path.isfile(dict_path):
            raise FileNotFoundError(
                f"no dict.txt in the data directory {paths[0]!r} (task.data): prepare one with "
                "`python scripts/prepare_corpus.py --input CORPUS --out DIR` or fairseq-preprocess"
            )
        dictionary = Dictionary.load(dict_path)
        logger.info("dictionary: %d types", len(dictionary))
        return dictionary

    def build_masker(self, rule: CorruptionRule, whole_words: bool, frequency_weighted: bool) -> Masker:
        return build_masker(self.dictionary, self.mask_idx, rule, whole_words, frequency_weighted)

    # ------------------------------------------------------------------ data

    def _load_dataset_split(self, split, epoch, combine):
        blocks = super()._load_dataset_split(split, epoch, combine)
        if len(blocks) == 0:
            raise ValueError(f"split '{split}' of {self.cfg.data!r} holds no tokens")
        paths = utils.split_paths(self.cfg.data)
        path = os.path.join(paths[(epoch - 1) % len(paths)], split)
        return VocabCheckedDataset(blocks, self.num_data_symbols, split, path)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """Clean ``<s>``-prefixed token blocks; masks are added per batch."""
        blocks = self._load_dataset_split(split, epoch, combine)
        if self.fully_explored is not None and split == "train":
            self.warn_short_sequences(blocks, split)
        net_input = {
            "src_tokens": RightPadDataset(blocks, pad_idx=self.source_dictionary.pad()),
            "src_lengths": NumelDataset(blocks, reduce=False),
        }
        if self.cfg.include_index:
            net_input["src_id"] = IdDataset()
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": net_input,
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(blocks, reduce=True),
            },
            sizes=[blocks.sizes],
        )
        with data_utils.numpy_seed(self.cfg.seed):
            shuffle = np.random.permutation(len(blocks))
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, blocks.sizes])

    def warn_short_sequences(self, blocks, split):
        """Say how many blocks hold fewer maskable tokens than --fe-segments,
        and what happens to them."""
        segments = self.fully_explored.segments
        short = int((np.asarray(blocks.sizes) < segments + 2).sum())
        if short:
            logger.warning(
                "%d of %d %s blocks have fewer than %d maskable tokens (--fe-segments): such a sequence "
                "with n units gets n one-unit segments, and its other copies predict nothing",
                short, len(blocks), split, segments,
            )

    # --------------------------------------------------------------- masking

    def mask_sample(self, sample, masked: MaskedTokens):
        """A copy of ``sample`` carrying ``masked`` (corrupted ``src_tokens``,
        ``target``) and the mask counts :meth:`reduce_metrics` logs. When
        ``masked`` holds K copies per sequence (sequence-major), every other
        per-sequence field is repeated alongside and ``ntokens`` /
        ``nsentences`` count the copies (the tokens actually processed)."""
        copies = masked.src_tokens.size(0) // sample["net_input"]["src_tokens"].size(0)
        sample = dict(sample)
        if copies > 1:
            sample = repeat_per_copy(sample, copies)
        sample["net_input"] = dict(sample["net_input"], src_tokens=masked.src_tokens)
        sample["target"] = masked.target
        sample["mask_counts"] = {
            "mask_predicted": masked.predicted.sum(),
            "mask_maskable": masked.maskable.sum(),
        }
        return sample

    def training_masks(self, sample, update_num) -> MaskedTokens:
        """The training masks of ``sample`` at ``update_num`` (the configured strategy)."""
        tokens = sample["net_input"]["src_tokens"]
        draws = self.train_draws(sample, update_num)
        if self.fully_explored is not None:
            return fully_explored_masks(self.train_masker, tokens, draws, self.fully_explored)
        return self.train_masker(tokens, self.cfg.mask_prob, draws)

    def validation_masks(self, sample) -> MaskedTokens:
        """The fixed standard validation mask of ``sample``."""
        return self.valid_masker(sample["net_input"]["src_tokens"], self.cfg.valid_mask_prob, self.valid_draws(sample))

    def train_draws(self, sample, update_num) -> MaskDraws:
        """Training draws: per sequence, from (--seed, update_num, sample id)."""
        return self._draws(sample, "train", self.cfg.seed, update_num)

    def valid_draws(self, sample) -> MaskDraws:
        """The fixed validation draws: per sequence, from (--valid-mask-seed,
        sample id) only, so every evaluation of every arm sees the same masks."""
        return self._draws(sample, "valid", self.cfg.valid_mask_seed, 0)

    def _draws(self, sample, stream, seed, update_num) -> MaskDraws:
        tokens = sample["net_input"]["src_tokens"]
        return MaskDraws.for_sequences(stream, seed, update_num, sample["id"].tolist(), tokens.size(1), tokens.device)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        sample = self.mask_sample(sample, self.training_masks(sample, update_num))
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad
        )
        logging_output.update(sample["mask_counts"])
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        sample = self.mask_sample(sample, self.validation_masks(sample))
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        logging_output.update(sample["mask_counts"])
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        predicted = utils.item(sum(log.get("mask_predicted", 0) for log in logging_outputs))
        maskable = utils.item(sum(log.get("mask_maskable", 0) for log in logging_outputs))
        if maskable > 0:
            metrics.log_scalar("mask_ratio", predicted / maskable, maskable, round=4)


@dataclass
class FullyExploredMaskedLMConfig(MaskedLMPlusConfig):
    masking: ChoiceEnum(MASKING_CHOICES) = field(
        default="fully_explored",
        metadata={"help": "training masks (this preset defaults to fully_explored)"},
    )


@register_task("fully_explored_masked_lm", dataclass=FullyExploredMaskedLMConfig)
class FullyExploredMaskedLMTask(MaskedLMPlusTask):
    """``masked_lm_plus`` with ``--masking fully_explored`` as the default."""
