"""``mapnet_masked_lm``: masks drawn from a learned proposal, losses
importance-weighted so the objective stays the uniform-mask one (SPEC §3).

Training step (the task hands the clean batch over): the proposal network
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

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from ..masking import expand_units, sequence_seed, unit_start_index
from ..masking.importance import WEIGHT_MODES, clip_and_normalize, log_weights, proposal_distribution
from ..modules.mask_proposal import MaskProposalNetwork
from ..tasks.config import MaskingOptionError


PROPOSAL_STATS = ("mapnet_ess", "mapnet_clipped", "mapnet_entropy", "mapnet_corr", "mapnet_steps")


@dataclass
class MapnetMaskedLMConfig(FairseqDataclass):
    mapnet_layers: int = field(default=2, metadata={"help": "layers of the proposal network"})
    mapnet_embed_dim: int = field(default=0, metadata={"help": "proposal network width (0 = half the model's)"})
    mapnet_heads: int = field(default=0, metadata={"help": "proposal network attention heads (0 = width / 32)"})
    mapnet_own_embeddings: bool = field(
        default=False,
        metadata={"help": "give the proposal network its own token and position embeddings instead of "
                  "reading the model's (and their LayerNorm, gradients flowing into them)"},
    )
    mapnet_weights: ChoiceEnum(WEIGHT_MODES) = field(
        default="exact_ordered",
        metadata={"help": "importance weights: exact_ordered (unbiased for draws without replacement), "
                  "product_clipped (the reference: product of (1/n)/q, clipped, batch-normalised), per_token"},
    )
    mapnet_clip: float = field(default=0.2, metadata={"help": "product_clipped: clip weights to [1-c, 1+c]; in (0, 1)"})
    mapnet_lambda: float = field(default=0.5, metadata={"help": "weight of the proposal network's loss"})
    mapnet_baseline: ChoiceEnum(["const", "batch_mean"]) = field(
        default="const", metadata={"help": "reward baseline: const (-log m) or the batch's mean token loss"}
    )
    mapnet_baseline_m: float = field(default=0.5, metadata={"help": "const baseline b = -log(m); m in (0, 1]"})
    mapnet_explore_prob: float = field(default=0.0, metadata={"help": "share of steps with uniform masks"})
    mapnet_warmup_updates: int = field(default=0, metadata={"help": "uniform masks before this update"})
    seed: int = II("common.seed")


def check_options(cfg: MapnetMaskedLMConfig, task):
    from ..tasks.masked_lm_plus import MaskedLMPlusTask

    if not isinstance(task, MaskedLMPlusTask):
        raise MaskingOptionError(
            f"--criterion mapnet_masked_lm needs --task masked_lm_plus (or its presets); the task "
            f"{type(task).__name__} masks in its dataset, so there is no clean batch to propose masks for"
        )
    if task.fully_explored is not None or task.content_weighting is not None:
        raise MaskingOptionError("mapnet_masked_lm draws its own masks: use --masking random and --content-weighting none")
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
    masks_with_proposal = True  # the task hands over clean batches

    def __init__(self, cfg: MapnetMaskedLMConfig, task):
        super().__init__(task)
        check_options(cfg, task)
        self.cfg = cfg
        model_dim = getattr(task, "model_dim", None)
        if model_dim is None:
            raise MaskingOptionError("mapnet_masked_lm needs the model built first (task.build_model)")
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
            model_dim, dim, cfg.mapnet_layers, heads, not cfg.mapnet_own_embeddings, len(task.source_dictionary),
            task.source_dictionary.pad(), task.cfg.tokens_per_sample,
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
        return loss, sample_size, {"loss": loss.data, "mlm_loss": loss.data, "ntokens": sample["ntokens"],
                                   "nsentences": sample["nsentences"], "sample_size": sample_size}

    def uses_uniform_masks(self, sample, update: int) -> bool:
        if update < self.cfg.mapnet_warmup_updates:
            return True
        if self.cfg.mapnet_explore_prob <= 0:
            return False
        first_id = int(sample["id"][0])
        return sequence_seed("mapnet-explore", self.cfg.seed, update, first_id) / 2**63 < self.cfg.mapnet_explore_prob

    def proposal_loss(self, model, sample):
        task, masker = self.task, self.task.train_masker
        tokens = sample["net_input"]["src_tokens"]
        update = sample["update_num"]
        draws = task.train_draws(sample, update)
        ratio = task.schedule(update)
        # every step logs the same keys (data-parallel ranks sum them key by key)
        stats = {key: torch.zeros((), device=tokens.device) for key in PROPOSAL_STATS}
        if self.uses_uniform_masks(sample, update):
            masked = masker(tokens, ratio, draws)
            token_weights = None
            scores = None
        else:
            scores, q, proposed, token_weights, weight_stats = self.propose(model, tokens, ratio, draws)
            masked = proposed.masked
            stats.update(weight_stats)

        predicted = masked.predicted
        logits = model(**dict(sample["net_input"], src_tokens=masked.src_tokens), masked_tokens=predicted)[0]
        token_loss = F.cross_entropy(logits.float(), tokens[predicted], reduction="none")
        main = token_loss.sum() if token_weights is None else (token_weights * token_loss).sum()
        if scores is None:  # keep every proposal parameter in the graph (data-parallel reducers need it)
            proposal_loss = sum(p.sum() for p in self.proposal.parameters()) * 0.0
        else:
            proposal_loss = self.score_function_loss(scores, proposed, token_loss.detach())
            stats.update(self.proposal_stats(q, proposed, token_loss.detach()))
        loss = main + self.cfg.mapnet_lambda * proposal_loss
        sample_size = predicted.sum()
        logging_output = {
            "loss": main.data, "mlm_loss": token_loss.sum().data, "mapnet_loss": proposal_loss.data,
            "ntokens": sample["ntokens"], "nsentences": sample["nsentences"], "sample_size": sample_size,
            "mask_predicted": sample_size, "mask_maskable": masked.maskable.sum(), **stats,
        }
        return loss, sample_size, logging_output

    def propose(self, model, tokens, ratio, draws):
        """Score ``tokens``, draw masks from the proposal and weight them:
        (scores (B, L) with gradient, detached q (B, L), ProposedMasks,
        float32 weight per predicted token, weight statistics)."""
        masker = self.task.train_masker
        scores = self.proposal(tokens, model.encoder.sentence_encoder)
        q = proposal_distribution(scores.detach(), masker.units(tokens)[1])
        proposed = masker.proposed(tokens, ratio, draws, q)
        weights, stats = self.importance_weights(q, proposed)
        return scores, q, proposed, weights, stats

    def importance_weights(self, q, proposed):
        """Float32 weight of every predicted token and the weight statistics,
        from the detached proposal ``q`` (B, L)."""
        mode = str(self.cfg.mapnet_weights)
        start_index = unit_start_index(proposed.starts)
        predicted = proposed.masked.predicted
        if mode == "per_token":
            per_unit = log_weights(q, proposed.starts, proposed.chosen, proposed.keys, "per_token").exp()
            per_position = expand_units(per_unit, start_index, proposed.masked.maskable)
            weights, clipped = per_position[predicted], torch.zeros((), dtype=torch.float64, device=q.device)
        else:
            weights = log_weights(q, proposed.starts, proposed.chosen, proposed.keys,
                                  "product" if mode == "product_clipped" else "exact_ordered").exp()
            clipped = torch.zeros((), dtype=torch.float64, device=q.device)
            if mode == "product_clipped":
                weights, clipped = clip_and_normalize(weights, self.cfg.mapnet_clip)
            weights = weights.unsqueeze(1).expand_as(predicted)[predicted]
        ess = weights.sum() ** 2 / (weights.pow(2).sum() * weights.numel()).clamp(min=1e-30)
        return weights.float(), {"mapnet_ess": ess.float().data, "mapnet_clipped": clipped.float().data}

    def score_function_loss(self, scores, proposed, token_loss):
        """−Σ log(q_i + 1e-4) · (ℓ_i − b) over predicted positions whose input is ``<mask>``."""
        q = proposal_distribution(scores, proposed.starts)
        masked = proposed.masked
        q_position = q.gather(1, unit_start_index(proposed.starts))[masked.predicted]
        if str(self.cfg.mapnet_baseline) == "const":
            baseline = -math.log(self.cfg.mapnet_baseline_m)
        else:
            baseline = token_loss.mean()
        became_mask = masked.corruption.replaced_by_mask[masked.predicted]
        reward = (token_loss - baseline).double()
        return -(torch.log(q_position + 1e-4) * reward)[became_mask].sum().float()

    def proposal_stats(self, q, proposed, token_loss):
        """Mean proposal entropy (nats) per sequence and the correlation of
        the proposal ``q`` (detached) with the per-token losses, for logging."""
        entropy = -(q * q.clamp(min=1e-30).log()).sum(dim=1).mean()
        q_position = q.gather(1, unit_start_index(proposed.starts))[proposed.masked.predicted]
        correlation = torch.corrcoef(torch.stack([q_position.float(), token_loss.float()]))[0, 1]
        return {"mapnet_entropy": entropy.float().data, "mapnet_corr": torch.nan_to_num(correlation).data,
                "mapnet_steps": torch.ones((), device=q.device)}

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
