"""Helpers behind ``scripts/quickstart.sh``: find or build a corpus, prepare it
once, and summarise a finished run.

    python -m fairseq_maskplug.corpus.quickstart data OUT_DIR [--corpus PATH]
        prints the prepared data dir (OUT_DIR/data), preparing it when needed
    python -m fairseq_maskplug.corpus.quickstart summary SAVE_DIR LOG_FILE DATA_DIR
        prints where the checkpoint and log are, the validation loss, and the
        unigram entropy of the data as a reference point
"""

import argparse
import math
import os
import sys
from pathlib import Path

from ..errors import CorpusError
from .prepare import PrepareOptions, prepare_corpus, read_manifest
from .sources import find_brown, write_stdlib_corpus


def choose_corpus(out: Path, corpus: str = None) -> str:
    """The corpus to use: the user's, else Brown, else stdlib docstrings
    (written to OUT/stdlib_docstrings.txt), saying which on stderr."""
    if corpus:
        return corpus
    brown = find_brown()
    if brown is not None:
        print(f"==> corpus: the Brown corpus at {brown}", file=sys.stderr)
        return str(brown)
    text = out / "stdlib_docstrings.txt"
    count = write_stdlib_corpus(text)
    print(
        f"==> corpus: no Brown corpus found (NLTK data folders, ../shared/data/brown.zip); built one from "
        f"the docstrings of this Python's standard library instead ({count} modules) at {text}",
        file=sys.stderr,
    )
    return str(text)


def prepared_data(out: Path, corpus: str = None) -> Path:
    """OUT/data, prepared from the chosen corpus unless it already was (same input)."""
    out.mkdir(parents=True, exist_ok=True)
    source = choose_corpus(out, corpus)
    data = out / "data"
    manifest = read_manifest(str(data))
    if manifest is not None and manifest.input == os.path.abspath(source):
        print(f"==> reusing the corpus prepared in {data}", file=sys.stderr)
        return data
    if manifest is not None:
        raise CorpusError(
            f"{data} holds a corpus prepared from {manifest.input}, not {os.path.abspath(source)}; "
            "choose another --out or remove that folder"
        )
    print(f"==> preparing {source} into {data} (sentencepiece + fairseq-preprocess)", file=sys.stderr)
    manifest = prepare_corpus(PrepareOptions(input=source, out=str(data), workers=2))
    print(f"    train/valid/test documents: {manifest.documents}", file=sys.stderr)
    return data


def unigram_entropy_bits(dict_path: Path) -> float:
    """Entropy of the piece frequencies in dict.txt: the loss of a model that
    predicts every masked piece without looking at its context."""
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(str(dict_path))
    counts = [c for c in dictionary.count[dictionary.nspecial :] if c > 0]
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts)


def summary(save_dir: Path, log_file: Path, data: Path) -> str:
    import torch

    last = save_dir / "checkpoint_last.pt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    extra = state.get("extra_state", {})
    lines = [
        f"checkpoint:      {last}",
        f"best checkpoint: {save_dir / 'checkpoint_best.pt'}",
        f"training log:    {log_file}",
        f"updates:         {state['optimizer_history'][-1]['num_updates']}",
    ]
    if extra.get("val_loss") is not None:
        lines.append(
            f"validation loss: {extra['val_loss']:.3f} bits per predicted token "
            f"(fixed standard 15% mask; best {extra.get('best', extra['val_loss']):.3f})"
        )
    lines.append(
        f"reference:       {unigram_entropy_bits(data / 'dict.txt'):.3f} bits = unigram entropy of the pieces "
        "(what ignoring context scores)"
    )
    lines += [
        "",
        "next: compare the methods on this corpus (loss against updates and seconds: curves.png, curves.md)",
        f"  python scripts/compare_methods.py --data {data} --arms stock,random,fully_explored,cosine,mapnet,mae_lm "
        f"--out {data.parent / 'compare'}",
        "  and their speed and memory against stock masked_lm (docs/RESULTS.md has both, measured):",
        "  python scripts/prepare_corpus.py --input ../shared/data/brown.zip --out runs/brown_pos --pos",
        "  python scripts/benchmark.py --data runs/brown_pos --json runs/benchmark.json",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data")
    data.add_argument("out", type=Path)
    data.add_argument("--corpus", default=None)
    report = commands.add_parser("summary")
    report.add_argument("save_dir", type=Path)
    report.add_argument("log_file", type=Path)
    report.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            print(prepared_data(args.out, args.corpus))
        else:
            print(summary(args.save_dir, args.log_file, args.data))
    except CorpusError as error:
        sys.exit(f"quickstart: error: {error}")


if __name__ == "__main__":
    main()
