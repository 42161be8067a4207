"""Importance weights for masks drawn from a proposal q instead of uniformly
(MAPNet, SPEC §3.3).

Units are drawn without replacement from q (Gumbel/exponential race: taking
units in increasing ``-log(u)/q`` order is successive sampling with
probabilities proportional to q). The target distribution p is the uniform
k-subset of a sequence's n units. All weights are computed in float64 from
detached probabilities and returned as float32.

- ``product``: w = Π_{i∈M} (1/n) / q_i, the with-replacement likelihood ratio
  of the reference code (biased for draws without replacement).
- ``exact_ordered``: w = Π_j [1/(n−j+1)] / [q_{i_j} / (1 − Σ_{l<j} q_{i_l})]
  over the draw order; exactly unbiased for any function of the drawn set.
- ``per_token``: w_i = (1/n) / q_i for each drawn unit separately.
"""

import torch

WEIGHT_MODES = ("product_clipped", "exact_ordered", "per_token")
TINY = 1e-30


def proposal_distribution(scores: torch.Tensor, starts: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Float64 (B, L): softmax of ``scores`` over each row's unit starts
    (zero elsewhere), with ``floor`` added to every unit's probability and
    the row renormalised, (q + ε) / (1 + n·ε): what the reference samples from
    when it adds 1e-4 to q, and what bounds the importance weights (every
    ratio (1/n) / q' stays below 1 / (n·ε)). Rows without units are all zero."""
    masked = torch.where(starts, scores.double(), torch.full_like(scores, float("-inf"), dtype=torch.float64))
    probabilities = torch.nan_to_num(torch.softmax(masked, dim=1), nan=0.0)
    if floor > 0:
        floored = torch.where(starts, probabilities + floor, probabilities)
        probabilities = floored / floored.sum(dim=1, keepdim=True).clamp(min=TINY)
    return probabilities


def draw_order(keys: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Long (B, L): positions sorted by draw order, the chosen ones first."""
    return torch.argsort(torch.where(chosen, keys, torch.full_like(keys, float("inf"))), dim=1, stable=True)


def log_weights(
    probabilities: torch.Tensor, starts: torch.Tensor, chosen: torch.Tensor, keys: torch.Tensor, mode: str
) -> torch.Tensor:
    """Float64 log-weights: (B,) per sequence for ``product``/``exact_ordered``,
    (B, L) per chosen unit start for ``per_token`` (0 elsewhere)."""
    n = starts.sum(dim=1, keepdim=True).double().clamp(min=1)
    log_q = probabilities.clamp(min=TINY).log()
    per_unit = torch.where(chosen, -n.log() - log_q, torch.zeros_like(log_q))
    if mode == "per_token":
        return per_unit
    if mode == "product":
        return per_unit.sum(dim=1)
    if mode != "exact_ordered":
        raise ValueError(f"unknown weight mode {mode!r}; valid: product, exact_ordered, per_token")
    order = draw_order(keys, chosen)
    drawn = chosen.gather(1, order)
    q_drawn = torch.where(drawn, probabilities.gather(1, order), torch.zeros_like(probabilities))
    before = q_drawn.cumsum(dim=1) - q_drawn
    j = torch.arange(chosen.size(1), device=chosen.device, dtype=torch.float64).unsqueeze(0)
    terms = -(n - j).clamp(min=1).log() - q_drawn.clamp(min=TINY).log() + (1 - before).clamp(min=TINY).log()
    return torch.where(drawn, terms, torch.zeros_like(terms)).sum(dim=1)


def clip_and_normalize(weights: torch.Tensor, clip: float):
    """(weights clipped to [1 − clip, 1 + clip] then divided by their batch
    mean, share of weights that were clipped) — the reference's stabiliser."""
    clipped = weights.clamp(1 - clip, 1 + clip)
    share = (clipped != weights).double().mean()
    return clipped / clipped.mean().clamp(min=TINY), share
