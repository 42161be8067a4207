"""Vocabulary-derived tables the Masker needs, read off a fairseq ``Dictionary``."""

import torch

from ..errors import MaskingOptionError
from ..masking import CorruptionRule, Masker

SENTENCEPIECE_WORD_START = "\u2581"  # '▁', the piece prefix sentencepiece writes before a word


def word_start_table(dictionary, bpe=None) -> torch.Tensor:
    """Bool (V,): True for symbols that begin a word. Specials (``<s>``,
    ``<pad>``, ``</s>``, ``<unk>``) each begin a word of their own, as in
    fairseq's ``get_whole_word_mask``; ``<mask>`` is False.

    ``bpe``: the run's ``--bpe`` configuration (a config with ``_name``, as
    fairseq builds it) or None. With one, word starts come from that BPE
    through fairseq's own helper (``get_whole_word_mask``), as stock
    ``masked_lm`` takes them: GPT-2 ids, sentencepiece, BERT word pieces, ...
    Without one, a symbol begins a word when it starts with sentencepiece's
    ``▁`` (the data this project prepares).

    Raises MaskingOptionError naming ``--bpe`` when neither applies, or when the
    BPE cannot be built or cannot tell word starts.
    """
    name = getattr(bpe, "_name", None) if bpe is not None else None
    if name is not None:
        table = bpe_word_starts(dictionary, bpe, name)
    else:
        table = torch.tensor([symbol.startswith(SENTENCEPIECE_WORD_START) for symbol in dictionary.symbols])
        if not table[dictionary.nspecial :].any():
            raise MaskingOptionError(
                f"--mask-whole-words needs to know where words begin, but no --bpe is given and no symbol of the "
                f"dictionary ({len(dictionary)} symbols) starts with the sentencepiece word marker "
                f"{SENTENCEPIECE_WORD_START!r}: pass the --bpe the data was encoded with (gpt2, sentencepiece, bert, "
                "hf_byte_bpe, with its files), prepare the data with scripts/prepare_corpus.py, or drop "
                "--mask-whole-words"
            )
    table[: dictionary.nspecial] = True
    return table


def bpe_word_starts(dictionary, bpe, name: str) -> torch.Tensor:
    """Bool (V,) word starts from fairseq's ``get_whole_word_mask`` for ``--bpe name``."""
    from fairseq.data import encoders
    from fairseq.data.encoders.utils import get_whole_word_mask

    try:
        built = encoders.build_bpe(bpe)
    except Exception as error:  # a missing file, package or download: name the option
        raise MaskingOptionError(
            f"--mask-whole-words takes word starts from --bpe {name}, which could not be built: "
            f"{type(error).__name__}: {error} (give its files, e.g. --gpt2-encoder-json/--gpt2-vocab-bpe, "
            "--sentencepiece-model, --bpe-vocab-file)"
        ) from error
    if not hasattr(built, "is_beginning_of_word"):
        raise MaskingOptionError(
            f"--mask-whole-words: --bpe {name} cannot tell where words begin (fairseq's {type(built).__name__} has no "
            "is_beginning_of_word); use a BPE that can (gpt2, sentencepiece, bert, hf_byte_bpe) or drop "
            "--mask-whole-words"
        )
    return get_whole_word_mask(bpe, dictionary).bool()


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


def never_selected(dictionary, mask_idx: int, bos_eos: bool) -> tuple:
    """The ids a mask never selects: ``<pad>`` and ``<mask>``, and ``<s>`` and
    ``</s>`` when ``bos_eos`` (stock ``masked_lm`` selects them like any token)."""
    return (dictionary.bos(), dictionary.eos(), dictionary.pad(), mask_idx) if bos_eos else (dictionary.pad(), mask_idx)


def build_masker(
    dictionary,
    mask_idx: int,
    rule: CorruptionRule,
    whole_words: bool,
    frequency_weighted: bool,
    bpe=None,
    never_mask_bos_eos: bool = False,
) -> Masker:
    """A Masker for ``dictionary``: never selects ``<pad>`` or ``<mask>``, nor
    ``<s>`` and ``</s>`` when ``never_mask_bos_eos``; whole words (from
    ``bpe``, else sentencepiece pieces) when ``whole_words``."""
    return Masker(
        mask_idx=mask_idx,
        pad_idx=dictionary.pad(),
        special_ids=never_selected(dictionary, mask_idx, never_mask_bos_eos),
        rule=rule,
        replacement_weights=replacement_weights(dictionary, mask_idx, frequency_weighted),
        word_start_table=word_start_table(dictionary, bpe) if whole_words else None,
    )
