"""The Brown genre task: a 15-way classification of text chunks by the
genre of their document (``cats.txt``), as a stock fairseq
``sentence_prediction`` data dir, for fine-tuning pre-trained encoders.

Fine-tuning examples come from the pre-training train documents; the examples
it is scored on come from the valid and test documents, which neither
pre-training nor fine-tuning saw (held-out documents).
"""

import collections
import os
import random
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Dict, List

from fairseq_maskplug.errors import CorpusError

from .prepare import SPLITS, binarize, read_manifest, split_by_document, write_tag_dictionary
from .readers import brown_files, read_documents


@dataclass
class GenreTask:
    """Where the task was written and what it holds."""

    path: str
    genres: List[str]
    examples: Dict[str, int]  # split -> chunks
    majority_share: float  # share of the held-out chunks that the most frequent train genre labels


def brown_genres(path: str) -> List[str]:
    """The genre of every Brown document, in the readers' (file-name) order."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("cats.txt"))
            text = archive.read(name).decode("latin-1")
    else:
        with open(os.path.join(path, "cats.txt"), encoding="latin-1") as handle:
            text = handle.read()
    genre_of = dict(line.split() for line in text.splitlines() if line.strip())
    return [genre_of[name] for name, _ in brown_files(path)]


def chunks(lines: List[str], processor, max_pieces: int) -> List[str]:
    """Consecutive sentences joined while their pieces fit ``max_pieces``
    (a longer sentence is cut), as space-separated pieces."""
    out, current = [], []
    for line in lines:
        pieces = processor.encode(line, out_type=str)[:max_pieces]
        if current and len(current) + len(pieces) > max_pieces:
            out.append(" ".join(current))
            current = []
        current += pieces
    if current:
        out.append(" ".join(current))
    return out


def write_genre_task(data_dir: str, out_dir: str, max_pieces: int = 60, train_examples: int = 3000,
                     seed: int = 1) -> GenreTask:  # fmt: skip
    """Build the task from the Brown corpus that ``data_dir`` was prepared
    from (its manifest names it): ``out_dir/input0`` (pieces binarised with
    ``data_dir/dict.txt``) and ``out_dir/label``; ``train`` holds
    ``train_examples`` chunks drawn from the train documents, ``valid`` every
    chunk of the held-out (valid and test) documents."""
    import sentencepiece as spm

    manifest = read_manifest(data_dir)
    if manifest is None or not manifest.pos_source or not manifest.pos_source.startswith("brown"):
        raise CorpusError(f"{data_dir}: the genre task needs a data dir prepared from the Brown corpus (with --pos)")
    documents, genres = read_documents(manifest.input), brown_genres(manifest.input)
    if manifest.max_documents is not None:  # prepared from the first documents only, as prepare_corpus cut them
        documents, genres = documents[: manifest.max_documents], genres[: manifest.max_documents]
    splits = split_by_document(len(documents), 0.05, 0.05)
    processor = spm.SentencePieceProcessor(model_file=os.path.join(data_dir, "spm.model"))

    def labelled(indices):
        return [(chunk, genres[i]) for i in indices for chunk in chunks(documents[i], processor, max_pieces)]

    examples = {"train": labelled(splits["train"]), "valid": labelled(splits["valid"] + splits["test"])}
    random.Random(seed).shuffle(examples["train"])
    examples["train"] = examples["train"][:train_examples]
    labels = sorted(set(genres))
    with tempfile.TemporaryDirectory() as pieces_dir, tempfile.TemporaryDirectory() as labels_dir:
        for split in SPLITS:
            rows = examples["valid"] if split == "test" else examples[split]
            with open(os.path.join(pieces_dir, split), "w") as p, open(os.path.join(labels_dir, split), "w") as g:
                p.write("".join(f"{text}\n" for text, _ in rows))
                g.write("".join(f"{genre}\n" for _, genre in rows))
        binarize(pieces_dir, os.path.join(out_dir, "input0"), 1, srcdict=os.path.join(data_dir, "dict.txt"))
        label_dict = write_tag_dictionary(os.path.join(labels_dir, "dict.txt"), labels)
        binarize(labels_dir, os.path.join(out_dir, "label"), 1, srcdict=label_dict)
    most_frequent = collections.Counter(g for _, g in examples["train"]).most_common(1)[0][0]
    majority = sum(g == most_frequent for _, g in examples["valid"]) / len(examples["valid"])
    return GenreTask(out_dir, labels, {k: len(v) for k, v in examples.items()}, majority)
