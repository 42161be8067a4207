"""masked_lm_plus on Brown batches: statistics against stock MaskTokensDataset,
whole words, and the seeding rule (seed, update, sample ids)."""

import pytest
import torch
from fairseq.data import MaskTokensDataset
from test_masking import uniform

from fairseq_maskplug.data.vocabulary import word_start_table
from fairseq_maskplug.tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask
from harness import TOKENS_PER_SAMPLE


def batches(task, split="train", batch_size=32, limit=None):
    itr = task.get_batch_iterator(
        task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(), seed=1
    ).next_epoch_itr(shuffle=False)
    for i, sample in enumerate(itr):
        if limit is not None and i >= limit:
            return
        yield sample


def shares(predicted, masked, randomised, kept):
    n = predicted.sum().item()
    return n, masked.sum().item() / n, randomised.sum().item() / n, kept.sum().item() / n


def test_mask_statistics_match_stock_mask_tokens_dataset(brown_task):
    """Same Brown blocks, masked by masked_lm_plus and by stock MaskTokensDataset.

    Tolerances (about 100k predicted tokens each): realised ratio 0.15 ± 0.003,
    <mask>/random/kept shares 0.8/0.1/0.1 ± 0.01. Both select <s> and </s>
    like any token: the ratio counts every token and the share of predicted
    positions that are <s>/</s> is stock's (± 0.005).
    """
    task = brown_task
    d = task.dictionary
    blocks = task.dataset("train").dataset.defn["net_input.src_tokens"].dataset  # clean <s>-prefixed blocks
    stock_src, stock_tgt = MaskTokensDataset.apply_mask(
        blocks,
        d,
        pad_idx=d.pad(),
        mask_idx=task.mask_idx,
        seed=1,
        mask_prob=0.15,
        leave_unmasked_prob=0.1,
        random_token_prob=0.1,
    )
    ours = {"predicted": 0, "maskable": 0, "mask": 0, "random": 0, "kept": 0, "specials": 0}
    stock = {"predicted": 0, "tokens": 0, "mask": 0, "random": 0, "kept": 0, "specials": 0}
    specials = torch.tensor([d.bos(), d.eos()])
    samples = list(batches(task))
    for update in range(3 * len(samples)):  # three passes: fresh masks each (update number / epoch)
        sample = samples[update % len(samples)]
        stock_src.set_epoch(1 + update // len(samples))
        stock_tgt.set_epoch(1 + update // len(samples))
        m = uniform(task.train_masker, sample["net_input"]["src_tokens"], 0.15, task.train_draws(sample, update))
        ours["specials"] += torch.isin(sample["net_input"]["src_tokens"][m.predicted], specials).sum().item()
        c = m.corruption
        for key, value in (
            ("predicted", m.predicted),
            ("maskable", m.maskable),
            ("mask", c.replaced_by_mask),
            ("random", c.replaced_by_random),
            ("kept", c.kept),
        ):
            ours[key] += value.sum().item()
        for index in sample["id"].tolist():
            clean, src, tgt = blocks[index], stock_src[index], stock_tgt[index]
            predicted = tgt != d.pad()
            stock["predicted"] += predicted.sum().item()
            stock["tokens"] += len(clean)
            stock["mask"] += (src[predicted] == task.mask_idx).sum().item()
            stock["kept"] += (src[predicted] == clean[predicted]).sum().item()
            stock["specials"] += torch.isin(clean[predicted], specials).sum().item()
        stock["random"] = stock["predicted"] - stock["mask"] - stock["kept"]
    print(f"masked_lm_plus: {ours}\nstock MaskTokensDataset: {stock}")  # shown with pytest -s
    assert ours["predicted"] > 90_000
    assert abs(ours["predicted"] / ours["maskable"] - 0.15) < 0.003
    assert abs(stock["predicted"] / stock["tokens"] - 0.15) < 0.003
    for key, share in (("mask", 0.8), ("random", 0.1), ("kept", 0.1)):
        assert abs(ours[key] / ours["predicted"] - share) < 0.01, key
        # stock's "kept" includes random draws that hit the original id; the bound covers that
        assert abs(stock[key] / stock["predicted"] - share) < 0.01, key
    assert ours["maskable"] == stock["tokens"]  # every token of the blocks, padding aside
    assert abs(ours["specials"] / ours["predicted"] - stock["specials"] / stock["predicted"]) < 0.005
    assert stock["specials"] / stock["predicted"] > 0.02


def test_never_mask_bos_eos_keeps_them_out_of_the_training_masks_only(brown_data):
    """--never-mask-bos-eos: <s> and </s> are never selected for training
    (0.2's masks; the Masker's refusal of its special ids: test_masking.py);
    without it they are; the validation masks never select them either way."""
    for never in (False, True):
        task = MaskedLMPlusTask.setup_task(MaskedLMPlusConfig(
            data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1, never_mask_bos_eos=never
        ))  # fmt: skip
        task.load_dataset("train")
        specials = torch.tensor([task.dictionary.bos(), task.dictionary.eos()])
        predicted_specials = {"train": 0, "valid": 0}
        for update, sample in enumerate(batches(task, limit=10)):
            tokens = sample["net_input"]["src_tokens"]
            for split, masked in (("train", task.training_masks(sample, update)), ("valid", task.validation_masks(sample))):
                predicted_specials[split] += torch.isin(tokens[masked.predicted], specials).sum().item()
        assert predicted_specials["valid"] == 0
        assert (predicted_specials["train"] == 0) == never, predicted_specials


def test_whole_word_masking_on_brown_never_splits_a_word(brown_data):
    task = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, mask_whole_words=True, seed=1)
    )
    task.load_dataset("train")
    starts_table = word_start_table(task.dictionary)
    checked_words = 0
    for update, sample in enumerate(batches(task, limit=20)):
        tokens = sample["net_input"]["src_tokens"]
        m = uniform(task.train_masker, tokens, 0.15, task.train_draws(sample, update))
        for row in range(tokens.size(0)):
            maskable = m.maskable[row]
            begins = maskable & (starts_table[tokens[row]] | torch.cat([torch.tensor([True]), ~maskable[:-1]]))
            word_id = begins.long().cumsum(0)
            for w in torch.unique(word_id[maskable]):
                picked = m.predicted[row][maskable & (word_id == w)]
                assert picked.all() or not picked.any()
                checked_words += 1
    assert checked_words > 5000


def test_train_masks_depend_on_seed_update_and_ids_only(brown_task):
    task = brown_task
    sample = next(batches(task))
    first = task.mask_sample(sample, task.training_masks(sample, 7))
    again = task.mask_sample(sample, task.training_masks(sample, 7))
    later = task.mask_sample(sample, task.training_masks(sample, 8))
    assert torch.equal(first["net_input"]["src_tokens"], again["net_input"]["src_tokens"])
    assert torch.equal(first["target"], again["target"])
    assert not torch.equal(first["target"], later["target"])
    assert sample["net_input"]["src_tokens"].ne(first["net_input"]["src_tokens"]).any()  # the input is clean


def test_validation_mask_is_fixed_and_standard(brown_data):
    """The validation mask ignores the training options and the batch layout:
    the same masks for every sequence with seed 5, whole words, 30 %, 70/30/0
    and frequency-weighted replacement as with the defaults, in batches of 48
    instead of 16."""
    default = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1)
    )
    unusual = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(
            data=str(brown_data),
            tokens_per_sample=TOKENS_PER_SAMPLE,
            seed=5,
            mask_prob=0.3,
            mask_whole_words=True,
            leave_unmasked_prob=0.0,
            random_token_prob=0.3,
            freq_weighted_replacement=True,
        )
    )
    masked_rows = []
    for task in (default, unusual):
        task.load_dataset("valid")
        rows = {}
        for sample in batches(task, "valid", batch_size=16 if task is default else 48):
            masked = task.mask_sample(sample, task.validation_masks(sample))
            lengths = sample["net_input"]["src_lengths"].tolist()
            for row, (index, n) in enumerate(zip(sample["id"].tolist(), lengths)):
                rows[index] = masked["net_input"]["src_tokens"][row, :n]
        masked_rows.append(rows)
    assert masked_rows[0].keys() == masked_rows[1].keys()
    for index, tokens in masked_rows[0].items():
        assert torch.equal(tokens, masked_rows[1][index])
    mask_share = torch.cat(list(masked_rows[0].values())).eq(default.mask_idx).float().mean().item()
    assert abs(mask_share - 0.15 * 0.8) < 0.01


def test_word_start_table_marks_sentencepiece_word_pieces(brown_task):
    d = brown_task.dictionary
    table = word_start_table(d)
    assert table[d.index("\u2581the")]
    assert table[d.bos()] and table[d.eos()] and not table[brown_task.mask_idx]  # specials: a word each, as in fairseq
    continuation = [i for i, s in enumerate(d.symbols) if i >= d.nspecial and not s.startswith("\u2581")][0]
    assert not table[continuation]
    assert 0.3 < table.float().mean().item() < 0.95


def test_frequency_weighted_replacement_follows_dictionary_counts(brown_data):
    """With --freq-weighted-replacement, '▁the' (the most frequent piece) takes
    its dict.txt share of the random replacements (±25 % relative over ~20k
    draws); uniform replacement gives it about 1/V."""
    shares = {}
    for weighted in (False, True):
        task = MaskedLMPlusTask.setup_task(
            MaskedLMPlusConfig(
                data=str(brown_data),
                tokens_per_sample=TOKENS_PER_SAMPLE,
                seed=1,
                random_token_prob=0.5,
                leave_unmasked_prob=0.0,
                freq_weighted_replacement=weighted,
            )
        )
        task.load_dataset("train")
        the, drawn, total = task.dictionary.index("\u2581the"), 0, 0
        for update, sample in enumerate(batches(task, limit=60)):
            m = uniform(task.train_masker, sample["net_input"]["src_tokens"], 0.3, task.train_draws(sample, update))
            replaced = m.src_tokens[m.corruption.replaced_by_random]
            drawn += (replaced == the).sum().item()
            total += replaced.numel()
        shares[weighted] = drawn / total
    counts = torch.tensor(task.dictionary.count[task.dictionary.nspecial :], dtype=torch.float64)
    expected = task.dictionary.count[the] / counts.sum().item()
    assert total > 15_000
    assert abs(shares[True] - expected) < 0.25 * expected
    assert shares[False] < 0.2 * expected


def test_sharded_data_paths_rotate_by_epoch(brown_data, tmp_path):
    """data=A:B reads A in epoch 1 and B in epoch 2, as stock masked_lm does."""
    import shutil

    shard = tmp_path / "shard2"
    shard.mkdir()
    shutil.copy(brown_data / "dict.txt", shard / "dict.txt")
    for ext in ("bin", "idx"):
        shutil.copy(brown_data / f"valid.{ext}", shard / f"train.{ext}")
    task = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(data=f"{brown_data}:{shard}", tokens_per_sample=TOKENS_PER_SAMPLE, seed=1)
    )
    task.load_dataset("train", epoch=1)
    first = len(task.dataset("train"))
    task.load_dataset("train", epoch=2)
    second = len(task.dataset("train"))
    task.load_dataset("valid")
    assert first > second == len(task.dataset("valid"))


def masked_runs(predicted_rows):
    """Lengths of the runs of consecutive predicted positions."""
    runs = []
    for row in predicted_rows:
        length = 0
        for flag in row.tolist() + [False]:
            if flag:
                length += 1
            elif length:
                runs.append(length)
                length = 0
    return runs


@pytest.mark.parametrize("length,stdev", [(3, 0.0), (3, 1.0)])
def test_span_masking_statistics_match_stock_mask_tokens_dataset(brown_data, length, stdev):
    """--mask-multiple-length / --mask-stdev: on the same Brown blocks, the
    realised share of predicted tokens (of the non-special ones) and the mean
    length of runs of predicted tokens agree with stock MaskTokensDataset's
    (± 0.01 and ± 5 %); overlaps make both fall below --mask-prob alike."""
    task = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1,
                           mask_multiple_length=length, mask_stdev=stdev)
    )  # fmt: skip
    task.load_dataset("train")
    d = task.dictionary
    blocks = task.dataset("train").dataset.defn["net_input.src_tokens"].dataset
    _, stock_tgt = MaskTokensDataset.apply_mask(
        blocks, d, pad_idx=d.pad(), mask_idx=task.mask_idx, seed=1, mask_prob=0.15,
        leave_unmasked_prob=0.1, random_token_prob=0.1, mask_multiple_length=length, mask_stdev=stdev,
    )  # fmt: skip
    ours = {"predicted": 0, "maskable": 0, "runs": []}
    stock = {"predicted": 0, "maskable": 0, "runs": []}
    for update, sample in enumerate(batches(task, limit=40)):
        tokens = sample["net_input"]["src_tokens"]
        m = task.training_masks(sample, update)
        maskable = m.maskable
        ours["predicted"] += m.predicted.sum().item()
        ours["maskable"] += maskable.sum().item()
        ours["runs"] += masked_runs(m.predicted)
        stock_tgt.set_epoch(1 + update)
        stock_rows = []
        for row, index in enumerate(sample["id"].tolist()):
            target = stock_tgt[index]
            predicted = torch.zeros_like(maskable[row])
            predicted[: len(target)] = target.ne(d.pad())
            predicted &= maskable[row]  # stock may also take <s>/</s>; compare on the same positions
            stock_rows.append(predicted)
        stock_predicted = torch.stack(stock_rows)
        stock["predicted"] += stock_predicted.sum().item()
        stock["maskable"] += maskable.sum().item()
        stock["runs"] += masked_runs(stock_predicted)
        assert tokens.shape == m.src_tokens.shape
    ratios = {name: r["predicted"] / r["maskable"] for name, r in (("ours", ours), ("stock", stock))}
    run_means = {name: sum(r["runs"]) / len(r["runs"]) for name, r in (("ours", ours), ("stock", stock))}
    print(f"spans of {length} (stdev {stdev}): ratio ours {ratios['ours']:.4f} stock {ratios['stock']:.4f}; "
          f"mean run ours {run_means['ours']:.3f} stock {run_means['stock']:.3f}")  # fmt: skip
    assert ours["predicted"] > 10_000
    assert abs(ratios["ours"] - ratios["stock"]) < 0.01 and ratios["ours"] < 0.15
    assert abs(run_means["ours"] / run_means["stock"] - 1) < 0.05


def test_spans_follow_a_schedule_and_never_split_whole_words(brown_data):
    task = MaskedLMPlusTask.setup_task(
        MaskedLMPlusConfig(data=str(brown_data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1, mask_multiple_length=2,
                           mask_whole_words=True, mask_schedule="linear", max_update=100)
    )  # fmt: skip
    task.load_dataset("train")
    starts_table = word_start_table(task.dictionary)
    realised = []
    for update, sample in zip((0, 90), batches(task, limit=2)):
        tokens = sample["net_input"]["src_tokens"]
        m = task.training_masks(sample, update)
        realised.append(m.predicted.sum().item() / m.maskable.sum().item())
        for row in range(tokens.size(0)):
            maskable = m.maskable[row]
            begins = maskable & (starts_table[tokens[row]] | torch.cat([torch.tensor([True]), ~maskable[:-1]]))
            word_id = begins.long().cumsum(0)
            for w in torch.unique(word_id[maskable]):
                picked = m.predicted[row][maskable & (word_id == w)]
                assert picked.all() or not picked.any()
    assert realised[0] > 2.5 * realised[1]  # 0.30 at update 0, 0.03 at 90 of 100
