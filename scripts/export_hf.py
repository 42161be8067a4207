#!/usr/bin/env python
"""Export a checkpoint this plugin trained to a Hugging Face transformers directory.

    python scripts/export_hf.py CHECKPOINT OUT_DIR [--data DIR] [--force]

Any checkpoint: RoBERTa trained with any masking option, MAPNet's model
(without its proposal network), MAE-LM's encoder (without its decoder).
OUT_DIR gets config.json, model.safetensors and the tokenizer (tokenizer.json:
sentencepiece's pieces at fairseq's ids), which load offline with
AutoModelForMaskedLM.from_pretrained(OUT_DIR) and AutoTokenizer.from_pretrained(OUT_DIR).
Nothing is written unless transformers' logits equal fairseq's (max abs
difference <= 1e-4) and the tokenizer gives fairseq's ids on every test-split line.
"""

import argparse
import logging
import sys

from fairseq_maskplug.errors import ExportError
from fairseq_maskplug.models.export_hf import export_hf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("--data", default=None, help="the data dir it was trained on (default: the checkpoint's)")
    parser.add_argument("--force", action="store_true", help="replace an existing export in OUT_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    try:
        result = export_hf(args.checkpoint, args.out_dir, args.data, force=args.force)
    except ExportError as error:
        sys.exit(f"export_hf.py: error: {error}")
    print(
        f"wrote {result.path}: {result.parameters:,} parameters; transformers' logits differ from fairseq's by at "
        f"most {result.max_logit_difference:.2e}; the tokenizer matched fairseq's ids on {result.lines_checked} "
        "test-split lines"
    )


if __name__ == "__main__":
    main()
