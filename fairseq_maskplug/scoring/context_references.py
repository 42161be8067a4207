"""What two context-free or near-context-free predictors score at a model's
``<mask>`` positions: the references its masked-position loss is read against.

- **unigram**: p(x), the training split's piece frequencies, add-one
  smoothed, over the pieces a mask may hide (``<s>``, ``</s>``, padding and
  ``<mask>`` count 0): what a model that ignores context scores; the task's
  ``unigram_at_mask`` (``tasks.position_kinds``) is the same from dict.txt.
- **neighbours**: p(x | l, r) from counts of the training split's (left,
  piece, right) triples, l and r the input's pieces on either side of the
  position, smoothed hierarchically towards the bigrams and the unigram
  (Dirichlet / additive smoothing with one concentration β):

      p_uni(x)      = (c(x) + 1) / (N + V)     (N: the counted pieces)
      p_left(x|l)   = (c(l x) + β p_uni(x)) / (c(l ·) + β)
      p_right(x|r)  = (c(x r) + β p_uni(x)) / (c(· r) + β)
      p(x|l, r)     = (c(l x r) + β (p_left + p_right) / 2) / (c(l · r) + β)

  A neighbour the input hides (``<mask>``, ``<s>``, padding) is not used: the
  estimate backs off to the other side's bigram, or to the unigram. β is
  chosen on the training split itself by leave-one-out (each position's own
  counts removed), from a fixed grid, so no held-out text tunes it.

The training text is the split's token stream as the task reads it with
``--sample-break-mode none``: lines concatenated, each ending in ``</s>``.
"""

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
from fairseq.data import Dictionary, data_utils

BETA_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
LEAVE_ONE_OUT_POSITIONS = 50000


class SparseCounts:
    """Counts of int64 keys, looked up in bulk (sorted keys, binary search)."""

    def __init__(self, keys: np.ndarray):
        self.keys, self.counts = np.unique(keys, return_counts=True)

    def __call__(self, query: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.keys, query).clip(max=len(self.keys) - 1)
        return np.where(self.keys[index] == query, self.counts[index], 0).astype(np.float64)


@dataclass
class NeighbourCounts:
    """n-gram counts of one token stream over a V-symbol dictionary."""

    vocabulary: int
    total: int
    unigram: np.ndarray  # (V,) c(x)
    left_context: np.ndarray  # (V,) c(l ·): how often l has a right neighbour
    right_context: np.ndarray  # (V,) c(· r)
    bigrams: SparseCounts  # key l·V + x
    triples: SparseCounts  # key (l·V + x)·V + r
    outer_pairs: SparseCounts  # key l·V + r: c(l · r)

    @classmethod
    def of_stream(cls, stream: np.ndarray, vocabulary: int, never_predicted: Sequence[int]) -> "NeighbourCounts":
        """Counts of ``stream``; the ids ``never_predicted`` get unigram count 0
        (they still count as neighbours)."""
        s = stream.astype(np.int64)
        v = vocabulary
        unigram = np.bincount(s, minlength=v).astype(np.float64)
        unigram[list(never_predicted)] = 0.0
        return cls(
            vocabulary=v,
            total=int(unigram.sum()),
            unigram=unigram,
            left_context=np.bincount(s[:-1], minlength=v).astype(np.float64),
            right_context=np.bincount(s[1:], minlength=v).astype(np.float64),
            bigrams=SparseCounts(s[:-1] * v + s[1:]),
            triples=SparseCounts((s[:-2] * v + s[1:-1]) * v + s[2:]),
            outer_pairs=SparseCounts(s[:-2] * v + s[2:]),
        )

    def log2_probabilities(
        self, left: np.ndarray, target: np.ndarray, right: np.ndarray, beta: float, held_out: bool = False
    ) -> Tuple[np.ndarray, np.ndarray]:
        """(log2 p_uni(x), log2 p(x | l, r)) for (P,) targets; ``left`` /
        ``right`` are −1 where that neighbour is not seen. ``held_out``: each
        (l, x, r) is itself one of the counted occurrences, and its counts are
        removed first (leave-one-out)."""
        v, one = self.vocabulary, 1.0 if held_out else 0.0
        x = target.astype(np.int64)
        p_uni = (self.unigram[x] - one + 1.0) / (self.total - one + v)
        has_left, has_right = left >= 0, right >= 0
        lt, rt = np.where(has_left, left, 0).astype(np.int64), np.where(has_right, right, 0).astype(np.int64)
        p_left = (self.bigrams(lt * v + x) - one + beta * p_uni) / (self.left_context[lt] - one + beta)
        p_right = (self.bigrams(x * v + rt) - one + beta * p_uni) / (self.right_context[rt] - one + beta)
        both = has_left & has_right
        p_both = (self.triples((lt * v + x) * v + rt) - one + beta * (p_left + p_right) / 2) / (
            self.outer_pairs(lt * v + rt) - one + beta
        )
        p = np.where(both, p_both, np.where(has_left, p_left, np.where(has_right, p_right, p_uni)))
        return np.log2(p_uni), np.log2(p)

    def leave_one_out_beta(self, stream: np.ndarray, positions: int = LEAVE_ONE_OUT_POSITIONS, seed: int = 0) -> float:
        """The β of :data:`BETA_GRID` with the lowest leave-one-out
        cross-entropy on ``positions`` positions of the counted ``stream``
        (positions a mask may hide: unigram count above 0)."""
        rng = np.random.default_rng(seed)
        inner = np.arange(1, len(stream) - 1)
        inner = inner[self.unigram[stream[inner]] > 0]
        at = rng.choice(inner, size=min(positions, len(inner)), replace=False)
        left, target, right = stream[at - 1], stream[at], stream[at + 1]
        losses = [-self.log2_probabilities(left, target, right, beta, held_out=True)[1].mean() for beta in BETA_GRID]
        return BETA_GRID[int(np.argmin(losses))]


def split_stream(data: str, split: str, dictionary: Dictionary) -> np.ndarray:
    """The token stream of ``split`` in the fairseq data dir ``data``: its
    lines concatenated, each ending in ``</s>`` (as the binariser wrote them)."""
    dataset = data_utils.load_indexed_dataset(f"{data}/{split}", dictionary)
    if dataset is None:
        raise FileNotFoundError(f"no binarised split '{split}' in {data} ({split}.bin / {split}.idx)")
    return np.concatenate([dataset[i].numpy() for i in range(len(dataset))])


@dataclass
class References:
    """The two references at a set of ``<mask>`` positions, in bits."""

    unigram_bits: float
    neighbours_bits: float
    beta: float
    positions: int


class ContextReferences:
    """The training split's counts and β, built once per data dir."""

    def __init__(self, data: str, dictionary: Dictionary, split: str = "train"):
        stream = split_stream(data, split, dictionary)
        self.dictionary = dictionary
        if "<mask>" not in dictionary.indices:
            raise ValueError("the dictionary has no <mask> symbol: pass the masked-LM task's source dictionary")
        self.mask_idx = dictionary.index("<mask>")
        never_predicted = (dictionary.bos(), dictionary.eos(), dictionary.pad(), self.mask_idx)
        self.counts = NeighbourCounts.of_stream(stream, len(dictionary), never_predicted)
        self.beta = self.counts.leave_one_out_beta(stream)

    def visible(self, tokens: np.ndarray) -> np.ndarray:
        """``tokens`` with −1 where the input hides the piece (``<mask>``,
        ``<s>``, padding): such a neighbour is not used."""
        hidden = np.isin(tokens, [self.mask_idx, self.dictionary.bos(), self.dictionary.pad()])
        return np.where(hidden, -1, tokens)

    def score(self, src_tokens: np.ndarray, target: np.ndarray, at: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(unigram, neighbours) log2-probabilities of ``target`` at the (P,)
        flat indices ``at`` of the (N, L) arrays, the neighbours read off the
        input ``src_tokens``."""
        rows, cols = np.unravel_index(at, src_tokens.shape)
        seen = self.visible(src_tokens)
        width = src_tokens.shape[1]
        left = np.where(cols > 0, seen[rows, np.maximum(cols - 1, 0)], -1)
        right = np.where(cols < width - 1, seen[rows, np.minimum(cols + 1, width - 1)], -1)
        return self.counts.log2_probabilities(left, target.reshape(-1)[at], right, self.beta)

    def summarise(self, unigram_log2: np.ndarray, neighbours_log2: np.ndarray) -> References:
        count = len(unigram_log2)
        return References(
            unigram_bits=float(-unigram_log2.mean()) if count else math.nan,
            neighbours_bits=float(-neighbours_log2.mean()) if count else math.nan,
            beta=self.beta,
            positions=count,
        )
