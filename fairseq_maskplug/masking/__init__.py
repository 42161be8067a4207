"""Mask construction in pure torch (no fairseq import): position selection,
whole-word units, 80/10/10 corruption and seeded draws."""

from .corruption import Corruption, CorruptionRule, corrupt
from .draws import MaskDraws, sequence_generator, sequence_seed
from .masker import MaskedTokens, Masker
from .selection import expand_units, select_by_rank, stochastic_counts
from .units import maskable_positions, unit_start_index, unit_starts

__all__ = [
    "Corruption",
    "CorruptionRule",
    "MaskDraws",
    "MaskedTokens",
    "Masker",
    "corrupt",
    "expand_units",
    "maskable_positions",
    "sequence_generator",
    "sequence_seed",
    "select_by_rank",
    "stochastic_counts",
    "unit_start_index",
    "unit_starts",
]
