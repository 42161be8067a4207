"""The Masker: clean token batch in, masked batch out, on the tokens' device."""

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .corruption import Corruption, CorruptionRule, corrupt
from .draws import MaskDraws
from .selection import expand_units, select_by_rank, stochastic_counts
from .units import maskable_positions, unit_start_index, unit_starts


@dataclass
class MaskedTokens:
    """The result of masking a (B, L) batch.

    src_tokens: (B, L) corrupted input.
    target: (B, L) original id at predicted positions, ``pad`` elsewhere.
    predicted: (B, L) bool, the selected positions (target != pad there).
    maskable: (B, L) bool, positions that could have been selected.
    corruption: how each predicted position was corrupted.
    """

    src_tokens: torch.Tensor
    target: torch.Tensor
    predicted: torch.Tensor
    maskable: torch.Tensor
    corruption: Corruption


class Masker:
    """Selects positions at a ratio and corrupts them (80/10/10 by default).

    Args:
        mask_idx: id of ``<mask>``.
        pad_idx: id of ``<pad>``, written into ``target`` where nothing is predicted.
        special_ids: ids never selected (``<s>``, ``</s>``, ``<pad>``, ...).
        rule: the corruption shares.
        replacement_weights: (V,) unnormalised probabilities of the random
            replacement ids (zero for specials and ``<mask>``).
        word_start_table: optional (V,) bool, True for pieces that start a
            word; when given, whole words are selected and corrupted together
            and the ratio counts words, as in stock ``--mask-whole-words``.
    """

    def __init__(
        self,
        mask_idx: int,
        pad_idx: int,
        special_ids: Sequence[int],
        rule: CorruptionRule,
        replacement_weights: torch.Tensor,
        word_start_table: Optional[torch.Tensor] = None,
    ):
        if replacement_weights.dim() != 1 or not (replacement_weights >= 0).all() or replacement_weights.sum() <= 0:
            raise ValueError("replacement_weights must be a non-negative (V,) vector with a positive sum")
        self.mask_idx = mask_idx
        self.pad_idx = pad_idx
        self.special_ids = tuple(sorted(set(special_ids) | {pad_idx}))
        self.rule = rule
        self.replacement_weights = replacement_weights.to(torch.float64)
        self.word_start_table = word_start_table

    def draw(self, generator: torch.Generator, tokens: torch.Tensor) -> MaskDraws:
        """All random numbers one call on ``tokens`` needs, from ``generator``."""
        weights = self.replacement_weights if self.rule.random_token_prob > 0 else None
        return MaskDraws.draw(generator, tokens.shape, weights, tokens.device)

    def __call__(self, tokens: torch.Tensor, ratio, generator: torch.Generator) -> MaskedTokens:
        """Mask ``tokens`` (B, L) at ``ratio`` (float or (B,) tensor) of its units."""
        draws = self.draw(generator, tokens)
        maskable = maskable_positions(tokens, self.special_ids)
        starts = unit_starts(tokens, maskable, self.word_start_table)
        counts = stochastic_counts(starts.sum(dim=1), ratio, draws.rounding_noise)
        chosen_starts = select_by_rank(draws.unit_scores, starts, counts)
        return self.corrupt_units(tokens, maskable, starts, chosen_starts, draws)

    def corrupt_units(
        self,
        tokens: torch.Tensor,
        maskable: torch.Tensor,
        starts: torch.Tensor,
        chosen_starts: torch.Tensor,
        draws: MaskDraws,
    ) -> MaskedTokens:
        """Expand chosen unit starts to whole units and apply the corruption
        rule with one decision per unit."""
        start_index = unit_start_index(starts)
        predicted = expand_units(chosen_starts, start_index, maskable)
        unit_decision = expand_units(draws.decision_noise, start_index, maskable)
        random_tokens = draws.random_tokens if draws.random_tokens is not None else tokens
        corruption = corrupt(tokens, predicted, unit_decision, random_tokens, self.mask_idx, self.rule)
        target = torch.where(predicted, tokens, torch.full_like(tokens, self.pad_idx))
        return MaskedTokens(corruption.src_tokens, target, predicted, maskable, corruption)
