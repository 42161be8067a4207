"""Cost of making masks: stock ``MaskTokensDataset`` (per item, in data
loading) against this project's ``Masker`` (per batch, on the device).

Both mask the same sequences (random ordinary tokens after ``<s>``) at 15 %,
80/10/10. Stock's cost is what its collater pays per sequence: the source
item and the target item, each of which draws the mask again from the item's
seeded numpy generator. The Masker's cost is the per-sequence draws (CPU
generators, moved to the device) plus the masking arithmetic on the device.
"""

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from fairseq.data import Dictionary, ListDataset, MaskTokensDataset

from ..data.vocabulary import build_masker
from ..masking import CorruptionRule, MaskDraws, RatioSchedule, UniformUnits


@dataclass
class MaskingCost:
    sequences: int
    length: int
    device: str
    stock_seconds: float  # MaskTokensDataset: source + target item for every sequence
    masker_seconds: float  # draws + Masker, in batches
    masker_draws_seconds: float  # of which: the per-sequence draws

    @property
    def stock_over_masker(self) -> float:
        return self.stock_seconds / self.masker_seconds


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


def masker_seconds(dictionary: Dictionary, mask_idx: int, tokens: torch.Tensor, device: str, batch_size: int):
    """(total seconds, of which draws) to mask ``tokens`` in batches on ``device``."""
    strategy = UniformUnits(
        build_masker(dictionary, mask_idx, CorruptionRule(0.1, 0.1), whole_words=False, frequency_weighted=False),
        RatioSchedule.build("constant", 0.15, 0),
    )
    batches = [tokens[i : i + batch_size].to(device) for i in range(0, len(tokens), batch_size)]
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    strategy(batches[0], MaskDraws.for_sequences("train", 1, 0, range(len(batches[0])), tokens.size(1), device), 0)
    synchronize()  # warm-up (lazy CUDA initialisation, allocator)
    total = draws_total = 0.0
    for number, batch in enumerate(batches):
        started = time.perf_counter()
        ids = range(number * batch_size, number * batch_size + len(batch))
        draws = MaskDraws.for_sequences("train", 1, 1, ids, batch.size(1), device)
        synchronize()
        drawn = time.perf_counter()
        strategy(batch, draws, 1)
        synchronize()
        total += time.perf_counter() - started
        draws_total += drawn - started
    return total, draws_total


def masking_cost(
    dictionary: Dictionary,
    sequences: int = 1000,
    length: int = 512,
    device: str = "cpu",
    batch_size: int = 32,
    repeats: int = 3,
) -> MaskingCost:
    """Medians over ``repeats`` passes over the same ``sequences``."""
    mask_idx = dictionary.index("<mask>") if "<mask>" in dictionary.indices else dictionary.add_symbol("<mask>")
    tokens = random_sequences(dictionary, sequences, length)
    stock = [stock_seconds(dictionary, mask_idx, tokens) for _ in range(repeats)]
    masker = [masker_seconds(dictionary, mask_idx, tokens, device, batch_size) for _ in range(repeats)]
    return MaskingCost(
        sequences,
        length,
        device,
        statistics.median(stock),
        statistics.median(total for total, _ in masker),
        statistics.median(draws for _, draws in masker),
    )
