"""Collapse detection: the spread of the predictions at the ``<mask>``
positions (the mean KL divergence of each from their average) is exactly
that divergence, 0 for one prediction everywhere and large for a model that
reads its input; the task warns once, naming --lr, when a run collapses
after its warm-up, and not while a healthy run sits on the unigram plateau;
fairseq's validation log and score_checkpoint.py carry the figure."""

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
from fairseq.logging import metrics
from test_masked_position_loss import FixedLogits, valid_log_values

from fairseq_maskplug.scoring.validation import validation_scores
from fairseq_maskplug.tasks.collapse import VALIDATIONS_IN_A_ROW, CollapseMonitor
from fairseq_maskplug.tasks.position_kinds import prediction_spread_bits, prediction_spread_sums
from harness import run_script, train_args, train_in_process
from maskplug_lab.diagnostics.copy_task import CopyTaskSettings, copy_dictionary, fit_copy_model, pair_batch


def spread_of(logits: torch.Tensor) -> float:
    sums = prediction_spread_sums(logits)
    return prediction_spread_bits(sums["probability_sum"], float(sums["entropy_sum"]), logits.size(0))


def test_the_spread_is_the_mean_kl_divergence_from_the_average_prediction():
    logits = torch.randn(50, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    p = F.softmax(logits, dim=-1)
    average = p.mean(0)
    direct = (p * (p.log() - average.log())).sum(-1).mean() / math.log(2)
    assert spread_of(logits) == pytest.approx(float(direct), rel=1e-5)
    assert spread_of(logits[:1].expand(50, -1)) == pytest.approx(0.0, abs=1e-6)  # one prediction everywhere
    # one-hot predictions of 4 equally frequent classes: KL = log2(4) each
    one_hot = torch.full((40, 4), -1e4).scatter_(1, torch.arange(40).remainder(4).unsqueeze(1), 0.0)
    assert spread_of(one_hot) == pytest.approx(2.0, abs=1e-4)


def figures(updates, loss=8.45, unigram=8.41, spread=0.0):
    return {"num_updates": updates, "loss_at_mask": loss, "unigram_at_mask": unigram, "spread_at_mask": spread}


def test_the_monitor_warns_once_after_warm_up_and_two_collapsed_validations():
    monitor = CollapseMonitor([0.003])
    for lr in (0.001, 0.002, 0.003):  # warm-up: the rate rises
        monitor.observe_lr(lr)
    assert monitor.observe_validation(figures(300)) is None  # collapsed, but in the warm-up
    monitor.observe_lr(0.0029)  # the rate falls: the warm-up is over
    assert monitor.observe_validation(figures(600)) is None  # one collapsed validation is not enough
    warning = monitor.observe_validation(figures(900, spread=0.0004))
    assert VALIDATIONS_IN_A_ROW == 2 and warning is not None
    assert "--lr 0.003" in warning and "collapsed" in warning and "update 900" in warning and "8.450" in warning
    assert monitor.observe_validation(figures(1200)) is None  # once per run


@pytest.mark.parametrize(
    "later, why",
    [
        (figures(900, spread=0.056), "a plateau still learning: its predictions differ between positions"),
        (figures(900, loss=8.2), "0.21 bit below the unigram: it reads something"),
    ],
)
def test_the_monitor_does_not_warn_about_a_run_that_has_not_collapsed(later, why):
    monitor = CollapseMonitor([0.003])
    monitor.observe_lr(0.003)
    monitor.observe_lr(0.002)
    assert monitor.observe_validation(figures(600)) is None
    assert monitor.observe_validation(later) is None, why
    assert monitor.observe_validation(figures(1200)) is None  # the run of collapsed validations starts again


class PositionLogits(FixedLogits):
    """``base`` plus a bonus of 3 nats for one id that depends on the position:
    predictions that differ between positions, whatever the input."""

    def forward(self, src_tokens, masked_tokens=None, **kwargs):
        logits = self.base.expand(*src_tokens.shape, -1).clone()
        ids = 4 + torch.arange(src_tokens.size(1)).remainder(50)
        logits[:, torch.arange(src_tokens.size(1)), ids] += 3.0
        return (logits if masked_tokens is None else logits[masked_tokens]), {}


def logged_validation(task, model, batches: int = 8) -> dict:
    """The task's validation figures as fairseq's validation logs them
    (valid_step and reduce_metrics per batch, one aggregate over the batches)."""
    criterion = MaskedLmLoss(MaskedLmConfig(), task)
    iterator = task.get_batch_iterator(task.dataset("valid"), max_sentences=16, seed=1).next_epoch_itr(shuffle=False)
    with torch.no_grad(), metrics.aggregate(new_root=True) as aggregate:
        for _, sample in zip(range(batches), iterator):
            task.reduce_metrics([task.valid_step(sample, model, criterion)[2]], criterion)
        return aggregate.get_smoothed_values()


def test_the_valid_log_spread_is_zero_for_one_prediction_everywhere_only(brown_task):
    constant = logged_validation(brown_task, FixedLogits(-brown_task.unigram_losses))
    assert constant["spread_at_mask"] == 0 and constant["spread_at_mask_ww"] == 0
    assert constant["loss_at_mask"] == pytest.approx(constant["unigram_at_mask"], abs=1e-3)
    varying = logged_validation(brown_task, PositionLogits(-brown_task.unigram_losses))
    assert varying["spread_at_mask"] > 0.3 and varying["spread_at_mask_ww"] > 0.3
    assert not any(key.startswith("_") for key in varying)  # the spread's sums stay out of the log


def test_a_model_that_reads_its_neighbour_has_a_large_spread():
    """The pair-copy model (it fills a <mask> from its neighbour): its
    predictions at <mask> differ between positions by bits, not by 1e-4."""
    settings = CopyTaskSettings(words=16, pairs=8, batch_size=32, steps=300, lr=3e-3, report_every=300)
    model = fit_copy_model("roberta", settings, encoder_layers=1)[0]
    dictionary = copy_dictionary(settings.words)
    tokens, masked = pair_batch(settings, dictionary, torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(tokens.masked_fill(masked, dictionary.index("<mask>")), masked_tokens=masked)[0]
    assert spread_of(logits) > 1.0


def test_a_collapsed_run_is_warned_about_and_scored_as_collapsed(brown_data, tmp_path, caplog):
    """MAE-LM at a rate far too high for it (lr 0.05, 60 updates, warm-up 6)
    collapses: the task warns once, naming --lr, the valid log's
    spread_at_mask is 0, and score_checkpoint.py says COLLAPSED."""
    args = train_args(brown_data, tmp_path, updates=60, batch_size=16,
                      extra=["--arch", "mae_lm_base", "--decoder-layers", "1", "--lr", "0.05", "--warmup-updates", "6",
                             "--validate-interval-updates", "20", "--leave-unmasked-prob", "0",
                             "--random-token-prob", "0"])  # fmt: skip
    with caplog.at_level(logging.INFO):
        train_in_process(args)
    warnings = [r.getMessage() for r in caplog.records if "collapsed to one prediction" in r.getMessage()]
    assert len(warnings) == 1 and "--lr 0.05" in warnings[0], warnings
    spreads = valid_log_values(caplog.text, "spread_at_mask")
    assert spreads and spreads[-1] < 0.01, spreads
    scores = validation_scores(str(tmp_path / "checkpoint_last.pt"), str(brown_data))
    assert scores.collapsed and scores.spread_at_mask_bits < 0.01
    printed = run_script("score_checkpoint.py", [tmp_path / "checkpoint_last.pt", "--data", brown_data]).stdout
    assert "spread of the predictions at <mask>" in printed and "COLLAPSED" in printed
