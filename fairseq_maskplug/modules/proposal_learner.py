"""The proposal network's own training, apart from the main model's.

fairseq's optimizer, its ``--clip-norm``, its fp16 loss scaling and its
data-parallel wrapper see only the main model: the proposal network is not a
submodule of the criterion (its parameters are not the criterion's), it runs
in float32, and this learner

- accumulates the gradient of the proposal's loss (``torch.autograd.grad`` on
  the proposal's parameters only) over an update's micro-batches, with the
  number of units the loss is summed over;
- once per update (the task's ``optimizer_step``) sums both across the
  data-parallel ranks, divides, clips the result to its own norm and takes a
  step of its own Adam;
- saves and restores the network and its optimizer as part of the task's
  checkpointed state (``task_state["mapnet_proposal"]``).

With a uniform proposal the main model's update is therefore exactly plain
masked LM's, and a sharp proposal cannot take the main model's clipping
budget.
"""

import logging
from typing import Dict, Optional

import torch
from fairseq import metrics
from fairseq.distributed import utils as distributed_utils

logger = logging.getLogger(__name__)


class ProposalLearner:
    """Trains ``network`` with Adam (lr ``lr``, betas (0.9, 0.98), eps 1e-6)
    on gradients clipped to ``clip_norm`` (0: no clipping)."""

    def __init__(self, network: torch.nn.Module, lr: float, clip_norm: float):
        self.network = network
        self.parameters = [p for p in network.parameters()]
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr, betas=(0.9, 0.98), eps=1e-6)
        self.clip_norm = clip_norm
        self.gradient: Optional[torch.Tensor] = None  # flat sum of the update's gradients so far
        self.units = 0.0  # units the summed losses cover

    @property
    def device(self) -> torch.device:
        return self.parameters[0].device

    def to(self, device: torch.device) -> "ProposalLearner":
        """Move the network (and any optimizer state) to ``device``."""
        if self.device != device:
            self.network.to(device)
            for state in self.optimizer.state.values():
                for key, value in state.items():
                    if torch.is_tensor(value):
                        state[key] = value.to(device)
        return self

    def accumulate(self, loss: torch.Tensor, units: float, first_of_update: bool):
        """Add the gradient of ``loss`` (summed over ``units`` units; 0 for a
        dummy batch) to the update's; ``first_of_update`` drops what an update
        fairseq skipped (an fp16 overflow) left behind."""
        if first_of_update:
            self.gradient, self.units = None, 0.0
        grads = torch.autograd.grad(loss, self.parameters, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, self.parameters)])
        self.gradient = flat if self.gradient is None else self.gradient + flat
        self.units += float(units)

    def step(self):
        """One Adam step on the update's mean gradient (summed across the
        data-parallel ranks), clipped; logs its norm and whether it was clipped."""
        gradient = (
            self.gradient
            if self.gradient is not None
            else torch.zeros(sum(p.numel() for p in self.parameters), device=self.device)
        )
        totals = torch.cat([gradient, torch.tensor([self.units], device=gradient.device, dtype=gradient.dtype)])
        if distributed_utils.get_data_parallel_world_size() > 1:
            totals = distributed_utils.all_reduce(totals, group=distributed_utils.get_data_parallel_group())
        gradient, units = totals[:-1], float(totals[-1])
        self.gradient, self.units = None, 0.0
        if units <= 0:  # nothing drawn this update (only dummy batches)
            return
        offset = 0
        for p in self.parameters:
            p.grad = (gradient[offset : offset + p.numel()] / units).view_as(p).clone()
            offset += p.numel()
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm if self.clip_norm > 0 else float("inf"))
        clipped = self.clip_norm > 0 and float(norm) > self.clip_norm
        self.optimizer.step()
        for p in self.parameters:
            p.grad = None
        metrics.log_scalar("mapnet_gnorm", float(norm), 1, round=3)
        metrics.log_scalar("mapnet_clip", float(clipped), 1, round=3)

    def state_dict(self) -> Dict:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict):
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        logger.info("restored the mask proposal network and its optimizer")
