"""Turn a raw corpus into a standard fairseq data dir for masked-LM training.

Output (``DIR``): ``dict.txt``, ``{train,valid,test}.{bin,idx}`` (fairseq's own
binariser, so stock ``fairseq-train DIR --task masked_lm`` reads it), the
sentencepiece model ``spm.model`` / ``spm.vocab`` trained on the train split
only, the natural text of each split in ``raw/{split}.txt`` and a
``manifest.json`` describing what was made. With ``pos``, also ``pos/dict.txt``
and ``pos/{split}.{bin,idx}``: one tag per piece, line for line, so that token
blocks and tag blocks line up exactly.
"""

import json
import logging
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from fairseq_maskplug.data.pos_dataset import POS_DIR
from fairseq_maskplug.errors import CorpusError

from .pos_tagging import SPACY_TAGS, UNIVERSAL_TAGS, TaggedLine, piece_tags, tag_brown, tag_with_spacy
from .readers import Document, is_brown, read_documents

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
SPLIT_SEED = 1234


@dataclass
class PrepareOptions:
    input: str
    out: str
    vocab_size: int = 8000
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    max_documents: Optional[int] = None  # first N documents only (tests, demos)
    force: bool = False
    workers: int = 1
    pos: bool = False  # also write the aligned POS side input
    pos_map: Optional[str] = None  # Brown -> universal tag map (default: en-brown.map beside the input)
    spacy_model: str = "en_core_web_sm"  # tagger for raw text


@dataclass
class Manifest:
    input: str
    vocab_size: int
    documents: Dict[str, int] = field(default_factory=dict)
    lines: Dict[str, int] = field(default_factory=dict)
    pieces: Dict[str, int] = field(default_factory=dict)
    max_documents: Optional[int] = None
    pos_source: Optional[str] = None
    pos_unaligned_lines: Dict[str, int] = field(default_factory=dict)


def prepared_files(out: str) -> List[str]:
    """The files this module writes into ``out`` (those that exist)."""
    names = ["dict.txt", "spm.model", "spm.vocab", MANIFEST, "preprocess.log"]
    names += [f"{s}.{ext}" for s in SPLITS for ext in ("bin", "idx")]
    names += [os.path.join("raw", f"{s}.txt") for s in SPLITS]
    names += [os.path.join(POS_DIR, "dict.txt"), os.path.join(POS_DIR, "preprocess.log")]
    names += [os.path.join(POS_DIR, f"{s}.{ext}") for s in SPLITS for ext in ("bin", "idx")]
    return [n for n in names if os.path.exists(os.path.join(out, n))]


def split_by_document(count: int, valid_fraction: float, test_fraction: float) -> Dict[str, List[int]]:
    """Deterministic document-level split of ``count`` documents (seeded
    shuffle of their indices): split -> sorted document indices; valid and
    test get at least one document each."""
    if count < 3:
        raise CorpusError(f"the corpus has {count} document(s); train/valid/test need at least 3")
    order = list(range(count))
    random.Random(SPLIT_SEED).shuffle(order)
    n_valid = max(1, round(valid_fraction * count))
    n_test = max(1, round(test_fraction * count))
    return {
        "valid": sorted(order[:n_valid]),
        "test": sorted(order[n_valid : n_valid + n_test]),
        "train": sorted(order[n_valid + n_test :]),
    }


def write_documents(path: str, documents: List[Document]):
    """One line per sentence, a blank line between documents (fairseq's
    ``complete_doc`` convention)."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n\n".join("\n".join(doc) for doc in documents) + "\n")


def train_sentencepiece(train_text: str, model_prefix: str, vocab_size: int):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=train_text,
        model_prefix=model_prefix,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,  # small corpora: fewer pieces instead of an error
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        num_threads=max(1, os.cpu_count() or 1),
        minloglevel=2,
    )


def encode_split(
    model_file: str,
    documents: List[Document],
    pieces_path: str,
    tagged: Optional[List[List[TaggedLine]]] = None,
    tags_path: Optional[str] = None,
):
    """Write ``documents`` as space-separated pieces, one line per line and a
    blank line between documents; with ``tagged``, also one tag per piece to
    ``tags_path``, line for line. Returns (pieces, lines whose tags could not
    be aligned and were written as X)."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=model_file)
    total, unaligned = 0, 0
    with (
        open(pieces_path, "w", encoding="utf-8") as pieces_out,
        open(tags_path or os.devnull, "w", encoding="utf-8") as tags_out,
    ):
        for d, document in enumerate(documents):
            if d:
                pieces_out.write("\n")
                tags_out.write("\n")
            for i, line in enumerate(document):
                pieces = processor.encode(line, out_type=str)
                total += len(pieces)
                pieces_out.write(" ".join(pieces) + "\n")
                if tagged is not None:
                    tags = piece_tags(tagged[d][i], pieces)
                    if tags is None:
                        unaligned += 1
                        tags = ["X"] * len(pieces)
                    tags_out.write(" ".join(tags) + "\n")
    return total, unaligned


def binarize(pieces_dir: str, out: str, workers: int, srcdict: Optional[str] = None):
    """fairseq-preprocess --only-source on the piece files; the dictionary is
    built from train unless ``srcdict`` is given."""
    from fairseq import options
    from fairseq_cli import preprocess

    parser = options.get_preprocessing_parser()
    args = parser.parse_args(
        [
            "--only-source",
            "--trainpref",
            os.path.join(pieces_dir, "train"),
            "--validpref",
            os.path.join(pieces_dir, "valid"),
            "--testpref",
            os.path.join(pieces_dir, "test"),
            "--destdir",
            out,
            "--workers",
            str(workers),
            "--dataset-impl",
            "mmap",
            *(["--srcdict", srcdict] if srcdict else []),
        ]
    )
    preprocess.main(args)


def write_tag_dictionary(path: str, tags) -> str:
    """A fairseq dict.txt holding exactly ``tags`` (specials come first when loaded)."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for tag in tags:
        dictionary.add_symbol(tag)
    dictionary.save(path)
    return path


def read_corpus(options: PrepareOptions):
    """(documents, tagged documents or None, tag source or None)."""
    if not options.pos:
        return read_documents(options.input), None, None
    if os.path.exists(options.input) and is_brown(options.input):
        pos_map = options.pos_map or os.path.join(os.path.dirname(os.path.abspath(options.input)), "en-brown.map")
        tagged = tag_brown(options.input, pos_map)
        return [[line.text for line in doc] for doc in tagged], tagged, f"brown-gold:{os.path.abspath(pos_map)}"
    documents = read_documents(options.input)
    return documents, tag_with_spacy(documents, options.spacy_model), f"spacy:{options.spacy_model}"


def prepare_corpus(options: PrepareOptions) -> Manifest:
    """Read, split, train sentencepiece on train, encode, binarise.

    Refuses an output folder that already holds a prepared corpus unless
    ``force`` (then only the files listed by :func:`prepared_files` are replaced).
    """
    if options.vocab_size < 50:
        raise CorpusError(f"--vocab-size must be at least 50, got {options.vocab_size}")
    existing = prepared_files(options.out) if os.path.isdir(options.out) else []
    if existing and not options.force:
        raise CorpusError(
            f"--out {options.out} already holds a prepared corpus ({', '.join(existing[:4])}"
            f"{', ...' if len(existing) > 4 else ''}); pass --force to replace it or choose another --out"
        )
    documents, tagged, pos_source = read_corpus(options)
    if options.max_documents is not None:
        documents = documents[: options.max_documents]
        tagged = None if tagged is None else tagged[: options.max_documents]
    splits = split_by_document(len(documents), options.valid_fraction, options.test_fraction)

    os.makedirs(os.path.join(options.out, "raw"), exist_ok=True)
    for name in existing:
        os.remove(os.path.join(options.out, name))
    manifest = Manifest(
        input=os.path.abspath(options.input),
        vocab_size=options.vocab_size,
        max_documents=options.max_documents,
        pos_source=pos_source,
    )
    for split, indices in splits.items():
        write_documents(os.path.join(options.out, "raw", f"{split}.txt"), [documents[i] for i in indices])
        manifest.documents[split] = len(indices)
        manifest.lines[split] = sum(len(documents[i]) for i in indices)

    model_prefix = os.path.join(options.out, "spm")
    train_sentencepiece(os.path.join(options.out, "raw", "train.txt"), model_prefix, options.vocab_size)
    with tempfile.TemporaryDirectory() as pieces_dir, tempfile.TemporaryDirectory() as tags_dir:
        for split, indices in splits.items():
            manifest.pieces[split], manifest.pos_unaligned_lines[split] = encode_split(
                model_prefix + ".model",
                [documents[i] for i in indices],
                os.path.join(pieces_dir, split),
                None if tagged is None else [tagged[i] for i in indices],
                os.path.join(tags_dir, split),
            )
        binarize(pieces_dir, options.out, options.workers)
        if tagged is not None:
            pos_out = os.path.join(options.out, POS_DIR)
            os.makedirs(pos_out, exist_ok=True)
            tags = UNIVERSAL_TAGS if pos_source.startswith("brown") else SPACY_TAGS
            binarize(tags_dir, pos_out, options.workers, srcdict=write_tag_dictionary(os.path.join(pos_out, "dict.txt"), tags))
    if tagged is None:
        manifest.pos_unaligned_lines = {}
    with open(os.path.join(options.out, MANIFEST), "w") as handle:
        json.dump(asdict(manifest), handle, indent=2)
    return manifest


# where the packaged Brown corpus lay before the lab had a package of its own
FORMER_PACKAGED_CORPUS = os.path.join("fairseq_maskplug", "corpus", "brown") + os.sep


def relocated(path: str) -> str:
    """``path``, or, where it names a file of the packaged Brown corpus at its
    former place and is gone, that file where the lab carries it now."""
    if path and not os.path.exists(path) and FORMER_PACKAGED_CORPUS in path:
        from .sources import PACKAGED_BROWN

        return str(PACKAGED_BROWN.parent / path.split(FORMER_PACKAGED_CORPUS)[-1])
    return path


def read_manifest(out: str) -> Optional[Manifest]:
    """The manifest of a prepared data dir (None without one); a corpus path
    it records from the packaged Brown's former place points at its new one."""
    path = os.path.join(out, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        manifest = Manifest(**json.load(handle))
    manifest.input = relocated(manifest.input)
    return manifest
