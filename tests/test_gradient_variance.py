"""The gradient-variance measurement: its statistic, its interval, the additive
case where fully-explored masking has exactly zero mask variance, and the script."""

import json

import torch
from test_fully_explored import fully_explored_masks
from test_masking import draws_for, make_batch, make_masker, uniform

from fairseq_maskplug.masking import FullyExploredOptions
from harness import run_script, train_args, train_in_process
from maskplug_lab.diagnostics.gradient_variance import against_uniform, estimate, ratio_estimate, relative_variance_from_gram


def test_gram_formula_matches_the_direct_statistic_and_counts_mean_repeats():
    g = torch.randn(12, 50, dtype=torch.float64) + 0.5
    direct = ((g - g.mean(0)) ** 2).sum() / 11 / g.mean(0).pow(2).sum()
    gram = g @ g.T
    assert torch.allclose(relative_variance_from_gram(gram, torch.ones(12, dtype=torch.float64)), direct)
    counts = torch.tensor([2, 1, 0, 3, 1, 1, 0, 1, 1, 1, 0, 1], dtype=torch.float64)
    repeated = g.repeat_interleave(counts.long(), dim=0)
    expected = ((repeated - repeated.mean(0)) ** 2).sum() / 11 / repeated.mean(0).pow(2).sum()
    assert torch.allclose(relative_variance_from_gram(gram, counts), expected)


def test_estimate_recovers_a_known_relative_variance_with_its_interval():
    """mean μ with ||μ||² = 1, isotropic noise with tr Cov = 0.5: 400 draws
    estimate 0.5 within 10 %, and the 95 % interval holds it."""
    generator = torch.Generator().manual_seed(0)
    mu = torch.zeros(200, dtype=torch.float64)
    mu[0] = 1.0
    grads = mu + torch.randn(400, 200, generator=generator, dtype=torch.float64) * (0.5 / 200) ** 0.5
    result = estimate("toy", grads)
    assert abs(result.relative_variance - 0.5) < 0.05
    assert result.ci_low < 0.5 < result.ci_high
    ratio = ratio_estimate(grads, grads)
    assert ratio["ratio"] == 1.0 and ratio["ci_low"] == ratio["ci_high"] == 1.0


def test_the_measure_against_the_uniform_mean_reads_spread_and_bias_apart():
    """Synthetic gradients around μ (‖μ‖² = 1): an unbiased strategy with twice
    random's spread reads tr Cov ratio 2, bias² 0 (within its interval) and
    MSE = its tr Cov; a strategy with the same spread as random but a mean
    shifted by δ (‖δ‖² = 0.25) reads ratio 1, bias² 0.25. relative_variance
    would have divided each by its own mean instead."""
    generator = torch.Generator().manual_seed(0)
    D, R = 400, 200
    mu = torch.zeros(D, dtype=torch.float64)
    mu[0] = 1.0
    delta = torch.zeros(D, dtype=torch.float64)
    delta[1] = 0.5

    def draws(n, spread, shift=0.0):
        return mu + shift + torch.randn(n, D, generator=generator, dtype=torch.float64) * (spread / D) ** 0.5

    grads = {"random": draws(R, 0.5), "noisier": draws(R, 1.0), "biased": draws(R, 0.5, delta)}
    result = against_uniform(grads, draws(4 * R, 0.5))
    assert result["random"]["trace_cov_ratio_to_random"] == 1.0
    assert abs(result["noisier"]["trace_cov_ratio_to_random"] - 2) < 0.2
    for name, expected_bias in (("random", 0.0), ("noisier", 0.0), ("biased", 0.25)):
        low, high = result[name]["bias_sq_ci"]
        assert low <= expected_bias <= high, (name, result[name])
    assert abs(result["biased"]["bias_sq"] - 0.25) < 0.03 and abs(result["biased"]["trace_cov_ratio_to_random"] - 1) < 0.15
    assert abs(result["noisier"]["mse"] - 1.0) < 0.1 and abs(result["biased"]["mse"] - 0.75) < 0.1


def test_additive_case_fully_explored_has_zero_mask_variance():
    """The fully-explored paper's argument: if each masked position contributes a fixed vector a_i, the
    average over the K fully-explored copies is exactly the mean of all a_i
    (zero variance), while K independent masks keep variance
    ≈ σ²/(K·m)·(n − m)/(n − 1) per sequence."""
    tokens = make_batch(rows=1, length=62, seed=4)
    masker = make_masker()
    contributions = torch.randn(tokens.size(1), 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    K = 4

    def averaged(predicted):  # mean contribution over the predicted positions of all rows (copies)
        weights = predicted.double().sum(0)
        return (weights @ contributions) / weights.sum()

    fe, independent = [], []
    for r in range(400):
        masked = fully_explored_masks(masker, tokens, draws_for(tokens, 0, r), FullyExploredOptions(K))
        fe.append(averaged(masked.predicted))
        rows = torch.cat([uniform(masker, tokens, 1 / K, draws_for(tokens, 1, r * K + k)).predicted for k in range(K)])
        independent.append(averaged(rows))
    fe, independent = torch.stack(fe), torch.stack(independent)
    assert (fe - fe[0]).abs().max().item() < 1e-12
    maskable = masked.maskable[0]
    n = int(maskable.sum())
    m = n / K
    sigma2 = contributions[maskable].var(0, unbiased=False).sum().item()
    theory = sigma2 / (K * m) * (n - m) / (n - 1)
    measured = ((independent - independent.mean(0)) ** 2).sum(1).mean().item()
    assert 0.75 * theory < measured < 1.3 * theory


def test_measure_mask_variance_script(brown_data, tmp_path):
    """At initialisation and after 60 fully-explored updates, the script writes
    every strategy with an interval and the Hamming curve; at initialisation
    (nearly additive) fully-explored has lower variance than random_k."""
    save = tmp_path / "fe"
    train_in_process(train_args(brown_data, save, task="fully_explored_masked_lm", updates=60, batch_size=8))
    script = ["--data", brown_data, "--draws", "8", "--segments", "4", "--batch-size", "6", "--hamming-curve", "--pairs", "3"]
    for name, extra in (("init", []), ("trained", ["--checkpoint", str(save / "checkpoint_last.pt")])):
        out = tmp_path / f"{name}.json"
        result = run_script("measure_mask_variance.py", script + ["--json", out] + extra)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(out.read_text())
        names = [s["strategy"] for s in report["strategies"]]
        assert names == ["random", "random_k", "fully_explored", "fully_explored_contiguous"]
        for s in report["strategies"]:
            assert s["ci_low"] <= s["relative_variance"] <= s["ci_high"]
            for key in ("trace_cov_ratio_to_random", "bias_sq", "mse"):
                low, high = s[f"{key}_ci"]
                assert low <= s[key] <= high, (s["strategy"], key)
        assert report["strategies"][0]["trace_cov_ratio_to_random"] == 1.0
        assert report["reference"]["draws"] == 32
        curve = report["hamming_curve"]
        assert [p["overlap_fraction"] for p in curve] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert curve[-1]["mean_hamming"] == 0 and abs(curve[-1]["cosine"] - 1) < 1e-6
        if name == "init":
            assert report["fully_explored_over_random_k"]["ci_high"] < 1
