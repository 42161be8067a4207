"""The quickstart's data: find or fetch a corpus and prepare it once.

python -m fairseq_maskplug.corpus.quickstart data OUT_DIR [--corpus PATH] [--vocab-size N]
    prints the prepared data dir (OUT_DIR/data), preparing it when needed
"""

import argparse
import os
import sys
from pathlib import Path

from ..errors import CorpusError
from .prepare import PrepareOptions, prepare_corpus, read_manifest
from .sources import find_brown, write_stdlib_corpus


def download_brown():
    """NLTK's Brown corpus, fetched with nltk.download when NLTK and a network
    are there; None otherwise."""
    try:
        import nltk
    except ImportError:
        return None
    try:
        nltk.download("brown", quiet=True, raise_on_error=True)
    except Exception:  # no network, a proxy refusing, ...: the fallback corpus follows
        return None
    return find_brown()


def choose_corpus(out: Path, corpus: str = None) -> str:
    """The corpus to use: the user's, else Brown, else stdlib docstrings
    (written to OUT/stdlib_docstrings.txt), saying which on stderr."""
    if corpus:
        return corpus
    brown = find_brown()
    if brown is not None:
        print(f"==> corpus: the Brown corpus at {brown}", file=sys.stderr)
        return str(brown)
    brown = download_brown()
    if brown is not None:
        print(f"==> corpus: the Brown corpus, downloaded with nltk.download('brown') to {brown}", file=sys.stderr)
        return str(brown)
    text = out / "stdlib_docstrings.txt"
    count = write_stdlib_corpus(text)
    print(
        f"==> corpus: no Brown corpus found (NLTK data folders, ../shared/data/brown.zip) nor downloadable (NLTK "
        f"and a network); built one from the docstrings of this Python's standard library instead ({count} "
        f"modules) at {text}",
        file=sys.stderr,
    )
    return str(text)


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
    data.add_argument("--corpus", default=None)
    data.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        print(prepared_data(args.out, args.corpus, args.vocab_size))
    except CorpusError as error:
        sys.exit(f"quickstart: error: {error}")


if __name__ == "__main__":
    main()
