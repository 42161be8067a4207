"""Random draws for masking: counter-based, computed on the tokens' device.

Every uniform a mask is made from is a pure function of (stream, seed, update
number, sample id, position, slot): a hash of that counter, computed for the
whole batch at once with integer tensor operations. A sequence's masks
therefore depend neither on the other sequences of its batch, nor on how far
the batch is padded, nor on the device, nor on the number of data-parallel
ranks, and a run resumed from a checkpoint draws exactly what the
uninterrupted run would have drawn. There is no generator state and no
Python loop over sequences; nothing is copied from the host but the sample
ids.

The hash is SplitMix64's output function (the finaliser of Steele, Lea and
Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014, with the
"Mix13" constants of D. Stafford's "Better bit mixing", 2011, as in Vigna's
``splitmix64.c``) applied to a Weyl sequence: value n of a stream with key k
is ``mix(k + (n + 1) · γ)``, γ = 0x9E3779B97F4A7C15. It is evaluated in
torch's int64 arithmetic, which wraps modulo 2^64 on every device (the
logical right shifts are masked arithmetic shifts); a test checks it against
a pure-Python reference.

Each sequence's key is ``mix(base + (sample id + 1) · γ)``, with ``base`` a
64-bit BLAKE2b digest of (stream, seed, update). Counters: position p, slot s
→ ``p · 8 + s`` (per-position uniforms); per-sequence uniforms use counters
from 2^40 up, so they never meet a position's.
"""

import functools
import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence, Union

import torch

GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)  # as a signed int64
MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
MIX2 = 0x94D049BB133111EB - (1 << 64)
SLOTS_PER_POSITION = 8
SEQUENCE_COUNTER_BASE = 1 << 40
UNIFORM_SCALE = 2.0**-53
VERSION = "counter-splitmix64-v1"  # saved with the running state; a checkpoint of other draws is refused


class Slot(IntEnum):
    """Per-position uniforms: which value of a position a use reads."""

    UNIT_SCORE = 0  # the order in which units are chosen (lowest first)
    DECISION = 1  # the 80/10/10 decision of a unit (read at its start)
    TOKEN = 2  # the replacement token of a randomised position (inverse-CDF lookup)
    ACCEPT = 3  # whether a unit offered in the reference POS law is accepted
    SPAN_LENGTH = 4  # the length of a span starting here (stock span masking)


class SequenceSlot(IntEnum):
    """Per-sequence uniforms."""

    ROUNDING = 0  # stochastic rounding of the count (fully-explored: the segment rotation)
    CROSSING = 1  # whether a weighted selection keeps the unit that crosses the budget
    SYSTEMATIC = 2  # the offset of systematic sampling (MAPNet's inclusion sampler)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 ``x`` (torch's >> is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 ``z`` (a bijection of 64-bit
    words); ``z`` itself is left as it was."""
    z = z ^ _shift_right(z, 30)
    z.mul_(MIX1)
    z.bitwise_xor_(_shift_right(z, 27)).mul_(MIX2)
    return z.bitwise_xor_(_shift_right(z, 31))


def _wrapped(value: int) -> int:
    """A Python integer reduced to a signed 64-bit word (what int64 arithmetic wraps to)."""
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def to_uniform(z: torch.Tensor) -> torch.Tensor:
    """Float64 in [0, 1) from the top 53 bits of int64 ``z``."""
    return _shift_right(z, 11).to(torch.float64) * UNIFORM_SCALE


def stream_base(stream: str, seed: int, update_num: int) -> int:
    """A signed 64-bit word that depends only on the arguments (stable across
    processes, unlike Python's ``hash``)."""
    digest = hashlib.blake2b(f"{stream}:{int(seed)}:{int(update_num)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def sequence_seed(stream: str, seed: int, update_num: int, sample_id: int) -> int:
    """A non-negative 63-bit integer from the arguments alone (for decisions
    made once per batch, such as MAPNet's exploration steps)."""
    digest = hashlib.blake2b(f"{stream}:{int(seed)}:{int(update_num)}:{int(sample_id)}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


@dataclass
class MaskDraws:
    """The uniforms of a (B, L) batch, computed on demand on ``keys.device``.

    keys: (B,) int64, each sequence's key (see the module docstring).
    length: L, the padded length (per-position uniforms do not depend on it).
    """

    keys: torch.Tensor
    length: int

    @classmethod
    def for_sequences(
        cls, stream: str, seed: int, update_num: int, sample_ids: Union[torch.Tensor, Sequence[int]], length: int, device
    ) -> "MaskDraws":
        """The draws of the sequences ``sample_ids`` at ``update_num``."""
        ids = torch.as_tensor(sample_ids, dtype=torch.int64).to(device).reshape(-1)
        return cls(mix(stream_base(stream, seed, update_num) + (ids + 1) * GAMMA), length)

    def hashes(self, slot: Slot) -> torch.Tensor:
        """Int64 (B, L): the raw 64-bit values (b, p, slot), for ranking."""
        return mix(self.keys.unsqueeze(1) + _position_steps(self.length, int(slot), self.keys.device))

    def per_position(self, slot: Slot) -> torch.Tensor:
        """Float64 (B, L): position p of sequence b holds uniform (b, p, slot)."""
        return to_uniform(self.hashes(slot))

    def at(self, slot: Slot, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Float64 (N,): the uniforms (rows[i], positions[i], slot) only,
        equal to ``per_position(slot)[rows, positions]``."""
        counters = positions.to(torch.int64) * SLOTS_PER_POSITION + (int(slot) + 1)
        return to_uniform(mix(self.keys[rows] + counters * GAMMA))

    def at_slots(self, slots: Sequence[Slot], rows: torch.Tensor, positions: Sequence[torch.Tensor]):
        """``at(slots[k], rows, positions[k])`` for every k, in one pass of the hash."""
        counters = torch.stack([p.to(torch.int64) * SLOTS_PER_POSITION + (int(s) + 1) for s, p in zip(slots, positions)])
        return to_uniform(mix(self.keys[rows].unsqueeze(0) + counters * GAMMA)).unbind(0)

    def per_sequence(self, slot: SequenceSlot) -> torch.Tensor:
        """Float64 (B,): one uniform per sequence."""
        return to_uniform(mix(self.keys + _wrapped((SEQUENCE_COUNTER_BASE + int(slot) + 1) * GAMMA)))

    @property
    def unit_scores(self) -> torch.Tensor:
        """(B, L) uniforms ordering the units (lowest first)."""
        return self.per_position(Slot.UNIT_SCORE)

    @property
    def rounding_noise(self) -> torch.Tensor:
        return self.per_sequence(SequenceSlot.ROUNDING)

    @property
    def crossing_noise(self) -> torch.Tensor:
        return self.per_sequence(SequenceSlot.CROSSING)

    @property
    def systematic_offsets(self) -> torch.Tensor:
        return self.per_sequence(SequenceSlot.SYSTEMATIC)


@functools.lru_cache(maxsize=64)
def _position_steps(length: int, slot: int, device: torch.device) -> torch.Tensor:
    """Int64 (1, length): (p · 8 + slot + 1) · γ, the Weyl steps of the positions."""
    positions = torch.arange(length, dtype=torch.int64, device=device)
    return ((positions * SLOTS_PER_POSITION + (slot + 1)) * GAMMA).unsqueeze(0)
