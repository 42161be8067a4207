"""The 80/10/10 rule: what the model sees at the positions it must predict."""

from dataclasses import dataclass
from typing import Tuple

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

    def decide(self, decision_noise: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kept, randomised, replaced by ``<mask>``), bool, the shape of
        ``decision_noise`` (uniforms in [0, 1)): kept below
        ``leave_unmasked_prob``, randomised in the next ``random_token_prob``."""
        kept = decision_noise < self.leave_unmasked_prob
        randomised = ~kept & (decision_noise < self.leave_unmasked_prob + self.random_token_prob)
        return kept, randomised, ~kept & ~randomised


@dataclass
class Corruption:
    """How the predicted positions of an (N, L) batch were corrupted.

    src_tokens: (N, L) the input the model sees.
    rows, positions: (P,) the P predicted positions.
    decision: (P,) their 80/10/10 decision uniforms; ``rule`` reads them.
    The three bool (N, L) partitions of the predicted positions are made on
    demand (training with the stock criterion never asks for them).
    """

    src_tokens: torch.Tensor
    rows: torch.Tensor
    positions: torch.Tensor
    decision: torch.Tensor
    rule: CorruptionRule

    def _where(self, chosen: torch.Tensor) -> torch.Tensor:
        flags = torch.zeros(self.src_tokens.shape, dtype=torch.bool, device=self.src_tokens.device)
        return flags.index_put_((self.rows[chosen], self.positions[chosen]), torch.ones_like(chosen[chosen]))

    @property
    def replaced_by_mask(self) -> torch.Tensor:
        return self._where(self.rule.decide(self.decision)[2])

    @property
    def replaced_by_random(self) -> torch.Tensor:
        return self._where(self.rule.decide(self.decision)[1])

    @property
    def kept(self) -> torch.Tensor:
        return self._where(self.rule.decide(self.decision)[0])
