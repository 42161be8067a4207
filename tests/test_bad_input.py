"""Bad input fails before training, with a message naming the option or file
and what would be valid; nothing the user had is overwritten."""

import shutil
import subprocess
import sys

import pytest

from fairseq_maskplug.data.corpus_readers import CorpusError
from fairseq_maskplug.data.prepare import PrepareOptions, binarize, prepare_corpus
from fairseq_maskplug.tasks.masked_lm_plus import MaskingOptionError
from harness import CHILD_ENV, REPO_ROOT, train_args, train_in_process

OPTION_CASES = [
    (["--mask-prob", "0"], r"--mask-prob must lie in \(0, 1\), got 0.0"),
    (["--mask-prob", "1"], r"--mask-prob must lie in \(0, 1\), got 1.0"),
    (["--mask-prob", "1.5"], r"--mask-prob must lie in \(0, 1\), got 1.5"),
    (["--mask-prob", "-0.1"], r"--mask-prob must lie in \(0, 1\)"),
    (["--valid-mask-prob", "0"], r"--valid-mask-prob must lie in \(0, 1\)"),
    (["--leave-unmasked-prob", "1.2"], r"--leave-unmasked-prob must lie in \[0, 1\], got 1.2"),
    (["--random-token-prob", "-0.5"], r"--random-token-prob must lie in \[0, 1\]"),
    (["--leave-unmasked-prob", "0.6", "--random-token-prob", "0.5"],
     r"--leave-unmasked-prob \+ --random-token-prob must be at most 1 .*got 0.6 \+ 0.5"),
    (["--mask-multiple-length", "3"], r"--mask-multiple-length / --mask-stdev .* not supported"),
    (["--include-target-tokens"], r"--d2v2-multi / --include-target-tokens are data2vec options"),
    (["--masking", "fully_explored", "--fe-segments", "1"], r"--fe-segments must be at least 2, got 1"),
    (["--masking", "fully_explored", "--fe-segments", "63"],
     r"--fe-segments 63 is larger than any sequence can hold: --tokens-per-sample 64 leaves at most 62"),
    (["--masking", "fully_explored", "--fe-mask-size", "ratio", "--fe-segments", "7"],
     r"--fe-mask-size ratio needs --fe-segments × --mask-prob ≤ 1 .*7 × 0.15 = 1.05"),
    (["--fe-segments", "3"], r"--fe-segments needs --masking fully_explored"),
]


@pytest.mark.parametrize("flags,message", OPTION_CASES, ids=[" ".join(f) for f, _ in OPTION_CASES])
def test_invalid_masking_options_fail_before_training(brown_data, tmp_path, flags, message):
    with pytest.raises(MaskingOptionError, match=message):
        train_in_process(train_args(brown_data, tmp_path / "ckpt", extra=flags))
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_data_dir_without_dictionary(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no dict.txt in the data directory .*data.*prepare_corpus.py"):
        train_in_process(train_args(tmp_path / "data", tmp_path / "ckpt"))


def test_whole_words_with_a_dictionary_without_word_starts(tmp_path):
    """A word-level dict.txt (no sentencepiece '▁' pieces) cannot recover whole words."""
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    for split in ("train", "valid", "test"):
        (pieces / split).write_text("the cat sat on the mat\nthe dog sat too\n" * 20)
    binarize(str(pieces), str(tmp_path / "data"), workers=1)
    with pytest.raises(ValueError, match=r"--mask-whole-words needs word-start information.*prepare_corpus.py"):
        train_in_process(train_args(tmp_path / "data", tmp_path / "ckpt", extra=["--mask-whole-words"]))


def test_token_ids_outside_the_dictionary_fail_on_the_first_batch(brown_data, tmp_path):
    """A dict.txt that lost its last symbols: the first batch holding an id the
    dictionary lacks fails, naming the split and the id; no update happens."""
    data = tmp_path / "data"
    shutil.copytree(brown_data, data)
    lines = (data / "dict.txt").read_text().splitlines()
    (data / "dict.txt").write_text("\n".join(lines[:300]) + "\n")
    with pytest.raises(ValueError, match=r"split '(train|valid)' .* holds token id \d+ .*outside the dictionary's ids 0\.\.303"):
        train_in_process(train_args(data, tmp_path / "ckpt"))
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


CORPUS_CASES = {
    "missing": (lambda d: d / "nope.txt", r"--input .*nope.txt: no such file or folder"),
    "empty": (lambda d: _write(d / "empty.txt", b"\n\n  \n"), r"--input .*empty.txt: holds no text"),
    "not-utf8": (lambda d: _write(d / "latin.txt", "caf\xe9\n".encode("latin-1")), r"latin.txt is not UTF-8 text"),
    "folder-without-txt": (lambda d: _mkdir(d / "folder"), r"--input .*folder: folder holds no .txt files"),
}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path):
    path.mkdir()
    (path / "notes.md").write_text("not a .txt\n")
    return path


@pytest.mark.parametrize("case", sorted(CORPUS_CASES))
def test_unreadable_or_empty_corpus(tmp_path, case):
    make, message = CORPUS_CASES[case]
    source = make(tmp_path)
    with pytest.raises(CorpusError, match=message):
        prepare_corpus(PrepareOptions(input=str(source), out=str(tmp_path / "out")))


def test_prepared_output_is_not_replaced_without_force(brown_data, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(brown_data, out)
    before = (out / "train.bin").read_bytes()
    corpus = _write(tmp_path / "corpus.txt", ("Some text here.\nMore text.\n\n" * 30).encode())
    script = [sys.executable, str(REPO_ROOT / "scripts" / "prepare_corpus.py"), "--input", str(corpus), "--out", str(out)]
    result = subprocess.run(script, env=CHILD_ENV, capture_output=True, text=True)
    assert result.returncode != 0
    assert "already holds a prepared corpus" in result.stderr and "--force" in result.stderr
    assert (out / "train.bin").read_bytes() == before
    result = subprocess.run(script + ["--force", "--vocab-size", "60"], env=CHILD_ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "train.bin").read_bytes() != before
