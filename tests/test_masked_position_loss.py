"""The yardstick tells copying from context: the loss at the positions whose
input is ``<mask>`` against the unigram reference on the same positions.

A model that ignores context scores the unigram reference there exactly; one
that copies its input scores near 0 bits where the input shows the answer
and no better than the unigram at ``<mask>`` (while the aggregate over all
predicted positions ranks it ahead); one trained to read a neighbour (the
pair-copy task) scores near 0 bits at ``<mask>``. fairseq's validation log
carries the figures, and fairseq_maskplug.scoring.validation returns the same ones.
"""

import logging
import math

import numpy as np
import torch
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
from test_readme_commands import readme_command, run_in_repo

from fairseq_maskplug.scoring.context_references import NeighbourCounts
from fairseq_maskplug.scoring.validation import validation_scores
from fairseq_maskplug.tasks.position_kinds import KINDS, kind_logging_output, unigram_losses
from harness import train_args, train_in_process
from maskplug_lab.diagnostics.copy_task import CopyTaskSettings, copy_dictionary, fit_copy_model, pair_batch


class FixedLogits(torch.nn.Module):
    """A stand-in masked-LM: logits = ``base`` (V,) at every position, plus
    ``copy_bonus`` at the id the input shows there (a model that copies)."""

    def __init__(self, base: torch.Tensor, copy_bonus: float = 0.0):
        super().__init__()
        self.base, self.copy_bonus = base, copy_bonus

    def forward(self, src_tokens, masked_tokens=None, **kwargs):
        logits = self.base.expand(*src_tokens.shape, -1).clone()
        logits.scatter_add_(2, src_tokens.unsqueeze(2), torch.full((*src_tokens.shape, 1), self.copy_bonus))
        return (logits if masked_tokens is None else logits[masked_tokens]), {}

    def get_targets(self, sample, net_output):
        return sample["target"]


def valid_log_values(output: str, key: str):
    """Values of ``key`` in fairseq's simple-format validation lines (``| key value |``),
    from its console or from pytest's ``caplog.text``."""
    return [
        float(line.split(f"| {key} ")[1].split()[0])
        for line in output.splitlines()
        if "| valid on 'valid' subset |" in line and f"| {key} " in line
    ]


def validation_sums(task, model, batches: int = 8):
    """The task's validation logging outputs over the first ``batches``
    batches, summed key by key, in float64."""
    criterion = MaskedLmLoss(MaskedLmConfig(), task)
    iterator = task.get_batch_iterator(task.dataset("valid"), max_sentences=16, seed=1).next_epoch_itr(shuffle=False)
    sums = {}
    with torch.no_grad():
        for _, sample in zip(range(batches), iterator):
            loss, _, log = task.valid_step(sample, model, criterion)
            for key, value in dict(log, criterion_loss=loss).items():
                if (torch.is_tensor(value) and value.dim() == 0) or isinstance(value, (int, float)):
                    sums[key] = sums.get(key, 0.0) + float(value)
    return sums


def per_kind_bits(sums, kind):
    return sums[f"kind_{kind}_loss"] / sums[f"kind_{kind}_count"] / math.log(2)


def test_kinds_split_the_predicted_positions_80_10_10(brown_task):
    sums = validation_sums(brown_task, FixedLogits(-brown_task.unigram_losses), batches=20)
    counts = np.array([sums[f"kind_{kind}_count"] for kind in KINDS])
    assert counts.sum() == sums["sample_size"]
    shares = counts / counts.sum()
    assert abs(shares[0] - 0.8) < 0.02 and abs(shares[1] - 0.1) < 0.015 and abs(shares[2] - 0.1) < 0.015, shares
    # the kinds partition the criterion's loss
    assert math.isclose(sum(sums[f"kind_{kind}_loss"] for kind in KINDS), sums["criterion_loss"], rel_tol=1e-5)


def test_a_model_that_ignores_context_scores_the_unigram_reference_exactly(brown_task):
    sums = validation_sums(brown_task, FixedLogits(-brown_task.unigram_losses))
    assert math.isclose(sums["kind_mask_loss"], sums["kind_mask_unigram"], rel_tol=1e-5)


def test_a_copying_model_gains_nothing_at_mask_but_wins_the_aggregate(brown_task):
    unigram = FixedLogits(-brown_task.unigram_losses)
    copier = FixedLogits(-brown_task.unigram_losses, copy_bonus=6.0)  # the input's id e^6 times likelier
    ignoring, copying = validation_sums(brown_task, unigram), validation_sums(brown_task, copier)
    # where the input shows the answer the copier gains bits ...
    assert per_kind_bits(copying, "unchanged") < 3 < 5 < per_kind_bits(ignoring, "unchanged")
    # ... so the aggregate over all predicted positions ranks it ahead, by more than 0.3 bit a token ...
    assert copying["criterion_loss"] < ignoring["criterion_loss"] - 0.3 * math.log(2) * ignoring["sample_size"]
    # ... while at <mask> it is no better than ignoring context (it wastes mass on <mask> itself)
    assert per_kind_bits(copying, "mask") >= per_kind_bits(ignoring, "mask")


def test_a_model_that_reads_its_neighbour_scores_near_zero_at_mask():
    settings = CopyTaskSettings(words=16, pairs=8, batch_size=32, steps=400, lr=3e-3, report_every=400)
    model = fit_copy_model("roberta", settings, encoder_layers=1)[0]
    dictionary = copy_dictionary(settings.words)
    mask_idx, pad = dictionary.index("<mask>"), dictionary.pad()
    tokens, masked = pair_batch(settings, dictionary, torch.Generator().manual_seed(123))
    src_tokens = tokens.masked_fill(masked, mask_idx)
    target = tokens.masked_fill(~masked, pad)
    with torch.no_grad():
        logits = model(src_tokens, masked_tokens=masked)[0]
    counts = torch.zeros(len(dictionary))
    counts[dictionary.nspecial : dictionary.nspecial + settings.words] = 100.0
    log = kind_logging_output(logits, src_tokens, target, mask_idx, pad, unigram_losses(counts, [mask_idx]))
    at_mask = float(log["kind_mask_loss"] / log["kind_mask_count"]) / math.log(2)
    unigram = float(log["kind_mask_unigram"] / log["kind_mask_count"]) / math.log(2)
    assert int(log["kind_mask_count"]) == int(masked.sum())
    assert unigram > math.log2(settings.words) - 0.01 and at_mask < 0.3, (at_mask, unigram)


def test_neighbour_counts_leave_one_out_and_back_off():
    # a stream where every piece predicts its successor: the two-neighbour model is near certain
    stream = np.tile(np.array([4, 5, 6, 7, 8]), 200)
    counts = NeighbourCounts.of_stream(stream, vocabulary=10, never_predicted=[0, 1, 2, 3])
    left, target, right = np.array([4, -1, -1]), np.array([5, 5, 5]), np.array([6, 6, -1])
    uni, near = counts.log2_probabilities(left, target, right, beta=1.0)
    assert np.allclose(uni, np.log2(201 / (1000 + 10)))  # add-one over the counted pieces
    assert near[0] > -0.01 and near[1] > -0.02 and near[2] == uni[2]  # both sides, one side, none
    # leave-one-out removes the occurrence itself: a triple seen once has no support left
    single = NeighbourCounts.of_stream(np.array([4, 5, 6, 7, 8, 4, 9, 6]), 10, [0, 1, 2, 3])
    _, held_out = single.log2_probabilities(np.array([4]), np.array([5]), np.array([6]), beta=1.0, held_out=True)
    _, seen = single.log2_probabilities(np.array([4]), np.array([5]), np.array([6]), beta=1.0)
    assert held_out[0] < seen[0] - 1


def test_valid_log_and_diagnostics_carry_the_masked_position_loss(brown_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_in_process(train_args(brown_data, tmp_path / "ckpt", updates=12, extra=["--best-checkpoint-metric", "loss_at_mask"]))
    output = caplog.text
    for key in ("loss_at_mask", "unigram_at_mask", "acc_at_mask", "loss_at_unchanged", "loss_at_random"):
        assert len(valid_log_values(output, key)) == 1, key
    scores = validation_scores(str(tmp_path / "ckpt" / "checkpoint_best.pt"), str(brown_data))
    assert abs(scores.at_mask.loss_bits - valid_log_values(output, "loss_at_mask")[0]) < 2e-3
    # the reference from the train split's counts is the task's, from dict.txt
    assert abs(scores.unigram_at_mask_bits - valid_log_values(output, "unigram_at_mask")[0]) < 2e-3
    kinds = (scores.at_mask, scores.at_unchanged, scores.at_random)
    total = sum(k.count for k in kinds)
    assert math.isclose(sum(k.loss_bits * k.count for k in kinds) / total, scores.all_predicted_bits, rel_tol=1e-5)
    assert scores.neighbours_at_mask_bits < scores.unigram_at_mask_bits - 1
    assert "reference at `<mask>`: train unigram" in scores.table()
    # the README's command prints the same table
    command = readme_command("scripts/score_checkpoint.py").strip().replace("[--split valid]", "")
    command = command.replace("CHECKPOINT", str(tmp_path / "ckpt" / "checkpoint_best.pt")).replace("DATA_DIR", str(brown_data))
    assert scores.table() in run_in_repo(command, tmp_path)
