"""POS weighting (``--content-weighting pos``; PTW in the paper) at training
time, in one place: the running loss per POS tag, the unit weights it gives
the masking strategy, the per-tag sums of the predicted tokens' losses the
criterion returns (summed over an update's micro-batches, all-reduced across
data-parallel ranks, moving the running losses once per optimizer update),
their logging and the running state saved in checkpoints.

The tags come from the POS side input (``DATA/pos``, one tag per token, line
for line); a batch carries them as ``sample["pos"]`` (B, L), fairseq's
dictionary ids, specials and padding included.
"""

import math
from typing import Dict, Optional, Tuple

import torch
from fairseq import metrics
from fairseq.data import Dictionary
from fairseq.distributed import utils as distributed_utils

from ..errors import MaskingOptionError
from ..masking import MaskedTokens
from ..masking.class_losses import ClassLossTracker, class_loss_sums


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel ranks (identity when training on one)."""
    if distributed_utils.get_data_parallel_world_size() > 1:
        distributed_utils.all_reduce(tensor, group=distributed_utils.get_data_parallel_group())
    return tensor


class PosWeighting:
    """The running per-tag losses and the masking weights they give.

    Args:
        tag_dictionary: the POS side input's dictionary (``DATA/pos/dict.txt``).
        momentum: EMA momentum μ (reference 0.999).
        temperature: T in sigmoid(T · z).
        bias_correction: divide by 1 − μ^{n_c} (not in the reference).
    """

    def __init__(self, tag_dictionary: Dictionary, momentum: float, temperature: float, bias_correction: bool):
        self.tag_dictionary = tag_dictionary
        self.tags = list(tag_dictionary.symbols[tag_dictionary.nspecial :])
        self.tracker = ClassLossTracker(len(self.tags), momentum, temperature, bias_correction)
        self.pending: Optional[torch.Tensor] = None  # (2, C) sums and counts of the update in progress
        self.device = torch.device("cpu")

    # -------------------------------------------------------------- masking

    def classes(self, pos: torch.Tensor) -> torch.Tensor:
        """Long (B, L): each position's tag class (0..C-1) from its tag ids
        ``pos`` (B, L), -1 for specials and padding."""
        return pos - self.tag_dictionary.nspecial

    def unit_weights(self, sample) -> torch.Tensor:
        """(B, L) float weights of the current running losses; positions
        without a tag (``<s>``, ``</s>``: selectable unless
        ``--never-mask-bos-eos``; padding: never) weigh as a tag whose running
        loss is the mean of all tags' (z-score 0: sigmoid(0) = 0.5)."""
        classes = self.classes(sample["pos"])
        weights = self.tracker.weights().to(classes.device)
        return torch.where(classes >= 0, weights[classes.clamp(min=0)], torch.full_like(classes, 0.5, dtype=weights.dtype))

    # --------------------------------------------------------- observations

    def class_sums(self, pos: torch.Tensor, masked: MaskedTokens,
                   token_losses: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(sums, counts) float32 (C,) per tag of ``token_losses`` (N,), the
        losses of the N tokens ``masked`` predicts, in ``masked.predicted``
        order; ``pos`` (B·copies, L) the tag ids of ``masked``'s rows. Zeros
        without ``token_losses`` (a dummy batch)."""
        classes = self.classes(pos)[masked.predicted]
        if token_losses is None:
            zeros = torch.zeros(len(self.tags), dtype=torch.float32, device=classes.device)
            return zeros, zeros.clone()
        return class_loss_sums(token_losses, classes, len(self.tags))

    def observe(self, sums: torch.Tensor, counts: torch.Tensor):
        """Add a micro-batch's per-tag sums and counts to this update's."""
        step = torch.stack([sums, counts]).float()
        self.pending = step if self.pending is None else self.pending + step.to(self.pending.device)

    def end_update(self):
        """Once per optimizer update, identically on every rank: all-reduce the
        update's sums and counts (all its micro-batches, all ranks) and move
        the running losses once, as the reference does per optimizer step."""
        if self.pending is None:  # an update this rank saw no batch of: it still joins the all-reduce
            self.pending = torch.zeros(2, len(self.tags), device=self.device)
        reduced = all_reduce_sum(self.pending)
        self.tracker.update(reduced[0], reduced[1])
        self.device, self.pending = self.pending.device, None

    def logging_output(self, pos: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per-tag loss sums and counts of the predicted tokens, and per-tag
        counts of the tagged tokens of ``pos`` (B·copies, L) (to compare masked
        and corpus shares)."""
        classes = self.classes(pos)
        known = classes[classes >= 0]
        maskable = torch.zeros_like(counts).index_add_(0, known, torch.ones_like(known, dtype=counts.dtype))
        return {"pos_loss_sums": sums.detach(), "pos_counts": counts.detach(), "pos_maskable": maskable}

    def reduce_metrics(self, logging_outputs):
        """Per tag: ``pos_ema_*`` the running loss (bits), ``pos_loss_*`` this
        interval's mean loss (bits), ``pos_share_*`` its share of the predicted
        tokens and ``pos_base_*`` its share of the maskable tokens."""
        logs = [log for log in logging_outputs if "pos_counts" in log]
        if any("pos_train_steps" in log for log in logs):
            running = self.tracker.losses()
            for c, tag in enumerate(self.tags):
                metrics.log_scalar(f"pos_ema_{tag}", running[c].item() / math.log(2), round=3)
        if not logs:
            return
        sums = sum(log["pos_loss_sums"].float().cpu() for log in logs)
        counts = sum(log["pos_counts"].float().cpu() for log in logs)
        maskable = sum(log["pos_maskable"].float().cpu() for log in logs)
        for c, tag in enumerate(self.tags):
            if counts[c] > 0:
                metrics.log_scalar(f"pos_loss_{tag}", (sums[c] / counts[c]).item() / math.log(2), counts[c].item(), round=3)
            if counts.sum() > 0:
                metrics.log_scalar(f"pos_share_{tag}", (counts[c] / counts.sum()).item(), counts.sum().item(), round=4)
            if maskable.sum() > 0:
                metrics.log_scalar(f"pos_base_{tag}", (maskable[c] / maskable.sum()).item(), maskable.sum().item(), round=4)

    # ---------------------------------------------------------------- state

    def state_dict(self):
        return {"pos_tags": list(self.tags), "pos_running_loss": self.tracker.state_dict()}

    def load_state_dict(self, state_dict):
        if "pos_running_loss" not in state_dict:
            return
        if list(state_dict["pos_tags"]) != self.tags:
            raise MaskingOptionError(f"the checkpoint's POS tags {state_dict['pos_tags']} differ from this data's {self.tags}")
        self.tracker.load_state_dict(state_dict["pos_running_loss"])
