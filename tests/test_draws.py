"""The counter-based draws: the hash is SplitMix64's (checked against a
pure-Python reference, so torch's int64 arithmetic wraps as it must), a value
depends only on its counter, and the uniforms pass statistical checks of
uniformity and independence (chi-square, correlations)."""

import math

import pytest
import torch

from fairseq_maskplug.masking.draws import GAMMA, MaskDraws, SequenceSlot, Slot, mix, stream_base

WORD = (1 << 64) - 1


def splitmix64_output(z: int) -> int:
    """SplitMix64's output function in Python integers (Vigna's splitmix64.c)."""
    z &= WORD
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & WORD
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & WORD
    return z ^ (z >> 31)


def test_mix_is_splitmix64_on_every_kind_of_word():
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(-(2**63), 2**63 - 1, (4096,), generator=generator, dtype=torch.int64)
    words[:4] = torch.tensor([0, -1, -(2**63), 2**63 - 1])
    expected = [splitmix64_output(int(w)) for w in words]
    assert [int(v) & WORD for v in mix(words)] == expected
    # the first output of splitmix64.c seeded with 0: mix(0 + γ) = 0xE220A8397B1DCDAF
    assert int(mix(torch.tensor([GAMMA]))) & WORD == 0xE220A8397B1DCDAF


def draws(ids=range(64), update=3, length=512, stream="train", seed=1):
    return MaskDraws.for_sequences(stream, seed, update, list(ids), length, "cpu")


def test_a_value_depends_only_on_its_counter():
    """The same sequence gives the same values in any batch, at any padded
    length; ``at`` reads exactly the values ``per_position`` lays out."""
    wide = draws(ids=range(10), length=128)
    narrow = draws(ids=[7, 3], length=40)
    for slot in Slot:
        full = wide.per_position(slot)
        assert torch.equal(narrow.per_position(slot), full[[7, 3], :40])
        rows, positions = torch.tensor([0, 9, 4]), torch.tensor([0, 127, 5])
        assert torch.equal(wide.at(slot, rows, positions), full[rows, positions])
    for slot in SequenceSlot:
        assert torch.equal(narrow.per_sequence(slot), wide.per_sequence(slot)[[7, 3]])
    assert not torch.equal(draws(update=4).per_position(Slot.UNIT_SCORE), draws(update=3).per_position(Slot.UNIT_SCORE))
    assert not torch.equal(draws(seed=2).rounding_noise, draws(seed=1).rounding_noise)
    assert not torch.equal(draws(stream="valid").unit_scores, draws(stream="train").unit_scores)
    assert stream_base("train", 1, 3) == stream_base("train", 1, 3) != stream_base("train", 1, 4)


def chi_square_uniform(values: torch.Tensor, bins: int = 64) -> float:
    counts = torch.histc(values.float(), bins=bins, min=0.0, max=1.0).double()
    expected = values.numel() / bins
    return float(((counts - expected) ** 2 / expected).sum())


# chi-square with 63 degrees of freedom: the 99.99th percentile is about 113
CHI_SQUARE_LIMIT = 113.0


@pytest.mark.parametrize("slot", list(Slot), ids=[s.name for s in Slot])
def test_every_slot_is_uniform(slot):
    values = draws(ids=range(256)).per_position(slot).flatten()  # 131,072 values
    assert values.min() >= 0 and values.max() < 1
    assert chi_square_uniform(values) < CHI_SQUARE_LIMIT
    # the extreme tails, where a biased float conversion would show: within 4 standard errors
    expected = values.numel() / 1024
    for tail in (values < 1 / 1024, values >= 1 - 1 / 1024):
        assert abs(tail.sum().item() - expected) < 4 * math.sqrt(expected)


def test_per_sequence_values_are_uniform():
    for slot in SequenceSlot:
        values = draws(ids=range(65536)).per_sequence(slot)
        assert chi_square_uniform(values) < CHI_SQUARE_LIMIT


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_neighbouring_positions_sample_ids_updates_and_slots_are_uncorrelated():
    """|r| below 4 standard errors (1/sqrt(N)) for neighbours in every direction
    a counter moves, and for the slots of one position."""
    n_ids, length = 256, 512
    scores = draws(ids=range(n_ids), length=length).per_position(Slot.UNIT_SCORE)
    limit = 4 / math.sqrt(scores.numel())
    assert abs(correlation(scores[:, 1:], scores[:, :-1])) < limit  # position p and p + 1
    assert abs(correlation(scores[1:], scores[:-1])) < limit  # sample id i and i + 1
    later = draws(ids=range(n_ids), length=length, update=4).per_position(Slot.UNIT_SCORE)
    assert abs(correlation(scores, later)) < limit  # update t and t + 1
    decision = draws(ids=range(n_ids), length=length).per_position(Slot.DECISION)
    assert abs(correlation(scores, decision)) < limit  # two slots of one position
    # pairs of neighbours, jointly: a 2-D chi-square on 8 x 8 cells
    pairs = (scores[:, :-1] * 8).long() * 8 + (scores[:, 1:] * 8).long()
    assert chi_square_uniform((pairs.flatten().double() + 0.5) / 64) < CHI_SQUARE_LIMIT
