"""Fully-explored masking: disjoint covering segments, ratios, marginals, the
short-sequence rule, the dataset form, and training under fp16 (resume and
data-parallel: test_interrupted_training, test_data_parallel)."""

import logging
import math

import pytest
import torch
from test_masking import PAD, draws_for, make_batch, make_masker, word_start_table
from test_task_masking import batches

from fairseq_maskplug.masking import FullyExploredOptions, FullyExploredUnits
from harness import TOKENS_PER_SAMPLE, logged_values, train_args, train_in_process


def fully_explored_masks(masker, tokens, draws, options):
    return FullyExploredUnits(masker, options)(tokens, draws, 0)


def segments_of(masked, rows, K):
    """(rows, K, L) bool: which positions each copy predicts."""
    return masked.predicted.view(rows, K, -1)


@pytest.mark.parametrize("partition", ["random", "contiguous"])
@pytest.mark.parametrize("whole_words", [False, True])
def test_segments_are_disjoint_and_cover_every_maskable_position(partition, whole_words):
    tokens = make_batch(rows=64, length=48)
    masker = make_masker(word_starts=word_start_table() if whole_words else None)
    options = FullyExploredOptions(segments=5, partition=partition)
    for update in range(3):
        masked = fully_explored_masks(masker, tokens, draws_for(tokens, 1, update), options)
        per_copy = segments_of(masked, 64, 5)
        maskable = masked.maskable.view(64, 5, -1)[:, 0]
        assert torch.equal(per_copy.sum(1), maskable.long()), "each maskable position in exactly one copy"
        copies = masked.src_tokens.view(64, 5, -1)
        # outside its segment every copy holds the clean tokens
        outside = ~per_copy
        assert torch.equal(copies[outside], tokens.unsqueeze(1).expand_as(copies)[outside])


def test_whole_word_segments_never_split_a_word():
    tokens = make_batch(rows=64, length=48)
    masker = make_masker(word_starts=word_start_table())
    masked = fully_explored_masks(masker, tokens, draws_for(tokens), FullyExploredOptions(segments=4))
    maskable = masked.maskable.view(64, 4, -1)[:, 0]
    starts = maskable & ((tokens % 2 == 0) | torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True))
    word = starts.long().cumsum(1)
    copy_of_position = segments_of(masked, 64, 4).float().argmax(1)
    for row in range(64):
        for w in word[row][maskable[row]].unique():
            assert copy_of_position[row][maskable[row] & (word[row] == w)].unique().numel() == 1


def test_contiguous_segments_are_spans_in_order():
    tokens = make_batch(rows=32, length=48)
    masked = fully_explored_masks(make_masker(), tokens, draws_for(tokens), FullyExploredOptions(4, "contiguous"))
    per_copy = segments_of(masked, 32, 4)
    for row in range(32):
        positions = [per_copy[row, k].nonzero().flatten() for k in range(4)]
        for k in range(3):
            if len(positions[k]) and len(positions[k + 1]):
                assert positions[k].max() < positions[k + 1].min()


def test_segment_sizes_and_ratio_mode_sizes():
    tokens = make_batch(rows=64, length=48)
    masker = make_masker()
    seg = fully_explored_masks(masker, tokens, draws_for(tokens), FullyExploredOptions(6))
    n = seg.maskable.view(64, 6, -1)[:, 0].sum(1)
    sizes = segments_of(seg, 64, 6).sum(2)
    assert ((sizes == n.unsqueeze(1) // 6) | (sizes == (n.unsqueeze(1) + 5) // 6)).all()
    assert seg.predicted.sum().item() / seg.maskable.sum().item() == pytest.approx(1 / 6)

    ratio = fully_explored_masks(masker, tokens, draws_for(tokens), FullyExploredOptions(4, mask_size="ratio", mask_prob=0.15))
    sizes = segments_of(ratio, 64, 4).sum(2)
    per_copy = torch.ceil(n.double() * 0.15).long()
    assert torch.equal(sizes, per_copy.unsqueeze(1).expand(-1, 4))  # 4 × ceil(0.15 n) ≤ n here
    assert (segments_of(ratio, 64, 4).sum(1) <= 1).all(), "copies stay disjoint"


def test_marginal_selection_probability_is_one_over_k_under_random_partition():
    """Over 3000 updates, every maskable position of a fixed sequence lands in
    copy 0 with frequency 1/K within 4.5 standard errors (a position's segment
    is uniform over the K copies)."""
    K, draws = 4, 3000
    tokens = make_batch(rows=1, length=40, seed=3)
    masker = make_masker()
    hits = torch.zeros(tokens.size(1))
    for update in range(draws):
        masked = fully_explored_masks(masker, tokens, draws_for(tokens, 2, update), FullyExploredOptions(K))
        hits += masked.predicted[0].float()
    maskable = masked.maskable[0]
    frequency = hits[maskable] / draws
    standard_error = math.sqrt((1 / K) * (1 - 1 / K) / draws)
    assert (frequency - 1 / K).abs().max().item() < 4.5 * standard_error
    contiguous_hits = torch.zeros(tokens.size(1))
    for update in range(50):
        masked = fully_explored_masks(masker, tokens, draws_for(tokens, 2, update), FullyExploredOptions(K, "contiguous"))
        contiguous_hits += masked.predicted[0].float()
    assert contiguous_hits[maskable][0] == 50  # contiguous: the first position is always in copy 0


def test_sequences_shorter_than_k_get_one_unit_per_segment():
    """Rule: a sequence with n < K units gets n one-unit segments; its other
    K − n copies predict nothing."""
    tokens = torch.full((2, 10), PAD)
    tokens[0, :5] = torch.tensor([0, 10, 11, 12, 2])  # 3 maskable tokens
    tokens[1, :2] = torch.tensor([0, 2])  # none
    masked = fully_explored_masks(make_masker(), tokens, draws_for(tokens), FullyExploredOptions(5))
    sizes = segments_of(masked, 2, 5).sum(2)
    assert sorted(sizes[0].tolist()) == [0, 0, 1, 1, 1]
    assert sizes[1].tolist() == [0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(segments=1), r"`segments` must be at least 2, got 1"),
        (dict(segments=7, mask_size="ratio", mask_prob=0.15), r"`segments` × `mask_prob` ≤ 1 .* 7 × 0.15 = 1.05"),
        (dict(segments=3, partition="blocks"), r"`partition` must be one of random, contiguous"),
    ],
)
def test_invalid_fully_explored_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FullyExploredOptions(**kwargs)


def test_dataset_form_masks_like_the_task(brown_data):
    """FullyExploredMaskingDataset's collater emits exactly the task path's
    copies for the same (seed, epoch = update, ids)."""
    from fairseq_maskplug.data.fully_explored_dataset import FullyExploredMaskingDataset
    from fairseq_maskplug.tasks.masked_lm_plus import FullyExploredMaskedLMConfig, FullyExploredMaskedLMTask

    task = FullyExploredMaskedLMTask.setup_task(
        FullyExploredMaskedLMConfig(
            data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=3, fe_segments=4, mask_whole_words=True
        )
    )
    task.load_dataset("train")
    blocks = task.dataset("train").dataset.defn["net_input.src_tokens"].dataset
    dataset = FullyExploredMaskingDataset(
        blocks, task.dictionary, task.mask_idx, task.train_strategy.options, seed=3, whole_words=True
    )
    dataset.set_epoch(5)
    sample = next(batches(task, batch_size=8))
    from_task = task.mask_sample(sample, task.training_masks(sample, 5))
    from_dataset = dataset.collater([dataset[i] for i in sample["id"].tolist()])
    assert torch.equal(from_task["net_input"]["src_tokens"], from_dataset["net_input"]["src_tokens"])
    assert torch.equal(from_task["target"], from_dataset["target"])
    assert from_dataset["nsentences"] == 32 and from_task["nsentences"] == 32
    assert torch.equal(from_dataset["id"], from_task["id"])


def fe_args(data, save_dir, **kwargs):
    return train_args(data, save_dir, task="fully_explored_masked_lm", **kwargs)


def test_fully_explored_trains_under_memory_efficient_fp16(brown_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_in_process(fe_args(brown_data, tmp_path / "fp16", updates=6, batch_size=4, extra=["--memory-efficient-fp16"]))
    losses = logged_values(caplog.text, "loss")
    assert losses and all(math.isfinite(x) for x in losses)
