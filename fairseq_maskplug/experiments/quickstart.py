"""The end of ``scripts/quickstart.sh``: what the model learned, next to the
reference a model that ignores context scores.

    python -m fairseq_maskplug.experiments.quickstart summary SAVE_DIR LOG_FILE DATA_DIR

Prints where the checkpoint and log are, the loss on the fixed standard
validation mask (full precision) against the unigram entropy of the pieces,
and fill-mask predictions (top 5, with probabilities) for a few held-out
sentences with one word masked.
"""

import argparse
import logging
import random
import warnings
from pathlib import Path
from typing import List, Tuple

import torch

from ..corpus.quickstart import unigram_entropy_bits
from ..diagnostics.validation import load_for_masking, standard_validation_loss


def held_out_sentences(data: Path, count: int, seed: int = 0) -> List[str]:
    """``count`` sentences of 8 to 20 words from the test split's text."""
    lines = [line.strip() for line in (data / "raw" / "test.txt").read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if 8 <= len(line.split()) <= 20]
    return random.Random(seed).sample(lines, min(count, len(lines)))


@torch.no_grad()
def fill_mask(task, model, processor, sentence: str, top: int = 5) -> Tuple[str, str, List[Tuple[str, float]]]:
    """Mask one word of ``sentence`` (a single-piece word in its middle) and
    return (the masked sentence, the word, the model's ``top`` guesses with
    their probabilities)."""
    dictionary = task.source_dictionary
    pieces = processor.encode(sentence, out_type=str)
    words = [i for i, p in enumerate(pieces) if p.startswith("\u2581") and len(p) > 2 and (i + 1 == len(pieces)
             or pieces[i + 1].startswith("\u2581")) and p[1:].isalpha()]  # fmt: skip
    middle = min(words, key=lambda i: abs(i - len(pieces) / 2)) if words else len(pieces) // 2
    ids = [dictionary.bos()] + [dictionary.index(p) for p in pieces] + [dictionary.eos()]
    ids[middle + 1] = task.mask_idx
    tokens = torch.tensor([ids])
    predicted = tokens.eq(task.mask_idx)
    probabilities = torch.softmax(model(tokens, masked_tokens=predicted)[0].float(), dim=-1)[0]
    best = probabilities.topk(top)
    guesses = [(dictionary[i].replace("\u2581", "") or "\u2581", float(p)) for p, i in zip(best.values, best.indices)]
    shown = "".join(("\u2581<mask>" if i == middle else p) for i, p in enumerate(pieces)).replace("\u2581", " ").strip()
    return shown, pieces[middle].replace("\u2581", ""), guesses


def summary(save_dir: Path, log_file: Path, data: Path, sentences: int = 4) -> str:
    import sentencepiece as spm

    last = save_dir / "checkpoint_last.pt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    loss = standard_validation_loss(str(last), str(data)).loss_bits
    unigram = unigram_entropy_bits(data / "dict.txt")
    lines = [
        f"checkpoint:      {last}",
        f"best checkpoint: {save_dir / 'checkpoint_best.pt'}",
        f"training log:    {log_file}",
        f"updates:         {state['optimizer_history'][-1]['num_updates']}",
        f"validation loss: {loss:.3f} bits per predicted token (fixed standard 15% mask)",
        f"reference:       {unigram:.3f} bits = unigram entropy of the pieces (what ignoring context scores); "
        f"the model is {abs(unigram - loss):.3f} bits {'below' if loss < unigram else 'above'} it",
        "",
        "what it learned: one word of held-out sentences masked, its top 5 guesses",
    ]
    task, model = load_for_masking(str(last), str(data))
    processor = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    for sentence in held_out_sentences(data, sentences):
        shown, word, guesses = fill_mask(task, model, processor, sentence)
        lines.append(f"  {shown}")
        lines.append(f"    (was {word!r}) " + ", ".join(f"{piece} {p:.2f}" for piece, p in guesses))
    lines += [
        "",
        "next: the multi-seed study of every method (docs/STUDY.md), and the benchmark (docs/RESULTS.md):",
        "  python scripts/study.py --quick    # a first look, in a couple of minutes",
        f"  python scripts/compare_methods.py --data {data} --arms random,fully_explored,cosine,mapnet,mae_lm "
        f"--out {data.parent / 'compare'}",
        "  python scripts/benchmark.py --data runs/brown_pos --json runs/benchmark.json",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("summary")
    report.add_argument("save_dir", type=Path)
    report.add_argument("log_file", type=Path)
    report.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    warnings.filterwarnings("ignore", module="fairseq|torch")  # torch.load's and the loader's advice to fairseq
    print(summary(args.save_dir, args.log_file, args.data))


if __name__ == "__main__":
    main()
