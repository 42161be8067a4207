"""Mask construction in pure torch (no fairseq import).

- :mod:`.units`, :mod:`.selection`, :mod:`.corruption`: maskable positions,
  whole-word units, choosing units by rank or within a token budget, 80/10/10.
- :mod:`.draws`: the counter-based random draws every mask is made from.
- :mod:`.masker`: the :class:`Masker` (a vocabulary's units and corruption)
  and :class:`MaskedTokens`, what every strategy returns.
- :mod:`.strategies`: one strategy per way of choosing units (uniform,
  spans, weighted, fully-explored, proposal), all called alike.
- :mod:`.fully_explored`, :mod:`.schedules`, :mod:`.class_losses`,
  :mod:`.importance`: segment partitions, mask-ratio schedules, running
  per-class losses (POS weighting), importance weights (MAPNet).

Errors are plain ``ValueError``s that name the parameters of this package in
backticks (```segments```); the task translates them into option names.
"""

from .corruption import Corruption, CorruptionRule
from .draws import MaskDraws, SequenceSlot, Slot, sequence_seed
from .fully_explored import FullyExploredOptions, default_segments, segment_ids
from .masker import MaskedTokens, Masker, Units, UnitSelection
from .schedules import RatioSchedule
from .selection import expand_units, select_by_rank, stochastic_counts
from .strategies import (
    FullyExploredUnits,
    MaskingStep,
    MaskingStrategy,
    ProposalMasking,
    ProposalUnits,
    SpanUnits,
    UniformUnits,
    WeightedUnits,
)
from .units import maskable_positions, unit_start_index, unit_starts

__all__ = [
    "Corruption",
    "CorruptionRule",
    "FullyExploredOptions",
    "FullyExploredUnits",
    "MaskDraws",
    "MaskedTokens",
    "Masker",
    "MaskingStep",
    "MaskingStrategy",
    "ProposalMasking",
    "ProposalUnits",
    "RatioSchedule",
    "SequenceSlot",
    "SpanUnits",
    "Slot",
    "UniformUnits",
    "UnitSelection",
    "Units",
    "WeightedUnits",
    "default_segments",
    "expand_units",
    "maskable_positions",
    "segment_ids",
    "select_by_rank",
    "sequence_seed",
    "stochastic_counts",
    "unit_start_index",
    "unit_starts",
]
