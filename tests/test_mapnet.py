"""MAPNet: sampling without replacement from a proposal, importance weights
(exactly unbiased vs the reference's biased product), the criterion's training
(gradients, gloo, fp16 with extreme proposals; resume in test_interrupted_training; bad input in test_bad_input)."""

import itertools
import json
import math
import subprocess
import sys

import pytest
import torch
from test_masking import BOS, EOS, PAD, make_masker

from fairseq_maskplug.masking import MaskDraws, ProposalUnits, RatioSchedule
from fairseq_maskplug.masking.importance import log_weights, proposal_distribution
from harness import (
    CHILD_ENV,
    REPO_ROOT,
    checkpoint_state,
    logged_values,
    max_param_difference,
    train_args,
    train_data_parallel,
    train_in_process,
    train_subprocess,
)

PROPOSAL = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.1], dtype=torch.float64)  # over 5 units
VALUES = torch.tensor([2.0, 1.0, 3.0, 1.0, 0.5], dtype=torch.float64)  # f(M) = sum of VALUES over M
K = 2


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


def proposal_draws(rows=400, updates=100):
    """Rows <s> a b c d e </s> masked at ratio 2/5 from PROPOSAL, many seeds."""
    tokens = torch.tensor([[BOS, 10, 11, 12, 13, 14, EOS]]).repeat(rows, 1)
    q = torch.zeros(rows, 7, dtype=torch.float64)
    q[:, 1:6] = PROPOSAL
    strategy = ProposalUnits(make_masker(), RatioSchedule.build("constant", K / 5, 0))
    for update in range(updates):
        draws = MaskDraws.for_sequences("train", 0, update, range(rows), tokens.size(1), "cpu")
        yield q, strategy(tokens, draws, update, q)


def test_sampling_without_replacement_matches_exact_inclusion_probabilities():
    inclusion, _, _, _ = exact_expectations()
    counts, total = torch.zeros(5, dtype=torch.float64), 0
    for _, proposed in proposal_draws():
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
    for q, proposed in proposal_draws():
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


def test_uniform_proposals_give_weights_of_exactly_one():
    tokens = torch.tensor([[BOS, 10, 11, 12, 13, 14, 15, 16, EOS, PAD]]).repeat(64, 1)
    masker = make_masker()
    starts = masker.units(tokens).starts
    q = starts.double() / starts.sum(1, keepdim=True)
    draws = MaskDraws.for_sequences("train", 0, 3, range(64), tokens.size(1), "cpu")
    selection = ProposalUnits(masker, RatioSchedule.build("constant", 3 / 7, 0))(tokens, draws, 3, q).selection
    for mode in ("exact_ordered", "product"):
        assert torch.equal(log_weights(q, starts, selection.chosen, selection.keys, mode).exp().float(), torch.ones(64))
    per_token = log_weights(q, starts, selection.chosen, selection.keys, "per_token")
    assert torch.equal(per_token.exp().float()[selection.chosen], torch.ones(int(selection.chosen.sum())))


def test_the_proposal_floor_bounds_the_exact_weights():
    """The reference adds 1e-4 to q. Here the floored q' = (q + ε) / (1 + n·ε)
    is what masks are drawn from and weighted for, so the weights stay exact
    (test above, for any q) and bounded: a draw that picks a unit the
    proposal all but excludes (q = 1e-30) first weighs ~1e27 without the
    floor, and stays under Π_j 1 / ((n − j + 1) · min q') with it."""
    n = 30
    tokens = torch.tensor([[BOS, *range(10, 10 + n), EOS]])
    starts = make_masker().units(tokens).starts
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
    assert torch.equal(proposal_distribution(scores, starts, 0.0), proposal_distribution(scores, starts))


def mapnet_args(data, save_dir, **kwargs):
    extra = ["--criterion", "mapnet_masked_lm", *kwargs.pop("extra", ())]
    return train_args(data, save_dir, **kwargs, extra=extra)


def criterion_params(path):
    return {k: v for k, v in checkpoint_state(path)["criterion"].items()}


def test_proposal_network_learns(brown_data, tmp_path):
    """Its parameters are in the checkpoint's criterion state (not the
    model's), receive gradients and change between updates 5 and 10."""
    save = tmp_path / "mapnet"
    train_in_process(
        mapnet_args(brown_data, save, updates=10, extra=["--save-interval-updates", "5", "--keep-interval-updates", "-1"])
    )
    at5, at10 = criterion_params(save / "checkpoint_1_5.pt"), criterion_params(save / "checkpoint_1_10.pt")
    assert at5.keys() == at10.keys() and any(k.startswith("proposal.layers") for k in at5)
    changed = [k for k in at5 if not torch.equal(at5[k], at10[k])]
    assert len(changed) == len(at5), sorted(set(at5) - set(changed))
    assert not any(k.startswith("proposal") for k in checkpoint_state(save / "checkpoint_1_10.pt")["model"])
    # the variance measurement's mapnet strategy reads the trained proposal back
    out = tmp_path / "variance.json"
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "measure_mask_variance.py"), "--data", str(brown_data),
        "--checkpoint", str(save / "checkpoint_1_10.pt"), "--strategies", "random,mapnet", "--draws", "4",
        "--batch-size", "4", "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [s["strategy"] for s in report["strategies"]] == ["random", "mapnet"]
    mapnet = report["strategies"][1]
    for key in ("trace_cov_ratio_to_random", "bias_sq", "mse"):  # against the uniform-mask mean gradient
        assert mapnet[f"{key}_ci"][0] <= mapnet[key] <= mapnet[f"{key}_ci"][1]


def dump_criterion_preamble(out_dir) -> str:
    return (
        "import atexit, sys, torch\n"
        "from fairseq_maskplug.criterions import mapnet_masked_lm as _c\n"
        "_made = []\n"
        "_forward = _c.MapnetMaskedLMCriterion.forward\n"  # fairseq builds criterions from __init__'s signature
        "def _record(self, *a, **k):\n"
        "    _made[:] = [self]\n"
        "    return _forward(self, *a, **k)\n"
        "_c.MapnetMaskedLMCriterion.forward = _record\n"
        "_rank = sys.argv[sys.argv.index('--distributed-rank') + 1]\n"
        f"atexit.register(lambda: torch.save(_made[-1].state_dict(), {str(out_dir)!r} + f'/criterion{{_rank}}.pt'))\n"
    )


def test_proposal_parameters_agree_across_two_gloo_ranks(brown_data, tmp_path):
    flags = ["--mapnet-explore-prob", "0.3", "--mapnet-own-embeddings"]
    outputs = train_data_parallel(
        mapnet_args(brown_data, tmp_path / "ddp", updates=10, extra=flags), preamble=dump_criterion_preamble(tmp_path)
    )
    assert logged_values(outputs[0], "num_updates")[-1] == 10
    rank0, rank1 = torch.load(tmp_path / "criterion0.pt"), torch.load(tmp_path / "criterion1.pt")
    assert max_param_difference(rank0, rank1) == 0.0


def test_memory_efficient_fp16_with_extreme_proposals_stays_finite(brown_data, tmp_path):
    """The proposal's output layer scaled 30x: q is nearly one-hot, the exact
    weights are far from 1 (effective sample size below half), yet losses and
    parameters stay finite (weights are float32 from detached q). A small
    initial loss scale keeps the first steps from overflowing: fairseq's fp16
    overflow handler calls .cuda() and so crashes on a CPU (on a GPU it skips
    the step)."""
    preamble = (
        "from fairseq_maskplug.modules import mask_proposal as _p\n"
        "_init = _p.MaskProposalNetwork.__init__\n"
        "def _extreme(self, *a, **k):\n"
        "    _init(self, *a, **k)\n"
        "    self.output.weight.data.mul_(30.0)\n"
        "_p.MaskProposalNetwork.__init__ = _extreme\n"
    )
    flags = ["--memory-efficient-fp16", "--fp16-init-scale", "4", "--mapnet-weights", "exact_ordered"]
    result = train_subprocess(mapnet_args(brown_data, tmp_path / "fp16", updates=10, extra=flags), preamble=preamble)
    output = result.stdout + result.stderr
    assert all(math.isfinite(x) for x in logged_values(output, "loss"))
    assert max(logged_values(output, "mapnet_ess")) < 0.5
    state = checkpoint_state(tmp_path / "fp16" / "checkpoint_last.pt")
    assert all(torch.isfinite(p.float()).all() for p in list(state["model"].values()) + list(state["criterion"].values()))
