"""Validation loss of any masked-LM checkpoint under the fixed standard mask.

Stock ``masked_lm`` checkpoints and ``masked_lm_plus`` ones (any masking
option) are scored on the same masks: ``masked_lm_plus``'s fixed validation
mask (uniform tokens, ``valid_mask_prob``, 80/10/10, ``valid_mask_seed``), so
their losses compare.
"""

import math
from dataclasses import dataclass

import torch
from fairseq import checkpoint_utils
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss

from ..tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask


@dataclass
class ValidationResult:
    loss_bits: float  # mean cross-entropy per predicted token, in bits (fairseq's "loss")
    predicted_tokens: int
    sequences: int


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


def standard_validation_loss(
    checkpoint: str,
    data: str,
    split: str = "valid",
    valid_mask_prob: float = 0.15,
    valid_mask_seed: int = 1,
    batch_size: int = 32,
) -> ValidationResult:
    """Score ``checkpoint`` on ``split`` of ``data`` under the fixed standard mask.

    The blocks are built with the checkpoint's own ``tokens_per_sample`` and
    ``sample_break_mode``, so the text seen is the one it validated on.
    """
    task, model = load_for_masking(checkpoint, data, valid_mask_prob=valid_mask_prob, valid_mask_seed=valid_mask_seed)
    criterion = MaskedLmLoss(MaskedLmConfig(), task)
    task.load_dataset(split)
    batches = task.get_batch_iterator(
        task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(), ignore_invalid_inputs=True, seed=1
    ).next_epoch_itr(shuffle=False)
    loss_sum, predicted, sequences = 0.0, 0, 0
    with torch.no_grad():
        for sample in batches:
            loss, sample_size, log = task.valid_step(sample, model, criterion)
            loss_sum += float(loss)
            predicted += int(sample_size)
            sequences += int(log["nsentences"])
    return ValidationResult(loss_sum / predicted / math.log(2), predicted, sequences)
