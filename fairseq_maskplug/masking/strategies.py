"""Masking strategies: one per way of choosing the units a sequence predicts.

Every strategy is called the same way,

    strategy(tokens, draws, update_num, unit_weights=None) -> MaskedTokens

with the clean (B, L) ``tokens``, the batch's random ``draws`` and the update
number (schedules read it) passed explicitly; ``unit_weights`` (B, L) are the
per-unit weights or probabilities that weighted strategies need, read at unit
starts. The result carries its number of copies per sequence.

- :class:`UniformUnits`: a uniform random subset at the scheduled ratio (stock).
- :class:`WeightedUnits`: units drawn by weight until a token budget is filled (POS weighting).
- :class:`FullyExploredUnits`: K disjoint segments, one copy each (FE-MLM).
- :class:`ProposalUnits`: units drawn from a proposal with known inclusion probabilities (MAPNet).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .draws import MaskDraws, Slot
from .fully_explored import FullyExploredOptions, segment_ids
from .importance import inclusion_probabilities
from .masker import MaskedTokens, Masker, UnitSelection
from .selection import (
    exponential_race_keys,
    select_by_rank,
    select_first_fit,
    select_systematic,
    select_within_budget,
    stochastic_counts,
)

Ratio = Callable[[int], float]  # update number -> mask ratio (a RatioSchedule, say)


class MaskingStrategy(ABC):
    """Chooses which units of each sequence are predicted, and has ``masker``
    corrupt them. ``copies``: rows of the result per input sequence."""

    copies = 1

    def __init__(self, masker: Masker):
        self.masker = masker

    @abstractmethod
    def __call__(
        self, tokens: torch.Tensor, draws: MaskDraws, update_num: int, unit_weights: Optional[torch.Tensor] = None
    ) -> MaskedTokens:
        """Mask ``tokens`` (B, L) with ``draws`` at update ``update_num``."""


class UniformUnits(MaskingStrategy):
    """A uniformly random subset of each sequence's units: ``ratio(update)``
    of them, stochastically rounded, at least one (stock masking)."""

    def __init__(self, masker: Masker, ratio: Ratio):
        super().__init__(masker)
        self.ratio = ratio

    def __call__(self, tokens, draws, update_num, unit_weights=None):
        units = self.masker.units(tokens)
        counts = stochastic_counts(units.count(), self.ratio(update_num), draws.rounding_noise)
        # a uniform random order: the raw 64-bit hashes, uniformly distributed, ranked as they are
        chosen = select_by_rank(draws.hashes(Slot.UNIT_SCORE), units.starts, counts)
        return self.masker.corrupt(tokens, units, units.spread(chosen), draws, selection=UnitSelection(units, chosen))


WEIGHTED_LAWS = ("reference", "race")


class SpanUnits(MaskingStrategy):
    """Stock fairseq's span masking (its ``mask_multiple_length`` and
    ``mask_stdev``) over units: ``ratio(update) / length`` of each
    sequence's units (stochastically rounded, at least one) start a span,
    chosen uniformly; a span covers ``length`` units, or, with ``stdev`` > 0,
    round(N(length, stdev²)) units (at least 0), clipped to the sequence;
    overlapping spans merge, so the realised ratio is below ``ratio`` as in
    stock. Spans run over units, so they skip specials (stock's may cover
    ``</s>``) and cover whole words with whole-word units."""

    def __init__(self, masker: Masker, ratio: Ratio, length: int, stdev: float = 0.0):
        self.check(length, stdev)
        super().__init__(masker)
        self.ratio, self.length, self.stdev = ratio, length, stdev

    @staticmethod
    def check(length: int, stdev: float):
        if length < 1:
            raise ValueError(f"`length` must be at least 1, got {length}")
        if stdev < 0:
            raise ValueError(f"`stdev` must be >= 0, got {stdev}")

    def __call__(self, tokens, draws, update_num, unit_weights=None):
        units = self.masker.units(tokens)
        counts = stochastic_counts(units.count(), self.ratio(update_num) / self.length, draws.rounding_noise)
        first = select_by_rank(draws.hashes(Slot.UNIT_SCORE), units.starts, counts)
        if self.stdev > 0:
            normal = torch.special.ndtri(draws.per_position(Slot.SPAN_LENGTH).clamp(1e-300, 1 - 1e-16))
            spans = torch.round(self.length + self.stdev * normal).clamp(min=0).long()
        else:
            spans = torch.full_like(tokens, self.length)
        # units numbered 0, 1, ... per sequence; a span starting at unit k covers k .. k + span - 1
        number = units.starts.long().cumsum(dim=1) - 1
        edges = torch.zeros(tokens.size(0), tokens.size(1) + 1, dtype=torch.long, device=tokens.device)
        edges.scatter_add_(1, torch.where(first, number, tokens.size(1)), first.long())
        end = (number + spans).clamp(max=tokens.size(1))
        edges.scatter_add_(1, torch.where(first, end, tokens.size(1)), -first.long())
        covered = edges.cumsum(dim=1)[:, :-1] > 0  # by unit number
        chosen = units.starts & covered.gather(1, number.clamp(min=0))
        return self.masker.corrupt(tokens, units, units.spread(chosen), draws, selection=UnitSelection(units, chosen))


class WeightedUnits(MaskingStrategy):
    """Up to ``ratio(update)`` of each sequence's maskable *tokens*
    (stochastically rounded, at least one), units favoured by their
    ``unit_weights`` (B, L), read at unit starts. Two laws:

    - ``reference`` (PTW's own): units visited in a uniformly random order,
      each offered with probability equal to its weight (in [0, 1]), taken
      when it still fits the budget (:func:`select_first_fit`); the total can
      fall short of the budget.
    - ``race``: units drawn without replacement with probability proportional
      to the weights until their tokens fill the budget exactly
      (:func:`select_within_budget`): the ratio is always the budget's, but
      the choice is less selective than the reference's.
    """

    def __init__(self, masker: Masker, ratio: Ratio, law: str = "reference"):
        if law not in WEIGHTED_LAWS:
            raise ValueError(f"`law` must be one of {', '.join(WEIGHTED_LAWS)}, got {law!r}")
        super().__init__(masker)
        self.ratio = ratio
        self.law = law

    def __call__(self, tokens, draws, update_num, unit_weights=None):
        if unit_weights is None:
            raise ValueError("WeightedUnits needs `unit_weights`")
        units = self.masker.units(tokens)
        budget = stochastic_counts(units.maskable.sum(dim=1), self.ratio(update_num), draws.rounding_noise)
        if self.law == "reference":
            offered = draws.per_position(Slot.ACCEPT) < unit_weights
            chosen = select_first_fit(draws.unit_scores, units.starts, units.lengths(), offered, budget)
        else:
            keys = exponential_race_keys(draws.unit_scores, unit_weights)
            chosen = select_within_budget(keys, units.starts, units.lengths(), budget, draws.crossing_noise)
        return self.masker.corrupt(tokens, units, units.spread(chosen), draws, selection=UnitSelection(units, chosen))


class FullyExploredUnits(MaskingStrategy):
    """K corrupted copies of every sequence; copy k predicts segment k of a
    partition of the sequence's units (see :mod:`.fully_explored`)."""

    def __init__(self, masker: Masker, options: FullyExploredOptions):
        super().__init__(masker)
        self.options = options
        self.copies = options.segments

    def __call__(self, tokens, draws, update_num, unit_weights=None):
        K = self.copies
        units = self.masker.units(tokens)
        segments = segment_ids(units.starts, units.maskable, draws.unit_scores, draws.rounding_noise, self.options)
        copy_index = torch.arange(K, device=tokens.device).repeat(tokens.size(0)).unsqueeze(1)  # (B·K, 1)
        predicted = segments.repeat_interleave(K, dim=0) == copy_index
        return self.masker.corrupt(tokens, units, predicted, draws, copies=K)


PROPOSAL_SAMPLERS = ("inclusion", "successive")


class ProposalUnits(MaskingStrategy):
    """Units drawn from the proposal ``unit_weights`` (B, L), probabilities
    read at unit starts, at ``ratio(update)`` of each sequence's units (at
    least one). Two samplers (see :mod:`.importance`):

    - ``inclusion``: unit i is included with probability π_i = min(1, c·q_i),
      Σ π_i = ratio · n (clamped to [1, n]), by systematic sampling in a
      random order: floor or ceil of that count, as uniform masking draws.
      The result's selection holds π.
    - ``successive``: the stochastically rounded count drawn without
      replacement from q (Gumbel top-k as an exponential race); the result's
      selection holds the race keys, the draw order exact weights need.
    """

    def __init__(self, masker: Masker, ratio: Ratio, sampler: str = "inclusion"):
        if sampler not in PROPOSAL_SAMPLERS:
            raise ValueError(f"`sampler` must be one of {', '.join(PROPOSAL_SAMPLERS)}, got {sampler!r}")
        super().__init__(masker)
        self.ratio = ratio
        self.sampler = sampler

    def __call__(self, tokens, draws, update_num, unit_weights=None):
        if unit_weights is None:
            raise ValueError("ProposalUnits needs the proposal's probabilities as `unit_weights`")
        units = self.masker.units(tokens)
        if self.sampler == "inclusion":
            n = units.count().to(torch.float64)
            expected = (n * self.ratio(update_num)).clamp(min=1).minimum(n)
            inclusion = inclusion_probabilities(unit_weights, units.starts, expected)
            chosen = select_systematic(inclusion, draws.hashes(Slot.UNIT_SCORE), draws.systematic_offsets)
            selection = UnitSelection(units, chosen, inclusion=inclusion)
        else:
            counts = stochastic_counts(units.count(), self.ratio(update_num), draws.rounding_noise)
            keys = exponential_race_keys(draws.unit_scores, unit_weights.clamp(min=1e-30))
            chosen = select_by_rank(keys, units.starts, counts)
            selection = UnitSelection(units, chosen, keys)
        return self.masker.corrupt(tokens, units, units.spread(chosen), draws, selection=selection)


@dataclass
class MaskingStep:
    """One training step's randomness, which the task hands its criterion
    (a criterion that draws its own masks draws from it): the batch's
    ``draws`` and the ``update_num``;
    ``learn``: the step trains the proposal (not a dummy batch, not a
    diagnostic); ``first_of_update``: the update's first micro-batch."""

    draws: MaskDraws
    update_num: int
    learn: bool = False
    first_of_update: bool = False


@dataclass
class ProposalMasking:
    """What the task hands, once, to a criterion that draws its own masks
    (MAPNet): its uniform strategy (warm-up and exploration steps), from
    which :meth:`proposal` makes the strategy that draws from a proposal at
    the task's ratio."""

    uniform: UniformUnits

    def proposal(self, sampler: str) -> ProposalUnits:
        """Masks drawn from a proposal with ``sampler`` (see :class:`ProposalUnits`)."""
        return ProposalUnits(self.uniform.masker, self.uniform.ratio, sampler)
