"""What needs a CUDA device (``scripts/gpu_check.sh`` runs these; without a
GPU they are collected and skipped): every strategy draws the same masks on
CPU and CUDA; every method trains under ``--fp16`` with finite losses, within
a stated tolerance of fp32 after 50 updates, under ``--amp``, and under
``--bf16`` (which fairseq 0.12 alone would take for a TPU); torch's NCCL
watchdog is on (a hung rank ends the run)."""

import math

import pytest
import torch
from test_masking import make_batch, make_masker, word_start_table

from fairseq_maskplug.masking import (
    FullyExploredOptions,
    FullyExploredUnits,
    MaskDraws,
    ProposalUnits,
    RatioSchedule,
    UniformUnits,
    WeightedUnits,
)
from fairseq_maskplug.masking.draws import mix
from fairseq_maskplug.scoring.validation import validation_scores
from harness import METHOD_FLAGS, POS_METHODS, checkpoint_state, max_param_difference, train_args, train_in_process

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

UPDATES = 50
FP16_TOLERANCE_BITS = 0.05  # |loss on the fixed standard mask, fp16 - fp32| after 50 updates of the tiny model
BF16_TOLERANCE_BITS = 0.1  # bfloat16 keeps 8 bits of mantissa to fp16's 11


def strategies():
    """Every way of choosing units, with the inputs each needs (weights,
    probabilities), on token and whole-word units."""
    ratio = RatioSchedule.build("cosine", 0.15, 100)
    for words in (False, True):
        masker = make_masker(word_starts=word_start_table() if words else None)
        suffix = "_words" if words else ""
        yield f"uniform{suffix}", UniformUnits(masker, ratio), None
        yield f"weighted{suffix}", WeightedUnits(masker, ratio), "weights"
        yield f"fully_explored{suffix}", FullyExploredUnits(masker, FullyExploredOptions(5)), None
        yield f"fully_explored_contiguous{suffix}", FullyExploredUnits(masker, FullyExploredOptions(5, "contiguous")), None
        yield f"proposal{suffix}", ProposalUnits(masker, ratio), "probabilities"
        yield f"proposal_successive{suffix}", ProposalUnits(masker, ratio, "successive"), "probabilities"


STRATEGIES = list(strategies())


def test_the_hash_is_the_same_on_cuda():
    """torch's int64 arithmetic wraps alike on the GPU: the SplitMix64 outputs
    agree bit for bit (test_draws checks the CPU against Python integers)."""
    words = torch.randint(-(2**63), 2**63 - 1, (1 << 16,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(mix(words.cuda()).cpu(), mix(words))


@pytest.mark.parametrize("name,strategy,needs", STRATEGIES, ids=[s[0] for s in STRATEGIES])
def test_masks_are_identical_on_cpu_and_cuda(name, strategy, needs):
    tokens = make_batch(rows=256, length=96, seed=3)
    generator = torch.Generator().manual_seed(5)
    inputs = {
        None: None,
        "weights": torch.rand(tokens.shape, generator=generator, dtype=torch.float64) + 0.05,
        "probabilities": torch.softmax(torch.randn(tokens.shape, generator=generator, dtype=torch.float64) * 2, dim=1),
    }[needs]
    for update in (0, 37, 99):
        results = []
        for device in ("cpu", "cuda"):
            draws = MaskDraws.for_sequences("train", 1, update, torch.arange(256) * 7, tokens.size(1), device)
            extra = None if inputs is None else inputs.to(device)
            results.append(strategy(tokens.to(device), draws, update, extra))
        cpu, cuda = results
        for field in ("src_tokens", "target", "predicted"):
            assert torch.equal(getattr(cpu, field), getattr(cuda, field).cpu()), (name, update, field)
        assert cpu.predicted.any()


def gpu_run(data, save_dir, method, extra=()):
    """Train ``method`` for 50 updates on the GPU (dropout off, so that runs
    differ only in their arithmetic); returns the last checkpoint."""
    args = train_args(data, save_dir, updates=UPDATES, batch_size=16, cpu=False,
                      extra=[*METHOD_FLAGS[method], "--dropout", "0", "--attention-dropout", "0", *extra])  # fmt: skip
    train_in_process(args)
    return checkpoint_state(save_dir / "checkpoint_last.pt")


HALF_PRECISIONS = {"fp16": (["--fp16"], FP16_TOLERANCE_BITS), "bf16": (["--bf16"], BF16_TOLERANCE_BITS)}


@pytest.mark.parametrize("method", sorted(METHOD_FLAGS))
def test_fp16_and_bf16_train_every_method_like_fp32(brown_data, brown_pos_data, tmp_path, method):
    """Same masks, dropout off: after 50 updates the fp16 and the bf16
    model's loss over every predicted position of the fixed standard mask
    (full precision, not fairseq's rounded log) is within its tolerance of
    the fp32 model's, and its parameters did move differently (half-precision
    arithmetic really ran). --bf16 is fairseq 0.12's TPU flag; the plugin
    lets it train on CUDA where torch_xla is absent."""
    data = brown_pos_data if method in POS_METHODS else brown_data
    losses, parameters = {}, {}
    for precision, flags in (("fp32", []), *((name, flags) for name, (flags, _) in HALF_PRECISIONS.items())):
        state = gpu_run(data, tmp_path / precision, method, flags)
        assert state["optimizer_history"][-1]["num_updates"] == UPDATES
        assert all(torch.isfinite(v.float()).all() for v in state["model"].values())
        parameters[precision] = state["model"]
        scores = validation_scores(str(tmp_path / precision / "checkpoint_last.pt"), str(data))
        losses[precision] = scores.all_predicted_bits  # every predicted position: the numerics, not a ranking
    print(f"{method}: valid loss fp32 {losses['fp32']:.5f}, fp16 {losses['fp16']:.5f}, bf16 {losses['bf16']:.5f} bits")
    for precision, (_, tolerance) in HALF_PRECISIONS.items():
        assert math.isfinite(losses[precision])
        assert abs(losses[precision] - losses["fp32"]) <= tolerance, (precision, losses)
        assert max_param_difference(parameters[precision], parameters["fp32"]) > 0, precision


@pytest.mark.parametrize("method", sorted(METHOD_FLAGS))
def test_amp_trains_every_method(brown_data, brown_pos_data, tmp_path, method):
    data = brown_pos_data if method in POS_METHODS else brown_data
    state = gpu_run(data, tmp_path / "amp", method, ["--amp"])
    assert state["optimizer_history"][-1]["num_updates"] == UPDATES
    assert math.isfinite(state["extra_state"]["val_loss"])


def test_nccl_turns_a_hang_into_an_exit():
    """What docs/gpu.md says a lost rank on GPUs relies on, read off this
    machine's torch: the NCCL watchdog's default timeout is finite (10
    minutes in torch 2.x) and its error handling is not switched off."""
    import os
    from datetime import timedelta

    from torch.distributed import constants

    timeout = constants.default_pg_nccl_timeout
    print(
        f"NCCL default timeout {timeout}, TORCH_NCCL_ASYNC_ERROR_HANDLING={os.environ.get('TORCH_NCCL_ASYNC_ERROR_HANDLING')}"
    )
    assert timeout is not None and timedelta(0) < timeout <= timedelta(minutes=30)
    assert os.environ.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "3") != "0"


def test_mapnet_survives_fp16_overflow_on_cuda(brown_data, tmp_path):
    """A huge initial loss scale overflows on the first steps: on CUDA fairseq
    skips those steps and lowers the scale, and MAPNet (its proposal in float32, apart) trains on."""
    state = gpu_run(brown_data, tmp_path / "overflow", "mapnet", ["--fp16", "--fp16-init-scale", str(2**30)])
    assert state["optimizer_history"][-1]["num_updates"] == UPDATES
    assert math.isfinite(state["extra_state"]["val_loss"])
