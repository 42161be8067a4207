"""The one protocol between masked_lm_plus and its criterion
(criterions/masking_criterion.py): stock ``masked_lm`` becomes the protocol's
criterion with the same loss, bit for bit; POS weighting takes the predicted
tokens' losses the criterion returns (no forward hook on the model, in
training or validation); MAPNet's proposal state is the criterion's,
stepped and checkpointed through the task (exact resume:
test_interrupted_training, test_data_parallel)."""

from argparse import Namespace

import pytest
import torch
from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss
from omegaconf import OmegaConf
from test_task_masking import batches
from test_time_variant import pos_task

from fairseq_maskplug.criterions.masking_criterion import MaskedLmPlusLoss, TrainingBatch
from fairseq_maskplug.masking import MaskingStep
from maskplug_lab.experiments.configurations import TINY


def tiny_roberta(task):
    size = TINY.encoder
    torch.manual_seed(0)
    return task.build_model(Namespace(arch="roberta", _name="roberta", encoder_layers=size.layers,
                                      encoder_embed_dim=size.dim, encoder_ffn_embed_dim=size.ffn,
                                      encoder_attention_heads=size.heads, max_positions=TINY.tokens_per_sample,
                                      dropout=0.0, attention_dropout=0.0))  # fmt: skip


class PlainBackward:
    """What train_step needs of fairseq's optimizer: backward."""

    def backward(self, loss):
        loss.backward()


@pytest.fixture(scope="module")
def ptw(brown_pos_data):
    """A POS-weighted task with train and valid loaded, a tiny RoBERTa, and
    the criterion the task builds for ``--criterion masked_lm``."""
    task = pos_task(brown_pos_data)
    task.load_dataset("train")
    task.load_dataset("valid")
    model = tiny_roberta(task)
    criterion = task.build_criterion(OmegaConf.create({"_name": "masked_lm", "tpu": False}))
    return task, model, criterion


def test_stock_masked_lm_becomes_the_protocols_criterion_with_the_same_loss(ptw):
    """The task builds MaskedLmPlusLoss for --criterion masked_lm; on the
    same masked batch its loss, sample size and logging output are stock
    MaskedLmLoss's, bit for bit, and its per-token losses are one per
    predicted token and sum to the loss."""
    task, model, criterion = ptw
    assert type(criterion) is MaskedLmPlusLoss and not criterion.draws_masks
    model.train()
    stock = MaskedLmLoss(MaskedLmConfig(tpu=False), task)
    for update, sample in enumerate(batches(task, limit=3)):
        masked = task.training_masks(sample, update)
        masked_sample = task.mask_sample(sample, masked)
        step = MaskingStep(task.train_draws(sample, update), update)
        torch.manual_seed(update)
        ours = criterion.train_forward(model, TrainingBatch(masked_sample, step, masked, token_losses=True))
        torch.manual_seed(update)
        loss, sample_size, logging_output = stock(model, masked_sample)
        assert torch.equal(ours.loss, loss) and torch.equal(ours.sample_size, sample_size)
        assert ours.logging_output.keys() == logging_output.keys()
        assert all(torch.equal(torch.as_tensor(ours.logging_output[k]), torch.as_tensor(v)) for k, v in logging_output.items())
        assert ours.token_losses.shape == (int(masked.predicted.sum()),)
        assert torch.allclose(ours.token_losses.sum(), loss.float(), rtol=1e-5)


def test_pos_weighting_takes_the_criterions_token_losses_without_hooking_the_model(ptw, monkeypatch):
    """A training step and a validation step with POS weighting register no
    forward hook (the registration raises); the update's per-tag sums are the
    criterion's token losses, summed per tag of the predicted tokens."""
    task, model, criterion = ptw

    def refuse(*args, **kwargs):
        raise AssertionError("a forward hook was registered")

    monkeypatch.setattr(torch.nn.Module, "register_forward_hook", refuse)
    sample = next(batches(task, limit=1))
    update = 4
    masked = task.training_masks(sample, update)
    model.zero_grad(set_to_none=True)
    loss, _, logging_output = task.train_step(sample, model, criterion, PlainBackward(), update)
    tags = task.pos_weighting.classes(sample["pos"])[masked.predicted]  # -1: <s>, </s> (selectable, untagged)
    masked_sample = task.mask_sample(sample, masked)
    step = MaskingStep(task.train_draws(sample, update), update)
    token_losses = criterion.train_forward(model, TrainingBatch(masked_sample, step, masked, True)).token_losses
    assert torch.allclose(token_losses.sum(), loss.detach().float(), rtol=1e-5)
    tagged, classes = tags >= 0, len(task.pos_weighting.tags)
    expected_sums = torch.zeros(classes).index_add_(0, tags[tagged], token_losses[tagged])
    sums, counts = task.pos_weighting.pending
    assert torch.equal(counts, torch.bincount(tags[tagged], minlength=classes).float())
    assert torch.allclose(sums, expected_sums, rtol=1e-5) and sums.sum() > 0
    assert torch.equal(logging_output["pos_counts"], counts)
    task.pos_weighting.pending = None  # this test's update never ends
    valid = next(iter(task.get_batch_iterator(task.dataset("valid"), max_sentences=8, seed=1).next_epoch_itr(shuffle=False)))
    valid_loss, _, valid_output = task.valid_step(valid, model, criterion)
    assert valid_output["pos_counts"].sum() == valid_output["mask_predicted"] > 0  # validation never predicts <s>, </s>
    assert torch.allclose(valid_output["pos_loss_sums"].sum(), valid_loss.float(), rtol=1e-5)
