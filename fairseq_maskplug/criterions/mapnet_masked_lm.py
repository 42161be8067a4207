"""``mapnet_masked_lm``: masks drawn from a learned proposal, losses
importance-weighted so the objective stays the uniform-mask one.

Training step (a :class:`~.masking_criterion.MaskingCriterion` that draws
its masks: the task hands over the clean batch and the step's draws, a
:class:`~fairseq_maskplug.masking.MaskingStep`; its strategies come once, at
``attach``, when the task builds the criterion):

1. the proposal network scores the clean tokens; its proposal q_θ is, by
   ``--mapnet-objective``, ∝ its predicted gradient-norm proxy
   (``regression``, the default) or a softmax of its scores (``reinforce``,
   the reference's); masks are drawn from the defensive mixture
   q = α · uniform + (1 − α) · q_θ (α = ``--mapnet-uniform-share``);
2. by ``--mapnet-weights``: ``inclusion`` (default) includes each unit with
   a known probability π_i and weights its loss (m/n)/π_i ≤ 1/α;
   ``exact_ordered``, ``exact_ordered_clipped`` and ``product_clipped`` draw
   k units without replacement and weight each sequence (the reference's
   estimators); the main loss is Σ w · CE over predicted tokens, w float32
   from the detached q;
3. the proposal's loss (a weighted regression of the detached per-unit proxy
   on the drawn units, or the reference's score-function estimator rewarded
   with the token loss) trains the proposal network through its own
   optimizer (:class:`~fairseq_maskplug.modules.proposal_learner.ProposalLearner`),
   never the main model; the learner is this criterion's running state,
   stepped once per update (``end_update``) and checkpointed through the
   task's ``task_state["mapnet_proposal"]``.

Before ``--mapnet-warmup-updates`` and on ``--mapnet-explore-prob`` of the
steps the masks are uniform (weights 1; the regression still learns from
them). Validation batches arrive already masked with the fixed standard mask
and get the plain masked-LM loss.
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.distributed import utils as distributed_utils
from omegaconf import II

from ..errors import MaskingOptionError
from ..masking import MaskedTokens, MaskingStep, ProposalMasking, ProposalUnits, sequence_seed
from ..masking.importance import (
    clip_weights,
    effective_sample_size,
    inclusion_weights,
    log_weights,
    mix_with_uniform,
    normalized_proposal,
    proposal_distribution,
)
from ..masking.proposal_objectives import logit_gradient_norm, per_unit_totals, regression_loss
from ..modules.mask_proposal import MaskProposalNetwork
from ..modules.proposal_learner import ProposalLearner
from .masking_criterion import CriterionOutput, MaskingCriterion, TrainingBatch

WEIGHT_MODES = ("inclusion", "exact_ordered", "exact_ordered_clipped", "product_clipped")
PROPOSAL_STATS = ("mapnet_ess", "mapnet_weight_clipped", "mapnet_entropy", "mapnet_corr", "mapnet_max_weight", "mapnet_steps")


@dataclass
class MapnetMaskedLMConfig(FairseqDataclass):
    mapnet_layers: int = field(default=2, metadata={"help": "layers of the proposal network"})
    mapnet_embed_dim: int = field(default=0, metadata={"help": "proposal network width (0 = half the model's)"})
    mapnet_heads: int = field(default=0, metadata={"help": "proposal network attention heads (0 = width / 32)"})
    mapnet_own_embeddings: bool = field(
        default=False,
        metadata={
            "help": "give the proposal network its own token and position embeddings instead of "
            "reading the model's embedding output (detached: the proposal's loss never moves the model)"
        },
    )
    mapnet_objective: ChoiceEnum(["regression", "reinforce"]) = field(
        default="regression",
        metadata={
            "help": "what the proposal learns: regression (predict --mapnet-proxy per unit, q_theta proportional to "
            "the prediction: aims at the variance-optimal q ~ gradient norm) or reinforce (the reference's "
            "score-function estimator, reward = token loss - baseline, q_theta = softmax of the scores)"
        },
    )
    mapnet_proxy: ChoiceEnum(["logit_gradient", "loss"]) = field(
        default="logit_gradient",
        metadata={
            "help": "regression target per unit: logit_gradient (||softmax - onehot||, the norm of the loss's "
            "gradient with respect to the logits) or loss (the token loss)"
        },
    )
    mapnet_uniform_share: float = field(
        default=0.5,
        metadata={
            "help": "alpha in q = alpha * uniform + (1 - alpha) * q_theta; in [0, 1]. No inclusion weight exceeds "
            "1/alpha, and the estimator's variance is at most 1/alpha times uniform masking's (1 = uniform masks)"
        },
    )
    mapnet_weights: ChoiceEnum(WEIGHT_MODES) = field(
        default="inclusion",
        metadata={
            "help": "inclusion (units included with known probabilities pi, weights (m/n)/pi per unit: unbiased, "
            "bounded by 1/alpha), exact_ordered (k units drawn without replacement, per-sequence weights exact "
            "for that draw), exact_ordered_clipped (those clipped to [1-c, 1+c]), product_clipped (the "
            "reference: product of (1/n)/q, clipped)"
        },
    )
    mapnet_clip: float = field(default=0.2, metadata={"help": "*_clipped weights: clip to [1-c, 1+c]; in (0, 1)"})
    mapnet_self_normalize: bool = field(
        default=True, metadata={"help": "*_clipped weights: divide them by their batch mean (the reference does)"}
    )
    mapnet_proposal_floor: float = field(
        default=0.0,
        metadata={
            "help": "added to every unit's q_theta before renormalising (the reference adds 1e-4); in [0, 1). "
            "Masks are drawn from, and weighted for, the floored proposal"
        },
    )
    mapnet_lr: float = field(default=1e-3, metadata={"help": "learning rate of the proposal network's own Adam"})
    mapnet_clip_norm: float = field(
        default=1.0,
        metadata={"help": "clip the proposal network's gradient to this norm, apart from the model's (0: no clipping)"},
    )
    mapnet_baseline: ChoiceEnum(["const", "batch_mean"]) = field(
        default="const", metadata={"help": "reinforce: reward baseline, const (-log m) or the batch's mean token loss"}
    )
    mapnet_baseline_m: float = field(default=0.5, metadata={"help": "reinforce: const baseline b = -log(m); m in (0, 1]"})
    mapnet_explore_prob: float = field(default=0.0, metadata={"help": "share of steps with uniform masks"})
    mapnet_warmup_updates: int = field(default=0, metadata={"help": "uniform masks before this update"})
    seed: int = II("common.seed")


def check_task(task):
    """Refuse a task that masks in its dataset, or one whose model is not built."""
    from ..tasks.masked_lm_plus import MaskedLMPlusTask  # here: the task module imports this package's protocol

    if not isinstance(task, MaskedLMPlusTask):
        raise MaskingOptionError(
            f"--criterion mapnet_masked_lm needs --task masked_lm_plus (or its presets); the task "
            f"{type(task).__name__} masks in its dataset, so there is no clean batch to propose masks for"
        )
    if task.model_dim is None:
        raise MaskingOptionError("mapnet_masked_lm needs the model built first (task.build_model)")


def check_options(cfg: MapnetMaskedLMConfig):
    if not 0 <= cfg.mapnet_proposal_floor < 1:
        raise MaskingOptionError(f"--mapnet-proposal-floor must lie in [0, 1) (0 disables), got {cfg.mapnet_proposal_floor}")
    if not 0 <= cfg.mapnet_uniform_share <= 1:
        raise MaskingOptionError(f"--mapnet-uniform-share must lie in [0, 1], got {cfg.mapnet_uniform_share}")
    if str(cfg.mapnet_weights) == "inclusion" and cfg.mapnet_uniform_share == 0 and cfg.mapnet_proposal_floor == 0:
        raise MaskingOptionError(
            "--mapnet-weights inclusion needs --mapnet-uniform-share > 0 or --mapnet-proposal-floor > 0: with "
            "neither, a unit the proposal excludes is never drawn and the estimate is biased"
        )
    if not 0 < cfg.mapnet_clip < 1:
        raise MaskingOptionError(f"--mapnet-clip must lie in (0, 1), got {cfg.mapnet_clip}")
    if not 0 <= cfg.mapnet_explore_prob <= 1:
        raise MaskingOptionError(f"--mapnet-explore-prob must lie in [0, 1], got {cfg.mapnet_explore_prob}")
    if not 0 < cfg.mapnet_baseline_m <= 1:
        raise MaskingOptionError(f"--mapnet-baseline-m must lie in (0, 1], got {cfg.mapnet_baseline_m}")
    if cfg.mapnet_layers < 1:
        raise MaskingOptionError(f"--mapnet-layers must be at least 1, got {cfg.mapnet_layers}")
    if cfg.mapnet_lr <= 0:
        raise MaskingOptionError(f"--mapnet-lr must be > 0, got {cfg.mapnet_lr}")
    if cfg.mapnet_clip_norm < 0:
        raise MaskingOptionError(f"--mapnet-clip-norm must be >= 0 (0: no clipping), got {cfg.mapnet_clip_norm}")
    if cfg.mapnet_embed_dim < 0:
        raise MaskingOptionError(f"--mapnet-embed-dim must be >= 0 (0 = half the model's width), got {cfg.mapnet_embed_dim}")
    if cfg.mapnet_heads < 0:
        raise MaskingOptionError(f"--mapnet-heads must be >= 0 (0 = width / 32), got {cfg.mapnet_heads}")
    if cfg.mapnet_warmup_updates < 0:
        raise MaskingOptionError(f"--mapnet-warmup-updates must be >= 0, got {cfg.mapnet_warmup_updates}")


@register_criterion("mapnet_masked_lm", dataclass=MapnetMaskedLMConfig)
class MapnetMaskedLMCriterion(MaskingCriterion):
    draws_masks = True

    def __init__(self, cfg: MapnetMaskedLMConfig, task):
        super().__init__(task)
        check_options(cfg)
        self.cfg = cfg
        self.weight_mode = str(cfg.mapnet_weights)
        self.regression = str(cfg.mapnet_objective) == "regression"
        check_task(task)
        self.learner = ProposalLearner(self.build_network(cfg, task), cfg.mapnet_lr, cfg.mapnet_clip_norm)
        self.sampler = "inclusion" if self.weight_mode == "inclusion" else "successive"
        self.uniform_strategy = None  # the task's (attach)
        self.proposal_strategy: Optional[ProposalUnits] = None  # from the task's masker and ratio (attach)

    def attach(self, masking: ProposalMasking) -> None:
        self.uniform_strategy, self.proposal_strategy = masking.uniform, masking.proposal(self.sampler)

    def end_update(self) -> None:
        self.learner.step()

    def running_state(self):
        return {"mapnet_proposal": self.learner.state_dict()}

    def load_running_state(self, state) -> None:
        if "mapnet_proposal" in state:
            self.learner.load_state_dict(state["mapnet_proposal"])

    @staticmethod
    def build_network(cfg: MapnetMaskedLMConfig, task) -> MaskProposalNetwork:
        """The proposal network (float32; not a submodule: see ProposalLearner)."""
        model_dim = task.model_dim
        dim = cfg.mapnet_embed_dim or max(8, model_dim // 2)
        if not cfg.mapnet_own_embeddings and dim > model_dim:
            raise MaskingOptionError(
                f"--mapnet-embed-dim {dim} is wider than the model ({model_dim}) whose embeddings it reads: "
                "use a width <= the model's, or --mapnet-own-embeddings"
            )
        heads = cfg.mapnet_heads or max(1, dim // 32)
        if dim % heads:
            raise MaskingOptionError(f"--mapnet-embed-dim {dim} must be divisible by --mapnet-heads {heads}")
        return MaskProposalNetwork(
            model_dim,
            dim,
            cfg.mapnet_layers,
            heads,
            not cfg.mapnet_own_embeddings,
            len(task.source_dictionary),
            task.source_dictionary.pad(),
            task.cfg.tokens_per_sample,
        )

    @property
    def proposal(self) -> MaskProposalNetwork:
        return self.learner.network

    # ------------------------------------------------------------------ loss

    def forward(self, model, sample, reduce=True):
        """Validation: the batch arrives masked with the fixed standard mask;
        the plain masked-LM loss."""
        predicted = sample["target"].ne(self.padding_idx)
        logits = model(**sample["net_input"], masked_tokens=predicted)[0]
        loss = F.cross_entropy(logits.float(), sample["target"][predicted], reduction="sum")
        sample_size = predicted.sum()
        return (
            loss,
            sample_size,
            {
                "loss": loss.data,
                "mlm_loss": loss.data,
                "ntokens": sample["ntokens"],
                "nsentences": sample["nsentences"],
                "sample_size": sample_size,
            },
        )

    def uses_uniform_masks(self, sample, update: int) -> bool:
        if update < self.cfg.mapnet_warmup_updates:
            return True
        if self.cfg.mapnet_explore_prob <= 0:
            return False
        first_id = int(sample["id"][0])
        return sequence_seed("mapnet-explore", self.cfg.seed, update, first_id) / 2**63 < self.cfg.mapnet_explore_prob

    def train_forward(self, model, batch: TrainingBatch) -> CriterionOutput:
        """The main loss (returned; the task back-propagates it into the model
        only), and the proposal's loss, whose gradient the learner keeps."""
        sample, step = batch.sample, batch.step
        if self.proposal_strategy is None:
            raise MaskingOptionError("mapnet_masked_lm trains with the strategies masked_lm_plus attaches when it builds it")
        tokens = sample["net_input"]["src_tokens"]
        uniform = self.uses_uniform_masks(sample, step.update_num)
        if uniform and not self.regression:  # a score-function estimator learns nothing from uniform masks
            scores, q, masked = None, None, self.uniform_strategy(tokens, step.draws, step.update_num)
            token_weights, stats = None, {}
        else:
            scores, q, masked, token_weights, stats = self.propose(model, tokens, step, uniform=uniform)

        predicted = masked.predicted
        logits = model(**dict(sample["net_input"], src_tokens=masked.src_tokens), masked_tokens=predicted)[0]
        token_loss = F.cross_entropy(logits.float(), tokens[predicted], reduction="none")
        if token_weights is None or bool((token_weights == 1).all()):  # plain masked LM's loss, bit for bit
            main = F.cross_entropy(logits.float(), tokens[predicted], reduction="sum")
        else:
            main = (token_weights * token_loss).sum()
        if scores is not None:
            proposal_loss, units = self.proposal_objective(scores, masked, logits.detach(), token_loss.detach(), tokens)
            stats.update(self.proposal_stats(q, masked, token_loss.detach()))
        else:
            proposal_loss, units = sum(p.sum() for p in self.learner.parameters) * 0.0, 0
        if step.learn:
            self.learner.accumulate(proposal_loss, units, step.first_of_update)
        sample_size = predicted.sum()
        logging_output = {
            "loss": main.data,
            "mlm_loss": token_loss.sum().data,
            "mapnet_loss": proposal_loss.detach(),
            "mapnet_units": units,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        # every step logs the same keys (data-parallel ranks sum them key by key)
        logging_output.update({key: stats.get(key, torch.zeros((), device=tokens.device)) for key in PROPOSAL_STATS})
        return CriterionOutput(main, sample_size, logging_output, masked, token_loss.detach() if batch.token_losses else None)

    def propose(self, model, tokens, step: MaskingStep, strategy: Optional[ProposalUnits] = None, uniform: bool = False):
        """Score ``tokens``, draw masks from the mixture proposal with
        ``strategy`` (default: the task's ratio, see :meth:`attach`; ``uniform``: from the
        uniform proposal) and weight them: (scores (B, L) with gradient,
        detached mixture q (B, L), the MaskedTokens, float32 weight per
        predicted token, weight statistics)."""
        strategy = strategy or self.proposal_strategy
        self.learner.to(tokens.device)
        with torch.autocast(tokens.device.type, enabled=False):
            scores = self.proposal(tokens, model.encoder.sentence_encoder)
        starts = strategy.masker.units(tokens).starts
        share = 1.0 if uniform else self.cfg.mapnet_uniform_share
        q = mix_with_uniform(self.proposal_of(scores.detach(), starts), starts, share)
        masked = strategy(tokens, step.draws, step.update_num, q)
        weights, stats = self.importance_weights(q, masked)
        return scores, q, masked, weights, stats

    def proposal_of(self, scores, starts):
        """q_θ (float64, B × L) from the network's scores: ∝ the predicted proxy, or their softmax."""
        if self.regression:
            return normalized_proposal(F.softplus(scores.double()), starts, self.cfg.mapnet_proposal_floor)
        return proposal_distribution(scores, starts, self.cfg.mapnet_proposal_floor)

    def importance_weights(self, q, masked: MaskedTokens):
        """Float32 weight of every predicted token and the weight statistics,
        from the detached proposal ``q`` (B, L)."""
        selection, predicted = masked.selection, masked.predicted
        clipped = torch.zeros((), dtype=torch.float64, device=q.device)
        if self.weight_mode == "inclusion":
            per_unit = inclusion_weights(selection.inclusion, selection.units.starts, selection.chosen)
            weights = selection.units.spread(per_unit)[predicted]
        else:
            mode = "product" if self.weight_mode == "product_clipped" else "exact_ordered"
            weights = log_weights(q, selection.units.starts, selection.chosen, selection.keys, mode).exp()
            if self.weight_mode.endswith("_clipped"):
                weights, clipped = clip_weights(weights, self.cfg.mapnet_clip, self.cfg.mapnet_self_normalize)
            weights = weights.unsqueeze(1).expand_as(predicted)[predicted]
        largest = weights.max() if weights.numel() else torch.zeros((), dtype=torch.float64, device=q.device)
        if distributed_utils.get_data_parallel_world_size() > 1:  # every rank runs this step in lockstep
            largest = distributed_utils.all_reduce(largest.clone(), distributed_utils.get_data_parallel_group(), "max")
        stats = {
            "mapnet_ess": effective_sample_size(weights).float().data,
            "mapnet_weight_clipped": clipped.float().data,
            "mapnet_max_weight": largest.float().data,
        }
        return weights.float(), stats

    def proposal_objective(self, scores, masked: MaskedTokens, logits, token_loss, tokens):
        """(the proposal's loss, the number of units it sums over)."""
        units = masked.selection.units
        if self.regression:
            if str(self.cfg.mapnet_proxy) == "loss":
                proxy = token_loss
            else:
                proxy = logit_gradient_norm(logits, tokens[masked.predicted])
            targets = per_unit_totals(proxy, masked.predicted, units.start_index())
            selection, chosen = masked.selection, masked.selection.chosen
            if selection.inclusion is not None:
                weights = inclusion_weights(selection.inclusion, units.starts, chosen)
            else:  # successive draws: no per-unit weights; the regression fits the drawn units as they come
                weights = torch.ones_like(scores)
            return regression_loss(F.softplus(scores), targets, chosen, weights), int(chosen.sum())
        became_mask = masked.corruption.replaced_by_mask[masked.predicted]
        return self.score_function_loss(scores, masked, token_loss), int(became_mask.sum())

    def score_function_loss(self, scores, masked: MaskedTokens, token_loss):
        """The reference's: −Σ log(q_i + 1e-4) · (ℓ_i − b) over predicted
        positions whose input is ``<mask>``, q = softmax of the scores."""
        units = masked.selection.units
        q = proposal_distribution(scores, units.starts)
        q_position = q.gather(1, units.start_index())[masked.predicted]
        if str(self.cfg.mapnet_baseline) == "const":
            baseline = -math.log(self.cfg.mapnet_baseline_m)
        else:
            baseline = token_loss.mean()
        became_mask = masked.corruption.replaced_by_mask[masked.predicted]
        reward = (token_loss - baseline).double()
        return -(torch.log(q_position + 1e-4) * reward)[became_mask].sum().float()

    def proposal_stats(self, q, masked: MaskedTokens, token_loss):
        """Mean proposal entropy per sequence over that of the uniform
        proposal (1: uniform), and the correlation of ``q`` with the
        per-token losses, for logging."""
        starts = masked.selection.units.starts
        entropy = -(q * q.clamp(min=1e-30).log()).sum(dim=1)
        uniform_entropy = starts.sum(dim=1).double().clamp(min=2).log()
        q_position = q.gather(1, masked.selection.units.start_index())[masked.predicted]
        correlation = torch.corrcoef(torch.stack([q_position.float(), token_loss.float()]))[0, 1]
        return {
            "mapnet_entropy": (entropy / uniform_entropy).mean().float().data,
            "mapnet_corr": torch.nan_to_num(correlation).data,
            "mapnet_steps": torch.ones((), device=q.device),
        }

    # --------------------------------------------------------------- logging

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        for key in ("loss", "mlm_loss"):
            total = utils.item(sum(log.get(key, 0) for log in logging_outputs))
            metrics.log_scalar(key, total / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["mlm_loss"].avg))
        units = utils.item(sum(log.get("mapnet_units", 0) for log in logging_outputs))
        if units:
            total = utils.item(sum(log.get("mapnet_loss", 0) for log in logging_outputs))
            metrics.log_scalar("mapnet_loss", total / units, units, round=4)
        steps = utils.item(sum(log.get("mapnet_steps", 0) for log in logging_outputs))
        if steps:  # averages over the steps that used the proposal
            # mapnet_max_weight: each step's largest weight (across ranks), averaged over the interval
            for key in ("mapnet_entropy", "mapnet_ess", "mapnet_weight_clipped", "mapnet_corr", "mapnet_max_weight"):
                metrics.log_scalar(key, utils.item(sum(log.get(key, 0) for log in logging_outputs)) / steps, steps, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
