"""The 80/10/10 rule: what the model sees at the positions it must predict."""

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class CorruptionRule:
    """Shares of the predicted positions that are replaced, kept or randomised.

    ``leave_unmasked_prob`` of them keep their token, ``random_token_prob`` get a
    random token, the rest get ``<mask>`` (stock fairseq names and defaults).
    """

    leave_unmasked_prob: float = 0.1
    random_token_prob: float = 0.1

    def __post_init__(self):
        for name in ("leave_unmasked_prob", "random_token_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1], got {value}")
        if self.leave_unmasked_prob + self.random_token_prob > 1.0:
            raise ValueError(
                "`leave_unmasked_prob` + `random_token_prob` must be at most 1 (they are shares of the predicted "
                f"positions), got {self.leave_unmasked_prob} + {self.random_token_prob}"
            )


@dataclass
class Corruption:
    """Bool (B, L) partition of the predicted positions, plus the input tokens."""

    src_tokens: torch.Tensor
    replaced_by_mask: torch.Tensor
    replaced_by_random: torch.Tensor
    kept: torch.Tensor


def corrupt(
    tokens: torch.Tensor,
    predicted: torch.Tensor,
    decision_noise: torch.Tensor,
    token_noise: torch.Tensor,
    replacement_ids: Callable[[torch.Tensor], torch.Tensor],
    mask_idx: int,
    rule: CorruptionRule,
) -> Corruption:
    """Apply the rule at ``predicted`` positions of ``tokens``.

    Args:
        tokens: (B, L) clean token ids.
        predicted: (B, L) bool, the positions to predict.
        decision_noise: (B, L) uniforms in [0, 1); a position is kept when its
            value is below ``leave_unmasked_prob``, randomised when it lies in
            the next ``random_token_prob``. Whole-word callers pass one value per
            word so that a word is treated as one.
        token_noise: (B, L) uniforms; a randomised position gets the id
            ``replacement_ids`` maps its uniform to (only those are looked up).
    """
    kept = predicted & (decision_noise < rule.leave_unmasked_prob)
    randomised = predicted & ~kept & (decision_noise < rule.leave_unmasked_prob + rule.random_token_prob)
    masked = predicted & ~kept & ~randomised
    src_tokens = torch.where(masked, torch.full_like(tokens, mask_idx), tokens)
    src_tokens = src_tokens.masked_scatter(randomised, replacement_ids(token_noise[randomised]).to(tokens.dtype))
    return Corruption(src_tokens, masked, randomised, kept)
