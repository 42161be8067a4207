"""The end of ``scripts/quickstart.sh``: what the model learned, next to the
reference a model that ignores context scores.

    python -m maskplug_lab.experiments.quickstart summary SAVE_DIR LOG_FILE DATA_DIR

Prints where the checkpoint and log are, the loss at the positions whose
input is ``<mask>`` on the fixed standard validation mask (full precision)
against what ignoring context scores there (the train unigram) and the
two-neighbour count model, the other kinds of predicted position, and
fill-mask predictions (top 5, with probabilities) for a few held-out
sentences with one word masked.
"""

import argparse
import logging
import random
import warnings
from pathlib import Path
from typing import List, Tuple

import torch

from fairseq_maskplug.safe_loading import load_checkpoint
from fairseq_maskplug.scoring.validation import load_for_masking, validation_scores


def held_out_sentences(data: Path, count: int, seed: int = 0) -> List[str]:
    """``count`` sentences of 8 to 20 words from the test split's text."""
    lines = [line.strip() for line in (data / "raw" / "test.txt").read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if 8 <= len(line.split()) <= 20]
    return random.Random(seed).sample(lines, min(count, len(lines)))


@torch.no_grad()
def fill_mask(task, model, processor, sentence: str, top: int = 5) -> Tuple[str, str, List[Tuple[str, float]]]:
    """Mask one word of ``sentence`` (a single-piece word in its middle) and
    return (what the model sees: the masked sentence, cut to the window of
    pieces around the word that fits the model's positions; the word; the
    model's ``top`` guesses with their probabilities)."""
    dictionary = task.source_dictionary
    pieces = processor.encode(sentence, out_type=str)
    words = [i for i, p in enumerate(pieces) if p.startswith("\u2581") and len(p) > 2 and (i + 1 == len(pieces)
             or pieces[i + 1].startswith("\u2581")) and p[1:].isalpha()]  # fmt: skip
    middle = min(words, key=lambda i: abs(i - len(pieces) / 2)) if words else len(pieces) // 2
    # the window of pieces (and the sentence's </s>, as in the training stream) after <s> that fits the positions
    width = min(len(pieces) + 1, task.max_positions() - 1)
    start = min(max(0, middle - width // 2), len(pieces) + 1 - width)
    window = pieces[start : start + width]
    ids = [dictionary.bos()] + [dictionary.index(p) for p in window] + [dictionary.eos()] * (width - len(window))
    ids[middle - start + 1] = task.mask_idx
    tokens = torch.tensor([ids])
    predicted = tokens.eq(task.mask_idx)
    probabilities = torch.softmax(model(tokens, masked_tokens=predicted)[0].float(), dim=-1)[0]
    best = probabilities.topk(top)
    guesses = [(dictionary[i].replace("\u2581", "") or "\u2581", float(p)) for p, i in zip(best.values, best.indices)]
    shown = "".join(("\u2581<mask>" if start + i == middle else p) for i, p in enumerate(window)).replace("\u2581", " ")
    cut = ("… " if start > 0 else "") + shown.strip() + (" …" if start + len(window) < len(pieces) else "")
    return cut, pieces[middle].replace("\u2581", ""), guesses


def summary(save_dir: Path, log_file: Path, data: Path, sentences: int = 4) -> str:
    import sentencepiece as spm

    last = save_dir / "checkpoint_last.pt"
    state = load_checkpoint(last)
    task, model = load_for_masking(str(last), str(data))
    scores = validation_scores(str(last), str(data), loaded=(task, model))
    lines = [
        f"checkpoint:      {last}",
        f"best checkpoint: {save_dir / 'checkpoint_best.pt'} (lowest loss_at_mask)",
        f"training log:    {log_file}",
        f"updates:         {state['optimizer_history'][-1]['num_updates']}",
        "",
        "on the fixed standard 15% validation mask (80/10/10), by what the input shows at each predicted position:",
        scores.table(),
        "",
        f"the model: {scores.summary()}",
        "",
        "what it learned: one word of held-out sentences masked (the window the model sees), its top 5 guesses",
    ]
    processor = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    for sentence in held_out_sentences(data, sentences):
        shown, word, guesses = fill_mask(task, model, processor, sentence)
        lines.append(f"  {shown}")
        lines.append(f"    (was {word!r}) " + ", ".join(f"{piece} {p:.2f}" for piece, p in guesses))
    lines += [
        "",
        "next: the multi-seed study of every method (docs/STUDY.md), and the benchmark (docs/RESULTS.md):",
        "  python scripts/study.py --quick --arms random,cosine --seeds 1  # the machinery on a slice, about 1.5 minutes",
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
