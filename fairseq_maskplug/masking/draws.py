"""Random draws for masking: one seeded stream per sequence, made on the CPU,
used on any device.

Every sequence of a batch gets its own CPU generator, seeded from a hash of
(stream, seed, update number, sample id). Its draws are laid out position by
position, so a sequence's masks depend neither on the other sequences of its
batch nor on how far the batch is padded, nor on the device: they are a pure
function of those four values and the sequence. The same sequence is
therefore masked identically on CPU and GPU, in any batch size, on any number
of data-parallel ranks, and in a run resumed from a checkpoint.
"""

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

UNIFORMS_PER_SEQUENCE = 2  # count rounding, budget crossing
UNIFORMS_PER_POSITION = 3  # unit score, 80/10/10 decision, replacement-token draw


def sequence_seed(stream: str, seed: int, update_num: int, sample_id: int) -> int:
    """A 63-bit seed that depends only on the arguments (stable across
    processes, unlike Python's ``hash``)."""
    digest = hashlib.blake2b(f"{stream}:{int(seed)}:{int(update_num)}:{int(sample_id)}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


def sequence_generator(stream: str, seed: int, update_num: int, sample_id: int) -> torch.Generator:
    """A CPU generator for one sequence's draws."""
    return torch.Generator(device="cpu").manual_seed(sequence_seed(stream, seed, update_num, sample_id))


@dataclass
class MaskDraws:
    """Uniforms in [0, 1) for a (B, L) batch, float64, on one device.

    unit_scores: (B, L), the order in which units are chosen (lowest first).
    rounding_noise: (B,), for stochastic rounding of the per-sequence count
        (fully-explored: the rotation of the segment numbers).
    crossing_noise: (B,), whether a weighted selection keeps the unit that
        crosses the token budget.
    decision_noise: (B, L), for the 80/10/10 decision.
    token_noise: (B, L), turned into replacement ids by inverse-CDF lookup.
    """

    unit_scores: torch.Tensor
    rounding_noise: torch.Tensor
    crossing_noise: torch.Tensor
    decision_noise: torch.Tensor
    token_noise: torch.Tensor

    @classmethod
    def for_sequences(
        cls, stream: str, seed: int, update_num: int, sample_ids: Sequence[int], length: int, device
    ) -> "MaskDraws":
        """Draw each sequence's uniforms from its own generator, then move them
        to ``device``. Layout per sequence: the per-sequence uniforms, then
        three uniforms per position, so position i's values do not depend on
        ``length`` (torch's CPU generator fills sequentially)."""
        width = UNIFORMS_PER_SEQUENCE + UNIFORMS_PER_POSITION * length
        rows = [
            torch.rand(width, generator=sequence_generator(stream, seed, update_num, sample_id), dtype=torch.float64)
            for sample_id in sample_ids
        ]
        if rows:
            uniforms = torch.stack(rows).to(device)
        else:
            uniforms = torch.zeros(0, width, dtype=torch.float64, device=device)
        per_sequence = uniforms[:, :UNIFORMS_PER_SEQUENCE].unbind(-1)
        per_position = uniforms[:, UNIFORMS_PER_SEQUENCE:].view(len(rows), length, UNIFORMS_PER_POSITION).unbind(-1)
        rounding_noise, crossing_noise = (u.contiguous() for u in per_sequence)
        unit_scores, decision_noise, token_noise = (u.contiguous() for u in per_position)
        return cls(unit_scores, rounding_noise, crossing_noise, decision_noise, token_noise)
