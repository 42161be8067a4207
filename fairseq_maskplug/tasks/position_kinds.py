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
``unigram_at_mask`` (bits, the reference), ``loss_at_unchanged``,
``loss_at_random`` and the share of each kind.
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


def kind_logging_output(
    logits: torch.Tensor, src_tokens: torch.Tensor, target: torch.Tensor, mask_idx: int, pad_idx: int, unigram: torch.Tensor
) -> Dict[str, torch.Tensor]:
    """Summable logging scalars of one masked batch: per kind, the summed
    cross-entropy (nats), the count and the top-1 hits; at ``mask``
    positions also the summed unigram cross-entropy (nats, ``unigram``: (V,)
    from :func:`unigram_losses`).

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
        output[f"kind_{kind}_loss"] = losses[chosen].sum()
        output[f"kind_{kind}_count"] = chosen.sum()
        output[f"kind_{kind}_hits"] = hits[chosen].sum()
    output["kind_mask_unigram"] = unigram.to(wanted.device)[wanted[kinds.eq(0)]].sum()
    return output


def reduce_kind_metrics(logging_outputs: List[Dict]) -> None:
    """Log the masked-position metrics of the logging outputs that carry them
    (validation batches of ``masked_lm_plus``)."""
    logs = [log for log in logging_outputs if "kind_mask_count" in log]
    if not logs:
        return

    def total(key):
        return utils.item(sum(log[key] for log in logs))

    counts = {kind: total(f"kind_{kind}_count") for kind in KINDS}
    predicted = sum(counts.values())
    for kind in KINDS:
        if counts[kind]:
            metrics.log_scalar(
                f"loss_at_{kind}", total(f"kind_{kind}_loss") / counts[kind] / math.log(2), counts[kind], round=3
            )
        if predicted:
            metrics.log_scalar(f"share_{kind}", counts[kind] / predicted, predicted, round=3)
    if counts["mask"]:
        metrics.log_scalar("acc_at_mask", total("kind_mask_hits") / counts["mask"], counts["mask"], round=4)
        metrics.log_scalar(
            "unigram_at_mask", total("kind_mask_unigram") / counts["mask"] / math.log(2), counts["mask"], round=3
        )
