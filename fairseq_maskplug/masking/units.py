"""Which positions of a token batch may be masked, and how they group into units.

A *unit* is what selection draws: a single token in token mode, a whole word in
whole-word mode. Every maskable position belongs to exactly one unit, and a unit
is a run of consecutive maskable positions that starts at its *unit start*.
"""

from typing import Optional, Sequence

import torch


def maskable_positions(tokens: torch.Tensor, special_ids: Sequence[int]) -> torch.Tensor:
    """Bool (B, L): True where ``tokens`` (B, L) holds none of ``special_ids``.

    ``special_ids`` are the ids that are never selected (``<s>``, ``</s>``,
    ``<pad>``, and anything else the caller passes).
    """
    maskable = torch.ones_like(tokens, dtype=torch.bool)
    for special in special_ids:  # a handful of ids: comparisons beat torch.isin
        maskable &= tokens.ne(special)
    return maskable


def unit_starts(tokens: torch.Tensor, maskable: torch.Tensor, word_start_table: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bool (B, L): True at the first position of every unit.

    Args:
        tokens: (B, L) token ids.
        maskable: (B, L) bool, from :func:`maskable_positions`.
        word_start_table: optional (V,) bool over the vocabulary, True for the
            pieces that begin a word. ``None`` makes every maskable position
            its own unit (token mode).

    Invariant: a start is always maskable, and a maskable position that
    follows a non-maskable one (or the row's start) is always a start, so no
    unit spans a special token.
    """
    if word_start_table is None:
        return maskable.clone()
    begins_word = word_start_table.to(tokens.device)[tokens]
    follows_special = torch.ones_like(maskable)
    follows_special[:, 1:] = ~maskable[:, :-1]
    return maskable & (begins_word | follows_special)


def unit_start_index(starts: torch.Tensor) -> torch.Tensor:
    """Long (B, L): for every position, the index of the latest unit start at or
    before it (0 before the first start; callers mask those positions out)."""
    length = starts.size(1)
    positions = torch.arange(length, device=starts.device).expand_as(starts)
    latest = torch.where(starts, positions, torch.zeros_like(positions))
    return latest.cummax(dim=1).values


def unit_lengths(starts: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """Long (B, L): at each unit start, the number of positions in the unit;
    0 elsewhere."""
    index = unit_start_index(starts)
    counts = torch.zeros_like(index).scatter_add_(1, index, maskable.long())
    return torch.where(starts, counts, torch.zeros_like(counts))
