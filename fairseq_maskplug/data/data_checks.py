"""Checks of a binarised data directory's files, run before any batch is
made, so that a broken file is named instead of failing deep in fairseq (or
not failing at all)."""

import filecmp
import os
from typing import Sequence

import numpy as np
from fairseq.data.indexed_dataset import MMapIndexedDataset

from ..errors import DataFileError

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def check_dictionary_file(path: str):
    """``dict.txt`` must list at least one symbol, and not fairseq's own
    specials (``Dictionary.load`` adds them itself and fails on duplicates)."""
    lines = [line.split() for line in open(path, encoding="utf-8") if line.strip()]
    if not lines:
        raise DataFileError(
            f"{path} holds no symbols: binarise the data with a dictionary of its pieces "
            "(scripts/prepare_corpus.py or fairseq-preprocess write one)"
        )
    symbols = {fields[0] for fields in lines if fields[-1] != "#fairseq:overwrite"}
    listed = [s for s in FAIRSEQ_SPECIALS if s in symbols]
    if listed:
        raise DataFileError(
            f"{path} lists the special symbol {listed[0]!r}, which fairseq adds itself (ids 0-3): remove the lines "
            f"of {', '.join(FAIRSEQ_SPECIALS)} (the .bin files must then hold fairseq's ids, as fairseq-preprocess writes)"
        )


def check_shard_dictionaries(paths: Sequence[str]):
    """Every data shard (``task.data=A:B:...``) must be binarised with the
    first shard's ``dict.txt``: token ids are read with that one."""
    first = os.path.join(paths[0], "dict.txt")
    for path in paths[1:]:
        other = os.path.join(path, "dict.txt")
        if not os.path.isfile(other) or not filecmp.cmp(first, other, shallow=False):
            state = "differs from" if os.path.isfile(other) else "is missing, unlike"
            raise DataFileError(
                f"task.data: {other} {state} {first}: every shard must be binarised with one dictionary "
                "(fairseq-preprocess --srcdict, or prepare_corpus.py's dict.txt)"
            )


def check_binarized_split(prefix: str, split: str):
    """``prefix.{idx,bin}`` (fairseq's mmap format) must hold tokens, and the
    ``.bin`` must be as long as its index says."""
    index_path, data_path = prefix + ".idx", prefix + ".bin"
    if not (os.path.isfile(index_path) and os.path.isfile(data_path)):
        return  # fairseq names the missing split itself ("Dataset not found")
    index = MMapIndexedDataset.Index(index_path)
    if len(index) == 0 or int(np.asarray(index.sizes).sum()) == 0:
        raise DataFileError(f"split '{split}' of {os.path.dirname(prefix)!r} holds no tokens ({index_path} lists no lines)")
    pointer, size = index[len(index) - 1]
    needed = int(pointer) + int(size) * np.dtype(index.dtype).itemsize
    found = os.path.getsize(data_path)
    if found != needed:
        raise DataFileError(
            f"{data_path} holds {found} bytes but its index {os.path.basename(index_path)} needs {needed}: the file "
            "is truncated or belongs to another index; binarise the split again"
        )
