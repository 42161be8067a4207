"""Running masked-token loss per content class (POS-tag weighted masking, PTW).

PTW's running losses: every training step, for each class c among the step's predicted
tokens, the mean token cross-entropy ℓ̄_c updates an exponential moving
average s_c ← μ·s_c + (1 − μ)·ℓ̄_c (s starts at 0, no bias correction;
classes absent from a step keep their value). Class weights are
w_c = sigmoid(T · z_c) with z the z-score of s over all classes (std taken
as 1e-4 when it is 0). Everything is float32.

Without bias correction (the reference), a class observed in few steps keeps
a value near 0 for a long time (about 1/(1 − μ) observations), so early
weights reflect how often a class is predicted as much as how hard it is.
``bias_correction`` divides each s_c by 1 − μ^{n_c}, n_c the number of steps
that observed class c (Adam's correction, per class).
"""

from typing import Dict, Tuple

import torch


def class_loss_sums(token_losses: torch.Tensor, classes: torch.Tensor, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sums (C,), counts (C,)) float32 of ``token_losses`` (N,) grouped by
    ``classes`` (N,) long in [0, C); entries with class < 0 are ignored."""
    known = classes >= 0
    index = classes[known]
    sums = torch.zeros(num_classes, dtype=torch.float32, device=token_losses.device)
    counts = torch.zeros(num_classes, dtype=torch.float32, device=token_losses.device)
    sums.index_add_(0, index, token_losses[known].float())
    counts.index_add_(0, index, torch.ones_like(index, dtype=torch.float32))
    return sums, counts


def check_tracker_options(momentum: float, temperature: float):
    """Raise ValueError for a momentum outside [0, 1) or a negative temperature."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must lie in [0, 1), got {momentum}")
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0, got {temperature}")


class ClassLossTracker:
    """The running per-class losses s (C,) and the weights they give.

    Callers all-reduce the sums and counts of :func:`class_loss_sums` across
    data-parallel ranks before :meth:`update`, so every rank holds the same s.
    """

    def __init__(self, num_classes: int, momentum: float, temperature: float, bias_correction: bool = False):
        check_tracker_options(momentum, temperature)
        self.momentum = momentum
        self.temperature = temperature
        self.bias_correction = bias_correction
        self.running = torch.zeros(num_classes, dtype=torch.float32)
        self.observations = torch.zeros(num_classes, dtype=torch.float32)

    def update(self, sums: torch.Tensor, counts: torch.Tensor):
        """Move every class seen in this step (count > 0) towards its mean loss."""
        sums, counts = sums.float().cpu(), counts.float().cpu()
        seen = counts > 0
        means = sums[seen] / counts[seen]
        self.running[seen] = self.momentum * self.running[seen] + (1.0 - self.momentum) * means
        self.observations[seen] += 1

    def losses(self) -> torch.Tensor:
        """Float32 (C,) running losses, bias-corrected when configured."""
        if not self.bias_correction:
            return self.running
        correction = 1.0 - self.momentum**self.observations
        return torch.where(self.observations > 0, self.running / correction.clamp(min=1e-12), self.running)

    def weights(self) -> torch.Tensor:
        """Float32 (C,) sigmoid(temperature · z-score of the running losses),
        the z-score with the sample standard deviation (torch's default, as
        the reference computes it)."""
        losses = self.losses()
        std = losses.std()
        std = torch.where(std > 0, std, torch.full_like(std, 1e-4))
        return torch.sigmoid(self.temperature * (losses - losses.mean()) / std)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"running": self.running.clone(), "observations": self.observations.clone()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]):
        running = state["running"].float()
        if running.shape != self.running.shape:
            raise ValueError(
                f"the checkpoint tracks {running.numel()} content classes, this run {self.running.numel()}: "
                "the POS tag set differs (was the data prepared with another tagger?)"
            )
        self.running = running.clone()
        self.observations = state["observations"].float().clone()
