"""Mask construction in pure torch (no fairseq import): position selection,
whole-word units, 80/10/10 corruption, seeded draws, fully-explored partitions."""

from .corruption import Corruption, CorruptionRule, corrupt
from .draws import MaskDraws, sequence_generator, sequence_seed
from .fully_explored import FullyExploredOptions, default_segments, fully_explored_masks, segment_ids
from .masker import MaskedTokens, Masker, ProposedMasks
from .selection import expand_units, select_by_rank, stochastic_counts
from .units import maskable_positions, unit_start_index, unit_starts

__all__ = [
    "Corruption",
    "CorruptionRule",
    "FullyExploredOptions",
    "MaskDraws",
    "MaskedTokens",
    "Masker",
    "ProposedMasks",
    "corrupt",
    "default_segments",
    "expand_units",
    "fully_explored_masks",
    "maskable_positions",
    "segment_ids",
    "sequence_generator",
    "sequence_seed",
    "select_by_rank",
    "stochastic_counts",
    "unit_start_index",
    "unit_starts",
]
