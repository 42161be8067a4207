"""The one protocol between ``masked_lm_plus`` and its criterion.

The task drives; a :class:`MaskingCriterion` answers. Per training
micro-batch the task calls :meth:`MaskingCriterion.train_forward` with a
:class:`TrainingBatch` and gets a :class:`CriterionOutput` back: the loss,
the masks it trained on and, when the task asks (POS weighting), the
predicted tokens' losses. Whether the task or the criterion draws the masks
is the criterion's declared ``draws_masks``:

- ``False`` (:class:`MaskedLmPlusLoss`, stock ``masked_lm``'s loss): the
  task masks the batch with its strategy; ``batch.sample`` is the stock
  masked-LM batch and ``batch.masked`` its masks.
- ``True`` (MAPNet): ``batch.sample`` is clean and ``batch.step`` carries the
  step's draws; the criterion draws from the strategies the task handed it
  once, at :meth:`MaskingCriterion.attach`.

A criterion's running state (MAPNet's proposal network and its optimizer)
is its own: it moves once per update at :meth:`MaskingCriterion.end_update`
and is saved and restored through :meth:`running_state` /
:meth:`load_running_state`, which the task stores in the checkpoint's
``task_state`` (fairseq saves no state of a criterion without parameters).
Validation goes through ``forward`` as in stock fairseq.
"""

from dataclasses import dataclass
from typing import ClassVar, Dict, Optional

import torch
import torch.nn.functional as F
from fairseq import modules
from fairseq.criterions import FairseqCriterion
from fairseq.criterions.masked_lm import MaskedLmLoss

from ..masking import MaskedTokens, MaskingStep, ProposalMasking


@dataclass
class TrainingBatch:
    """One training micro-batch as the task hands it over.

    sample: the stock masked-LM batch (``draws_masks`` False) or the clean one.
    step: the step's draws and update (see :class:`MaskingStep`).
    masked: the task's masks of ``sample`` (None for a criterion that draws them).
    token_losses: whether the task wants :attr:`CriterionOutput.token_losses`.
    """

    sample: Dict
    step: MaskingStep
    masked: Optional[MaskedTokens]
    token_losses: bool


@dataclass
class CriterionOutput:
    """What a criterion returns for one training micro-batch.

    loss, sample_size, logging_output: as a fairseq criterion's ``forward``.
    masked: the masks the loss was computed on (B·copies rows).
    token_losses: float32 (N,) detached cross-entropy (nats) of the N
        predicted tokens, in ``masked.predicted`` order; None unless asked.
    """

    loss: torch.Tensor
    sample_size: torch.Tensor
    logging_output: Dict
    masked: MaskedTokens
    token_losses: Optional[torch.Tensor]


def token_losses_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Float32 (N,) detached cross-entropy of (N, V) ``logits`` against ``targets``."""
    return F.cross_entropy(logits.detach().float(), targets, reduction="none")


class MaskingCriterion(FairseqCriterion):
    """The protocol (see the module's docstring); subclasses implement
    :meth:`train_forward` and ``forward`` (validation)."""

    draws_masks: ClassVar[bool] = False

    def attach(self, masking: ProposalMasking) -> None:
        """Once, when the task builds the criterion: the task's strategies,
        for a criterion that ``draws_masks`` (the others need none)."""

    def train_forward(self, model, batch: TrainingBatch) -> CriterionOutput:
        raise NotImplementedError

    def end_update(self) -> None:
        """Once per optimizer update, after the model's step, on every rank."""

    def running_state(self) -> Dict:
        """State to checkpoint (in ``task_state``); keys must not clash with the task's."""
        return {}

    def load_running_state(self, state: Dict) -> None:
        """Restore what :meth:`running_state` saved (``state`` is the whole ``task_state``)."""


class MaskedLmPlusLoss(MaskedLmLoss, MaskingCriterion):
    """Stock ``masked_lm``'s loss, bit for bit, through the protocol: the
    task builds it wherever ``--criterion masked_lm`` is asked for with
    ``masked_lm_plus``. Training also returns the predicted tokens' losses
    when the task asks; validation is stock ``forward``."""

    def train_forward(self, model, batch: TrainingBatch) -> CriterionOutput:
        sample = batch.sample
        masked_tokens = sample["target"].ne(self.padding_idx)
        sample_size = masked_tokens.int().sum()
        if self.tpu:  # stock's choices of what to project, unchanged
            masked_tokens = None
        elif masked_tokens.device == torch.device("cpu"):
            if not masked_tokens.any():
                masked_tokens = None
        else:
            masked_tokens = torch.where(masked_tokens.any(), masked_tokens, masked_tokens.new([True]))
        logits = model(**sample["net_input"], masked_tokens=masked_tokens)[0]
        targets = model.get_targets(sample, [logits])
        if masked_tokens is not None:
            targets = targets[masked_tokens]
        loss = modules.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.view(-1), reduction="sum", ignore_index=self.padding_idx
        )
        logging_output = {
            "loss": loss if self.tpu else loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        token_losses = None
        if batch.token_losses:
            predicted = batch.masked.predicted
            if masked_tokens is None:  # every position projected
                logits = logits.view(-1, logits.size(-1))[predicted.view(-1)]
            target = sample["target"][predicted]
            # stock projects rows for positions without a target where none is predicted (on the GPU): none counts
            token_losses = token_losses_of(logits[: target.numel()], target)
        return CriterionOutput(loss, sample_size, logging_output, batch.masked, token_losses)
