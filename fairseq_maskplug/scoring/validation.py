"""Scores of any masked-LM checkpoint on the fixed standard validation mask.

Stock ``masked_lm`` checkpoints, ``masked_lm_plus`` ones (any masking option,
any criterion) and MAE-LM's are scored on the same masks: ``masked_lm_plus``'s
fixed validation mask (uniform tokens, ``valid_mask_prob``, 80/10/10,
``valid_mask_seed``), so their losses compare.

The figure that ranks models is the loss at the positions whose input is
``<mask>`` (:attr:`ValidationScores.at_mask`), read against two references on
exactly those positions: the training unigram (what ignoring context scores)
and the two-neighbour count model of :mod:`.context_references`. The loss
over every predicted position (:attr:`ValidationScores.all_predicted_bits`,
fairseq's ``loss``) includes the tenth of them whose input shows the answer;
it is reported as what it is, never used to rank. How much the predictions
at the ``<mask>`` positions differ between positions
(:attr:`ValidationScores.spread_at_mask_bits`) tells a collapsed model (0:
one prediction everywhere) from one that reads its input. Where word starts
are known, the whole-word yardstick (:attr:`ValidationScores.whole_words`)
scores the ``<mask>`` positions of a fixed whole-word mask the same way.
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from fairseq import checkpoint_utils, utils
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss

from ..tasks.collapse import ValidationFigures
from ..tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask
from ..tasks.position_kinds import KINDS, position_kinds, prediction_spread_bits
from .context_references import ContextReferences


@dataclass
class KindScore:
    """Loss (bits) and top-1 accuracy over the predicted positions of one kind."""

    loss_bits: float
    top1: float
    count: int


@dataclass
class MaskScore:
    """Loss, top-1, unigram reference and spread (bits) at the ``<mask>``
    positions of one mask."""

    loss_bits: float
    top1: float
    count: int
    unigram_bits: float
    spread_bits: float

    @property
    def below_unigram(self) -> float:
        return self.unigram_bits - self.loss_bits


def mask_score(sums: Dict[str, float], prefix: str) -> MaskScore:
    """The ``<mask>`` figures from the summed ``PREFIX_mask_*`` logging values."""
    count = int(sums[f"{prefix}_mask_count"])
    per_position = (lambda key: sums[f"{prefix}_mask_{key}"] / count) if count else (lambda key: math.nan)
    return MaskScore(
        loss_bits=per_position("loss") / math.log(2),
        top1=per_position("hits"),
        count=count,
        unigram_bits=per_position("unigram") / math.log(2),
        spread_bits=prediction_spread_bits(sums[f"{prefix}_mask_probability_sum"], sums[f"{prefix}_mask_entropy_sum"], count),
    )


@dataclass
class ValidationScores:
    """One checkpoint on the fixed standard mask of one split.

    at_mask / at_unchanged / at_random: the predicted positions whose input is
    ``<mask>``, the original token, another token (see ``tasks.position_kinds``).
    unigram_at_mask_bits / neighbours_at_mask_bits: the references on the
    ``<mask>`` positions (:mod:`.context_references`).
    all_predicted_bits: fairseq's ``loss``, every predicted position (copying included).
    spread_at_mask_bits: mean KL divergence of each ``<mask>`` position's
    prediction from their average (0: collapsed, one prediction everywhere).
    whole_words: the whole-word yardstick's ``<mask>`` figures, or None
    (word starts unknown).
    """

    at_mask: KindScore
    at_unchanged: KindScore
    at_random: KindScore
    all_predicted_bits: float
    unigram_at_mask_bits: float
    neighbours_at_mask_bits: float
    neighbours_beta: float
    sequences: int
    spread_at_mask_bits: float
    whole_words: Optional[MaskScore]

    @property
    def collapsed(self) -> bool:
        """One prediction at every ``<mask>`` position, at the unigram's loss (see ``tasks.collapse``)."""
        return ValidationFigures(0, self.at_mask.loss_bits, self.unigram_at_mask_bits, self.spread_at_mask_bits).collapsed

    @property
    def below_unigram(self) -> float:
        """Bits the model gains over ignoring context at the ``<mask>`` positions."""
        return self.unigram_at_mask_bits - self.at_mask.loss_bits

    @property
    def neighbours_below_unigram(self) -> float:
        return self.unigram_at_mask_bits - self.neighbours_at_mask_bits

    def table(self) -> str:
        """The scores as a Markdown table."""
        predicted = self.at_mask.count + self.at_unchanged.count + self.at_random.count
        rows = [
            "| predicted positions | share | loss (bits) | top-1 |",
            "|---|---:|---:|---:|",
            *(
                f"| input is {label} | {kind.count / predicted:.1%} | {kind.loss_bits:.3f} | {kind.top1:.3f} |"
                for label, kind in (
                    ("`<mask>`", self.at_mask),
                    ("the original token", self.at_unchanged),
                    ("another token", self.at_random),
                )
            ),
            f"| all (copying included; not a ranking figure) | 100% | {self.all_predicted_bits:.3f} | |",
            f"| reference at `<mask>`: train unigram | | {self.unigram_at_mask_bits:.3f} | |",
            f"| reference at `<mask>`: two neighbours (β {self.neighbours_beta:g}) | | {self.neighbours_at_mask_bits:.3f} | |",
        ]
        if self.whole_words is not None:
            ww = self.whole_words
            rows += [
                f"| whole-word mask, input is `<mask>` ({ww.count} pieces) | | {ww.loss_bits:.3f} | {ww.top1:.3f} |",
                f"| whole-word mask, reference at `<mask>`: train unigram | | {ww.unigram_bits:.3f} | |",
            ]
        return "\n".join(rows)

    def summary(self) -> str:
        """The masked-position loss against both references, the spread of
        the predictions (and whether that is collapse), the whole-word yardstick."""
        lines = [
            f"loss at <mask> {self.at_mask.loss_bits:.3f} bits (top-1 {self.at_mask.top1:.3f}), "
            f"{against_unigram(self.below_unigram)} the train unigram ({self.unigram_at_mask_bits:.3f}); "
            f"the two-neighbour count model is {against_unigram(self.neighbours_below_unigram)} it "
            f"({self.neighbours_at_mask_bits:.3f})",
            f"spread of the predictions at <mask>: {self.spread_at_mask_bits:.4f} bits"
            + (
                " (COLLAPSED: one prediction at every position, at the unigram's loss; the model ignores its input)"
                if self.collapsed
                else " (they differ between positions: not collapsed)"
            ),
        ]
        if self.whole_words is not None:
            ww = self.whole_words
            lines.append(
                f"whole-word mask: loss at <mask> {ww.loss_bits:.3f} bits per piece ({ww.count} pieces), "
                f"{against_unigram(ww.below_unigram)} the train unigram ({ww.unigram_bits:.3f}); "
                f"spread {ww.spread_bits:.4f} bits"
            )
        return "\n".join(lines)


def against_unigram(below: float) -> str:
    """How far a loss is from the unigram's, in words: "1.649 below" or
    "0.038 above" (``below``: the unigram's loss minus it, bits)."""
    return f"{abs(below):.3f} {'below' if below >= 0 else 'above'}"


def load_for_masking(checkpoint: str, data: str, **task_overrides):
    """(task, model) for ``checkpoint`` on ``data``: a ``masked_lm_plus`` task
    with the checkpoint's ``tokens_per_sample``, ``sample_break_mode`` and seed
    (stock ``masked_lm`` checkpoints included), model in eval mode."""
    state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint)
    trained = state["cfg"]
    task_cfg = MaskedLMPlusConfig(
        data=data,
        tokens_per_sample=trained.task.tokens_per_sample,
        sample_break_mode=trained.task.sample_break_mode,
        seed=trained.common.seed,
        **task_overrides,
    )
    task = MaskedLMPlusTask.setup_task(task_cfg)
    model = task.build_model(trained.model)
    model.load_state_dict(state["model"], strict=True, model_cfg=trained.model)
    model.eval()
    return task, model


_REFERENCES: Dict[str, ContextReferences] = {}


def context_references(task) -> ContextReferences:
    """The references of the task's data dir, built once per process."""
    data = task.data_path(1)
    if data not in _REFERENCES:
        _REFERENCES[data] = ContextReferences(data, task.source_dictionary)
    return _REFERENCES[data]


def validation_scores(
    checkpoint: str,
    data: str,
    split: str = "valid",
    valid_mask_prob: float = 0.15,
    valid_mask_seed: int = 1,
    batch_size: int = 32,
    loaded: Optional[tuple] = None,
    device: str = "cpu",
) -> ValidationScores:
    """Score ``checkpoint`` on ``split`` of ``data`` under the fixed standard mask.

    The blocks are built with the checkpoint's own ``tokens_per_sample`` and
    ``sample_break_mode``, so the text seen is the one it validated on. The
    per-kind sums are the ones the task's ``valid_step`` logs, so these
    figures are fairseq's ``loss_at_mask`` etc. at full precision.
    ``loaded``: a (task, model) from :func:`load_for_masking` with the same
    mask options, to score without loading again. ``device``: where the
    model runs ("cuda": the same masks, drawn on the tokens' device; float32).
    """
    task, model = loaded or load_for_masking(
        checkpoint, data, valid_mask_prob=valid_mask_prob, valid_mask_seed=valid_mask_seed
    )
    model.to(device)
    criterion = MaskedLmLoss(MaskedLmConfig(), task)
    references = context_references(task)
    task.load_dataset(split)
    batches = task.get_batch_iterator(
        task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(), ignore_invalid_inputs=True, seed=1
    ).next_epoch_itr(shuffle=False)
    sums: Dict[str, float] = {}
    loss_sum, predicted, sequences = 0.0, 0, 0
    unigram, neighbours = [], []
    with torch.no_grad():
        for sample in batches:
            sample = utils.move_to_cuda(sample) if device == "cuda" else sample
            loss, sample_size, log = task.valid_step(sample, model, criterion)
            loss_sum += float(loss)
            predicted += int(sample_size)
            sequences += int(log["nsentences"])
            for key, value in log.items():
                if key.startswith(("kind_", "ww_")):
                    value = value.double() if torch.is_tensor(value) and value.dim() else float(value)
                    sums[key] = sums.get(key, 0.0) + value
            masked = task.validation_masks(sample)
            src = masked.src_tokens.cpu().numpy()
            kinds = position_kinds(masked.src_tokens, masked.target, masked.predicted, task.mask_idx)
            at_mask = np.flatnonzero(masked.predicted.cpu().numpy())[kinds.eq(KINDS.index("mask")).cpu().numpy()]
            uni, near = references.score(src, masked.target.cpu().numpy(), at_mask)
            unigram.append(uni)
            neighbours.append(near)
    kinds = {}
    for kind in KINDS:
        count = int(sums[f"kind_{kind}_count"])
        kinds[kind] = KindScore(
            loss_bits=sums[f"kind_{kind}_loss"] / count / math.log(2) if count else math.nan,
            top1=sums[f"kind_{kind}_hits"] / count if count else math.nan,
            count=count,
        )
    found = references.summarise(np.concatenate(unigram), np.concatenate(neighbours))
    return ValidationScores(
        at_mask=kinds["mask"],
        at_unchanged=kinds["unchanged"],
        at_random=kinds["random"],
        all_predicted_bits=loss_sum / predicted / math.log(2),
        unigram_at_mask_bits=found.unigram_bits,
        neighbours_at_mask_bits=found.neighbours_bits,
        neighbours_beta=found.beta,
        sequences=sequences,
        spread_at_mask_bits=mask_score(sums, "kind").spread_bits,
        whole_words=mask_score(sums, "ww") if "ww_mask_count" in sums else None,
    )
