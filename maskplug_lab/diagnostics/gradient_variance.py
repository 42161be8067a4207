"""How much of the masked-LM gradient's variance comes from the masks.

For a fixed batch and fixed parameters (dropout off), draw R mask realisations
with a strategy, compute the gradient of the masked-LM loss (summed token
cross-entropy / number of predicted tokens, fairseq's normalisation) on a
parameter subset each time, and report

    relative_variance = tr Cov_masks(g) / ||E_masks g||²

with a bootstrap interval; and, against the uniform-mask mean gradient
(:func:`against_uniform`), the trace-covariance ratio to random masking, the
squared bias and the mean squared error, which read biased estimators
correctly. Also the covariance of two masks' gradients as a function of
their Hamming distance (the quantity FE-MLM's theorem is about).
"""

import math
import re
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from fairseq_maskplug.masking import (
    FullyExploredOptions,
    FullyExploredUnits,
    MaskDraws,
    MaskedTokens,
    Masker,
    MaskingStep,
    ProposalUnits,
    RatioSchedule,
    UniformUnits,
)
from fairseq_maskplug.masking.fully_explored import unit_ranks

# A strategy masks the clean (B, L) tokens for draw r (it may return K·B rows)
# and gives the per-predicted-token loss weights (None: all 1).
Strategy = Callable[[torch.Tensor, Sequence[int], int], Tuple[MaskedTokens, Optional[torch.Tensor]]]
STREAM = "variance"


def uniform_reference(masker: Masker, segments: int, seed: int) -> Strategy:
    """Uniform masks at ratio 1/K from a stream of their own: their mean
    gradient stands for E_uniform[g] in :func:`against_uniform`."""
    uniform = UniformUnits(masker, RatioSchedule.build("constant", 1.0 / segments, 0))

    def reference(tokens, ids, draw):
        return uniform(tokens, MaskDraws.for_sequences(STREAM + "-reference", seed, draw, ids, tokens.size(1),
                                                       tokens.device), draw), None  # fmt: skip

    return reference


def strategies(masker: Masker, segments: int, seed: int, model=None, criterion=None) -> Dict[str, Strategy]:
    """The comparable strategies, all at the same per-mask ratio 1/K:

    random: one uniform mask per sequence (ratio 1/K);
    random_k: K independent uniform masks per sequence, all in the batch
        (the same compute as fully-explored);
    fully_explored / fully_explored_contiguous: K disjoint segments;
    mapnet (given a trained ``mapnet_masked_lm`` criterion and its model):
        one mask per sequence from the proposal, with its importance weights.
    """
    ratio = 1.0 / segments
    uniform = UniformUnits(masker, RatioSchedule.build("constant", ratio, 0))

    def draws(tokens, ids, draw):
        return MaskDraws.for_sequences(STREAM, seed, draw, ids, tokens.size(1), tokens.device)

    def random(tokens, ids, draw):
        return uniform(tokens, draws(tokens, ids, draw), draw), None

    def random_k(tokens, ids, draw):
        copies = [uniform(tokens, draws(tokens, ids, draw * segments + k), draw) for k in range(segments)]
        stacked = [
            torch.stack([getattr(c, f) for c in copies], dim=1).flatten(0, 1)
            for f in ("src_tokens", "target", "predicted", "maskable")
        ]
        return MaskedTokens(*stacked, corruption=None, copies=segments), None

    def fully_explored(partition):
        strategy = FullyExploredUnits(masker, FullyExploredOptions(segments, partition))
        return lambda tokens, ids, draw: (strategy(tokens, draws(tokens, ids, draw), draw), None)

    available = {
        "random": random,
        "random_k": random_k,
        "fully_explored": fully_explored("random"),
        "fully_explored_contiguous": fully_explored("contiguous"),
    }
    if criterion is not None:
        proposal = ProposalUnits(masker, RatioSchedule.build("constant", ratio, 0), criterion.sampler)

        def mapnet(tokens, ids, draw):
            """Masks from the trained proposal, importance-weighted as in training."""
            step = MaskingStep(draws(tokens, ids, draw), draw)
            _, _, masked, weights, _ = criterion.propose(model, tokens, step, proposal)
            return masked, weights

        available["mapnet"] = mapnet
    return available


def selected_parameters(model, pattern: str) -> List[torch.nn.Parameter]:
    """The trainable parameters whose names match ``pattern`` (re.search),
    shared tensors counted once."""
    chosen, seen = [], set()
    for name, param in model.named_parameters():
        if param.requires_grad and re.search(pattern, name) and id(param) not in seen:
            seen.add(id(param))
            chosen.append(param)
    if not chosen:
        raise ValueError(f"--params {pattern!r} matches no trainable parameter")
    return chosen


def masked_lm_gradient(
    model, params, masked: MaskedTokens, pad_idx: int, weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Flat float32 gradient of Σ w · CE over predicted tokens / #predicted
    (w = 1 unless ``weights`` (N,) are given)."""
    model.zero_grad(set_to_none=True)
    predicted = masked.target.ne(pad_idx)
    logits = model(masked.src_tokens, masked_tokens=predicted)[0]
    token_loss = F.cross_entropy(logits.float(), masked.target[predicted], reduction="none")
    if weights is not None:
        token_loss = token_loss * weights
    loss = token_loss.sum() / predicted.sum().clamp(min=1)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().float() for g, p in zip(grads, params)])


@dataclass
class VarianceEstimate:
    strategy: str
    relative_variance: float
    ci_low: float
    ci_high: float
    trace_covariance: float
    mean_gradient_sq_norm: float
    draws: int


def relative_variance_from_gram(gram: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """tr Cov / ||mean||² of gradients g_i with multiplicities ``counts`` (…, R),
    from their Gram matrix G_ij = g_i·g_j (R, R) in float64."""
    total = counts.sum(-1, keepdim=True)
    mean_sq = torch.einsum("...i,ij,...j->...", counts, gram, counts) / total.squeeze(-1) ** 2
    second = (counts * gram.diagonal()).sum(-1) / total.squeeze(-1)
    trace_cov = (second - mean_sq) * total.squeeze(-1) / (total.squeeze(-1) - 1)
    return trace_cov / mean_sq


def resample_counts(draws: int, bootstrap: int, seed: int) -> torch.Tensor:
    """(bootstrap, draws) float64 multiplicities of bootstrap resamples."""
    generator = torch.Generator().manual_seed(seed)
    resamples = torch.randint(draws, (bootstrap, draws), generator=generator)
    ones = torch.ones(bootstrap, draws, dtype=torch.float64)
    return torch.zeros(bootstrap, draws, dtype=torch.float64).scatter_add_(1, resamples, ones)


def replicates(grads: torch.Tensor, counts: torch.Tensor):
    """(point estimate, bootstrap replicates) of relative_variance for the
    rows of ``grads`` (R, D). Replicates computed from resamples with repeats
    are biased low (by about (R − 1)/R: repeated draws add no spread), so they
    are rescaled to be centred on the point estimate."""
    gram = grads.double() @ grads.double().T
    value = relative_variance_from_gram(gram, torch.ones(grads.size(0), dtype=torch.float64)).item()
    boot = relative_variance_from_gram(gram, counts)
    return value, boot * (value / boot[torch.isfinite(boot)].mean())


def interval(boot: torch.Tensor):
    """2.5 % and 97.5 % quantiles of the finite replicates (a resample that
    repeats one draw has no spread, and a ratio of two such is undefined)."""
    finite = boot[torch.isfinite(boot)]
    return tuple(torch.quantile(finite, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist())


def estimate(name: str, grads: torch.Tensor, bootstrap: int = 2000, seed: int = 0) -> VarianceEstimate:
    """relative_variance of the rows of ``grads`` (R, D) with a 95 % percentile
    bootstrap interval over the R draws."""
    value, boot = replicates(grads, resample_counts(grads.size(0), bootstrap, seed))
    mean = grads.double().mean(0)
    trace_cov = ((grads.double() - mean) ** 2).sum().item() / (grads.size(0) - 1)
    return VarianceEstimate(name, value, *interval(boot), trace_cov, mean.pow(2).sum().item(), grads.size(0))


def ratio_estimate(numerator: torch.Tensor, denominator: torch.Tensor, bootstrap: int = 2000, seed: int = 0) -> Dict:
    """relative_variance(numerator) / relative_variance(denominator) with a
    paired percentile bootstrap interval (draw r of both resampled together)."""
    counts = resample_counts(numerator.size(0), bootstrap, seed)
    top, top_boot = replicates(numerator, counts)
    bottom, bottom_boot = replicates(denominator, counts)
    low, high = interval(top_boot / bottom_boot)
    return {"ratio": top / bottom, "ci_low": low, "ci_high": high}


def _weighted_stats(gram: torch.Tensor, counts: torch.Tensor):
    """(Σ c_i g_i / n, its squared norm via the Gram matrix, tr Cov) of
    gradients with multiplicities ``counts`` (…, R): the mean's squared norm
    and the unbiased trace covariance."""
    total = counts.sum(-1)
    mean_sq = torch.einsum("...i,ij,...j->...", counts, gram, counts) / total**2
    second = (counts * gram.diagonal()).sum(-1) / total
    return mean_sq, (second - mean_sq) * total / (total - 1)


def against_uniform(grads: Dict[str, torch.Tensor], reference: torch.Tensor, bootstrap: int = 2000,
                    seed: int = 0) -> Dict[str, Dict]:  # fmt: skip
    """Each strategy's gradient estimator against the uniform-mask gradient.

    ``grads``: {strategy: (R, D)} draws, ``random`` among them, draw r of
    every strategy from the same seeds; ``reference``: (R', D) draws of
    uniform masks from other seeds, whose mean stands for E_uniform[g].
    Per strategy, as fractions of ‖E_uniform g‖² where said:

    - ``trace_cov_ratio_to_random``: tr Cov(strategy) / tr Cov(random), what
      the masks add to the spread, whatever the estimator's mean;
    - ``bias_sq``: ‖E g − E_uniform g‖² / ‖E_uniform g‖², estimated by
      ‖mean − reference mean‖² minus the part the two means' own noise adds
      (tr Cov / R + tr Cov_ref / R'), so an unbiased strategy reads 0 up to
      noise (and can read slightly negative);
    - ``mse``: (tr Cov + bias²) / ‖E_uniform g‖², one draw's mean squared
      error about the uniform-mask gradient.

    Each with a 95 % percentile bootstrap interval: the strategy's draws and
    random's resampled together (paired), the reference's independently.
    Unlike ``relative_variance``, nothing is divided by the strategy's own
    mean, so a biased estimator (MAPNet's clipped weights) is not misread.
    """
    reference = reference.double()
    gram_ref = reference @ reference.T
    random = grads["random"].double()
    counts = resample_counts(random.size(0), bootstrap, seed)
    counts_ref = resample_counts(reference.size(0), bootstrap, seed + 1)
    ones, ones_ref = torch.ones_like(counts[:1]), torch.ones_like(counts_ref[:1])
    random_gram = random @ random.T
    results = {}
    for name, g in grads.items():
        g = g.double()
        gram, cross = g @ g.T, g @ reference.T
        replicates_and_value = []
        for c, c_ref in ((ones, ones_ref), (counts, counts_ref)):
            mean_sq, trace_cov = _weighted_stats(gram, c)
            ref_sq, trace_cov_ref = _weighted_stats(gram_ref, c_ref)
            _, trace_cov_random = _weighted_stats(random_gram, c)
            n, n_ref = c.sum(-1), c_ref.sum(-1)
            between = torch.einsum("bi,ij,bj->b", c, cross, c_ref) / (n * n_ref)
            distance = mean_sq - 2 * between + ref_sq  # ‖mean − reference mean‖²
            bias = distance - trace_cov / n - trace_cov_ref / n_ref
            replicates_and_value.append(
                {
                    "trace_cov_ratio_to_random": trace_cov / trace_cov_random,
                    "bias_sq": bias / ref_sq,
                    "mse": (trace_cov + bias) / ref_sq,
                }  # fmt: skip
            )
        value, boot = replicates_and_value
        results[name] = {"draws": g.size(0)}
        for key in value:
            finite = boot[key][torch.isfinite(boot[key])]
            # resamples with repeats understate the spread, so the replicates sit off the point estimate;
            # centre them on it (a shift for the bias and the error, a factor for the ratio) before the quantiles
            if key == "trace_cov_ratio_to_random":
                finite = finite * (value[key] / finite.mean())
            else:
                finite = finite - finite.mean() + value[key]
            low, high = torch.quantile(finite, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            results[name][key] = value[key].item()
            results[name][f"{key}_ci"] = [low, high]
    return results


def measure_strategies(
    model, params, tokens, ids, pad_idx, chosen: Dict[str, Strategy], draws: int
) -> Dict[str, torch.Tensor]:
    """{strategy: (draws, D) gradients}, draw r of every strategy from the same seeds."""

    def gradient(strategy, draw):
        masked, weights = strategy(tokens, ids, draw)
        return masked_lm_gradient(model, params, masked, pad_idx, weights)

    return {name: torch.stack([gradient(strategy, r) for r in range(draws)]) for name, strategy in chosen.items()}


def hamming_curve(
    model,
    params,
    tokens,
    ids,
    masker: Masker,
    ratio: float,
    pairs: int,
    seed: int,
    overlap_fractions=(0.0, 0.25, 0.5, 0.75, 1.0),
) -> List[Dict]:
    """Covariance of the gradients of two masks of the same batch against
    their Hamming distance.

    Each pair: a random order of every sequence's maskable tokens; M1 its
    first m = round(ratio·n) tokens, M2 the m tokens starting at m − o, so
    |M1 ∩ M2| = o = round(f·m) and H = 2(m − o). Both masks corrupt a shared
    position identically (same 80/10/10 draws). Reported per overlap
    fraction f: mean H, Σ_coords Cov(g1, g2) around the mean single-mask
    gradient, that covariance over tr Var(g) (1 at H = 0), and the mean cosine.
    """
    if ratio > 0.5:
        raise ValueError("the Hamming curve needs ratio ≤ 0.5 (two masks of size m must fit in n)")
    units = masker.units(tokens)
    n = units.count().unsqueeze(1)
    m = torch.round(n.double() * ratio).long().clamp(min=1)
    by_fraction = {}
    for f in overlap_fractions:
        o = torch.round(m.double() * f).long()
        first, second = [], []
        for r in range(pairs):
            draws = MaskDraws.for_sequences(STREAM + "-hamming", seed, r, ids, tokens.size(1), tokens.device)
            ranks = unit_ranks(units.starts, draws.unit_scores, "random")
            for lo, hi, out in ((0, m, first), (m - o, 2 * m - o, second)):
                masked = masker.corrupt(tokens, units, units.starts & (ranks >= lo) & (ranks < hi), draws)
                out.append(masked_lm_gradient(model, params, masked, masker.pad_idx))
        by_fraction[f] = (torch.stack(first).double(), torch.stack(second).double(), (2 * (m - o)).double().mean().item())
    pooled_mean = torch.cat([torch.cat(v[:2]) for v in by_fraction.values()]).mean(0)
    variance = torch.cat([torch.cat(v[:2]) for v in by_fraction.values()]).sub(pooled_mean).pow(2).sum(1).mean().item()
    curve = []
    for f, (g1, g2, hamming) in by_fraction.items():
        covariance = ((g1 - pooled_mean) * (g2 - pooled_mean)).sum(1).mean().item()
        cosine = F.cosine_similarity(g1, g2, dim=1).mean().item()
        curve.append(
            {
                "overlap_fraction": f,
                "mean_hamming": hamming,
                "covariance": covariance,
                "covariance_over_variance": covariance / variance,
                "cosine": cosine,
                "pairs": pairs,
            }
        )
    return curve


def as_dicts(estimates: List[VarianceEstimate]) -> List[Dict]:
    return [
        {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(e).items()} for e in estimates
    ]
