"""The Masker: clean token batch in, masked batch out, on the tokens' device."""

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .corruption import Corruption, CorruptionRule, corrupt
from .draws import MaskDraws
from .selection import (
    expand_units,
    exponential_race_keys,
    select_by_rank,
    select_within_budget,
    stochastic_counts,
)
from .units import maskable_positions, unit_lengths, unit_start_index, unit_starts


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


@dataclass
class ProposedMasks:
    """Masks drawn from a proposal: the masked batch, the unit starts (B, L),
    the chosen unit starts (B, L) and the race keys (B, L, lower = drawn earlier)."""

    masked: MaskedTokens
    starts: torch.Tensor
    chosen: torch.Tensor
    keys: torch.Tensor


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
        weights = replacement_weights.to(torch.float64)
        self.replacement_cdf = weights.cumsum(0) / weights.sum()
        self.word_start_table = word_start_table
        self._on_device = {}

    def _table(self, name: str, device) -> torch.Tensor:
        """``getattr(self, name)`` on ``device``, copied there once."""
        key = (name, str(device))
        if key not in self._on_device:
            self._on_device[key] = getattr(self, name).to(device)
        return self._on_device[key]

    def replacement_tokens(self, token_noise: torch.Tensor) -> torch.Tensor:
        """Long, shape of ``token_noise``: ids drawn from the replacement
        weights by inverse-CDF lookup of the uniforms (O(log V) each; called
        on the randomised positions only)."""
        cdf = self._table("replacement_cdf", token_noise.device)
        return torch.searchsorted(cdf, token_noise, right=True).clamp_(max=cdf.numel() - 1)

    def units(self, tokens: torch.Tensor):
        """(maskable, unit starts), both (B, L) bool."""
        maskable = maskable_positions(tokens, self.special_ids)
        table = None if self.word_start_table is None else self._table("word_start_table", tokens.device)
        return maskable, unit_starts(tokens, maskable, table)

    def __call__(self, tokens: torch.Tensor, ratio, draws: MaskDraws) -> MaskedTokens:
        """Mask ``tokens`` (B, L) at ``ratio`` (float or (B,) tensor) of each
        sequence's units, a uniformly random subset, using ``draws``."""
        maskable, starts = self.units(tokens)
        counts = stochastic_counts(starts.sum(dim=1), ratio, draws.rounding_noise)
        chosen_starts = select_by_rank(draws.unit_scores, starts, counts)
        return self.corrupt_units(tokens, maskable, starts, chosen_starts, draws)

    def weighted(self, tokens: torch.Tensor, ratio, draws: MaskDraws, unit_weights: torch.Tensor) -> MaskedTokens:
        """Mask ``ratio`` of each sequence's maskable *tokens* (stochastically
        rounded, at least one), taking units in a weighted random order:
        units are drawn without replacement with probability proportional to
        ``unit_weights`` (B, L) > 0, read at each unit's start, until their
        tokens fill the budget (see :func:`select_within_budget`)."""
        maskable, starts = self.units(tokens)
        budget = stochastic_counts(maskable.sum(dim=1), ratio, draws.rounding_noise)
        keys = exponential_race_keys(draws.unit_scores, unit_weights)
        chosen_starts = select_within_budget(keys, starts, unit_lengths(starts, maskable), budget, draws.crossing_noise)
        return self.corrupt_units(tokens, maskable, starts, chosen_starts, draws)

    def proposed(self, tokens: torch.Tensor, ratio, draws: MaskDraws, probabilities: torch.Tensor):
        """Mask ``ratio`` of each sequence's units (stochastically rounded, at
        least one), drawn without replacement from ``probabilities`` (B, L),
        read at unit starts (Gumbel top-k as an exponential race).

        The race keys in the result give the draw order that the exact
        importance weights need."""
        maskable, starts = self.units(tokens)
        counts = stochastic_counts(starts.sum(dim=1), ratio, draws.rounding_noise)
        keys = exponential_race_keys(draws.unit_scores, probabilities.clamp(min=1e-30))
        chosen_starts = select_by_rank(keys, starts, counts)
        masked = self.corrupt_units(tokens, maskable, starts, chosen_starts, draws)
        return ProposedMasks(masked, starts, chosen_starts, keys)

    def corrupt_units(
        self,
        tokens: torch.Tensor,
        maskable: torch.Tensor,
        starts: torch.Tensor,
        chosen_starts: torch.Tensor,
        draws: MaskDraws,
    ) -> MaskedTokens:
        """Expand chosen unit starts to whole units and corrupt them."""
        predicted = expand_units(chosen_starts, unit_start_index(starts), maskable)
        decision, token_noise = self.unit_noise(maskable, starts, draws)
        return self.finish(tokens, predicted, maskable, decision, token_noise)

    def unit_noise(self, maskable: torch.Tensor, starts: torch.Tensor, draws: MaskDraws):
        """(decision, token noise), both (B, L) float64: one 80/10/10 decision
        per unit (its start's draw), one replacement-token uniform per position."""
        decision = expand_units(draws.decision_noise, unit_start_index(starts), maskable)
        return decision, draws.token_noise

    def finish(
        self,
        tokens: torch.Tensor,
        predicted: torch.Tensor,
        maskable: torch.Tensor,
        decision: torch.Tensor,
        token_noise: torch.Tensor,
    ) -> MaskedTokens:
        """Corrupt ``tokens`` at ``predicted`` and build the target (all (N, L))."""
        corruption = corrupt(tokens, predicted, decision, token_noise, self.replacement_tokens, self.mask_idx, self.rule)
        target = torch.where(predicted, tokens, torch.full_like(tokens, self.pad_idx))
        return MaskedTokens(corruption.src_tokens, target, predicted, maskable, corruption)
