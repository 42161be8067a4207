"""The Masker: a batch's units, and the 80/10/10 corruption of chosen units.

Which units a sequence predicts is the business of a strategy
(:mod:`.strategies`); the Masker knows the vocabulary side: which positions
may be predicted, how they group into units (tokens or whole words), and what
the model sees at a predicted position.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .corruption import Corruption, CorruptionRule
from .draws import MaskDraws, Slot
from .selection import expand_units
from .units import unit_lengths, unit_start_index, unit_starts


@dataclass
class Units:
    """The unit structure of a (B, L) batch.

    maskable: (B, L) bool, positions that may be predicted.
    starts: (B, L) bool, the first position of every unit (always maskable).
    single_tokens: every unit is one token (``starts`` equals ``maskable``).
    """

    maskable: torch.Tensor
    starts: torch.Tensor
    single_tokens: bool = False

    def start_index(self) -> torch.Tensor:
        """Long (B, L): each position's unit start (see :func:`unit_start_index`)."""
        return unit_start_index(self.starts)

    def start_of(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Long (N,): the unit start of each of the N maskable positions (rows, positions)."""
        return positions if self.single_tokens else self.start_index()[rows, positions]

    def lengths(self) -> torch.Tensor:
        """Long (B, L): each unit's token count at its start, 0 elsewhere."""
        return unit_lengths(self.starts, self.maskable)

    def count(self) -> torch.Tensor:
        """Long (B,): units per sequence."""
        return self.starts.sum(dim=1)

    def spread(self, at_starts: torch.Tensor) -> torch.Tensor:
        """(B, L): every maskable position takes the value its unit's start
        holds in ``at_starts`` (B, L); other positions take False / 0."""
        if self.single_tokens:
            return at_starts & self.maskable if at_starts.dtype == torch.bool else at_starts * self.maskable
        return expand_units(at_starts, self.start_index(), self.maskable)


@dataclass
class UnitSelection:
    """How a strategy chose the units of a (B, L) batch, for callers that
    weight the result (importance weights need the draw order).

    units: the batch's units.
    chosen: (B, L) bool, the chosen unit starts.
    keys: (B, L) float64 race keys (lower = drawn earlier), or None.
    inclusion: (B, L) float64 inclusion probability of every unit start, or None.
    """

    units: Units
    chosen: torch.Tensor
    keys: Optional[torch.Tensor] = None
    inclusion: Optional[torch.Tensor] = None


@dataclass
class MaskedTokens:
    """The result of masking a (B, L) batch: B·copies rows, sequence-major
    (rows b·copies … b·copies + copies − 1 are the copies of sequence b).

    src_tokens: (N, L) corrupted input.
    target: (N, L) original id at predicted positions, ``pad`` elsewhere.
    predicted: (N, L) bool, the predicted positions (target != pad there).
    maskable: (N, L) bool, positions that could have been predicted.
    corruption: how each predicted position was corrupted.
    copies: masked copies per input sequence (fully-explored: K).
    selection: the unit choice (single-copy strategies), or None.
    """

    src_tokens: torch.Tensor
    target: torch.Tensor
    predicted: torch.Tensor
    maskable: torch.Tensor
    corruption: Corruption
    copies: int = 1
    selection: Optional[UnitSelection] = None


class Masker:
    """Units and corruption for one vocabulary of V ids.

    Args:
        mask_idx: id of ``<mask>``.
        pad_idx: id of ``<pad>``, written into ``target`` where nothing is predicted.
        special_ids: ids never selected (``<s>``, ``</s>``, ``<pad>``, ...).
        rule: the corruption shares.
        replacement_weights: (V,) unnormalised probabilities of the random
            replacement ids (zero for specials and ``<mask>``).
        word_start_table: optional (V,) bool, True for pieces that start a
            word; when given, units are whole words (corrupted together) and
            ratios count words, as stock fairseq's whole-word masking does.
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
            raise ValueError("`replacement_weights` must be a non-negative (V,) vector with a positive sum")
        self.mask_idx = mask_idx
        self.pad_idx = pad_idx
        self.special_ids = tuple(sorted(set(special_ids) | {pad_idx}))
        self.selectable = torch.ones(replacement_weights.numel(), dtype=torch.bool)
        self.selectable[list(self.special_ids)] = False
        self.rule = rule
        weights = replacement_weights.to(torch.float64)
        self.replacement_cdf = weights.cumsum(0) / weights.sum()
        support = weights.nonzero().flatten()
        # equal weights (the default): the id is the support's entry at floor(u · size), no search needed
        self.replacement_support = support if bool((weights[support] == weights[support[0]]).all()) else None
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
        weights by inverse-CDF lookup of the uniforms (a direct index when the
        weights are equal, else an O(log V) search)."""
        if self.replacement_support is not None:
            support = self._table("replacement_support", token_noise.device)
            return support[(token_noise * support.numel()).long().clamp_(max=support.numel() - 1)]
        cdf = self._table("replacement_cdf", token_noise.device)
        return torch.searchsorted(cdf, token_noise, right=True).clamp_(max=cdf.numel() - 1)

    def units(self, tokens: torch.Tensor) -> Units:
        """The units of ``tokens`` (B, L) (ids below V)."""
        maskable = self._table("selectable", tokens.device)[tokens]
        if self.word_start_table is None:
            return Units(maskable, maskable, single_tokens=True)
        return Units(maskable, unit_starts(tokens, maskable, self._table("word_start_table", tokens.device)))

    def corrupt(
        self,
        tokens: torch.Tensor,
        units: Units,
        predicted: torch.Tensor,
        draws: MaskDraws,
        copies: int = 1,
        selection: Optional[UnitSelection] = None,
    ) -> MaskedTokens:
        """Corrupt ``copies`` copies of ``tokens`` (B, L) at ``predicted``
        (B·copies, L) bool, sequence-major; whole units must be predicted
        together. A unit's 80/10/10 decision is its start's DECISION draw and
        a randomised position's id comes from its own TOKEN draw, so a unit
        is corrupted alike in whichever copy predicts it. Only the predicted
        positions are drawn and written (replacement ids are looked up for
        all of them: cheaper than selecting the randomised ones first)."""
        if copies > 1:
            tokens, maskable = tokens.repeat_interleave(copies, dim=0), units.maskable.repeat_interleave(copies, dim=0)
        else:
            maskable = units.maskable
        rows, positions = predicted.nonzero(as_tuple=True)
        sequences = torch.div(rows, copies, rounding_mode="floor") if copies > 1 else rows
        # one pass of the hash: a unit's decision (at its start) and each position's replacement uniform
        decision, token_noise = draws.at_slots(
            (Slot.DECISION, Slot.TOKEN), sequences, (units.start_of(sequences, positions), positions)
        )
        kept, randomised, _ = self.rule.decide(decision)
        original = tokens[rows, positions]
        replacement = self.replacement_tokens(token_noise).to(tokens.dtype)
        seen = torch.where(kept, original, torch.where(randomised, replacement, torch.full_like(original, self.mask_idx)))
        src_tokens = tokens.index_put((rows, positions), seen)
        target = torch.full_like(tokens, self.pad_idx).index_put_((rows, positions), original)
        corruption = Corruption(src_tokens, rows, positions, decision, self.rule)
        return MaskedTokens(src_tokens, target, predicted, maskable, corruption, copies, selection)
