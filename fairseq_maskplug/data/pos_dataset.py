"""Load the POS side input as blocks that line up with the token blocks."""

import os

import numpy as np
from fairseq.data import Dictionary, PrependTokenDataset, TokenBlockDataset, data_utils

from ..errors import PosInputError

POS_DIR = "pos"  # DATA/pos/{dict.txt, train.bin, ...}: one tag per token, line for line


def pos_dictionary(data_path: str) -> Dictionary:
    path = os.path.join(data_path, POS_DIR, "dict.txt")
    if not os.path.isfile(path):
        raise PosInputError(
            f"--content-weighting pos needs the POS side input, but {path} does not exist: prepare the data "
            "with `python scripts/prepare_corpus.py --input CORPUS --out DIR --pos`"
        )
    return Dictionary.load(path)


def load_pos_blocks(
    data_path: str,
    split: str,
    token_sizes,
    tokens_per_sample: int,
    break_mode: str,
    dictionary: Dictionary,
    combine: bool = False,
):
    """POS tag blocks cut exactly like the token blocks (same sizes, block
    length and break mode), ``<s>``-prefixed like them; None when the split
    has no POS file. Raises PosInputError when line lengths differ."""
    path = os.path.join(data_path, POS_DIR, split)
    tags = data_utils.load_indexed_dataset(path, dictionary, combine=combine)
    if tags is None:
        return None
    token_sizes = np.asarray(token_sizes)
    if len(tags.sizes) != len(token_sizes) or not np.array_equal(tags.sizes, token_sizes):
        mismatched = np.nonzero(tags.sizes[: len(token_sizes)] != token_sizes[: len(tags.sizes)])[0]
        where = f"first at line {int(mismatched[0])}" if len(mismatched) else "different line counts"
        raise PosInputError(
            f"the POS side input {path} does not line up with the tokens of split '{split}' "
            f"({len(tags.sizes)} vs {len(token_sizes)} lines, {where}): re-run prepare_corpus.py --pos"
        )
    blocks = TokenBlockDataset(
        tags, tags.sizes, tokens_per_sample - 1, pad=dictionary.pad(), eos=dictionary.eos(), break_mode=break_mode
    )
    return PrependTokenDataset(blocks, dictionary.bos())
