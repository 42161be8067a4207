"""Turn a raw corpus into a standard fairseq data dir for masked-LM training.

Output (``DIR``): ``dict.txt``, ``{train,valid,test}.{bin,idx}`` (fairseq's own
binariser, so stock ``fairseq-train DIR --task masked_lm`` reads it), the
sentencepiece model ``spm.model`` / ``spm.vocab`` trained on the train split
only, the natural text of each split in ``raw/{split}.txt`` and a
``manifest.json`` describing what was made.
"""

import json
import logging
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from .corpus_readers import CorpusError, Document, read_documents

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


@dataclass
class Manifest:
    input: str
    vocab_size: int
    documents: Dict[str, int] = field(default_factory=dict)
    lines: Dict[str, int] = field(default_factory=dict)
    pieces: Dict[str, int] = field(default_factory=dict)
    max_documents: Optional[int] = None


def prepared_files(out: str) -> List[str]:
    """The files this module writes into ``out`` (those that exist)."""
    names = ["dict.txt", "spm.model", "spm.vocab", MANIFEST, "preprocess.log"]
    names += [f"{s}.{ext}" for s in SPLITS for ext in ("bin", "idx")]
    names += [os.path.join("raw", f"{s}.txt") for s in SPLITS]
    return [n for n in names if os.path.exists(os.path.join(out, n))]


def split_by_document(documents: List[Document], valid_fraction: float, test_fraction: float) -> Dict[str, List[Document]]:
    """Deterministic document-level split (seeded shuffle of document indices);
    valid and test get at least one document each."""
    if len(documents) < 3:
        raise CorpusError(f"the corpus has {len(documents)} document(s); train/valid/test need at least 3")
    order = list(range(len(documents)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_valid = max(1, round(valid_fraction * len(documents)))
    n_test = max(1, round(test_fraction * len(documents)))
    chosen = {
        "valid": sorted(order[:n_valid]),
        "test": sorted(order[n_valid:n_valid + n_test]),
        "train": sorted(order[n_valid + n_test:]),
    }
    return {split: [documents[i] for i in chosen[split]] for split in SPLITS}


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


def encode_pieces(model_file: str, text_path: str, pieces_path: str) -> int:
    """Write ``text_path`` as space-separated pieces (blank lines kept);
    returns the number of pieces."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=model_file)
    total = 0
    with open(text_path, encoding="utf-8") as src, open(pieces_path, "w", encoding="utf-8") as dst:
        for line in src:
            line = line.strip()
            pieces = processor.encode(line, out_type=str) if line else []
            total += len(pieces)
            dst.write(" ".join(pieces) + "\n")
    return total


def binarize(pieces_dir: str, out: str, workers: int):
    """fairseq-preprocess --only-source on the piece files; dict from train."""
    from fairseq import options
    from fairseq_cli import preprocess

    parser = options.get_preprocessing_parser()
    args = parser.parse_args([
        "--only-source",
        "--trainpref", os.path.join(pieces_dir, "train"),
        "--validpref", os.path.join(pieces_dir, "valid"),
        "--testpref", os.path.join(pieces_dir, "test"),
        "--destdir", out,
        "--workers", str(workers),
        "--dataset-impl", "mmap",
    ])
    preprocess.main(args)


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
    documents = read_documents(options.input)
    if options.max_documents is not None:
        documents = documents[: options.max_documents]
    splits = split_by_document(documents, options.valid_fraction, options.test_fraction)

    os.makedirs(os.path.join(options.out, "raw"), exist_ok=True)
    for name in existing:
        os.remove(os.path.join(options.out, name))
    manifest = Manifest(input=os.path.abspath(options.input), vocab_size=options.vocab_size, max_documents=options.max_documents)
    for split in SPLITS:
        write_documents(os.path.join(options.out, "raw", f"{split}.txt"), splits[split])
        manifest.documents[split] = len(splits[split])
        manifest.lines[split] = sum(len(d) for d in splits[split])

    model_prefix = os.path.join(options.out, "spm")
    train_sentencepiece(os.path.join(options.out, "raw", "train.txt"), model_prefix, options.vocab_size)
    with tempfile.TemporaryDirectory() as pieces_dir:
        for split in SPLITS:
            manifest.pieces[split] = encode_pieces(
                model_prefix + ".model", os.path.join(options.out, "raw", f"{split}.txt"), os.path.join(pieces_dir, split)
            )
        binarize(pieces_dir, options.out, options.workers)
    with open(os.path.join(options.out, MANIFEST), "w") as handle:
        json.dump(asdict(manifest), handle, indent=2)
    return manifest


def read_manifest(out: str) -> Optional[Manifest]:
    path = os.path.join(out, MANIFEST)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return Manifest(**json.load(handle))

