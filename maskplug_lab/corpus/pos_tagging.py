"""Part-of-speech tags for corpus preparation: tag words and give every
sentencepiece piece its word's tag (read back at training time by
:mod:`fairseq_maskplug.data.pos_dataset`).

Sources: the Brown corpus's gold tags mapped to the 12 universal tags
(``en-brown.map``, Petrov et al. 2011), or spaCy's universal POS tags for raw
text (optional; needs spaCy and an English model).
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_maskplug.errors import CorpusError

from .readers import BrownDetokenizer, read_brown_tagged

UNIVERSAL_TAGS = ("NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", ".", "X")
SPACY_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
    "SPACE",
)
UNKNOWN_TAG = "X"
SPACY_INSTALL = "pip install spacy && python -m spacy download en_core_web_sm"


@dataclass
class TaggedLine:
    """A line of natural text and its words' (start, end, tag) character spans."""

    text: str
    spans: List[Tuple[int, int, str]]


def load_brown_map(path: str) -> Dict[str, str]:
    """Brown tag (upper case) -> universal tag, from a ``TAG<TAB>UNIVERSAL`` file."""
    if not os.path.isfile(path):
        raise CorpusError(f"--pos-map {path}: no such file (the Brown → universal tag map, en-brown.map)")
    mapping = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2:
                mapping[parts[0].upper()] = parts[1]
    return mapping


def universal_tag(brown_tag: str, mapping: Dict[str, str]) -> str:
    """The universal tag of a Brown tag: exact match, else without its -TL/-HL/-NC
    suffixes, else its first '+' part; X when nothing matches."""
    tag = brown_tag.upper()
    while tag:
        if tag in mapping:
            return mapping[tag]
        for suffix in ("-TL", "-HL", "-NC"):
            if tag.endswith(suffix):
                tag = tag[: -len(suffix)]
                break
        else:
            tag = tag.split("+")[0] if "+" in tag else ""
    return UNKNOWN_TAG


def word_spans(text: str, words: Sequence[str], tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Character spans of ``words`` found left to right in ``text``; a word the
    detokeniser changed beyond recognition is skipped (its pieces get X)."""
    spans, cursor = [], 0
    for word, tag in zip(words, tags):
        at = text.find(word, cursor)
        if at < 0:
            continue
        spans.append((at, at + len(word), tag))
        cursor = at + len(word)
    return spans


def tag_brown(path: str, map_path: str) -> List[List[TaggedLine]]:
    """Documents of tagged lines, in the order and with the text that
    :func:`~maskplug_lab.corpus.readers.read_brown` gives."""
    mapping = load_brown_map(map_path)
    detokenize = BrownDetokenizer()
    documents = []
    for document in read_brown_tagged(path):
        lines = []
        for sentence in document:
            words = [w.word for w in sentence]
            text = detokenize(words)
            surfaces = ['"' if w in ("``", "''") else w for w in words]
            lines.append(TaggedLine(text, word_spans(text, surfaces, [universal_tag(w.tag, mapping) for w in sentence])))
        documents.append(lines)
    return documents


def tag_with_spacy(documents: List[List[str]], model: str = "en_core_web_sm") -> List[List[TaggedLine]]:
    """Tag raw text with spaCy's universal POS tags (``token.pos_``)."""
    try:
        import spacy
    except ImportError as error:
        raise CorpusError(f"--pos on raw text needs spaCy and an English model: {SPACY_INSTALL}") from error
    try:
        nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])
    except OSError as error:
        raise CorpusError(f"--pos: spaCy model {model!r} is not installed: python -m spacy download {model}") from error
    tagged = []
    for document in documents:
        lines = []
        for line, parsed in zip(document, nlp.pipe(document)):
            lines.append(TaggedLine(line, [(t.idx, t.idx + len(t.text), t.pos_) for t in parsed]))
        tagged.append(lines)
    return tagged


def piece_tags(line: TaggedLine, pieces: Sequence[str]) -> Optional[List[str]]:
    """The tag of every piece: that of the word its first non-space character
    falls in (a space-only piece: the next word's; X where no word covers it). None when the pieces do not spell the
    line (sentencepiece normalised it), so the caller can count the line as
    unaligned."""
    normalized = " ".join(line.text.split())
    spelled = "".join(pieces).replace("\u2581", " ")
    if spelled.lstrip(" ") != normalized:
        return None
    # character offsets of `normalized` -> offsets of the original text
    original = [i for i, ch in enumerate(line.text) if not ch.isspace() or (i > 0 and not line.text[i - 1].isspace())]
    tag_at = [UNKNOWN_TAG] * len(line.text)
    for start, end, tag in line.spans:
        for i in range(start, min(end, len(line.text))):
            tag_at[i] = tag
    tags, cursor = [], -(len(spelled) - len(spelled.lstrip(" ")))  # the dummy-prefix space
    for piece in pieces:
        surface = piece.replace("\u2581", " ")
        # a space-only piece ('▁' before a word it does not join) takes the next word's tag
        first = next((cursor + k for k, ch in enumerate(surface) if ch != " "), cursor + len(surface))
        tags.append(tag_at[original[first]] if 0 <= first < len(original) else UNKNOWN_TAG)
        cursor += len(surface)
    return tags
