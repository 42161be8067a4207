"""The benchmark's FLOP model and its script (a quick run with a tiny encoder;
timings themselves are not asserted: they belong to the benchmark)."""

import json
import math
import subprocess

import pytest
import torch

from harness import CHILD_ENV, REPO_ROOT, run_script
from maskplug_lab.diagnostics.masking_cost import MaskingCost
from maskplug_lab.experiments.flops import Stack, mae_lm_training_flops, roberta_training_flops


def test_mae_lm_without_decoder_and_with_every_token_visible_costs_what_roberta_costs():
    encoder = Stack(layers=4, dim=256, ffn=1024)
    roberta = roberta_training_flops(encoder, sequences=16, length=128, predicted=300, vocab=8000)
    assert mae_lm_training_flops(encoder, Stack(0, 256, 1024), 16, 128, 128, 300, 8000, projection=False) == roberta
    # shorter encoder input, a decoder on top: both terms move the count as the formula says
    shorter = mae_lm_training_flops(encoder, Stack(0, 256, 1024), 16, 128, 112, 300, 8000, projection=False)
    assert shorter < roberta
    with_decoder = mae_lm_training_flops(encoder, Stack(1, 256, 1024), 16, 128, 112, 300, 8000, projection=False)
    assert with_decoder - shorter == pytest.approx(3 * Stack(1, 256, 1024).forward_flops(16, 128))


def test_benchmark_script_quick_run(brown_pos_data, tmp_path):
    out = tmp_path / "bench.json"
    result = run_script("benchmark.py", ["--data", brown_pos_data, "--quick", "--encoder", "tiny", "--tokens-per-sample",
                                         "64", "--arms", "fully_explored,mae_lm", "--json", out,
                                         "--masking-sequences", "64"])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report["arms"]) == ["stock", "fully_explored", "mae_lm", "stock@8", "mae_lm@8"]  # + the FLOP check
    ratios = report["ratios_to_stock"]
    assert ratios["stock"]["text_tokens_per_s"] == 1.0
    fe = report["arms"]["fully_explored"]
    assert fe["processed_tokens_per_s"] == pytest.approx(7 * fe["text_tokens_per_s"])  # K = 7 copies
    assert 0 < ratios["mae_lm"]["flop_predicted_ratio"] < 1  # the tiny encoder's 1-layer decoder on all positions costs more
    assert math.isfinite(ratios["mae_lm"]["marginal_ratio"])  # its sign is timing: the benchmark's business
    assert ratios["mae_lm@8"]["text_tokens_per_s"] > 0 and report["arms"]["stock@8"]["predicted_per_update"] > 0
    assert report["arms"]["mae_lm"]["encoder_input_length"] < 64  # the encoder never sees the <mask> positions
    assert report["masking_cost"]["sequences"] == 64 and report["masking_cost"]["stock_over_masker"] > 0
    assert set(report["masking_cost"]["seconds_by_batch"]) == {"8", "32", "256"}
    assert "| fully_explored |" in result.stdout and "| uniform strategy, batches of 32 (draws + masking) |" in result.stdout


def test_masking_only_writes_the_masking_cost_and_its_fixed_and_per_sequence_parts(brown_pos_data, tmp_path):
    out = tmp_path / "cost.json"
    result = run_script(
        "benchmark.py", ["--data", brown_pos_data, "--masking-only", "--masking-sequences", "64", "--json", out]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cost = json.loads(out.read_text())["masking_cost"]
    assert set(cost) >= {"stock_seconds", "seconds_by_batch", "fixed_seconds_per_batch", "seconds_per_sequence"}
    assert "One batch of B sequences" in result.stdout and "| fully_explored |" not in result.stdout


def test_the_per_batch_line_recovers_a_fixed_and_a_per_sequence_cost():
    # 1 ms per batch + 20 µs per sequence, measured over 256 sequences at three batch sizes
    by_batch = {b: (256 / b) * (1e-3 + b * 20e-6) for b in (8, 32, 256)}
    cost = MaskingCost(256, 512, "cpu", 0.1, by_batch[32], 0.0, by_batch)
    fixed, per_sequence = cost.per_batch_line()
    assert fixed == pytest.approx(1e-3) and per_sequence == pytest.approx(20e-6)


def test_benchmark_script_refuses_unknown_arms(tmp_path):
    result = run_script("benchmark.py", ["--arms", "spans"])
    assert result.returncode != 0 and "--arms: unknown spans; valid: stock, random" in result.stderr


def test_gpu_check_says_plainly_when_there_is_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: scripts/gpu_check.sh would run for real")
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "gpu_check.sh")], env=CHILD_ENV, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 3
    assert "no CUDA device is visible" in result.stderr and "nothing was run" in result.stderr
    assert "CPU-only build" in result.stderr
