"""The masked-position loss: a model's loss split by what its input shows at
each predicted position, and the unigram reference on the same positions.

With 80/10/10 corruption a tenth of the predicted tokens are visible in the
input, and a model copies them long before it reads context; the loss at the
positions whose input is ``<mask>`` is the one that measures context use, and
what ignoring context scores there (the cross-entropy of the training
unigram) is the reference it is read against.

Kinds of a predicted position, from the input alone (so any checkpoint, any
corruption, is scored the same way):

- ``mask``: the input is ``<mask>``;
- ``unchanged``: the input is the target token itself (kept, or a random
  replacement that drew the original);
- ``random``: any other token.

Validation logs (summed over batches and data-parallel ranks, then reduced
by :func:`reduce_kind_metrics`): ``loss_at_mask`` (bits), ``acc_at_mask``,
``unigram_at_mask`` (bits, the reference), ``spread_at_mask`` (bits, how
much the predictions differ between ``<mask>`` positions: 0 for a model that
predicts one distribution everywhere, see :func:`prediction_spread_bits`),
``loss_at_unchanged``, ``loss_at_random`` and the share of each kind; the
same ``<mask>`` figures of a second mask with the suffix ``_ww`` (the
whole-word yardstick: :func:`reduce_mask_metrics`).
"""

import math
from typing import Dict, List

import torch
import torch.nn.functional as F
from fairseq import metrics, utils

KINDS = ("mask", "unchanged", "random")


def position_kinds(src_tokens: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor, mask_idx: int) -> torch.Tensor:
    """Long (P,): the kind (index into :data:`KINDS`) of each of the P
    predicted positions of (N, L) ``src_tokens`` / ``target``, in the
    row-major order of ``predicted`` (the order a masked-LM head emits its
    logits in)."""
    seen, wanted = src_tokens[predicted], target[predicted]
    kinds = torch.full_like(seen, 2)
    kinds[seen.eq(wanted)] = 1
    kinds[seen.eq(mask_idx)] = 0
    return kinds


def unigram_losses(counts: torch.Tensor, never_predicted) -> torch.Tensor:
    """Float32 (V,): −log p(x) in nats, p(x) = (c(x) + 1) / (N + V), the
    add-one smoothed unigram of the (V,) token ``counts`` (a dictionary's:
    fairseq-preprocess counts them on the training split) with the ids
    ``never_predicted`` (``<s>``, ``</s>``, padding, ``<mask>``) counted as 0,
    N the remaining total: the best prediction that ignores context."""
    counts = counts.double().clamp(min=0)
    counts[list(never_predicted)] = 0.0
    counts = counts + 1.0
    return (counts.sum().log() - counts.log()).float()


def prediction_spread_sums(logits: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Summable parts of the spread of the predictions at P positions,
    ``logits`` (P, V): the float64 sum of their distributions (V,) and of
    their entropies (nats). See :func:`prediction_spread_bits`."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    probs = log_probs.exp()
    return {"probability_sum": probs.sum(dim=0).double(), "entropy_sum": -(probs * log_probs).sum().double()}


def prediction_spread_bits(probability_sum: torch.Tensor, entropy_sum: float, count: int) -> float:
    """The mean KL divergence, in bits, of each of ``count`` predicted
    distributions from their average p̄ = ``probability_sum`` / count:
    H(p̄) − mean H(p_i) (exactly; ≥ 0). 0 when one distribution is predicted
    at every position (a collapsed model); nan without positions."""
    if count <= 0:
        return math.nan
    average = probability_sum.double() / count
    average_entropy = -(average * average.clamp(min=1e-300).log()).sum()
    return max(0.0, float(average_entropy) - float(entropy_sum) / count) / math.log(2)


def kind_logging_output(
    logits: torch.Tensor,
    src_tokens: torch.Tensor,
    target: torch.Tensor,
    mask_idx: int,
    pad_idx: int,
    unigram: torch.Tensor,
    prefix: str = "kind",
) -> Dict[str, torch.Tensor]:
    """Summable logging values of one masked batch, keyed ``PREFIX_KIND_*``: per kind, the summed
    cross-entropy (nats), the count and the top-1 hits; at ``mask``
    positions also the summed unigram cross-entropy (nats, ``unigram``: (V,)
    from :func:`unigram_losses`) and the spread sums of
    :func:`prediction_spread_sums` (``kind_mask_probability_sum`` (V,),
    ``kind_mask_entropy_sum``).

    ``logits``: (P, V) at the predicted positions (``target != pad_idx``) in
    row-major order, as fairseq's masked-LM criterion asks the model for
    them, or (N, L, V)."""
    predicted = target.ne(pad_idx)
    logits = logits.detach()
    if logits.dim() == 3:
        logits = logits[predicted]
    wanted = target[predicted]
    losses = F.cross_entropy(logits.float(), wanted, reduction="none")
    hits = logits.argmax(dim=-1).eq(wanted)
    kinds = position_kinds(src_tokens, target, predicted, mask_idx)
    output = {}
    for index, kind in enumerate(KINDS):
        chosen = kinds.eq(index)
        output[f"{prefix}_{kind}_loss"] = losses[chosen].sum()
        output[f"{prefix}_{kind}_count"] = chosen.sum()
        output[f"{prefix}_{kind}_hits"] = hits[chosen].sum()
    at_mask = kinds.eq(0)
    output[f"{prefix}_mask_unigram"] = unigram.to(wanted.device)[wanted[at_mask]].sum()
    spread = prediction_spread_sums(logits[at_mask])
    output[f"{prefix}_mask_probability_sum"] = spread["probability_sum"]
    output[f"{prefix}_mask_entropy_sum"] = spread["entropy_sum"]
    return output


def reduce_mask_metrics(logs: List[Dict], prefix: str, suffix: str) -> None:
    """Log the ``<mask>``-position figures of ``logs`` (keys ``PREFIX_mask_*``
    of :func:`kind_logging_output`) as ``loss_at_mask{suffix}``,
    ``acc_at_mask{suffix}``, ``unigram_at_mask{suffix}`` and
    ``spread_at_mask{suffix}``. The spread's sums are kept in hidden meters
    (their names start with ``_``) for the whole validation, and the figure is
    derived from them: the average distribution is every batch's and rank's."""

    def total(key):
        return sum(log[f"{prefix}_mask_{key}"] for log in logs)

    count = utils.item(total("count"))
    if not count:
        return
    metrics.log_scalar(f"loss_at_mask{suffix}", utils.item(total("loss")) / count / math.log(2), count, round=3)
    metrics.log_scalar(f"acc_at_mask{suffix}", utils.item(total("hits")) / count, count, round=4)
    metrics.log_scalar(f"unigram_at_mask{suffix}", utils.item(total("unigram")) / count / math.log(2), count, round=3)
    hidden = f"_spread{suffix}"
    metrics.log_scalar_sum(f"{hidden}_probability_sum", total("probability_sum").double().cpu())
    metrics.log_scalar_sum(f"{hidden}_entropy_sum", utils.item(total("entropy_sum")))
    metrics.log_scalar_sum(f"{hidden}_count", count)
    metrics.log_derived(
        f"spread_at_mask{suffix}",
        lambda meters: round(
            prediction_spread_bits(
                meters[f"{hidden}_probability_sum"].sum, meters[f"{hidden}_entropy_sum"].sum, meters[f"{hidden}_count"].sum
            ),
            4,
        ),
    )


def reduce_kind_metrics(logging_outputs: List[Dict]) -> None:
    """Log the masked-position metrics of the logging outputs that carry them
    (validation batches of ``masked_lm_plus``): the standard mask's kinds,
    and the whole-word yardstick's ``<mask>`` figures where logged."""
    logs = [log for log in logging_outputs if "kind_mask_count" in log]
    if logs:
        counts = {kind: utils.item(sum(log[f"kind_{kind}_count"] for log in logs)) for kind in KINDS}
        predicted = sum(counts.values())
        for kind in KINDS[1:]:
            if counts[kind]:
                total = utils.item(sum(log[f"kind_{kind}_loss"] for log in logs))
                metrics.log_scalar(f"loss_at_{kind}", total / counts[kind] / math.log(2), counts[kind], round=3)
        for kind in KINDS:
            if predicted:
                metrics.log_scalar(f"share_{kind}", counts[kind] / predicted, predicted, round=3)
        reduce_mask_metrics(logs, "kind", "")
    whole_words = [log for log in logging_outputs if "ww_mask_count" in log]
    if whole_words:
        reduce_mask_metrics(whole_words, "ww", "_ww")
