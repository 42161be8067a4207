"""``masked_lm_plus``: stock ``masked_lm`` data, masks drawn on the device per update.

The datasets deliver clean token blocks (and, for POS weighting, aligned tag
blocks); :class:`~fairseq_maskplug.masking.Masker` turns each batch into the
stock masked-LM batch (``net_input.src_tokens`` corrupted, ``target`` the
original id at predicted positions and pad elsewhere) inside
:meth:`train_step` / :meth:`valid_step`. Training masks are a pure function of
(``--seed``, update number, sample id) and of the running state (POS losses);
validation always uses one fixed standard mask (uniform tokens,
``--valid-mask-prob``, 80/10/10, fixed seed) so that validation losses of
different arms compare. The criterion takes part through one protocol,
:mod:`fairseq_maskplug.criterions.masking_criterion`.
"""

import logging
import os
from typing import Optional

import numpy as np
import torch
from fairseq import metrics, utils
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
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
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMTask

from ..criterions.masking_criterion import MaskedLmPlusLoss, MaskingCriterion, TrainingBatch, token_losses_of
from ..data.data_checks import check_binarized_split, check_dictionary_file, check_shard_dictionaries
from ..data.pos_dataset import load_pos_blocks, pos_dictionary
from ..data.vocab_check import VocabCheckedDataset
from ..data.vocabulary import build_masker
from ..errors import MaskingOptionError
from ..masking import (
    CorruptionRule,
    FullyExploredUnits,
    MaskDraws,
    MaskedTokens,
    MaskingStep,
    MaskingStrategy,
    ProposalMasking,
    RatioSchedule,
    SpanUnits,
    UniformUnits,
    WeightedUnits,
)
from ..masking.draws import VERSION as DRAWS_VERSION
from .collapse import CollapseMonitor
from .config import (
    FullyExploredMaskedLMConfig,
    MaskedLMPlusConfig,
    TimeVariantMaskedLMConfig,
    check_masking_options,
    check_pos_weighting,
    check_spans,
    corruption_rule,
    fully_explored_options,
    ratio_schedule,
    resolved,
    uses_spans,
)
from .pos_weighting import PosWeighting
from .position_kinds import kind_logging_output, reduce_kind_metrics, unigram_losses
from .resume import task_state_to_restore

logger = logging.getLogger(__name__)

STANDARD_VALID_RULE = CorruptionRule(leave_unmasked_prob=0.1, random_token_prob=0.1)


def mask_counts(masked: MaskedTokens):
    """The mask counts :meth:`MaskedLMPlusTask.reduce_metrics` logs."""
    return {"mask_predicted": masked.predicted.sum(), "mask_maskable": masked.maskable.sum()}


def rows_per_copy(tensor: torch.Tensor, copies: int) -> torch.Tensor:
    """(B, ...) ``tensor`` with each row repeated ``copies`` times, sequence-major."""
    return tensor.repeat_interleave(copies, dim=0) if copies > 1 else tensor


def repeat_per_copy(sample, copies: int):
    """``sample`` with every per-sequence tensor repeated ``copies`` times,
    sequence-major, and the counts scaled."""

    def repeat(value):
        return rows_per_copy(value, copies) if torch.is_tensor(value) and value.dim() > 0 else value

    sample = {key: repeat(value) for key, value in sample.items() if key != "net_input"} | {
        "net_input": {key: repeat(value) for key, value in sample["net_input"].items()}
    }
    sample["nsentences"] = sample["nsentences"] * copies
    sample["ntokens"] = sample["ntokens"] * copies
    return sample


@register_task("masked_lm_plus", dataclass=MaskedLMPlusConfig)
class MaskedLMPlusTask(MaskedLMTask):
    """Masked-LM training whose masks are made on the device, per update.

    Build: options checked, the training strategy and the fixed validation
    strategy made from them. Mask: each batch's draws (seed, update, sample
    ids) go through the strategy. Step: the criterion's ``train_forward`` on
    the masked batch (or, for a criterion that draws its masks, on the clean
    batch with the step's draws), then fairseq's backward. Log: mask ratios,
    schedule, POS statistics.
    """

    cfg: MaskedLMPlusConfig

    def __init__(self, cfg: MaskedLMPlusConfig, dictionary=None):
        check_masking_options(cfg)
        check_pos_weighting(cfg)
        check_spans(cfg)
        rule = corruption_rule(cfg)
        super().__init__(cfg, dictionary)
        self.num_data_symbols = len(self.dictionary) - 1  # ids the .bin files may hold
        self.train_masker = build_masker(
            self.dictionary, self.mask_idx, rule, cfg.mask_whole_words, cfg.freq_weighted_replacement,
            bpe=resolved(cfg, "word_bpe", None), never_mask_bos_eos=cfg.never_mask_bos_eos,
        )  # fmt: skip
        self.schedule = ratio_schedule(cfg)
        self.train_strategy = self.build_train_strategy(cfg)
        valid_masker = build_masker(
            self.dictionary, self.mask_idx, STANDARD_VALID_RULE, whole_words=False, frequency_weighted=False,
            never_mask_bos_eos=True,
        )  # fmt: skip
        self.valid_strategy = UniformUnits(valid_masker, RatioSchedule.build("constant", cfg.valid_mask_prob, 0))
        self.valid_word_strategy = self.build_valid_word_strategy(cfg)
        self.pos_weighting: Optional[PosWeighting] = None
        if cfg.content_weighting == "pos":
            self.pos_weighting = PosWeighting(
                pos_dictionary(utils.split_paths(cfg.data)[0]), cfg.pos_momentum, cfg.pos_temperature, cfg.pos_bias_correction
            )
        self.model_dim: Optional[int] = None
        self.criterion: Optional[MaskingCriterion] = None  # build_criterion's: its running state is checkpointed here
        # the reference of the masked-position loss: what ignoring context scores (see .position_kinds)
        self.unigram_losses = unigram_losses(torch.tensor(self.dictionary.count), valid_masker.special_ids)
        self.collapse_monitor = CollapseMonitor(resolved(cfg, "lr", None))

    def build_train_strategy(self, cfg: MaskedLMPlusConfig) -> MaskingStrategy:
        """The strategy the options select: fully-explored, POS-weighted or uniform."""
        fully_explored = fully_explored_options(cfg)
        if fully_explored is not None:
            logger.info("fully-explored masking: %s", fully_explored)
            return FullyExploredUnits(self.train_masker, fully_explored)
        if self.schedule.name != "constant":
            logger.info("mask-ratio schedule: %s", self.schedule)
        if cfg.content_weighting == "pos":
            return WeightedUnits(self.train_masker, self.schedule, str(cfg.pos_selection))
        if uses_spans(cfg):
            return SpanUnits(self.train_masker, self.schedule, cfg.mask_multiple_length, cfg.mask_stdev)
        return UniformUnits(self.train_masker, self.schedule)

    def build_valid_word_strategy(self, cfg: MaskedLMPlusConfig) -> Optional[UniformUnits]:
        """The whole-word yardstick (``--valid-whole-words``): uniform words at
        ``--valid-mask-prob``, every piece of a chosen word predicted, 80/10/10
        per word; None when off, or with ``auto`` when word starts are unknown."""
        if cfg.valid_whole_words == "no":
            return None
        try:
            masker = build_masker(
                self.dictionary, self.mask_idx, STANDARD_VALID_RULE, whole_words=True, frequency_weighted=False,
                bpe=resolved(cfg, "word_bpe", None), never_mask_bos_eos=True,
            )  # fmt: skip
        except MaskingOptionError as error:
            if cfg.valid_whole_words == "yes":
                raise MaskingOptionError(
                    f"--valid-whole-words yes, but word starts are unknown: {error}; or use --valid-whole-words auto or no"
                ) from error
            logger.info("no whole-word validation yardstick (--valid-whole-words auto): %s", error)
            return None
        return UniformUnits(masker, RatioSchedule.build("constant", cfg.valid_mask_prob, 0))

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
        check_dictionary_file(dict_path)
        check_shard_dictionaries(paths)
        dictionary = Dictionary.load(dict_path)
        logger.info("dictionary: %d types", len(dictionary))
        return dictionary

    def build_model(self, cfg, from_checkpoint=False):
        """The model, refused when the task's blocks would not fit its
        positions; its width is remembered (MAPNet's proposal network reads it)."""
        model = super().build_model(cfg, from_checkpoint)
        if self.cfg.tokens_per_sample > model.max_positions():
            raise MaskingOptionError(
                f"--tokens-per-sample {self.cfg.tokens_per_sample} exceeds the model's --max-positions "
                f"{model.max_positions()}: no block would fit; lower --tokens-per-sample or raise --max-positions"
            )
        self.model_dim = model.encoder.sentence_encoder.embed_tokens.embedding_dim
        return model

    def build_criterion(self, cfg, from_checkpoint=False):
        """The criterion, a :class:`MaskingCriterion` (stock ``masked_lm``
        becomes :class:`MaskedLmPlusLoss`, the same loss), given the task's
        strategies when it draws its own masks; then, the whole training
        configuration being known, check the checkpoint fairseq-train will
        resume from and restore the task's and the criterion's running state
        from it (see :mod:`.resume`)."""
        criterion = super().build_criterion(cfg, from_checkpoint)
        if type(criterion) is MaskedLmLoss:
            criterion = MaskedLmPlusLoss(MaskedLmConfig(tpu=criterion.tpu), self)
        name = getattr(cfg, "_name", type(criterion).__name__)
        if not isinstance(criterion, MaskingCriterion):
            raise MaskingOptionError(
                f"--criterion {name}: masked_lm_plus trains through its "
                "masking protocol; use --criterion masked_lm (stock masked_lm's loss) or mapnet_masked_lm, or a "
                "criterion derived from fairseq_maskplug.criterions.masking_criterion.MaskingCriterion"
            )
        if criterion.draws_masks:
            if not isinstance(self.train_strategy, UniformUnits):
                raise MaskingOptionError(
                    f"{name} draws its own masks: use --masking random, "
                    "--content-weighting none and no span masking (--mask-multiple-length 1, --mask-stdev 0)"
                )
            criterion.attach(ProposalMasking(self.train_strategy))
        self.criterion = criterion
        task_state = task_state_to_restore(self.cfg, cfg)
        if task_state is not None:
            self.load_state_dict(task_state)
        return criterion

    # ----------------------------------------------------------------- state

    def state_dict(self):
        """The running state fairseq saves as ``task_state`` in checkpoints
        (POS weighting's, the criterion's), and the version of the random
        draws the masks were made from."""
        state = {"mask_draws": DRAWS_VERSION}
        if self.criterion is not None:
            state |= self.criterion.running_state()
        return state if self.pos_weighting is None else state | self.pos_weighting.state_dict()

    def load_state_dict(self, state_dict):
        if self.pos_weighting is not None:
            self.pos_weighting.load_state_dict(state_dict)
        if self.criterion is not None:
            self.criterion.load_running_state(state_dict)

    # ------------------------------------------------------------------ data

    def data_path(self, epoch: int) -> str:
        paths = utils.split_paths(self.cfg.data)
        return paths[(epoch - 1) % len(paths)]

    def _load_dataset_split(self, split, epoch, combine):
        prefix = os.path.join(self.data_path(epoch), split)
        check_binarized_split(prefix, split)
        blocks = super()._load_dataset_split(split, epoch, combine)
        return VocabCheckedDataset(blocks, self.num_data_symbols, split, prefix)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """Clean ``<s>``-prefixed token blocks (and POS blocks); masks are added per batch."""
        blocks = self._load_dataset_split(split, epoch, combine)
        if self.train_strategy.copies > 1 and split == "train":
            self.warn_short_sequences(blocks, split)
        net_input = {
            "src_tokens": RightPadDataset(blocks, pad_idx=self.source_dictionary.pad()),
            "src_lengths": NumelDataset(blocks, reduce=False),
        }
        if self.cfg.include_index:
            net_input["src_id"] = IdDataset()
        fields = {
            "id": IdDataset(),
            "net_input": net_input,
            "nsentences": NumSamplesDataset(),
            "ntokens": NumelDataset(blocks, reduce=True),
        }
        if self.pos_weighting is not None:
            pos_blocks = self.load_pos_split(split, epoch, combine)
            if pos_blocks is not None:
                fields["pos"] = RightPadDataset(pos_blocks, pad_idx=self.pos_weighting.tag_dictionary.pad())
            elif split == "train":
                raise MaskingOptionError(f"--content-weighting pos: no POS side input for split '{split}'")
        dataset = NestedDictionaryDataset(fields, sizes=[blocks.sizes])
        with data_utils.numpy_seed(self.cfg.seed):
            shuffle = np.random.permutation(len(blocks))
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, blocks.sizes])

    def load_pos_split(self, split, epoch, combine):
        path = self.data_path(epoch)
        lines = data_utils.load_indexed_dataset(os.path.join(path, split), self.source_dictionary, combine=combine)
        return load_pos_blocks(
            path,
            split,
            lines.sizes,
            self.cfg.tokens_per_sample,
            self.cfg.sample_break_mode,
            self.pos_weighting.tag_dictionary,
            combine,
        )

    def warn_short_sequences(self, blocks, split):
        """Say how many blocks hold fewer maskable tokens than --fe-segments,
        and what happens to them."""
        segments = self.train_strategy.copies
        reserved = 2 if self.cfg.never_mask_bos_eos else 0
        short = int((np.asarray(blocks.sizes) < segments + reserved).sum())
        if short:
            logger.warning(
                "%d of %d %s blocks have fewer than %d maskable tokens (--fe-segments): such a sequence "
                "with n units gets n one-unit segments, and its other copies predict nothing",
                short,
                len(blocks),
                split,
                segments,
            )

    # --------------------------------------------------------------- masking

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

    def training_masks(self, sample, update_num, draws: Optional[MaskDraws] = None) -> MaskedTokens:
        """The training masks of ``sample`` at ``update_num`` (the configured
        strategy; ``draws``: :meth:`train_draws`'s, when already made)."""
        weights = None if self.pos_weighting is None else self.pos_weighting.unit_weights(sample)
        tokens = sample["net_input"]["src_tokens"]
        return self.train_strategy(tokens, draws or self.train_draws(sample, update_num), update_num, weights)

    def validation_masks(self, sample) -> MaskedTokens:
        """The fixed standard validation mask of ``sample``."""
        return self.valid_strategy(sample["net_input"]["src_tokens"], self.valid_draws(sample), 0)

    def whole_word_validation_masks(self, sample) -> MaskedTokens:
        """The fixed whole-word validation mask of ``sample`` (its own draws:
        (--valid-mask-seed, sample id), another stream than the standard mask's)."""
        draws = self._draws(sample, "valid_whole_words", self.cfg.valid_mask_seed, 0)
        return self.valid_word_strategy(sample["net_input"]["src_tokens"], draws, 0)

    def mask_sample(self, sample, masked: MaskedTokens):
        """A copy of ``sample`` carrying ``masked`` (corrupted ``src_tokens``,
        ``target``): the stock masked-LM batch. When
        ``masked`` holds several copies per sequence, every other
        per-sequence field is repeated alongside and ``ntokens`` /
        ``nsentences`` count the copies (the tokens actually processed)."""
        sample = dict(sample)
        if masked.copies > 1:
            sample = repeat_per_copy(sample, masked.copies)
        sample["net_input"] = dict(sample["net_input"], src_tokens=masked.src_tokens)
        sample["target"] = masked.target
        return sample

    # ------------------------------------------------------------ train/valid

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """The step's masks (the task's, or the criterion's when it draws
        them: it gets the clean batch and the step's draws), the criterion's
        ``train_forward``, fairseq's backward; then the mask counts, and the
        predicted tokens' losses per POS tag for the running losses."""
        # trainer.zero_grad() clears every gradient before an update's first micro-batch
        first = all(p.grad is None for p in model.parameters())
        step = MaskingStep(self.train_draws(sample, update_num), update_num, not ignore_grad, first)
        masked = None if criterion.draws_masks else self.training_masks(sample, update_num, step.draws)
        wants_losses = self.pos_weighting is not None and not ignore_grad
        batch = TrainingBatch(sample if masked is None else self.mask_sample(sample, masked), step, masked, wants_losses)
        model.train()
        model.set_num_updates(update_num)
        with torch.autograd.profiler.record_function("forward"):
            with torch.autocast("cuda", enabled=isinstance(optimizer, AMPOptimizer)):
                output = criterion.train_forward(model, batch)
        loss = output.loss
        if ignore_grad:
            loss *= 0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        logging_output = output.logging_output | mask_counts(output.masked)
        if self.schedule.name != "constant":
            logging_output["mask_scheduled"] = self.schedule(update_num) * logging_output["mask_maskable"]
        if self.pos_weighting is not None:
            pos = rows_per_copy(sample["pos"], output.masked.copies)
            sums, counts = self.pos_weighting.class_sums(pos, output.masked, output.token_losses)
            self.pos_weighting.observe(sums, counts)
            logging_output.update(self.pos_weighting.logging_output(pos, sums, counts), pos_train_steps=1)
        return loss, output.sample_size, logging_output

    def optimizer_step(self, optimizer, model, update_num):
        """The optimizer's step, then the criterion's running state (MAPNet's
        proposal) and the running POS losses move once for the update
        (fairseq calls this once per update, on every rank)."""
        super().optimizer_step(optimizer, model, update_num)
        self.collapse_monitor.observe_lr(optimizer.get_lr())
        if self.criterion is None:
            raise MaskingOptionError("masked_lm_plus trains with the criterion its build_criterion made; none was built")
        self.criterion.end_update()
        if self.pos_weighting is not None:
            self.pos_weighting.end_update()

    def valid_step(self, sample, model, criterion):
        """The fixed standard mask, the criterion's loss, and the task's own
        yardstick from the model's predictions at the predicted positions: the
        loss split by what the input shows there (``loss_at_mask`` against
        ``unigram_at_mask``, ``spread_at_mask``: see :mod:`.position_kinds`),
        the per-tag losses with POS weighting, and the whole-word yardstick's
        ``<mask>`` figures (``*_at_mask_ww``) where it is on."""
        masked = self.validation_masks(sample)
        masked_sample = self.mask_sample(sample, masked)
        loss, sample_size, logging_output = super().valid_step(masked_sample, model, criterion)
        logging_output.update(mask_counts(masked))
        with torch.no_grad():
            logits = model(**masked_sample["net_input"], masked_tokens=masked.predicted)[0]
        logging_output.update(kind_logging_output(logits, masked.src_tokens, masked.target, self.mask_idx,
                                                  self.source_dictionary.pad(), self.unigram_losses))  # fmt: skip
        if self.pos_weighting is not None and "pos" in sample:
            token_losses = token_losses_of(logits, masked.target[masked.predicted])
            sums, counts = self.pos_weighting.class_sums(sample["pos"], masked, token_losses)
            logging_output.update(self.pos_weighting.logging_output(sample["pos"], sums, counts))
        if self.valid_word_strategy is not None:
            logging_output.update(self.whole_word_logging_output(sample, model))
        return loss, sample_size, logging_output

    def whole_word_logging_output(self, sample, model):
        """The ``<mask>``-position sums (``ww_mask_*``) of ``model`` on the
        whole-word validation mask of the clean ``sample``."""
        masked = self.whole_word_validation_masks(sample)
        net_input = dict(sample["net_input"], src_tokens=masked.src_tokens)
        with torch.no_grad():
            logits = model(**net_input, masked_tokens=masked.predicted)[0]
        output = kind_logging_output(logits, masked.src_tokens, masked.target, self.mask_idx, self.source_dictionary.pad(),
                                     self.unigram_losses, prefix="ww")  # fmt: skip
        return {key: value for key, value in output.items() if key.startswith("ww_mask_")}

    def post_validate(self, model, stats, agg):
        """After each validation (fairseq-train calls it): warn once when the
        model has collapsed to one prediction (see :mod:`.collapse`)."""
        warning = self.collapse_monitor.observe_validation(stats)
        if warning:
            logger.warning(warning)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        reduce_kind_metrics(logging_outputs)
        predicted = utils.item(sum(log.get("mask_predicted", 0) for log in logging_outputs))
        maskable = utils.item(sum(log.get("mask_maskable", 0) for log in logging_outputs))
        if maskable > 0:
            metrics.log_scalar("mask_ratio", predicted / maskable, maskable, round=4)
            scheduled = utils.item(sum(log.get("mask_scheduled", 0) for log in logging_outputs))
            if scheduled:
                metrics.log_scalar("mask_ratio_scheduled", scheduled / maskable, maskable, round=4)
        if self.pos_weighting is not None:
            self.pos_weighting.reduce_metrics(logging_outputs)


@register_task("fully_explored_masked_lm", dataclass=FullyExploredMaskedLMConfig)
class FullyExploredMaskedLMTask(MaskedLMPlusTask):
    """``masked_lm_plus`` with ``--masking fully_explored`` as the default."""


@register_task("time_variant_masked_lm", dataclass=TimeVariantMaskedLMConfig)
class TimeVariantMaskedLMTask(MaskedLMPlusTask):
    """``masked_lm_plus`` with ``--mask-schedule cosine`` as the default
    (combine with ``--content-weighting pos`` for MRD + PTW)."""
