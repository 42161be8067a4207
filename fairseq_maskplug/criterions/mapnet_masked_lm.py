"""``mapnet_masked_lm``: masks drawn from a learned proposal, losses
importance-weighted so the objective stays the uniform-mask one (SPEC §3).

Training step (the task hands over the clean batch and the step's draws, a
:class:`~fairseq_maskplug.masking.MaskingStep`; the strategies come once, from
``task.proposal_masking()``, when the criterion is built): the proposal network
scores the clean tokens; q = softmax over each sequence's maskable units; the
task's Masker draws the units without replacement from q (exponential race)
at the task's ratio; the main loss is Σ w · CE over predicted tokens (w from
``--mapnet-weights``, float32 from detached q); the proposal network learns by
a score-function estimator rewarded with the detached per-token loss minus a
baseline, on positions whose input became ``<mask>``. Before
``--mapnet-warmup-updates`` and on ``--mapnet-explore-prob`` of the steps the
masks are uniform (weights 1). Validation batches arrive already masked with
the fixed standard mask and get the plain masked-LM loss.
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from ..errors import MaskingOptionError
from ..masking import MaskedTokens, MaskingStep, ProposalMasking, ProposalUnits, sequence_seed
from ..masking.importance import WEIGHT_MODES, clip_and_normalize, log_weights, proposal_distribution
from ..modules.mask_proposal import MaskProposalNetwork

PROPOSAL_STATS = ("mapnet_ess", "mapnet_clipped", "mapnet_entropy", "mapnet_corr", "mapnet_steps")


@dataclass
class MapnetMaskedLMConfig(FairseqDataclass):
    mapnet_layers: int = field(default=2, metadata={"help": "layers of the proposal network"})
    mapnet_embed_dim: int = field(default=0, metadata={"help": "proposal network width (0 = half the model's)"})
    mapnet_heads: int = field(default=0, metadata={"help": "proposal network attention heads (0 = width / 32)"})
    mapnet_own_embeddings: bool = field(
        default=False,
        metadata={
            "help": "give the proposal network its own token and position embeddings instead of "
            "reading the model's (and their LayerNorm, gradients flowing into them)"
        },
    )
    mapnet_weights: ChoiceEnum(WEIGHT_MODES) = field(
        default="exact_ordered",
        metadata={
            "help": "importance weights: exact_ordered (unbiased for draws without replacement), "
            "product_clipped (the reference: product of (1/n)/q, clipped, batch-normalised), per_token"
        },
    )
    mapnet_clip: float = field(default=0.2, metadata={"help": "product_clipped: clip weights to [1-c, 1+c]; in (0, 1)"})
    mapnet_proposal_floor: float = field(
        default=1e-4,
        metadata={
            "help": "added to every unit's proposal probability before renormalising (the reference's 1e-4): "
            "masks are drawn from, and weighted for, the floored q, which bounds the weights; 0 disables"
        },
    )
    mapnet_lambda: float = field(default=0.5, metadata={"help": "weight of the proposal network's loss"})
    mapnet_baseline: ChoiceEnum(["const", "batch_mean"]) = field(
        default="const", metadata={"help": "reward baseline: const (-log m) or the batch's mean token loss"}
    )
    mapnet_baseline_m: float = field(default=0.5, metadata={"help": "const baseline b = -log(m); m in (0, 1]"})
    mapnet_explore_prob: float = field(default=0.0, metadata={"help": "share of steps with uniform masks"})
    mapnet_warmup_updates: int = field(default=0, metadata={"help": "uniform masks before this update"})
    seed: int = II("common.seed")


def task_masking(task) -> ProposalMasking:
    """The task's :class:`ProposalMasking` (one documented call), or a clear
    refusal for a task that masks in its dataset."""
    if not hasattr(task, "proposal_masking"):
        raise MaskingOptionError(
            f"--criterion mapnet_masked_lm needs --task masked_lm_plus (or its presets); the task "
            f"{type(task).__name__} masks in its dataset, so there is no clean batch to propose masks for"
        )
    return task.proposal_masking("mapnet_masked_lm")


def check_options(cfg: MapnetMaskedLMConfig):
    if not 0 <= cfg.mapnet_proposal_floor < 1:
        raise MaskingOptionError(f"--mapnet-proposal-floor must lie in [0, 1) (0 disables), got {cfg.mapnet_proposal_floor}")
    if not 0 < cfg.mapnet_clip < 1:
        raise MaskingOptionError(f"--mapnet-clip must lie in (0, 1), got {cfg.mapnet_clip}")
    if not 0 <= cfg.mapnet_explore_prob <= 1:
        raise MaskingOptionError(f"--mapnet-explore-prob must lie in [0, 1], got {cfg.mapnet_explore_prob}")
    if not 0 < cfg.mapnet_baseline_m <= 1:
        raise MaskingOptionError(f"--mapnet-baseline-m must lie in (0, 1], got {cfg.mapnet_baseline_m}")
    if cfg.mapnet_layers < 1:
        raise MaskingOptionError(f"--mapnet-layers must be at least 1, got {cfg.mapnet_layers}")
    if cfg.mapnet_lambda < 0:
        raise MaskingOptionError(f"--mapnet-lambda must be >= 0, got {cfg.mapnet_lambda}")
    if cfg.mapnet_embed_dim < 0:
        raise MaskingOptionError(f"--mapnet-embed-dim must be >= 0 (0 = half the model's width), got {cfg.mapnet_embed_dim}")
    if cfg.mapnet_heads < 0:
        raise MaskingOptionError(f"--mapnet-heads must be >= 0 (0 = width / 32), got {cfg.mapnet_heads}")
    if cfg.mapnet_warmup_updates < 0:
        raise MaskingOptionError(f"--mapnet-warmup-updates must be >= 0, got {cfg.mapnet_warmup_updates}")


@register_criterion("mapnet_masked_lm", dataclass=MapnetMaskedLMConfig)
class MapnetMaskedLMCriterion(FairseqCriterion):
    proposes_masks = True  # the task hands over clean batches and each step's draws

    def __init__(self, cfg: MapnetMaskedLMConfig, task):
        super().__init__(task)
        self.masking = task_masking(task)
        check_options(cfg)
        self.cfg = cfg
        model_dim = self.masking.model_dim
        dim = cfg.mapnet_embed_dim or max(8, model_dim // 2)
        if not cfg.mapnet_own_embeddings and dim > model_dim:
            raise MaskingOptionError(
                f"--mapnet-embed-dim {dim} is wider than the model ({model_dim}) whose embeddings it reads: "
                "use a width <= the model's, or --mapnet-own-embeddings"
            )
        heads = cfg.mapnet_heads or max(1, dim // 32)
        if dim % heads:
            raise MaskingOptionError(f"--mapnet-embed-dim {dim} must be divisible by --mapnet-heads {heads}")
        self.proposal = MaskProposalNetwork(
            model_dim,
            dim,
            cfg.mapnet_layers,
            heads,
            not cfg.mapnet_own_embeddings,
            len(task.source_dictionary),
            task.source_dictionary.pad(),
            self.masking.max_positions,
        )

    # ------------------------------------------------------------------ loss

    def forward(self, model, sample, reduce=True):
        if "target" in sample:  # validation: already masked with the fixed standard mask
            return self.plain_loss(model, sample)
        return self.proposal_loss(model, sample)

    def plain_loss(self, model, sample):
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

    def proposal_loss(self, model, sample):
        tokens = sample["net_input"]["src_tokens"]
        step: MaskingStep = sample["masking"]
        # every step logs the same keys (data-parallel ranks sum them key by key)
        stats = {key: torch.zeros((), device=tokens.device) for key in PROPOSAL_STATS}
        if self.uses_uniform_masks(sample, step.update_num):
            masked = self.masking.uniform(tokens, step.draws, step.update_num)
            token_weights = None
            scores = None
        else:
            scores, q, masked, token_weights, weight_stats = self.propose(model, tokens, step)
            stats.update(weight_stats)

        predicted = masked.predicted
        logits = model(**dict(sample["net_input"], src_tokens=masked.src_tokens), masked_tokens=predicted)[0]
        token_loss = F.cross_entropy(logits.float(), tokens[predicted], reduction="none")
        main = token_loss.sum() if token_weights is None else (token_weights * token_loss).sum()
        if scores is None:  # keep every proposal parameter in the graph (data-parallel reducers need it)
            proposal_loss = sum(p.sum() for p in self.proposal.parameters()) * 0.0
        else:
            proposal_loss = self.score_function_loss(scores, masked, token_loss.detach())
            stats.update(self.proposal_stats(q, masked, token_loss.detach()))
        loss = main + self.cfg.mapnet_lambda * proposal_loss
        sample_size = predicted.sum()
        logging_output = {
            "loss": main.data,
            "mlm_loss": token_loss.sum().data,
            "mapnet_loss": proposal_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "mask_predicted": sample_size,
            "mask_maskable": masked.maskable.sum(),
            **stats,
        }
        return loss, sample_size, logging_output

    def propose(self, model, tokens, step: MaskingStep, strategy: Optional[ProposalUnits] = None):
        """Score ``tokens``, draw masks from the proposal with ``strategy``
        (default: the task's, at its ratio) and weight them: (scores (B, L)
        with gradient, detached q (B, L), the MaskedTokens (their selection
        holds the draw order), float32 weight per predicted token, weight
        statistics)."""
        strategy = strategy or self.masking.proposal
        scores = self.proposal(tokens, model.encoder.sentence_encoder)
        q = proposal_distribution(scores.detach(), strategy.masker.units(tokens).starts, self.cfg.mapnet_proposal_floor)
        masked = strategy(tokens, step.draws, step.update_num, q)
        weights, stats = self.importance_weights(q, masked)
        return scores, q, masked, weights, stats

    def importance_weights(self, q, masked: MaskedTokens):
        """Float32 weight of every predicted token and the weight statistics,
        from the detached proposal ``q`` (B, L)."""
        mode = str(self.cfg.mapnet_weights)
        selection = masked.selection
        starts, chosen, keys = selection.units.starts, selection.chosen, selection.keys
        predicted = masked.predicted
        clipped = torch.zeros((), dtype=torch.float64, device=q.device)
        if mode == "per_token":
            per_unit = log_weights(q, starts, chosen, keys, "per_token").exp()
            weights = selection.units.spread(per_unit)[predicted]
        else:
            weights = log_weights(q, starts, chosen, keys, "product" if mode == "product_clipped" else "exact_ordered").exp()
            if mode == "product_clipped":
                weights, clipped = clip_and_normalize(weights, self.cfg.mapnet_clip)
            weights = weights.unsqueeze(1).expand_as(predicted)[predicted]
        ess = weights.sum() ** 2 / (weights.pow(2).sum() * weights.numel()).clamp(min=1e-30)
        return weights.float(), {"mapnet_ess": ess.float().data, "mapnet_clipped": clipped.float().data}

    def score_function_loss(self, scores, masked: MaskedTokens, token_loss):
        """−Σ log(q_i + 1e-4) · (ℓ_i − b) over predicted positions whose input is ``<mask>``."""
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
        """Mean proposal entropy (nats) per sequence and the correlation of
        the proposal ``q`` (detached) with the per-token losses, for logging."""
        entropy = -(q * q.clamp(min=1e-30).log()).sum(dim=1).mean()
        q_position = q.gather(1, masked.selection.units.start_index())[masked.predicted]
        correlation = torch.corrcoef(torch.stack([q_position.float(), token_loss.float()]))[0, 1]
        return {
            "mapnet_entropy": entropy.float().data,
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
        if any("mapnet_loss" in log for log in logging_outputs):
            total = utils.item(sum(log.get("mapnet_loss", 0) for log in logging_outputs))
            metrics.log_scalar("mapnet_loss", total / max(sample_size, 1), sample_size, round=4)
        steps = utils.item(sum(log.get("mapnet_steps", 0) for log in logging_outputs))
        if steps:  # averages over the steps that used the proposal
            for key in ("mapnet_entropy", "mapnet_ess", "mapnet_clipped", "mapnet_corr"):
                metrics.log_scalar(key, utils.item(sum(log.get(key, 0) for log in logging_outputs)) / steps, steps, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
