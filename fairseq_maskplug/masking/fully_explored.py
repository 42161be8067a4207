"""Fully-explored masking (FE-MLM): K disjoint mask segments per sequence,
one corrupted copy per segment, all copies in the same update.

Units (tokens, or whole words) of each sequence are ranked, either in a random
order (a random permutation of the units) or in their order in the sequence
(contiguous spans), and the ranks are cut into K segments:

- ``segment`` size: unit of rank r goes to segment floor(r·K / n); the K
  segments partition all n units, sizes differ by at most one, ratio ≈ 1/K.
- ``ratio`` size: segments are consecutive chunks of m = ceil(p·n) ranks;
  K·p ≤ 1 keeps them disjoint, and units beyond rank K·m stay unmasked.

Under the random partition the segment numbers are rotated by a random
per-sequence offset, so every unit is predicted by copy k with probability
exactly 1/K (for ``segment`` size) whatever n mod K is.

A sequence with fewer than K units gets one unit per segment for its n
units; its other K − n copies predict nothing (they add nothing to the loss or
to the sample size).
"""

from dataclasses import dataclass

import torch

from .selection import expand_units
from .units import unit_start_index

PARTITIONS = ("random", "contiguous")
MASK_SIZES = ("segment", "ratio")


@dataclass(frozen=True)
class FullyExploredOptions:
    """segments: K copies per sequence (≥ 2). partition: ``random`` or
    ``contiguous``. mask_size: ``segment`` (whole segment, ratio 1/K) or
    ``ratio`` (ceil(mask_prob·n) units per copy, K·mask_prob ≤ 1)."""

    segments: int
    partition: str = "random"
    mask_size: str = "segment"
    mask_prob: float = 0.15

    def __post_init__(self):
        if self.segments < 2:
            raise ValueError(f"`segments` must be at least 2, got {self.segments}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"`partition` must be one of {', '.join(PARTITIONS)}, got {self.partition!r}")
        if self.mask_size not in MASK_SIZES:
            raise ValueError(f"`mask_size` must be one of {', '.join(MASK_SIZES)}, got {self.mask_size!r}")
        if self.mask_size == "ratio" and self.segments * self.mask_prob > 1 + 1e-9:
            raise ValueError(
                f"`mask_size` ratio needs `segments` × `mask_prob` ≤ 1 so the copies stay disjoint, "
                f"got {self.segments} × {self.mask_prob} = {self.segments * self.mask_prob:g}"
            )


def default_segments(mask_prob: float) -> int:
    """K = round(1 / mask_prob), at least 2 (7 for 0.15)."""
    return max(2, round(1 / mask_prob))


def unit_ranks(starts: torch.Tensor, unit_scores: torch.Tensor, partition: str) -> torch.Tensor:
    """Long (B, L): at each unit start, the unit's rank among its sequence's
    units (by score for ``random``, by position for ``contiguous``); other
    positions hold L (never a valid rank)."""
    length = starts.size(1)
    positions = torch.arange(length, device=starts.device, dtype=torch.float64).expand(starts.shape)
    keys = unit_scores if partition == "random" else positions
    keys = torch.where(starts, keys, torch.full_like(keys, float("inf")))
    order = torch.argsort(keys, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(length, device=starts.device).expand_as(order))
    return torch.where(starts, ranks, torch.full_like(ranks, length))


def segment_ids(
    starts: torch.Tensor,
    maskable: torch.Tensor,
    unit_scores: torch.Tensor,
    rotation_noise: torch.Tensor,
    options: FullyExploredOptions,
) -> torch.Tensor:
    """Long (B, L): the segment (0..K-1) each maskable position belongs to,
    whole units together; -1 for positions no copy predicts.

    ``unit_scores`` (B, L) order the units (random partition);
    ``rotation_noise`` (B,) uniforms pick a per-sequence rotation of the
    segment numbers (random partition only; contiguous spans stay in order)."""
    K = options.segments
    ranks = unit_ranks(starts, unit_scores, options.partition)
    num_units = starts.sum(dim=1, keepdim=True)
    if options.mask_size == "segment":
        segment = torch.div(ranks * K, num_units.clamp(min=1), rounding_mode="floor")
    else:
        per_copy = torch.ceil(num_units.to(torch.float64) * options.mask_prob).long().clamp(min=1)
        segment = torch.div(ranks, per_copy, rounding_mode="floor")
    unused = (segment >= K) | ~starts
    if options.partition == "random":
        # rotate by a random offset so that which copy gets a larger (or the
        # truncated) segment is uniform too: each unit is in copy k w.p. 1/K
        segment = (segment + torch.floor(rotation_noise * K).long().unsqueeze(1)) % K
    segment = torch.where(unused, torch.full_like(segment, -1), segment)
    spread = expand_units(segment + 1, unit_start_index(starts), maskable) - 1  # -1 outside units
    return spread
