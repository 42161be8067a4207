"""Importance weights for masks drawn from a proposal q instead of uniformly
(MAPNet). The target is the uniform masking of a sequence's n
units at the task's ratio; every weight is computed in float64 from detached
probabilities.

Two ways of drawing units from q, each with the weights that are exact for it:

- **Inclusion sampling** (the default, ``inclusion`` weights): unit i is
  included with probability π_i = min(1, c · q_i), c such that Σ π_i is the
  expected count m = ratio · n of uniform masking, drawn by systematic
  sampling (:func:`~.selection.select_systematic`: floor(m) or ceil(m) units,
  as uniform masking draws). Each included unit's loss is weighted
  w_i = (m / n) / π_i, the Horvitz–Thompson weight: Σ_{i∈M} w_i ℓ_i is
  unbiased for the uniform-mask objective E_p[Σ_{i∈M} ℓ_i] = (m / n) Σ_i ℓ_i,
  whatever q. With q a defensive mixture α · uniform + (1 − α) · q_θ
  (:func:`mix_with_uniform`), π_i ≥ α · m / n, so no weight exceeds 1 / α,
  and a uniform q gives weights of exactly 1.
- **Successive sampling** (the reference's): units drawn without replacement
  from q (exponential race: increasing ``-log(u) / q``), k of them.
  ``product``: w = Π_{i∈M} (1/n) / q_i, the with-replacement likelihood ratio
  of the reference code (biased for draws without replacement);
  ``exact_ordered``: w = Π_j [1/(n−j+1)] / [q_{i_j} / (1 − Σ_{l<j} q_{i_l})]
  over the draw order, exactly unbiased for any function of the drawn set.
  Both are per sequence, a product of k ratios whose spread grows
  geometrically with k.
"""

import torch

SEQUENCE_WEIGHTS = ("product", "exact_ordered")
TINY = 1e-30


def proposal_distribution(scores: torch.Tensor, starts: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Float64 (B, L): softmax of ``scores`` over each row's unit starts
    (zero elsewhere), with ``floor`` added to every unit's probability and
    the row renormalised, (q + ε) / (1 + n·ε): what the reference samples from
    when it adds 1e-4 to q. Rows without units are all zero."""
    masked = torch.where(starts, scores.double(), torch.full_like(scores, float("-inf"), dtype=torch.float64))
    probabilities = torch.nan_to_num(torch.softmax(masked, dim=1), nan=0.0)
    return floored(probabilities, starts, floor)


def normalized_proposal(predictions: torch.Tensor, starts: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Float64 (B, L): non-negative ``predictions`` normalised over each row's
    unit starts (q ∝ prediction; a row predicting 0 everywhere is uniform),
    with ``floor`` as in :func:`proposal_distribution`."""
    values = torch.where(starts, predictions.double().clamp(min=0), torch.zeros_like(predictions, dtype=torch.float64))
    totals = values.sum(dim=1, keepdim=True)
    probabilities = torch.where(totals > 0, values / totals.clamp(min=TINY), uniform_over_units(starts))
    return floored(probabilities, starts, floor)


def floored(probabilities: torch.Tensor, starts: torch.Tensor, floor: float) -> torch.Tensor:
    """(q + ε) / (1 + n·ε) over unit starts: every ratio (1/n) / q' stays below 1 / (n·ε)."""
    if floor <= 0:
        return probabilities
    lifted = torch.where(starts, probabilities + floor, probabilities)
    return lifted / lifted.sum(dim=1, keepdim=True).clamp(min=TINY)


def mix_with_uniform(q: torch.Tensor, starts: torch.Tensor, uniform_share: float) -> torch.Tensor:
    """Float64 (B, L): the defensive mixture α · u + (1 − α) · q, u uniform
    over each row's unit starts (Hesterberg, 1995). Its importance weights are
    at most 1 / α, and the variance of its estimator is at most 1 / α times
    uniform sampling's and 1 / (1 − α) times q's."""
    return uniform_share * uniform_over_units(starts) + (1 - uniform_share) * q.double()


def uniform_over_units(starts: torch.Tensor) -> torch.Tensor:
    """Float64 (B, L): 1/n at each row's n unit starts, 0 elsewhere."""
    return starts.double() / starts.sum(dim=1, keepdim=True).clamp(min=1)


def inclusion_probabilities(q: torch.Tensor, starts: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Float64 (B, L): π_i = min(1, c · q_i) at unit starts (0 elsewhere), c
    chosen per row so that Σ π_i = ``expected`` (B,) (at most the row's number
    of units). Units that would exceed 1 are capped and the rest rescaled,
    until none does (at most n rounds; one or two in practice)."""
    q = torch.where(starts, q.double(), torch.zeros_like(q, dtype=torch.float64))
    expected = expected.to(torch.float64).unsqueeze(1)
    capped = torch.zeros_like(starts)
    for _ in range(starts.size(1)):
        free_mass = torch.where(capped, torch.zeros_like(q), q).sum(dim=1, keepdim=True)
        scale = (expected - capped.sum(dim=1, keepdim=True)) / free_mass.clamp(min=TINY)
        now_capped = starts & (capped | (scale * q >= 1))
        if torch.equal(now_capped, capped):
            break
        capped = now_capped
    return torch.where(capped, torch.ones_like(q), (scale * q).clamp(max=1))


def inclusion_weights(inclusion: torch.Tensor, starts: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Float64 (B, L): (m / n) / π_i at the chosen units (0 elsewhere), m =
    Σ π (the expected count), n the row's units: the Horvitz–Thompson weights
    that make Σ w_i ℓ_i unbiased for the uniform-mask objective."""
    n = starts.sum(dim=1, keepdim=True).double().clamp(min=1)
    uniform_inclusion = inclusion.sum(dim=1, keepdim=True) / n
    weights = uniform_inclusion / inclusion.clamp(min=TINY)
    return torch.where(chosen, weights, torch.zeros_like(weights))


def draw_order(keys: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Long (B, L): positions sorted by draw order, the chosen ones first."""
    return torch.argsort(torch.where(chosen, keys, torch.full_like(keys, float("inf"))), dim=1, stable=True)


def log_weights(
    probabilities: torch.Tensor, starts: torch.Tensor, chosen: torch.Tensor, keys: torch.Tensor, mode: str
) -> torch.Tensor:
    """Float64 (B,) log-weights of successive sampling, per sequence:
    ``product`` or ``exact_ordered`` (see the module docstring)."""
    n = starts.sum(dim=1, keepdim=True).double().clamp(min=1)
    log_q = probabilities.clamp(min=TINY).log()
    if mode == "product":
        return torch.where(chosen, -n.log() - log_q, torch.zeros_like(log_q)).sum(dim=1)
    if mode != "exact_ordered":
        raise ValueError(f"unknown weight mode {mode!r}; valid: {', '.join(SEQUENCE_WEIGHTS)}")
    order = draw_order(keys, chosen)
    drawn = chosen.gather(1, order)
    q_drawn = torch.where(drawn, probabilities.gather(1, order), torch.zeros_like(probabilities))
    before = q_drawn.cumsum(dim=1) - q_drawn
    j = torch.arange(chosen.size(1), device=chosen.device, dtype=torch.float64).unsqueeze(0)
    terms = -(n - j).clamp(min=1).log() - q_drawn.clamp(min=TINY).log() + (1 - before).clamp(min=TINY).log()
    return torch.where(drawn, terms, torch.zeros_like(terms)).sum(dim=1)


def clip_weights(weights: torch.Tensor, clip: float, self_normalize: bool = True):
    """(weights clipped to [1 − clip, 1 + clip], divided by their batch mean
    when ``self_normalize``; share of weights that were clipped): the
    reference's stabiliser, biased by design."""
    clipped = weights.clamp(1 - clip, 1 + clip)
    share = (clipped != weights).double().mean()
    if self_normalize:
        clipped = clipped / clipped.mean().clamp(min=TINY)
    return clipped, share


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """(Σ w)² / (N · Σ w²) of N weights: 1 when all are equal, 1/N when one dominates."""
    return weights.sum() ** 2 / (weights.pow(2).sum() * weights.numel()).clamp(min=TINY)
