#!/usr/bin/env python
"""Prepare a fairseq data dir (dict.txt, {train,valid,test}.{bin,idx}, spm.model)
from a Brown-format zip/folder, a plain-text file or a folder of .txt files."""

import argparse
import logging
import sys

from fairseq_maskplug.errors import CorpusError
from maskplug_lab.corpus.prepare import PrepareOptions, prepare_corpus


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="Brown zip/folder, text file, or folder of .txt files")
    parser.add_argument("--out", required=True, help="output data directory")
    parser.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary size (default 8000)")
    parser.add_argument("--max-documents", type=int, default=None, help="use only the first N documents")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers")
    parser.add_argument("--force", action="store_true", help="replace a corpus already prepared in --out")
    parser.add_argument(
        "--pos", action="store_true", help="also write the aligned POS side input (Brown: gold tags; raw text: spaCy)"
    )
    parser.add_argument("--pos-map", default=None, help="Brown -> universal tag map (default: en-brown.map beside --input)")
    parser.add_argument("--spacy-model", default="en_core_web_sm", help="spaCy model for --pos on raw text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        manifest = prepare_corpus(
            PrepareOptions(
                input=args.input,
                out=args.out,
                vocab_size=args.vocab_size,
                max_documents=args.max_documents,
                force=args.force,
                workers=args.workers,
                pos=args.pos,
                pos_map=args.pos_map,
                spacy_model=args.spacy_model,
            )
        )
    except CorpusError as error:
        sys.exit(f"prepare_corpus.py: error: {error}")
    for split in ("train", "valid", "test"):
        print(
            f"{split:5s}: {manifest.documents[split]:5d} documents, {manifest.lines[split]:7d} lines, "
            f"{manifest.pieces[split]:9d} pieces"
        )
    if manifest.pos_source:
        print(f"POS side input from {manifest.pos_source}; lines not aligned (tagged X): {manifest.pos_unaligned_lines}")
    print(f"prepared {args.out}")


if __name__ == "__main__":
    main()
