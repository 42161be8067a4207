"""Choose which units of each sequence are predicted.

Everything here is vectorised over the batch and runs on the tokens' device;
the randomness comes in as tensors drawn beforehand (see :mod:`.draws`), so the
result does not depend on the device.
"""

import torch


def stochastic_counts(num_units: torch.Tensor, ratio, rounding_noise: torch.Tensor) -> torch.Tensor:
    """Long (B,): ``floor(ratio * num_units + u)`` with ``u ~ U[0, 1)``, capped at
    ``num_units`` (stock ``MaskTokensDataset``'s rounding, so the expected count
    is ``ratio * num_units``), and at least 1 for a sequence with any unit: a
    low or scheduled ratio never leaves a sequence with nothing to predict.

    Args:
        num_units: (B,) number of units per sequence.
        ratio: a float, or a (B,) float tensor of per-sequence ratios.
        rounding_noise: (B,) float64 uniforms in [0, 1).
    """
    expected = num_units.to(torch.float64) * ratio
    counts = torch.floor(expected + rounding_noise.to(expected.device)).long()
    return torch.minimum(counts, num_units).clamp(min=1).minimum(num_units)


def select_by_rank(scores: torch.Tensor, eligible: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): per row, the ``counts[b]`` eligible positions of lowest score.

    Args:
        scores: (B, L) float or int; lower is chosen first. Uniform scores
            (or uniformly distributed hashes) give a uniform subset;
            ``-log(u) / q`` (exponential races) gives sampling without
            replacement proportional to ``q``.
        eligible: (B, L) bool; only these can be chosen.
        counts: (B,) long, at most the number of eligible positions per row.

    Only the ``max(counts)`` lowest scores per row are ranked (a top-k, not a
    sort of the row). Scores are continuous draws, so ties among eligible
    positions have probability ~0 and the chosen set is the same on every
    device.
    """
    if scores.numel() == 0:
        return torch.zeros_like(eligible)
    last = float("inf") if scores.is_floating_point() else torch.iinfo(scores.dtype).max
    ranked = scores.masked_fill(~eligible, last)
    lowest = torch.topk(ranked, int(counts.max()), dim=1, largest=False, sorted=True).indices
    rank_is_chosen = torch.arange(lowest.size(1), device=scores.device).unsqueeze(0) < counts.unsqueeze(1)
    return torch.zeros_like(eligible).scatter_(1, lowest, rank_is_chosen)


def select_systematic(inclusion: torch.Tensor, order_scores: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): systematic sampling with unequal probabilities (Madow,
    1949): each row's positions, visited in increasing ``order_scores``, are
    laid end to end as intervals of length ``inclusion``; the positions whose
    interval holds one of the points ``offset + t`` (t = 0, 1, …) are chosen.

    Position i is chosen with probability exactly ``inclusion[b, i]`` (every
    value in [0, 1]); a row of total m chooses floor(m) or ceil(m) positions,
    ceil(m) with probability frac(m) (the law of :func:`stochastic_counts`).
    With uniformly random ``order_scores`` and equal inclusion probabilities
    the chosen set is a uniform random subset of that size.

    Args:
        inclusion: (B, L) float64 inclusion probabilities, 0 where nothing may be chosen.
        order_scores: (B, L) float or int, the visiting order (uniform hashes: a random order).
        offsets: (B,) float64 uniforms in [0, 1).
    """
    order = torch.argsort(order_scores, dim=1, stable=True)
    ends = inclusion.gather(1, order).cumsum(dim=1) - offsets.to(inclusion.device).unsqueeze(1)
    crossings = torch.floor(ends)
    before = torch.cat([torch.floor(-offsets.to(inclusion.device)).unsqueeze(1), crossings[:, :-1]], dim=1)
    chosen_in_order = crossings > before
    return torch.zeros_like(chosen_in_order).scatter_(1, order, chosen_in_order)


def expand_units(unit_value: torch.Tensor, start_index: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """(B, L): every maskable position takes the value its unit start holds in
    ``unit_value`` (B, L); non-maskable positions take False / 0."""
    spread = unit_value.gather(1, start_index)
    return torch.where(maskable, spread, torch.zeros_like(spread))


def exponential_race_keys(uniforms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Float64 keys ``-log(u) / w``: taking units in increasing key order is
    sampling without replacement with probabilities proportional to ``w``
    (each key is an Exp(w) arrival time). ``weights`` must be > 0."""
    return -torch.log(uniforms.clamp(min=torch.finfo(torch.float64).tiny)) / weights.to(torch.float64)


def select_within_budget(
    keys: torch.Tensor, starts: torch.Tensor, unit_lengths: torch.Tensor, budget: torch.Tensor, crossing_noise: torch.Tensor
) -> torch.Tensor:
    """Bool (B, L) unit starts: units taken in increasing ``keys`` order until
    their tokens fill ``budget`` (B,).

    Units that fit entirely are taken; the one unit that would cross the
    budget is taken with probability (budget − tokens before it) / its length,
    so the expected number of predicted tokens equals the budget exactly.
    ``unit_lengths`` (B, L) holds each unit's token count at its start.
    """
    ranked = torch.where(starts, keys, torch.full_like(keys, float("inf")))
    order = torch.argsort(ranked, dim=1, stable=True)
    lengths = torch.where(starts, unit_lengths, torch.zeros_like(unit_lengths)).gather(1, order)
    after = lengths.cumsum(dim=1)
    before = after - lengths
    limit = budget.unsqueeze(1)
    fits = after <= limit
    crosses = (before < limit) & (after > limit)
    keep_crossing = crossing_noise.unsqueeze(1) * lengths < (limit - before)
    chosen_sorted = (fits | (crosses & keep_crossing)) & (lengths > 0)
    return torch.zeros_like(starts).scatter(1, order, chosen_sorted)


def select_first_fit(
    order: torch.Tensor, starts: torch.Tensor, unit_lengths: torch.Tensor, offered: torch.Tensor, budget: torch.Tensor
) -> torch.Tensor:
    """Bool (B, L) unit starts: the units ``offered`` (B, L) bool, visited in
    increasing ``order`` (B, L) and taken whenever their tokens still fit in
    ``budget`` (B,), skipped when they would overflow it (first fit).

    This is the reference PTW selection (better_masking's ``_whole_word_mask``,
    with its shuffle as ``order`` and its acceptance draws as ``offered``); the
    total can fall short of the budget. Computed in rounds over the whole
    batch: a round drops the units longer than what is left (they can never
    fit), takes the longest prefix of the rest that fits and skips the unit
    after it; the rounds are few (bounded by the longest unit).
    """
    ranked = torch.where(starts, order, torch.full_like(order, float("inf")))
    by_order = torch.argsort(ranked, dim=1, stable=True)
    lengths = torch.where(starts & offered, unit_lengths, torch.zeros_like(unit_lengths)).gather(1, by_order)
    active = lengths > 0
    taken = torch.zeros_like(active)
    left = budget.clone()
    positions = torch.arange(lengths.size(1), device=lengths.device).unsqueeze(0)
    while True:
        active &= lengths <= left.unsqueeze(1)
        if not active.any():
            break
        filled = torch.where(active, lengths, torch.zeros_like(lengths)).cumsum(dim=1)
        overflow = active & (filled > left.unsqueeze(1))
        first_overflow = torch.where(overflow, positions, torch.full_like(positions, lengths.size(1))).min(dim=1).values
        prefix = active & (positions < first_overflow.unsqueeze(1))
        taken |= prefix
        left -= torch.where(prefix, lengths, torch.zeros_like(lengths)).sum(dim=1)
        active &= ~prefix & (positions != first_overflow.unsqueeze(1))
    return torch.zeros_like(starts).scatter(1, by_order, taken)
