"""Whole-word masking on data stock fairseq-preprocess made: word starts from
the recipe's --bpe through fairseq's own helper (GPT-2 BPE ids, BERT word
pieces of whitespace-tokenised text), for the uniform, fully-explored and POS
strategies; sentencepiece's '▁' rule without --bpe; a clear error naming
--bpe when neither applies."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from test_task_masking import batches

from fairseq_maskplug.errors import MaskingOptionError
from fairseq_maskplug.tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask
from harness import TOKENS_PER_SAMPLE, checkpoint_state, train_args, train_in_process
from maskplug_lab.corpus.prepare import binarize, write_tag_dictionary

# a tiny GPT-2 byte-level BPE: 'Ġ' is the space byte, so 'Ġcat' begins a word and 's' continues one
GPT2_PIECES = ["Ġthe", "Ġcat", "s", "Ġsat", "Ġon", "Ġmat", "ting", "Ġdog", "Ġran", "ning", "Ġfast", "er", "."]
GPT2_TAGS = {"Ġthe": "DET", "Ġcat": "NOUN", "Ġsat": "VERB", "Ġon": "ADP", "Ġmat": "NOUN", "Ġdog": "NOUN",
             "Ġran": "VERB", "Ġfast": "ADV", ".": "."}  # fmt: skip
GPT2_SENTENCES = [
    ["Ġthe", "Ġcat", "s", "Ġsat", "Ġon", "Ġthe", "Ġmat", "ting", "."],
    ["Ġthe", "Ġdog", "Ġran", "ning", "Ġfast", "er", "Ġon", "Ġthe", "Ġmat", "."],
    ["Ġcat", "s", "Ġran", "Ġfast", "Ġon", "Ġthe", "Ġdog", "s", "Ġmat", "ting", "."],
]
# whitespace-tokenised text in BERT's word-piece convention: '##' continues a word
BERT_SENTENCES = [
    "the cat ##s sat on the mat ##ting .",
    "the dog ran ##ning fast ##er on the mat .",
    "cat ##s ran fast on the dog ##s mat ##ting .",
]


def word_tags(pieces, start_of):
    """Each piece's tag: its word's (the tag of the piece that starts the word)."""
    tags, current = [], "X"
    for piece in pieces:
        if start_of(piece):
            current = GPT2_TAGS.get(piece, "X")
        tags.append(current)
    return tags


def write_data(root, lines_of_symbols, tags_per_line=None):
    """A fairseq data dir binarised from ``lines_of_symbols`` (every split the
    same 300 lines), with a POS side input when tags are given."""
    pieces, tags = root / "pieces", root / "tags"
    pieces.mkdir(parents=True)
    tags.mkdir()
    for split in ("train", "valid", "test"):
        (pieces / split).write_text("\n".join(" ".join(line) for line in lines_of_symbols) + "\n")
        if tags_per_line is not None:
            (tags / split).write_text("\n".join(" ".join(line) for line in tags_per_line) + "\n")
    data = root / "data"
    binarize(str(pieces), str(data), workers=1)
    if tags_per_line is not None:
        (data / "pos").mkdir()
        tag_set = sorted({t for line in tags_per_line for t in line})
        binarize(str(tags), str(data / "pos"), workers=1,
                 srcdict=write_tag_dictionary(str(data / "pos" / "dict.txt"), tag_set))  # fmt: skip
    return data


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(data dir of GPT-2 ids with POS, the --bpe gpt2 config) as the RoBERTa recipe makes them."""
    root = tmp_path_factory.mktemp("gpt2")
    encoder = {piece: i for i, piece in enumerate(GPT2_PIECES)}
    (root / "encoder.json").write_text(json.dumps(encoder))
    (root / "vocab.bpe").write_text("#version: 0.2\n\n")
    lines = [GPT2_SENTENCES[i % 3] for i in range(300)]
    ids = [[str(encoder[p]) for p in line] for line in lines]
    tags = [word_tags(line, lambda p: p.startswith("Ġ") or p == ".") for line in lines]
    bpe = {"_name": "gpt2", "gpt2_encoder_json": str(root / "encoder.json"), "gpt2_vocab_bpe": str(root / "vocab.bpe")}
    return write_data(root, ids, tags), bpe


@pytest.fixture(scope="module")
def bert_words(tmp_path_factory):
    """(data dir of whitespace-tokenised word pieces, the --bpe bert config)."""
    root = tmp_path_factory.mktemp("bert")
    lines = [BERT_SENTENCES[i % 3].split() for i in range(300)]
    vocabulary = sorted({piece for line in lines for piece in line})
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocabulary]) + "\n")
    bpe = {"_name": "bert", "bpe_cased": False, "bpe_vocab_file": str(root / "vocab.txt")}
    return write_data(root, lines), bpe


def words_of(task, tokens, starts_table):
    """Per row, the word number of every position (consecutive pieces from a
    start; by default <s> and </s> are maskable, each a word of its own)."""
    maskable = tokens.ne(task.dictionary.pad())
    follows_special = torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True)
    begins = maskable & (starts_table[tokens] | follows_special)
    return maskable, begins.long().cumsum(1)


def assert_whole_words(task, masked, tokens, copies=1):
    table = task.train_masker.word_start_table
    maskable, words = words_of(task, tokens.repeat_interleave(copies, 0), table)
    for row in range(masked.predicted.size(0)):
        for word in words[row][maskable[row]].unique():
            picked = masked.predicted[row][maskable[row] & (words[row] == word)]
            assert picked.all() or not picked.any(), "a word was split"


STRATEGY_OPTIONS = {
    "uniform": {},
    "fully_explored": {"masking": "fully_explored", "fe_segments": 3},
    "pos": {"content_weighting": "pos"},
}


@pytest.mark.parametrize("strategy", sorted(STRATEGY_OPTIONS))
def test_gpt2_bpe_word_starts_for_every_strategy(gpt2, strategy):
    data, bpe = gpt2
    task = MaskedLMPlusTask.setup_task(MaskedLMPlusConfig(
        data=str(data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1, mask_whole_words=True,
        word_bpe=OmegaConf.create(bpe), mask_prob=0.3, **STRATEGY_OPTIONS[strategy],
    ))  # fmt: skip
    table, d = task.train_masker.word_start_table, task.dictionary
    for piece, begins in (("Ġcat", True), ("s", False), ("ting", False), (".", False), ("Ġthe", True)):
        assert bool(table[d.index(str(GPT2_PIECES.index(piece)))]) == begins, piece
    assert table[: d.nspecial].all()  # each special begins a word of its own, as in fairseq's get_whole_word_mask
    task.load_dataset("train")
    copies = task.train_strategy.copies
    for update, sample in enumerate(batches(task, limit=4)):
        masked = task.training_masks(sample, update)
        assert masked.predicted.any()
        assert_whole_words(task, masked, sample["net_input"]["src_tokens"], copies)


def test_bert_word_pieces_of_whitespace_tokenised_text(bert_words):
    data, bpe = bert_words
    for strategy in ("uniform", "fully_explored"):
        task = MaskedLMPlusTask.setup_task(MaskedLMPlusConfig(
            data=str(data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1, mask_whole_words=True,
            word_bpe=OmegaConf.create(bpe), mask_prob=0.3, **STRATEGY_OPTIONS[strategy],
        ))  # fmt: skip
        table, d = task.train_masker.word_start_table, task.dictionary
        assert table[d.index("cat")] and not table[d.index("##s")] and table[d.index(".")]
        task.load_dataset("train")
        for update, sample in enumerate(batches(task, limit=3)):
            masked = task.training_masks(sample, update)
            assert_whole_words(task, masked, sample["net_input"]["src_tokens"], task.train_strategy.copies)


def test_fairseq_train_takes_word_starts_from_its_bpe_flags(gpt2, tmp_path):
    """The CLI path: --bpe gpt2 and its file flags reach the task (the
    recipe's own flags, as stock masked_lm reads them)."""
    data, bpe = gpt2
    flags = ["--mask-whole-words", "--bpe", "gpt2", "--gpt2-encoder-json", bpe["gpt2_encoder_json"],
             "--gpt2-vocab-bpe", bpe["gpt2_vocab_bpe"], "--content-weighting", "pos"]  # fmt: skip
    train_in_process(train_args(data, tmp_path / "ckpt", updates=3, extra=flags))
    state = checkpoint_state(tmp_path / "ckpt" / "checkpoint_last.pt")
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert state["cfg"]["bpe"]["_name"] == "gpt2"


def test_word_level_data_without_a_bpe_is_refused_naming_it(bert_words):
    data, _ = bert_words
    with pytest.raises(MaskingOptionError, match=r"no --bpe is given .*pass the --bpe the data was encoded with"):
        MaskedLMPlusTask.setup_task(
            MaskedLMPlusConfig(data=str(data), tokens_per_sample=TOKENS_PER_SAMPLE, mask_whole_words=True)
        )


def test_a_bpe_that_cannot_be_built_is_named(gpt2, tmp_path):
    data, bpe = gpt2
    missing = OmegaConf.create(dict(bpe, gpt2_encoder_json=str(tmp_path / "nowhere.json")))
    with pytest.raises(MaskingOptionError, match=r"word starts from --bpe gpt2, which could not be built: .*nowhere.json"):
        MaskedLMPlusTask.setup_task(MaskedLMPlusConfig(
            data=str(data), tokens_per_sample=TOKENS_PER_SAMPLE, mask_whole_words=True, word_bpe=missing
        ))  # fmt: skip
