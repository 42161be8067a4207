"""Read a raw corpus into documents of natural-text lines.

Accepted inputs:
- the Brown corpus in NLTK's layout, as ``brown.zip`` or its unpacked ``brown/``
  folder (``word/tag`` tokens, detokenised with sacremoses' Moses detokenizer;
  one line per sentence, one document per file);
- a plain-text file, documents separated by blank lines, one line per sentence
  or paragraph;
- a folder of ``.txt`` files, each read like a plain-text file.
"""

import os
import zipfile
from dataclasses import dataclass
from typing import Iterable, List, Tuple

from fairseq_maskplug.errors import CorpusError

BROWN_META_FILES = {"cats.txt", "CONTENTS", "README"}
BROWN_QUOTES = {"``": '"', "''": '"'}


@dataclass
class TaggedWord:
    word: str
    tag: str


Document = List[str]  # lines of natural text


def parse_brown_document(text: str) -> List[List[TaggedWord]]:
    """Sentences of one Brown file: one sentence per line of ``word/tag`` tokens
    (blank lines separate paragraphs, as NLTK's reader reads them)."""
    sentences = []
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        sentence = []
        for token in tokens:
            word, sep, tag = token.rpartition("/")
            sentence.append(TaggedWord(word, tag) if sep else TaggedWord(token, ""))
        sentences.append(sentence)
    return sentences


class BrownDetokenizer:
    """Turns Brown's tokenised words back into natural text (Moses rules)."""

    def __init__(self):
        from sacremoses import MosesDetokenizer

        self._moses = MosesDetokenizer(lang="en")

    def __call__(self, words: Iterable[str]) -> str:
        return self._moses.detokenize([BROWN_QUOTES.get(w, w) for w in words])


def brown_files(path: str) -> List[Tuple[str, str]]:
    """(name, Latin-1 text) of every document file of a Brown zip or folder, sorted by name."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = sorted(
                n for n in archive.namelist() if not n.endswith("/") and os.path.basename(n) not in BROWN_META_FILES
            )
            return [(os.path.basename(n), archive.read(n).decode("latin-1")) for n in names]
    names = sorted(n for n in os.listdir(path) if n not in BROWN_META_FILES)
    files = []
    for name in names:
        with open(os.path.join(path, name), encoding="latin-1") as handle:
            files.append((name, handle.read()))
    return files


def is_brown(path: str) -> bool:
    """True for a Brown zip (``brown/cats.txt`` inside) or an unpacked Brown folder."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "cats.txt")) and os.path.isfile(os.path.join(path, "ca01"))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("brown/cats.txt") for n in archive.namelist())
    return False


def read_brown_tagged(path: str) -> List[List[List[TaggedWord]]]:
    """Documents → sentences → tagged words, in file-name order."""
    return [parse_brown_document(text) for _, text in brown_files(path)]


def read_brown(path: str) -> List[Document]:
    detokenize = BrownDetokenizer()
    return [[detokenize(w.word for w in s) for s in doc] for doc in read_brown_tagged(path)]


def split_documents(text: str) -> List[Document]:
    """Blank-line separated documents of stripped, non-empty lines."""
    documents, current = [], []
    for line in text.splitlines():
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            documents.append(current)
            current = []
    if current:
        documents.append(current)
    return documents


def read_text_file(path: str) -> List[Document]:
    try:
        with open(path, encoding="utf-8") as handle:
            return split_documents(handle.read())
    except UnicodeDecodeError as error:
        raise CorpusError(f"{path} is not UTF-8 text ({error}); convert it or pass a Brown zip") from error


def read_documents(path: str) -> List[Document]:
    """Documents of ``path`` (Brown zip/folder, text file or folder of .txt files).

    Raises CorpusError naming the path when it is missing, unreadable or empty.
    """
    if not os.path.exists(path):
        raise CorpusError(f"--input {path}: no such file or folder")
    try:
        if is_brown(path):
            documents = read_brown(path)
        elif os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(".txt"))
            if not names:
                raise CorpusError(f"--input {path}: folder holds no .txt files (and is not a Brown corpus folder)")
            documents = [doc for n in names for doc in read_text_file(os.path.join(path, n))]
        else:
            documents = read_text_file(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise CorpusError(f"--input {path}: cannot be read ({error})") from error
    if not documents:
        raise CorpusError(f"--input {path}: holds no text (documents are non-empty lines separated by blank lines)")
    return documents
