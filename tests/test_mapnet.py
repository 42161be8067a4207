"""MAPNet: the two samplers and their exact weights (inclusion sampling with
Horvitz–Thompson weights bounded by the mixture; successive sampling with the
exact ordered weights against the reference's biased product), a proposal
trained on a toy problem of known gradient norms, the criterion's decoupling
from the main model, and its training (gloo, fp16 with extreme proposals;
resume in test_interrupted_training; bad input in test_bad_input)."""

import itertools
import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from test_masking import BOS, EOS, PAD, make_masker

from fairseq_maskplug.criterions.masking_criterion import TrainingBatch
from fairseq_maskplug.masking import MaskDraws, MaskingStep, ProposalMasking, ProposalUnits, RatioSchedule
from fairseq_maskplug.masking.importance import (
    inclusion_probabilities,
    inclusion_weights,
    log_weights,
    mix_with_uniform,
    normalized_proposal,
    proposal_distribution,
)
from fairseq_maskplug.masking.proposal_objectives import logit_gradient_norm, per_unit_totals, regression_loss
from fairseq_maskplug.modules.mask_proposal import MaskProposalNetwork
from harness import (
    TOKENS_PER_SAMPLE,
    checkpoint_state,
    dump_task_state_preamble,
    logged_values,
    max_param_difference,
    run_script,
    train_args,
    train_data_parallel,
    train_in_process,
)

PROPOSAL = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1], dtype=torch.float64)  # over 5 units
VALUES = torch.tensor([2.0, 1.0, 3.0, 1.0, 0.5], dtype=torch.float64)  # f(M) = sum of VALUES over M
K = 2


def rows_of_units(rows, n):
    """(rows, n + 2) tokens <s> u_1 … u_n </s> and their unit starts."""
    tokens = torch.tensor([[BOS, *range(10, 10 + n), EOS]]).repeat(rows, 1)
    return tokens, make_masker().units(tokens).starts


def at_units(values, rows):
    """(rows, n + 2) float64: ``values`` (n,) at the unit positions."""
    full = torch.zeros(rows, values.numel() + 2, dtype=torch.float64)
    full[:, 1:-1] = values
    return full


def proposal_draws(sampler, proposal=PROPOSAL, ratio=K / 5, rows=400, updates=100):
    """Rows <s> a b c d e </s> masked at ``ratio`` from ``proposal``, many seeds."""
    tokens, _ = rows_of_units(rows, proposal.numel())
    q = at_units(proposal, rows)
    strategy = ProposalUnits(make_masker(), RatioSchedule.build("constant", ratio, 0), sampler)
    for update in range(updates):
        draws = MaskDraws.for_sequences("train", 0, update, range(rows), tokens.size(1), "cpu")
        yield q, strategy(tokens, draws, update, q)


# ------------------------------------------------------ inclusion sampling


def test_inclusion_probabilities_sum_to_the_uniform_count_and_cap_at_one():
    _, starts = rows_of_units(1, 5)
    q = at_units(PROPOSAL, 1)
    pi = inclusion_probabilities(q, starts, torch.tensor([2.0]))
    # 2 · 0.5 = 1 caps the first unit; the other four share the remaining 1 in proportion to q
    assert torch.allclose(pi[0, 1:6], torch.tensor([1.0, 0.4, 0.2, 0.2, 0.2], dtype=torch.float64))
    assert pi[0, 0] == pi[0, 6] == 0
    pi = inclusion_probabilities(q, starts, torch.tensor([1.2]))
    assert torch.allclose(pi[0, 1:6], 1.2 * PROPOSAL)


@pytest.mark.parametrize("ratio", [K / 5, 0.3])
def test_systematic_sampling_includes_each_unit_with_its_probability(ratio):
    """Frequencies over 40,000 draws within 4.5 standard errors of π; every
    row draws floor(m) or ceil(m) units, ceil(m) with probability frac(m)."""
    expected = torch.tensor([5 * ratio], dtype=torch.float64)
    _, starts = rows_of_units(1, 5)
    inclusion = inclusion_probabilities(at_units(PROPOSAL, 1), starts, expected)[0, 1:6]
    counts, sizes, total = torch.zeros(5, dtype=torch.float64), [], 0
    for _, proposed in proposal_draws("inclusion", ratio=ratio):
        picked = proposed.predicted[:, 1:6]
        counts += picked.double().sum(0)
        sizes.append(picked.sum(1))
        total += picked.size(0)
    frequency = counts / total
    standard_error = (inclusion * (1 - inclusion) / total).sqrt().clamp(min=1e-9)
    assert ((frequency - inclusion).abs() <= 4.5 * standard_error).all(), (frequency, inclusion)
    sizes = torch.cat(sizes).double()
    m = expected.item()
    assert set(sizes.unique().tolist()) <= {math.floor(m), math.ceil(m)}
    assert abs(sizes.mean().item() - m) < 4.5 * math.sqrt((m % 1) * (1 - m % 1) / total) + 1e-9


def test_inclusion_weights_are_unbiased_and_bounded_by_the_mixture():
    """Σ_{i∈M} w_i f_i estimates the uniform target (m/n) Σ f_i = 3.0 for
    a proposal far from uniform, and no weight exceeds 1/α."""
    alpha = 0.3
    _, starts = rows_of_units(1, 5)
    mixed = mix_with_uniform(at_units(PROPOSAL, 1), starts, alpha)[0, 1:6]
    values, largest = [], 0.0
    for _, proposed in proposal_draws("inclusion", proposal=mixed):
        selection = proposed.selection
        weights = inclusion_weights(selection.inclusion, selection.units.starts, selection.chosen)
        values.append((weights[:, 1:6] * VALUES).sum(1))
        largest = max(largest, weights.max().item())
    values = torch.cat(values)
    target = K / 5 * VALUES.sum().item()
    assert abs(values.mean().item() - target) < 4.5 * values.std().item() / math.sqrt(values.numel())
    assert largest <= 1 / alpha + 1e-12


def test_uniform_proposals_give_weights_of_exactly_one():
    tokens = torch.tensor([[BOS, 10, 11, 12, 13, 14, 15, 16, EOS, PAD]]).repeat(64, 1)
    masker = make_masker()
    starts = masker.units(tokens).starts
    q = starts.double() / starts.sum(1, keepdim=True)
    draws = MaskDraws.for_sequences("train", 0, 3, range(64), tokens.size(1), "cpu")
    ratio = RatioSchedule.build("constant", 3 / 7, 0)
    selection = ProposalUnits(masker, ratio, "inclusion")(tokens, draws, 3, q).selection
    weights = inclusion_weights(selection.inclusion, starts, selection.chosen)
    assert torch.equal(weights[selection.chosen].float(), torch.ones(int(selection.chosen.sum())))
    selection = ProposalUnits(masker, ratio, "successive")(tokens, draws, 3, q).selection
    for mode in ("exact_ordered", "product"):
        assert torch.equal(log_weights(q, starts, selection.chosen, selection.keys, mode).exp().float(), torch.ones(64))


# ----------------------------------------------------- successive sampling


def exact_expectations():
    """By enumeration of ordered draws without replacement from PROPOSAL:
    inclusion probabilities, E_q[w f] for the exact and the product weights,
    and the uniform target E_p[f]."""
    n = len(PROPOSAL)
    inclusion = torch.zeros(n, dtype=torch.float64)
    exact = product = 0.0
    for first, second in itertools.permutations(range(n), K):
        q1, q2 = PROPOSAL[first].item(), PROPOSAL[second].item()
        probability = q1 * q2 / (1 - q1)
        inclusion[[first, second]] += probability
        f = (VALUES[first] + VALUES[second]).item()
        exact += probability * (1 / n) / q1 * (1 / (n - 1)) / (q2 / (1 - q1)) * f
        product += probability * (1 / n) / q1 * (1 / n) / q2 * f
    target = K / n * VALUES.sum().item()
    return inclusion, exact, product, target


def test_successive_sampling_matches_exact_inclusion_probabilities():
    inclusion, _, _, _ = exact_expectations()
    counts, total = torch.zeros(5, dtype=torch.float64), 0
    for _, proposed in proposal_draws("successive"):
        picked = proposed.predicted[:, 1:6]
        assert (picked.sum(1) == K).all()  # K distinct positions every time
        counts += picked.double().sum(0)
        total += picked.size(0)
    frequency = counts / total
    standard_error = (inclusion * (1 - inclusion) / total).sqrt()
    assert ((frequency - inclusion).abs() < 4.5 * standard_error).all(), (frequency, inclusion)


def test_exact_ordered_weights_are_unbiased_and_the_product_weights_are_not():
    """Enumeration: E_q[w_exact f] equals the uniform target (3.0), E_q[w_product f]
    is 3.205. Monte Carlo over 40,000 draws of the implementation: both means
    agree with their enumerated expectation within 4.5 standard errors (a
    two-sided test at about 1e-5), and the product mean is more than 4
    standard errors away from the target: the exact weights are unbiased, the
    reference's product weights are not."""
    _, exact, product, target = exact_expectations()
    assert exact == pytest.approx(target, abs=1e-12)
    assert product - target == pytest.approx(0.205, abs=1e-3)  # the enumerated bias of the product weights
    samples = {"exact_ordered": [], "product": []}
    for q, proposed in proposal_draws("successive"):
        f = (proposed.predicted[:, 1:6].double() * VALUES).sum(1)
        selection = proposed.selection
        for mode in samples:
            weights = log_weights(q, selection.units.starts, selection.chosen, selection.keys, mode).exp()
            samples[mode].append(weights * f)
    for mode, expected in (("exact_ordered", exact), ("product", product)):
        values = torch.cat(samples[mode])
        standard_error = values.std() / math.sqrt(values.numel())
        assert abs(values.mean().item() - expected) < 4.5 * standard_error.item(), mode
    product_values = torch.cat(samples["product"])
    product_error = product_values.std().item() / math.sqrt(product_values.numel())
    assert abs(product_values.mean().item() - target) > 4 * product_error  # the bias is visible in the draws


def test_the_proposal_floor_bounds_the_exact_weights():
    """The reference adds 1e-4 to q. The floored q' = (q + ε) / (1 + n·ε)
    is what masks are drawn from and weighted for, so the weights stay exact
    and bounded: a draw that picks a unit the proposal all but excludes
    (q = 1e-30) first weighs ~1e27 without the floor, and stays under
    Π_j 1 / ((n − j + 1) · min q') with it."""
    n = 30
    tokens, starts = rows_of_units(1, n)
    scores = torch.zeros(tokens.shape, dtype=torch.float64)
    scores[0, 1] = math.log(1e-30) + math.log(n - 1)  # the first unit gets q ~ 1e-30, the others share the rest
    chosen = torch.zeros_like(starts)
    chosen[0, [1, 2, 3]] = True
    keys = torch.full(tokens.shape, float("inf"), dtype=torch.float64)
    keys[0, [1, 2, 3]] = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)  # drawn in this order
    weight = {}
    for floor in (0.0, 1e-4):
        q = proposal_distribution(scores, starts, floor)
        assert torch.allclose(q.sum(1), torch.ones(1, dtype=torch.float64))
        assert (q[~starts] == 0).all() and (q[starts] >= floor / (1 + n * floor) * (1 - 1e-12)).all()
        weight[floor] = log_weights(q, starts, chosen, keys, "exact_ordered").exp().item()
    q_min = 1e-4 / (1 + n * 1e-4)
    bound = math.prod(1 / ((n - j) * q_min) for j in range(3))
    assert weight[0.0] > 1e25 and weight[1e-4] <= bound < 1e12


# ------------------------------------------- a toy problem of known norms


def test_a_proposal_regressed_on_known_gradient_norms_approaches_the_optimum_and_lowers_the_variance():
    """Sequences of 12 units whose loss gradients g_i are fixed vectors of
    known norms (a fixed linear model's per-unit gradients). A per-unit score
    table trained with the criterion's regression objective on the units it
    draws (inclusion sampling from the α = 0.5 mixture, Horvitz–Thompson
    weights) ends with q_θ ∝ ‖g_i‖, the variance-optimal proposal, within
    0.05 in total variation; the estimator Σ_{i∈M} w_i g_i of the
    uniform-mask gradient then has a smaller variance (trace) than uniform
    masking's, and no weight exceeds 1/α."""
    generator = torch.Generator().manual_seed(0)
    n, rows, alpha = 12, 128, 0.5
    norms = torch.linspace(0.1, 3.0, n, dtype=torch.float64)
    directions = F.normalize(torch.randn(n, 6, generator=generator, dtype=torch.float64), dim=1)
    gradients = norms.unsqueeze(1) * directions
    tokens, starts = rows_of_units(rows, n)
    strategy = ProposalUnits(make_masker(), RatioSchedule.build("constant", 0.25, 0), "inclusion")
    scores = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([scores], lr=0.05)
    targets = at_units(norms, rows)

    def draw(update, proposal):
        draws = MaskDraws.for_sequences("toy", 0, update, range(rows), tokens.size(1), "cpu")
        selection = strategy(tokens, draws, update, proposal).selection
        return selection, inclusion_weights(selection.inclusion, starts, selection.chosen)

    for update in range(400):
        predictions = at_units(F.softplus(scores), rows)
        q = mix_with_uniform(normalized_proposal(predictions.detach(), starts), starts, alpha)
        selection, weights = draw(update, q)
        loss = regression_loss(predictions, targets, selection.chosen, weights) / selection.chosen.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned = F.softplus(scores.detach()) / F.softplus(scores.detach()).sum()
    assert (learned - norms / norms.sum()).abs().sum() / 2 < 0.05, learned

    def estimator_variance(proposal):
        estimates, largest = [], 0.0
        for update in range(1000, 1040):
            selection, weights = draw(update, proposal)
            estimates.append(weights[:, 1:-1] @ gradients)
            largest = max(largest, weights.max().item())
        estimates = torch.cat(estimates)
        assert torch.allclose(estimates.mean(0), 0.25 * gradients.sum(0), atol=4 * estimates.std(0).max() / 70)
        return estimates.var(0).sum().item(), largest

    trained = mix_with_uniform(at_units(learned, rows), starts, alpha)
    uniform = mix_with_uniform(trained, starts, 1.0)
    (variance_trained, largest), (variance_uniform, _) = estimator_variance(trained), estimator_variance(uniform)
    assert variance_trained < 0.8 * variance_uniform, (variance_trained, variance_uniform)
    assert largest <= 1 / alpha + 1e-12


def test_the_regression_targets_are_per_unit_totals_of_the_logit_gradient_norm():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0], [0.0, 0.0]])
    targets = torch.tensor([0, 0, 1])
    norms = logit_gradient_norm(logits, targets)
    assert torch.allclose(norms, torch.tensor([math.sqrt(0.5), 0.0, math.sqrt(0.5)]), atol=1e-6)
    predicted = torch.tensor([[False, True, True, False], [False, False, True, False]])
    start_index = torch.tensor([[0, 1, 1, 3], [0, 1, 2, 3]])  # row 0: positions 1, 2 are one unit
    totals = per_unit_totals(norms, predicted, start_index)
    assert torch.allclose(totals, torch.tensor([[0, math.sqrt(0.5), 0, 0], [0, 0, math.sqrt(0.5), 0]]))


# -------------------------------------------------------------- criterion


@pytest.fixture
def mapnet_task(brown_data):
    """A masked_lm_plus task of its own (the criterion registers its learner with it)."""
    from fairseq_maskplug.tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask

    task = MaskedLMPlusTask.setup_task(MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1))
    task.load_dataset("train")
    return task


def build_criterion(task, **options):
    """A tiny RoBERTa (no dropout) and a mapnet_masked_lm criterion with ``options``."""
    from argparse import Namespace

    from fairseq_maskplug.criterions.mapnet_masked_lm import MapnetMaskedLMConfig, MapnetMaskedLMCriterion
    from maskplug_lab.experiments.configurations import TINY

    size = TINY.encoder
    torch.manual_seed(0)
    model = task.build_model(Namespace(arch="roberta", _name="roberta", encoder_layers=size.layers,
                                       encoder_embed_dim=size.dim, encoder_ffn_embed_dim=size.ffn,
                                       encoder_attention_heads=size.heads, max_positions=TINY.tokens_per_sample,
                                       dropout=0.0, attention_dropout=0.0))  # fmt: skip
    criterion = MapnetMaskedLMCriterion(MapnetMaskedLMConfig(seed=1, **options), task)
    criterion.attach(ProposalMasking(task.train_strategy))  # what the task's build_criterion hands it
    return model, criterion


def clean_batch(task, update=0) -> TrainingBatch:
    """A training batch as the task hands it to a criterion that draws its masks."""
    iterator = task.get_batch_iterator(task.dataset("train"), max_sentences=8, seed=1).next_epoch_itr(shuffle=False)
    sample = next(iterator)
    step = MaskingStep(task.train_draws(sample, update), update, learn=True, first_of_update=True)
    return TrainingBatch(sample, step, masked=None, token_losses=False)


def test_with_a_uniform_proposal_the_model_gets_exactly_plain_masked_lms_gradient(mapnet_task):
    """α = 1: the criterion's loss and the model's gradient equal plain
    masked LM's on the same masks, bit for bit; the proposal network is not
    a parameter of the criterion (fairseq's optimizer and --clip-norm never
    see it), yet it received its own gradient."""
    model, criterion = build_criterion(mapnet_task, mapnet_uniform_share=1.0)
    assert list(criterion.parameters()) == []
    batch = clean_batch(mapnet_task)
    sample = batch.sample
    loss = criterion.train_forward(model, batch).loss
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    assert criterion.learner.gradient is not None and criterion.learner.gradient.abs().sum() > 0
    model.zero_grad()
    _, _, masked, weights, _ = criterion.propose(model, sample["net_input"]["src_tokens"], batch.step, uniform=True)
    assert torch.equal(weights, torch.ones_like(weights))
    tokens = sample["net_input"]["src_tokens"]
    logits = model(masked.src_tokens, masked_tokens=masked.predicted)[0]
    plain = F.cross_entropy(logits.float(), tokens[masked.predicted], reduction="sum")
    assert torch.equal(plain.detach(), loss.detach())
    plain.backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(got, model.parameters()))


def test_the_proposals_loss_never_reaches_the_model(mapnet_task):
    """With a sharp proposal (its output layer scaled 30x) and shared
    embeddings, the model's gradient is that of Σ w · CE alone, and the
    weights of the default mixture stay within 1/α = 2."""
    model, criterion = build_criterion(mapnet_task)
    criterion.proposal.output.weight.data.mul_(30.0)
    batch = clean_batch(mapnet_task, update=5)
    sample = batch.sample
    output = criterion.train_forward(model, batch)
    loss, logging = output.loss, output.logging_output
    assert logging["mapnet_max_weight"] <= 2.0 and logging["mapnet_ess"] < 1.0
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    tokens = sample["net_input"]["src_tokens"]
    _, _, masked, weights, _ = criterion.propose(model, tokens, batch.step)
    logits = model(masked.src_tokens, masked_tokens=masked.predicted)[0]
    weighted = (weights * F.cross_entropy(logits.float(), tokens[masked.predicted], reduction="none")).sum()
    expected = torch.autograd.grad(weighted, list(model.parameters()), allow_unused=True)
    for a, b in zip(grads, expected):
        assert (a is None and b is None) or torch.equal(a, b)


# --------------------------------------------------------------- training


def mapnet_args(data, save_dir, **kwargs):
    extra = ["--criterion", "mapnet_masked_lm", *kwargs.pop("extra", ())]
    return train_args(data, save_dir, **kwargs, extra=extra)


def proposal_state(path):
    return checkpoint_state(path)["task_state"]["mapnet_proposal"]["network"]


def test_proposal_network_learns_and_its_diagnostics_are_logged(brown_data, tmp_path, caplog):
    """Its parameters are in the checkpoint's task state (not the model's,
    not the criterion's), all change between updates 5 and 10; the log shows
    the effective sample size, the largest weight (≤ 1/α = 2), the entropy
    against the uniform proposal's, and the share of its clipped updates."""
    save = tmp_path / "mapnet"
    caplog.set_level(logging.INFO)
    train_in_process(
        mapnet_args(brown_data, save, updates=10, extra=["--save-interval-updates", "5", "--keep-interval-updates", "-1"])
    )
    log = caplog.text
    at5, at10 = proposal_state(save / "checkpoint_1_5.pt"), proposal_state(save / "checkpoint_1_10.pt")
    assert at5.keys() == at10.keys() and any(k.startswith("layers") for k in at5)
    changed = [k for k in at5 if not torch.equal(at5[k], at10[k])]
    assert len(changed) == len(at5), sorted(set(at5) - set(changed))
    state = checkpoint_state(save / "checkpoint_1_10.pt")
    assert not any("proposal" in k for k in state["model"]) and not state.get("criterion")
    logged = {key: logged_values(log, f"mapnet_{key}") for key in ("max_weight", "ess", "entropy", "clip")}
    assert all(len(values) == 2 for values in logged.values()), logged  # updates 5 and 10 (--log-interval 5)
    assert all(0 < v <= 2.0 for v in logged["max_weight"])
    assert all(0.5 <= v <= 1.0 for v in logged["ess"])
    assert all(0 < v <= 1.0 for v in logged["entropy"])
    assert all(v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) for v in logged["clip"])
    # the variance measurement's mapnet strategy reads the trained proposal back
    out = tmp_path / "variance.json"
    result = run_script("measure_mask_variance.py", ["--data", brown_data, "--checkpoint", save / "checkpoint_1_10.pt",
                        "--strategies", "random,mapnet", "--draws", "4", "--batch-size", "4", "--json", out])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [s["strategy"] for s in report["strategies"]] == ["random", "mapnet"]
    mapnet = report["strategies"][1]
    for key in ("trace_cov_ratio_to_random", "bias_sq", "mse"):  # against the uniform-mask mean gradient
        assert mapnet[f"{key}_ci"][0] <= mapnet[key] <= mapnet[f"{key}_ci"][1]


def test_proposal_parameters_agree_across_two_gloo_ranks(brown_data, tmp_path):
    """Each rank's proposal network and its optimizer state, after 10
    updates with exploration steps: identical (the learner sums its
    gradients across ranks before its step)."""
    flags = ["--mapnet-explore-prob", "0.3", "--mapnet-own-embeddings"]
    outputs = train_data_parallel(
        mapnet_args(brown_data, tmp_path / "ddp", updates=10, extra=flags), preamble=dump_task_state_preamble(tmp_path)
    )
    assert logged_values(outputs[0], "num_updates")[-1] == 10
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["mapnet_proposal"] for r in (0, 1))
    assert max_param_difference(rank0["network"], rank1["network"]) == 0.0
    moments = [[s["exp_avg"] for s in rank["optimizer"]["state"].values()] for rank in (rank0, rank1)]
    assert all(torch.equal(a, b) for a, b in zip(*moments)) and len(moments[0]) > 0


@pytest.mark.parametrize("weights", ["inclusion", "exact_ordered"])
def test_memory_efficient_fp16_with_extreme_proposals_stays_finite(brown_data, tmp_path, weights, monkeypatch, caplog):
    """The proposal's output layer scaled 30x: q_θ is nearly one-hot, yet
    losses and parameters stay finite (weights are float32 from detached q,
    the proposal runs in float32). With the default mixture no weight
    exceeds 1/α = 2; the reference's successive draws without a mixture
    give an effective sample size below half. A small initial loss scale
    keeps the first steps from overflowing: fairseq's fp16 overflow handler
    calls .cuda() and so crashes on a CPU (on a GPU it skips the step)."""
    init = MaskProposalNetwork.__init__

    def extreme(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.output.weight.data.mul_(30.0)

    monkeypatch.setattr(MaskProposalNetwork, "__init__", extreme)
    flags = ["--memory-efficient-fp16", "--fp16-init-scale", "4", "--mapnet-weights", weights]
    if weights == "exact_ordered":
        flags += ["--mapnet-objective", "reinforce", "--mapnet-uniform-share", "0", "--mapnet-proposal-floor", "1e-4"]
    caplog.set_level(logging.INFO)
    train_in_process(mapnet_args(brown_data, tmp_path / "fp16", updates=10, extra=flags))
    output = caplog.text
    losses = logged_values(output, "loss")
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    if weights == "inclusion":
        assert max(logged_values(output, "mapnet_max_weight")) <= 2.0
    else:
        assert max(logged_values(output, "mapnet_ess")) < 0.5
    state = checkpoint_state(tmp_path / "fp16" / "checkpoint_last.pt")
    proposal = state["task_state"]["mapnet_proposal"]["network"]
    assert all(torch.isfinite(p.float()).all() for p in list(state["model"].values()) + list(proposal.values()))
