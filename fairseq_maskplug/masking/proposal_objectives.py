"""What the mask proposal network (MAPNet) learns from: a per-unit proxy of
the gradient norm, regressed on the units a step drew.

The variance of the importance-weighted gradient, Σ_i p_i² ‖g_i‖² / q_i (per
sequence, p uniform), is least at q ∝ ‖g_i‖. The network predicts
a non-negative proxy of ‖g_i‖ for every unit from the clean tokens; the
proposal is q_θ ∝ prediction (:func:`~.importance.normalized_proposal`).
"""

import torch


def logit_gradient_norm(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Float32 (N,): ‖softmax(logits) − onehot(target)‖, the norm of the
    cross-entropy's gradient with respect to the logits of each of N
    predicted tokens (in [0, √2]); every parameter's gradient is this vector
    back-propagated, so it is the part of ‖g_i‖ that differs most between
    tokens."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    residual = probabilities.scatter_add(-1, targets.unsqueeze(-1), -torch.ones_like(probabilities[:, :1]))
    return residual.norm(dim=-1)


def per_unit_totals(token_values: torch.Tensor, predicted: torch.Tensor, start_index: torch.Tensor) -> torch.Tensor:
    """Float32 (B, L): each unit's sum of ``token_values`` (N,), given in the
    row-major order of ``predicted`` (B, L), held at the unit's start
    (``start_index`` (B, L): each position's unit start)."""
    totals = torch.zeros(predicted.shape, dtype=token_values.dtype, device=token_values.device)
    return totals.index_put_(torch.where(predicted)[:-1] + (start_index[predicted],), token_values, accumulate=True)


def regression_loss(
    predictions: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Σ over the chosen units of w · (prediction − target)², all (B, L):
    importance-weighted so that it estimates the squared error over every
    unit, not only over those the proposal favours."""
    error = (predictions.float() - targets.detach().float()).pow(2) * weights.detach().float()
    return torch.where(chosen, error, torch.zeros_like(error)).sum()
