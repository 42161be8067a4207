"""POS-weighted masked content at training time: per-token losses captured
from the model's forward pass, all-reduced per class, a running average per
class, and the unit weights it gives the Masker."""

import contextlib
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.distributed import utils as distributed_utils

from ..masking.class_losses import ClassLossTracker, class_loss_sums


@contextlib.contextmanager
def captured_logits(model):
    """Yields a list that receives the first output (the logits) of every
    forward call of ``model`` inside the block."""
    captured: List[torch.Tensor] = []
    handle = model.register_forward_hook(lambda module, inputs, output: captured.append(output[0]))
    try:
        yield captured
    finally:
        handle.remove()


def predicted_token_losses(logits: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Float32 (N,) cross-entropy (nats) of the N predicted tokens, detached.

    ``logits`` are (N, V) when the model projected only the predicted
    positions (what the masked-LM criterion asks for), or (B, L, V)."""
    logits = logits.detach()
    if logits.dim() == 3:
        logits = logits[predicted]
    return F.cross_entropy(logits.float(), target[predicted], reduction="none")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel ranks (identity when training on one)."""
    if distributed_utils.get_data_parallel_world_size() > 1:
        distributed_utils.all_reduce(tensor, group=distributed_utils.get_data_parallel_group())
    return tensor


class PosContentWeighting:
    """The running per-tag losses and the masking weights they give.

    Args:
        tags: the tag names, class c = tags[c].
        momentum: EMA momentum μ (reference 0.999).
        temperature: T in sigmoid(T · z).
        bias_correction: divide by 1 − μ^{n_c} (not in the reference).
    """

    def __init__(self, tags: List[str], momentum: float, temperature: float, bias_correction: bool = False):
        self.tags = list(tags)
        self.temperature = temperature
        self.tracker = ClassLossTracker(len(self.tags), momentum, bias_correction)

    def unit_weights(self, classes: torch.Tensor) -> torch.Tensor:
        """(B, L) float weights of the current running losses; positions
        without a class (specials, padding) get weight 1 (never selected)."""
        weights = self.tracker.weights(self.temperature).to(classes.device)
        return torch.where(classes >= 0, weights[classes.clamp(min=0)], torch.ones_like(classes, dtype=weights.dtype))

    def class_sums(self, token_losses: Optional[torch.Tensor], classes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(sums, counts) of this rank's predicted-token losses per class;
        zeros when ``token_losses`` is None (a dummy batch)."""
        if token_losses is None:
            zeros = torch.zeros(len(self.tags), dtype=torch.float32, device=classes.device)
            return zeros, zeros.clone()
        return class_loss_sums(token_losses, classes, len(self.tags))

    def update(self, sums: torch.Tensor, counts: torch.Tensor):
        """All-reduce this step's sums and counts, then move the running losses."""
        reduced = all_reduce_sum(torch.stack([sums, counts]))
        self.tracker.update(reduced[0], reduced[1])
