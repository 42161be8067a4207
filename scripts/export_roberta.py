#!/usr/bin/env python
"""Export an MAE-LM checkpoint as a stock fairseq roberta checkpoint.

    python scripts/export_roberta.py CHECKPOINT OUT_DIR [--dict DICT] [--sentencepiece-model SPM]

Writes OUT_DIR/model.pt (encoder only), OUT_DIR/dict.txt and, when the data
dir has one, OUT_DIR/sentencepiece.bpe.model. Load it with stock fairseq:
RobertaModel.from_pretrained(OUT_DIR, 'model.pt', bpe='sentencepiece').
"""

import argparse
import logging
import sys

import fairseq_maskplug  # noqa: F401  (registers mae_lm to read the checkpoint)
from fairseq_maskplug.models.export import ExportError, export_roberta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--dict", default=None, help="dict.txt (default: from the checkpoint's data dir)")
    parser.add_argument("--sentencepiece-model", default=None, help="spm model (default: DATA/spm.model)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT_DIR/model.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    try:
        path = export_roberta(args.checkpoint, args.out_dir, args.dict, args.sentencepiece_model, args.force)
    except ExportError as error:
        sys.exit(f"export_roberta.py: error: {error}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
