"""The quickstart's data: choose a corpus and prepare it once.

python -m maskplug_lab.corpus.quickstart data OUT_DIR [--corpus PATH|nltk|stdlib] [--vocab-size N]
    prints the prepared data dir (OUT_DIR/data), preparing it when needed
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from fairseq_maskplug.errors import CorpusError

from .prepare import PrepareOptions, prepare_corpus, read_manifest
from .sources import PACKAGED_BROWN, find_nltk_brown, write_stdlib_corpus

CORPUS_CHOICES = "a path, `nltk` (NLTK's Brown corpus) or `stdlib` (the standard library's docstrings)"


def nltk_brown() -> str:
    """NLTK's Brown corpus from its data folders, else fetched with
    nltk.download; a CorpusError when neither works."""
    found = find_nltk_brown()
    if found is not None:
        return str(found)
    try:
        import nltk

        nltk.download("brown", quiet=True, raise_on_error=True)
    except Exception as error:  # no NLTK, no network, a proxy refusing, ...
        raise CorpusError(f"--corpus nltk: NLTK's Brown corpus is not in its data folders and could not be "
                          f"downloaded ({type(error).__name__}: {error}); omit --corpus to use the copy this "
                          "repository carries") from error  # fmt: skip
    return str(find_nltk_brown())


def choose_corpus(out: Path, corpus: str = None) -> str:
    """The corpus to use, saying which on stderr: without ``corpus`` the Brown
    corpus this package carries; ``nltk``: NLTK's copy; ``stdlib``: the
    standard library's docstrings (written to OUT/stdlib_docstrings.txt);
    anything else is a path."""
    if corpus is None:
        print(f"==> corpus: the Brown corpus this repository carries ({PACKAGED_BROWN})", file=sys.stderr)
        return str(PACKAGED_BROWN)
    if corpus == "nltk":
        brown = nltk_brown()
        print(f"==> corpus: NLTK's Brown corpus at {brown}", file=sys.stderr)
        return brown
    if corpus == "stdlib":
        text = out / "stdlib_docstrings.txt"
        count = write_stdlib_corpus(text)
        print(f"==> corpus: the docstrings of this Python's standard library ({count} modules) at {text}", file=sys.stderr)
        return str(text)
    if not os.path.exists(corpus):
        raise CorpusError(f"--corpus {corpus}: no such file or folder; valid: {CORPUS_CHOICES}")
    print(f"==> corpus: {corpus}", file=sys.stderr)
    return corpus


def prepared_data(out: Path, corpus: str = None, vocab_size: int = 8000) -> Path:
    """OUT/data, prepared from the chosen corpus unless it already was (same input)."""
    out.mkdir(parents=True, exist_ok=True)
    source = choose_corpus(out, corpus)
    data = out / "data"
    manifest = read_manifest(str(data))
    if manifest is not None and manifest.input == os.path.abspath(source) and manifest.vocab_size == vocab_size:
        print(f"==> reusing the corpus prepared in {data}", file=sys.stderr)
        return data
    if manifest is not None:
        raise CorpusError(
            f"{data} holds a corpus prepared from {manifest.input} with {manifest.vocab_size} pieces, not from "
            f"{os.path.abspath(source)} with {vocab_size}; choose another --out or remove that folder"
        )
    print(f"==> preparing {source} into {data} (sentencepiece + fairseq-preprocess)", file=sys.stderr)
    manifest = prepare_corpus(PrepareOptions(input=source, out=str(data), vocab_size=vocab_size, workers=2))
    print(f"    train/valid/test documents: {manifest.documents}", file=sys.stderr)
    return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data")
    data.add_argument("out", type=Path)
    data.add_argument("--corpus", default=None, help=f"{CORPUS_CHOICES}; default: the Brown corpus this repository carries")
    data.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args(argv)
    # fairseq-preprocess's INFO lines (its arguments, the counts) go to DATA/preprocess.log, its own file, not the console
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", force=True)
    logging.getLogger().handlers[0].setLevel(logging.WARNING)
    try:
        print(prepared_data(args.out, args.corpus, args.vocab_size))
    except CorpusError as error:
        sys.exit(f"quickstart: error: {error}")


if __name__ == "__main__":
    main()
