"""Cost of making masks: stock ``MaskTokensDataset`` (per item, in data
loading) against this project's masking (per batch, on the device).

Both mask the same sequences (random ordinary tokens after ``<s>``) at 15 %,
80/10/10. Stock's cost is what its collater pays per sequence: the source
item and the target item, each of which draws the mask again from the item's
seeded numpy generator. Ours is the uniform strategy's, draws (the
counter-based hash, computed where it is used) and masking arithmetic, on
the device, in batches of several sizes: its cost per sequence should not
grow with the batch.
"""

import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from fairseq.data import Dictionary, ListDataset, MaskTokensDataset

from fairseq_maskplug.data.vocabulary import build_masker
from fairseq_maskplug.masking import CorruptionRule, MaskDraws, RatioSchedule, UniformUnits

BATCH_SIZES = (8, 32, 256)
REFERENCE_BATCH = 32  # the batch the ratio to stock is taken at


@dataclass
class MaskingCost:
    sequences: int
    length: int
    device: str
    stock_seconds: float  # MaskTokensDataset: source + target item for every sequence
    masker_seconds: float  # draws + masking, in batches of REFERENCE_BATCH
    masker_draws_seconds: float  # of which: computing the draws
    seconds_by_batch: Dict[int, float] = field(default_factory=dict)  # batch size -> seconds for all sequences

    @property
    def stock_over_masker(self) -> float:
        return self.stock_seconds / self.masker_seconds

    def per_batch_line(self) -> Tuple[float, float]:
        """(fixed seconds per batch, seconds per sequence): the least-squares
        line through the cost of one batch against its size. A flat cost
        per sequence has a fixed part near 0."""
        sizes = sorted(self.seconds_by_batch)
        per_batch = [self.seconds_by_batch[b] * b / self.sequences for b in sizes]
        mean_size, mean_cost = statistics.fmean(sizes), statistics.fmean(per_batch)
        slope = sum((b - mean_size) * (c - mean_cost) for b, c in zip(sizes, per_batch)) / sum(
            (b - mean_size) ** 2 for b in sizes
        )
        return mean_cost - slope * mean_size, slope


class TimedDraws(MaskDraws):
    """MaskDraws that add the (synchronised) time spent computing them to ``seconds``."""

    seconds = 0.0

    def _timed(self, compute, *args):
        synchronize(self.keys.device)
        started = time.perf_counter()
        values = compute(*args)
        synchronize(self.keys.device)
        TimedDraws.seconds += time.perf_counter() - started
        return values

    def hashes(self, slot):
        return self._timed(super().hashes, slot)

    def at(self, slot, rows, positions):
        return self._timed(super().at, slot, rows, positions)

    def per_sequence(self, slot):
        return self._timed(super().per_sequence, slot)


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def random_sequences(dictionary: Dictionary, sequences: int, length: int, seed: int = 0) -> torch.Tensor:
    """(sequences, length) long: ``<s>`` then uniformly drawn ordinary symbols."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(dictionary.nspecial, len(dictionary) - 1, (sequences, length), generator=generator)
    tokens[:, 0] = dictionary.bos()
    return tokens


def stock_seconds(dictionary: Dictionary, mask_idx: int, tokens: torch.Tensor) -> float:
    items = ListDataset(list(tokens), sizes=np.full(len(tokens), tokens.size(1)))
    source, target = MaskTokensDataset.apply_mask(
        items,
        dictionary,
        pad_idx=dictionary.pad(),
        mask_idx=mask_idx,
        seed=1,
        mask_prob=0.15,
        leave_unmasked_prob=0.1,
        random_token_prob=0.1,
    )
    source.set_epoch(1)
    target.set_epoch(1)
    started = time.perf_counter()
    for index in range(len(items)):
        source[index], target[index]
    return time.perf_counter() - started


def masker_seconds(
    dictionary: Dictionary, mask_idx: int, tokens: torch.Tensor, device: str, batch_size: int, draws_type=MaskDraws
) -> float:
    """Seconds to mask ``tokens`` in batches of ``batch_size`` on ``device``
    (the sample ids already there, as a batch's are)."""
    strategy = UniformUnits(
        build_masker(dictionary, mask_idx, CorruptionRule(0.1, 0.1), whole_words=False, frequency_weighted=False),
        RatioSchedule.build("constant", 0.15, 0),
    )
    tokens = tokens.to(device)
    ids = torch.arange(len(tokens), device=device)
    batches = [(tokens[i : i + batch_size], ids[i : i + batch_size]) for i in range(0, len(tokens), batch_size)]
    strategy(batches[0][0], draws_type.for_sequences("train", 1, 0, batches[0][1], tokens.size(1), device), 0)
    synchronize(device)  # warm-up (lazy CUDA initialisation, allocator)
    started = time.perf_counter()
    for batch, batch_ids in batches:
        strategy(batch, draws_type.for_sequences("train", 1, 1, batch_ids, batch.size(1), device), 1)
    synchronize(device)
    return time.perf_counter() - started


def masking_cost(
    dictionary: Dictionary,
    sequences: int = 1000,
    length: int = 512,
    device: str = "cpu",
    batch_sizes: Sequence[int] = BATCH_SIZES,
    repeats: int = 3,
) -> MaskingCost:
    """Medians over ``repeats`` passes over the same ``sequences``."""
    mask_idx = dictionary.index("<mask>") if "<mask>" in dictionary.indices else dictionary.add_symbol("<mask>")
    tokens = random_sequences(dictionary, sequences, length)
    stock = statistics.median(stock_seconds(dictionary, mask_idx, tokens) for _ in range(repeats))
    by_batch = {
        batch: statistics.median(masker_seconds(dictionary, mask_idx, tokens, device, batch) for _ in range(repeats))
        for batch in sorted(set(batch_sizes) | {REFERENCE_BATCH})
    }
    draws = []
    for _ in range(repeats):
        TimedDraws.seconds = 0.0
        masker_seconds(dictionary, mask_idx, tokens, device, REFERENCE_BATCH, TimedDraws)
        draws.append(TimedDraws.seconds)
    return MaskingCost(sequences, length, device, stock, by_batch[REFERENCE_BATCH], statistics.median(draws), by_batch)
