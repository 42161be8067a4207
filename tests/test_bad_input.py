"""The catalogue of bad input. Every option of every registered piece (the
tasks, the mapnet_masked_lm criterion, the mae_lm model) with an invalid
value, and broken data: each fails before the first update with a message that
names the option or file and what would be valid, or behaves as documented
(tested here too). Nothing the user had is overwritten."""

import re
import shutil
from dataclasses import fields

import pytest

from fairseq_maskplug.criterions.mapnet_masked_lm import MapnetMaskedLMConfig
from fairseq_maskplug.errors import CorpusError
from fairseq_maskplug.models.mae_lm import DECODER_OPTIONS
from fairseq_maskplug.tasks.config import MaskedLMPlusConfig
from harness import run_script, train_args, train_in_process
from maskplug_lab.corpus.prepare import PrepareOptions, binarize, prepare_corpus
from maskplug_lab.experiments.configurations import method_flags

MAPNET = method_flags("mapnet")
MAE = method_flags("mae_lm")
FE = ["--masking", "fully_explored"]
POS = ["--content-weighting", "pos"]


def invalid_choice(value, *valid):
    """argparse's refusal of ``value``, listing (in any order) ``valid``."""
    return rf"invalid choice: '{value}' \(choose from " + "".join(f"(?=[^)]*'{v}')" for v in valid)


# option -> [(flags, message regex)]; the option's own flag is among the flags
OPTION_CATALOGUE = {
    # masked_lm_plus (and its presets), options inherited from stock masked_lm
    "data": [(["--task", "masked_lm_plus"], r"no dict.txt in the data directory .*nowhere.*prepare_corpus.py")],
    "sample_break_mode": [
        (["--sample-break-mode", "sentence"], invalid_choice("sentence", "none", "complete", "complete_doc", "eos")),
        (
            ["--sample-break-mode", "eos"],
            r"--sample-break-mode eos fails in fairseq 0.12 under numpy 2.* use none, complete or complete_doc",
        ),
    ],
    "tokens_per_sample": [
        (["--tokens-per-sample", "1"], r"--tokens-per-sample must be at least 2 \(<s> and one token\), got 1"),
        (
            ["--tokens-per-sample", "128"],
            r"--tokens-per-sample 128 exceeds the model's --max-positions 64"
            r".*lower --tokens-per-sample or raise --max-positions",
        ),
    ],
    "mask_prob": [
        (["--mask-prob", "0"], r"--mask-prob must lie in \(0, 1\), got 0.0"),
        (["--mask-prob", "1"], r"--mask-prob must lie in \(0, 1\), got 1.0"),
        (["--mask-prob", "-0.1"], r"--mask-prob must lie in \(0, 1\), got -0.1"),
    ],
    "leave_unmasked_prob": [
        (["--leave-unmasked-prob", "1.2"], r"--leave-unmasked-prob must lie in \[0, 1\], got 1.2"),
        (
            ["--leave-unmasked-prob", "0.6", "--random-token-prob", "0.5"],
            r"--leave-unmasked-prob \+ --random-token-prob must be at most 1 .*got 0.6 \+ 0.5",
        ),
    ],
    "random_token_prob": [(["--random-token-prob", "-0.5"], r"--random-token-prob must lie in \[0, 1\], got -0.5")],
    "mask_multiple_length": [
        (["--mask-multiple-length", "0"], r"--mask-multiple-length must be at least 1, got 0"),
        ([*FE, "--mask-multiple-length", "3"], r"span masking\) need --masking random: fully-explored copies partition"),
        ([*POS, "--mask-multiple-length", "3"], r"span masking\) cannot be combined with --content-weighting pos"),
        ([*MAPNET, "--mask-multiple-length", "3"], r"mapnet_masked_lm draws its own masks: .*no span masking"),
    ],
    "mask_stdev": [(["--mask-stdev", "-1.0"], r"--mask-stdev must be >= 0, got -1.0")],
    "shorten_method": [
        (["--shorten-method", "cut"], invalid_choice("cut", "none", "truncate", "random_crop")),
        (
            [*POS, "--shorten-method", "truncate"],
            r"--content-weighting pos cannot follow --shorten-method .*use --shorten-method none",
        ),
    ],
    "seed": [(["--seed", "-1"], r"Seed must be between 0 and 2\*\*32 - 1")],  # numpy's, as fairseq-train seeds it
    "include_target_tokens": [
        (["--include-target-tokens"], r"--d2v2-multi / --include-target-tokens / --skip-masking are data2vec options")
    ],
    "d2v2_multi": [(["--d2v2-multi"], r"--d2v2-multi / --include-target-tokens / --skip-masking are data2vec options")],
    "skip_masking": [(["--skip-masking"], r"--d2v2-multi / --include-target-tokens / --skip-masking are data2vec options")],
    # masked_lm_plus's own options
    "valid_mask_prob": [
        (["--valid-mask-prob", "0"], r"--valid-mask-prob must lie in \(0, 1\), got 0.0"),
        (["--valid-mask-prob", "1.5"], r"--valid-mask-prob must lie in \(0, 1\), got 1.5"),
    ],
    "valid_mask_seed": [(["--valid-mask-seed", "-2"], r"--valid-mask-seed must be >= 0 \(and < 2\*\*32\), got -2")],
    "valid_whole_words": [(["--valid-whole-words", "maybe"], invalid_choice("maybe", "auto", "yes", "no"))],
    "masking": [(["--masking", "spans"], invalid_choice("spans", "random", "fully_explored"))],
    "fe_segments": [
        ([*FE, "--fe-segments", "1"], r"--fe-segments must be at least 2, got 1"),
        ([*FE, "--fe-segments", "-3"], r"--fe-segments must be at least 2, got -3"),
        (
            [*FE, "--fe-segments", "65"],
            r"--fe-segments 65 is larger than any sequence can hold: --tokens-per-sample 64 leaves at most 64",
        ),
        (
            [*FE, "--fe-segments", "63", "--never-mask-bos-eos"],
            r"--fe-segments 63 is larger than any sequence can hold: --tokens-per-sample 64 leaves at most 62",
        ),
        (["--fe-segments", "3"], r"--fe-segments needs --masking fully_explored"),
    ],
    "fe_partition": [([*FE, "--fe-partition", "blocks"], invalid_choice("blocks", "random", "contiguous"))],
    "fe_mask_size": [
        ([*FE, "--fe-mask-size", "half"], invalid_choice("half", "segment", "ratio")),
        (
            [*FE, "--fe-mask-size", "ratio", "--fe-segments", "7"],
            r"--fe-mask-size ratio needs --fe-segments × --mask-prob ≤ 1 .*7 × 0.15 = 1.05",
        ),
    ],
    "mask_schedule": [
        (["--mask-schedule", "exponential"], invalid_choice("exponential", "constant", "linear", "cosine", "lin_warm_decay")),
        ([*FE, "--mask-schedule", "linear"], r"--mask-schedule linear needs --masking random"),
    ],
    "mask_schedule_start": [
        (["--mask-schedule", "linear", "--mask-schedule-start", "1.2"], r"--mask-schedule-start must lie in \[0, 1\), got 1.2")
    ],
    "mask_schedule_end": [
        (["--mask-schedule", "linear", "--mask-schedule-end", "-0.1"], r"--mask-schedule-end must lie in \[0, 1\), got -0.1")
    ],
    "mask_schedule_updates": [
        (
            ["--mask-schedule", "linear", "--mask-schedule-updates", "-5"],
            r"--mask-schedule-updates must be >= 0 \(0 = --max-update\), got -5",
        )
    ],
    "mask_schedule_warmup": [
        (["--mask-schedule", "lin_warm_decay"], r"lin_warm_decay needs 0 < --mask-schedule-warmup < 20, got 0"),
        (
            ["--mask-schedule", "lin_warm_decay", "--mask-schedule-warmup", "20"],
            r"lin_warm_decay needs 0 < --mask-schedule-warmup < 20, got 20",
        ),
    ],
    "content_weighting": [
        (["--content-weighting", "tfidf"], invalid_choice("tfidf", "none", "pos")),
        (POS, r"--content-weighting pos needs the POS side input, .*pos/dict.txt does not exist.*--pos"),
        ([*FE, *POS], r"--content-weighting pos needs --masking random"),
    ],
    "pos_selection": [([*POS, "--pos-selection", "greedy"], invalid_choice("greedy", "reference", "race"))],
    "pos_momentum": [([*POS, "--pos-momentum", "1"], r"--pos-momentum must lie in \[0, 1\), got 1.0")],
    "pos_temperature": [([*POS, "--pos-temperature", "-1"], r"--pos-temperature must be >= 0, got -1.0")],
    # mapnet_masked_lm
    "mapnet_layers": [([*MAPNET, "--mapnet-layers", "0"], r"--mapnet-layers must be at least 1, got 0")],
    "mapnet_embed_dim": [
        (
            [*MAPNET, "--mapnet-embed-dim", "128"],
            r"--mapnet-embed-dim 128 is wider than the model \(64\) whose embeddings it reads.*--mapnet-own-embeddings",
        ),
        ([*MAPNET, "--mapnet-embed-dim", "-8"], r"--mapnet-embed-dim must be >= 0 \(0 = half the model's width\), got -8"),
    ],
    "mapnet_heads": [
        ([*MAPNET, "--mapnet-heads", "3"], r"--mapnet-embed-dim 32 must be divisible by --mapnet-heads 3"),
        ([*MAPNET, "--mapnet-heads", "-1"], r"--mapnet-heads must be >= 0 \(0 = width / 32\), got -1"),
    ],
    "mapnet_weights": [
        (
            [*MAPNET, "--mapnet-weights", "unbiased"],
            invalid_choice("unbiased", "inclusion", "exact_ordered", "exact_ordered_clipped", "product_clipped"),
        ),
        (
            [*MAPNET, "--mapnet-uniform-share", "0"],
            r"--mapnet-weights inclusion needs --mapnet-uniform-share > 0 or --mapnet-proposal-floor > 0",
        ),
    ],
    "mapnet_objective": [([*MAPNET, "--mapnet-objective", "ppo"], invalid_choice("ppo", "regression", "reinforce"))],
    "mapnet_proxy": [([*MAPNET, "--mapnet-proxy", "norm"], invalid_choice("norm", "logit_gradient", "loss"))],
    "mapnet_uniform_share": [
        ([*MAPNET, "--mapnet-uniform-share", "1.5"], r"--mapnet-uniform-share must lie in \[0, 1\], got 1.5")
    ],
    "mapnet_lr": [([*MAPNET, "--mapnet-lr", "0"], r"--mapnet-lr must be > 0, got 0.0")],
    "mapnet_clip_norm": [
        ([*MAPNET, "--mapnet-clip-norm", "-1"], r"--mapnet-clip-norm must be >= 0 \(0: no clipping\), got -1.0")
    ],
    "mapnet_clip": [
        ([*MAPNET, "--mapnet-clip", "1.5"], r"--mapnet-clip must lie in \(0, 1\), got 1.5"),
        ([*MAPNET, "--mapnet-clip", "0"], r"--mapnet-clip must lie in \(0, 1\), got 0.0"),
    ],
    "mapnet_proposal_floor": [
        (
            [*MAPNET, "--mapnet-proposal-floor", "-0.1"],
            r"--mapnet-proposal-floor must lie in \[0, 1\) \(0 disables\), got -0.1",
        )
    ],
    "mapnet_baseline": [([*MAPNET, "--mapnet-baseline", "mean"], invalid_choice("mean", "const", "batch_mean"))],
    "mapnet_baseline_m": [
        ([*MAPNET, "--mapnet-baseline-m", "0"], r"--mapnet-baseline-m must lie in \(0, 1\], got 0.0"),
        ([*MAPNET, "--mapnet-baseline-m", "2"], r"--mapnet-baseline-m must lie in \(0, 1\], got 2.0"),
    ],
    "mapnet_explore_prob": [
        ([*MAPNET, "--mapnet-explore-prob", "1.5"], r"--mapnet-explore-prob must lie in \[0, 1\], got 1.5")
    ],
    "mapnet_warmup_updates": [([*MAPNET, "--mapnet-warmup-updates", "-1"], r"--mapnet-warmup-updates must be >= 0, got -1")],
    "criterion": [
        (
            [*MAPNET, "--task", "masked_lm"],
            r"mapnet_masked_lm needs --task masked_lm_plus .* MaskedLMTask masks in its dataset",
        ),
        ([*MAPNET, *FE], r"mapnet_masked_lm draws its own masks: use --masking random, --content-weighting none"),
        (
            ["--criterion", "cross_entropy"],
            r"--criterion cross_entropy: masked_lm_plus trains through its masking protocol; use --criterion masked_lm",
        ),
    ],
    # mae_lm
    "arch": [(["--arch", "mae_lm_bse"], r"invalid choice: 'mae_lm_bse'")],
    "decoder_layers": [([*MAE, "--decoder-layers", "0"], r"--decoder-layers must be at least 1, got 0")],
    "decoder_embed_dim": [
        ([*MAE, "--decoder-embed-dim", "0"], r"--decoder-embed-dim must be at least 1, got 0"),
        (
            [*MAE, "--decoder-embed-dim", "128", "--no-decoder-projection"],
            r"--decoder-embed-dim 128 differs from --encoder-embed-dim 64 but --no-decoder-projection",
        ),
    ],
    "decoder_ffn_embed_dim": [([*MAE, "--decoder-ffn-embed-dim", "0"], r"--decoder-ffn-embed-dim must be at least 1, got 0")],
    "decoder_attention_heads": [
        ([*MAE, "--decoder-attention-heads", "3"], r"--decoder-embed-dim 64 must be divisible by --decoder-attention-heads 3")
    ],
    "decoder_dropout": [([*MAE, "--decoder-dropout", "1"], r"--decoder-dropout must lie in \[0, 1\), got 1.0")],
    "decoder_positions": [
        ([*MAE, "--decoder-positions", "shared"], r"invalid choice: 'shared'"),
        (
            [*MAE, "--decoder-positions", "encoder", "--decoder-embed-dim", "32", "--decoder-attention-heads", "2"],
            r"--decoder-positions encoder shares the encoder's 64-wide position table, but --decoder-embed-dim is 32",
        ),
    ],
}

# options every value of which is valid (flags, free text, any integer)
NO_INVALID_VALUE = {
    "freq_weighted_replacement": "a flag",
    "mask_whole_words": "a flag; a dictionary without word starts is a data case below",
    "include_index": "a flag (stock masked_lm's; models take **kwargs)",
    "shorten_data_split_list": "free text, stock masked_lm's; used only with --shorten-method",
    "pos_bias_correction": "a flag",
    "never_mask_bos_eos": "a flag",
    "mapnet_own_embeddings": "a flag",
    "mapnet_self_normalize": "a flag (true or false)",
    "no_decoder_projection": "a flag; the width mismatch it can cause is under decoder_embed_dim",
}
MIRRORS = {
    "max_update",
    "lr",
    "save_dir",
    "restore_file",
    "reset_dataloader",
    "word_bpe",
}  # other groups' options, read by the task
MAE_OPTIONS = set(DECODER_OPTIONS)

OPTION_CASES = [(option, flags, message) for option, cases in OPTION_CATALOGUE.items() for flags, message in cases]


def test_the_catalogue_covers_every_option_of_every_registered_piece():
    options = {f.name for f in fields(MaskedLMPlusConfig)} | {f.name for f in fields(MapnetMaskedLMConfig)} | MAE_OPTIONS
    options -= MIRRORS | {"_name"}
    missing = options - set(OPTION_CATALOGUE) - set(NO_INVALID_VALUE)
    assert not missing, f"options without a bad-input case: {sorted(missing)}"


def failure(args, capsys) -> str:
    """The message fairseq-train ARGS fails with (argparse's usage error or
    the exception); fails the test if it trains."""
    try:
        train_in_process(args)
    except SystemExit as exit:
        assert exit.code == 2
        return capsys.readouterr().err
    except Exception as error:  # every refusal here is a ValueError or OSError subclass
        assert isinstance(error, (ValueError, OSError)), repr(error)
        return str(error)
    pytest.fail(f"trained without complaint: {args}")


@pytest.mark.parametrize("option,flags,message", OPTION_CASES, ids=[f"{o}: {' '.join(f)}" for o, f, _ in OPTION_CASES])
def test_invalid_option_fails_before_the_first_update(brown_data, tmp_path, capsys, option, flags, message):
    data = tmp_path / "nowhere" if option == "data" else brown_data
    text = failure(train_args(data, tmp_path / "ckpt", extra=flags), capsys)
    assert re.search(message, text), text
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


# ------------------------------------------------------------------- data


def copy_of(data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    return copy


def dict_without_last_symbols(data, tmp_path):
    copy = copy_of(data, tmp_path)
    lines = (copy / "dict.txt").read_text().splitlines()
    (copy / "dict.txt").write_text("\n".join(lines[:300]) + "\n")
    return str(copy)


def dict_listing_the_specials(data, tmp_path):
    copy = copy_of(data, tmp_path)
    text = (copy / "dict.txt").read_text()
    (copy / "dict.txt").write_text("<s> 0\n<pad> 0\n</s> 0\n<unk> 0\n" + text)
    return str(copy)


def empty_dict(data, tmp_path):
    copy = copy_of(data, tmp_path)
    (copy / "dict.txt").write_text("")
    return str(copy)


def truncated_bin(data, tmp_path):
    copy = copy_of(data, tmp_path)
    payload = (copy / "train.bin").read_bytes()
    (copy / "train.bin").write_bytes(payload[: len(payload) // 2])
    return str(copy)


def empty_train_split(data, tmp_path):
    copy = copy_of(data, tmp_path)
    from fairseq.data import indexed_dataset

    indexed_dataset.make_builder(str(copy / "train.bin"), impl="mmap", vocab_size=1000).finalize(str(copy / "train.idx"))
    return str(copy)


def missing_valid_split(data, tmp_path):
    copy = copy_of(data, tmp_path)
    (copy / "valid.bin").unlink()
    (copy / "valid.idx").unlink()
    return str(copy)


def shards_with_different_dictionaries(data, tmp_path):
    """task.data=A:B (fairseq's epoch shards), B binarised with another dictionary."""
    other = tmp_path / "other"
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    for split in ("train", "valid", "test"):
        (pieces / split).write_text("the cat sat on the mat\nthe dog sat too\n" * 20)
    binarize(str(pieces), str(other), workers=1)
    return f"{data}:{other}"


def word_level_dictionary(data, tmp_path):
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    for split in ("train", "valid", "test"):
        (pieces / split).write_text("the cat sat on the mat\nthe dog sat too\n" * 20)
    binarize(str(pieces), str(tmp_path / "words"), workers=1)
    return str(tmp_path / "words")


def pos_of_another_split(data, tmp_path):
    copy = copy_of(data, tmp_path)
    for ext in ("bin", "idx"):  # the valid tags beside the train tokens
        shutil.copy(copy / "pos" / f"valid.{ext}", copy / "pos" / f"train.{ext}")
    return str(copy)


# name -> (POS data?, make data, flags, message regex)
DATA_CATALOGUE = {
    "dictionary lacks symbols the data uses": (
        False,
        dict_without_last_symbols,
        [],
        r"split '(train|valid)' .* holds token id \d+ .*outside the dictionary's ids 0\.\.303",
    ),
    "dictionary lists fairseq's specials": (
        False,
        dict_listing_the_specials,
        [],
        r"dict.txt lists the special symbol '<s>', which fairseq adds itself .*remove the lines of <s>, <pad>, </s>, <unk>",
    ),
    "empty dictionary": (False, empty_dict, [], r"dict.txt holds no symbols: binarise the data with a dictionary"),
    "truncated .bin": (
        False,
        truncated_bin,
        [],
        r"train.bin holds \d+ bytes but its index train.idx needs \d+: the file is truncated or belongs to another index",
    ),
    "empty split": (False, empty_train_split, [], r"split 'train' of .* holds no tokens"),
    "missing split": (False, missing_valid_split, [], r"Dataset not found: valid"),
    "shards with different dictionaries": (
        False,
        shards_with_different_dictionaries,
        [],
        r"task.data: .*other/dict.txt differs from .*data/dict.txt: every shard must be binarised with one dictionary",
    ),
    "whole words without word starts": (
        False,
        word_level_dictionary,
        ["--mask-whole-words"],
        r"--mask-whole-words needs to know where words begin, but no --bpe is given.*prepare_corpus.py",
    ),
    "whole-word yardstick without word starts": (
        False,
        word_level_dictionary,
        ["--valid-whole-words", "yes"],
        r"--valid-whole-words yes, but word starts are unknown: .*pass the --bpe.*or use --valid-whole-words auto or no",
    ),
    "POS input of another split": (
        True,
        pos_of_another_split,
        POS,
        r"POS side input .* does not line up with the tokens of split 'train'.*--pos",
    ),
}


@pytest.mark.parametrize("case", sorted(DATA_CATALOGUE))
def test_broken_data_fails_before_the_first_update(brown_data, brown_pos_data, tmp_path, capsys, case):
    pos, make, flags, message = DATA_CATALOGUE[case]
    data = make(brown_pos_data if pos else brown_data, tmp_path)
    text = failure(train_args(data, tmp_path / "ckpt", extra=flags), capsys)
    assert re.search(message, text), text
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_sequences_shorter_than_the_segment_count_train_as_documented(tmp_path, caplog):
    """Documented behaviour, not an error: a sequence with n < K units gets n
    one-unit segments and its other copies predict nothing; the task warns
    with the count when it loads the split. Lines of 5 and 60 tokens packed
    into 64-token blocks (complete sentences) make every other block short."""
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    text = ("a b c d\n" + " ".join(f"w{i}" for i in range(59)) + "\n") * 40
    for split in ("train", "valid", "test"):
        (pieces / split).write_text(text)
    binarize(str(pieces), str(tmp_path / "data"), workers=1)
    train_in_process(
        train_args(
            tmp_path / "data",
            tmp_path / "ckpt",
            updates=2,
            extra=[*FE, "--fe-segments", "7", "--sample-break-mode", "complete"],
        )
    )
    assert "40 of 80 train blocks have fewer than 7 maskable tokens (--fe-segments)" in caplog.text
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


# ------------------------------------------------------ corpus preparation


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    (path / "notes.md").write_text("not a .txt\n")
    return path


CORPUS_CATALOGUE = {
    "missing": (lambda d: d / "nope.txt", r"--input .*nope.txt: no such file or folder"),
    "empty": (lambda d: _write(d / "empty.txt", b"\n\n  \n"), r"--input .*empty.txt: holds no text"),
    "not-utf8": (lambda d: _write(d / "latin.txt", "caf\xe9\n".encode("latin-1")), r"latin.txt is not UTF-8 text"),
    "folder-without-txt": (lambda d: _mkdir(d / "folder"), r"--input .*folder: folder holds no .txt files"),
}


@pytest.mark.parametrize("case", sorted(CORPUS_CATALOGUE))
def test_unreadable_or_empty_corpus(tmp_path, case):
    make, message = CORPUS_CATALOGUE[case]
    source = make(tmp_path)
    with pytest.raises(CorpusError, match=message):
        prepare_corpus(PrepareOptions(input=str(source), out=str(tmp_path / "out")))


def test_prepared_output_is_not_replaced_without_force(brown_data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(brown_data, out)
    before = (out / "train.bin").read_bytes()
    corpus = _write(tmp_path / "corpus.txt", ("Some text here.\nMore text.\n\n" * 30).encode())
    script = ["--input", corpus, "--out", out]
    result = run_script("prepare_corpus.py", script)
    assert result.returncode != 0
    assert "already holds a prepared corpus" in result.stderr and "--force" in result.stderr
    assert (out / "train.bin").read_bytes() == before
    result = run_script("prepare_corpus.py", script + ["--force", "--vocab-size", "60"])
    assert result.returncode == 0, result.stderr
    assert (out / "train.bin").read_bytes() != before
