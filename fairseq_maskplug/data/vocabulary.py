"""Vocabulary-derived tables the Masker needs, read off a fairseq ``Dictionary``."""

import torch

from ..masking import CorruptionRule, Masker

SENTENCEPIECE_WORD_START = "\u2581"  # '▁', the piece prefix sentencepiece writes before a word


def word_start_table(dictionary, marker: str = SENTENCEPIECE_WORD_START) -> torch.Tensor:
    """Bool (V,): True for symbols that begin a word (their text starts with
    ``marker``). Specials and ``<mask>`` are False.

    Raises ValueError when no symbol carries the marker: the dictionary was not
    built from sentencepiece pieces, so whole words cannot be recovered.
    """
    table = torch.tensor(
        [index >= dictionary.nspecial and symbol.startswith(marker) for index, symbol in enumerate(dictionary.symbols)],
        dtype=torch.bool,
    )
    if not table.any():
        raise ValueError(
            f"--mask-whole-words needs word-start information, but no symbol of the dictionary "
            f"({len(dictionary)} symbols) starts with the sentencepiece word marker {marker!r}. "
            "Prepare the data with scripts/prepare_corpus.py (sentencepiece pieces), "
            "or drop --mask-whole-words."
        )
    return table


def replacement_weights(dictionary, mask_idx: int, frequency_weighted: bool) -> torch.Tensor:
    """Float64 (V,): unnormalised probabilities of the ids used for random
    replacement. Uniform over the non-special symbols, or proportional to
    their counts in dict.txt; zero for specials and ``<mask>``."""
    if frequency_weighted:
        weights = torch.tensor(dictionary.count, dtype=torch.float64)
    else:
        weights = torch.ones(len(dictionary), dtype=torch.float64)
    weights[: dictionary.nspecial] = 0
    weights[mask_idx] = 0
    if weights.sum() <= 0:
        raise ValueError(
            "the dictionary has no ordinary symbol to draw random replacements from "
            "(set --random-token-prob 0 or use a dict.txt with counts)"
        )
    return weights


def build_masker(dictionary, mask_idx: int, rule: CorruptionRule, whole_words: bool, frequency_weighted: bool) -> Masker:
    """A Masker for ``dictionary``: never selects ``<s>``, ``</s>``, ``<pad>``,
    ``<mask>``; whole words from sentencepiece pieces when ``whole_words``."""
    return Masker(
        mask_idx=mask_idx,
        pad_idx=dictionary.pad(),
        special_ids=(dictionary.bos(), dictionary.eos(), dictionary.pad(), mask_idx),
        rule=rule,
        replacement_weights=replacement_weights(dictionary, mask_idx, frequency_weighted),
        word_start_table=word_start_table(dictionary) if whole_words else None,
    )
