"""The Masker on synthetic batches: pure torch, no fairseq needed."""

import ast
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_maskplug.masking import CorruptionRule, MaskDraws, Masker, RatioSchedule, UniformUnits

BOS, PAD, EOS, UNK, MASK, VOCAB = 0, 1, 2, 3, 99, 100
MASKING_DIR = Path(__file__).resolve().parents[1] / "fairseq_maskplug" / "masking"


def make_batch(rows=64, length=48, seed=0):
    """<s> + random ordinary ids + </s> in the middle and at the end, right-padded."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, MASK, (rows, length), generator=g)
    tokens[:, 0] = BOS
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    for row, n in enumerate(lengths.tolist()):
        tokens[row, n - 1] = EOS
        tokens[row, n // 2] = EOS
        tokens[row, n:] = PAD
    return tokens


def draws_for(tokens, seed=0, update=0, ids=None, device="cpu"):
    ids = range(tokens.size(0)) if ids is None else ids
    return MaskDraws.for_sequences("train", seed, update, ids, tokens.size(1), device)


def make_masker(rule=None, word_starts=None):
    weights = torch.ones(VOCAB, dtype=torch.float64)
    weights[:4] = 0
    weights[MASK] = 0
    return Masker(MASK, PAD, (BOS, EOS, PAD, MASK), rule or CorruptionRule(), weights, word_starts)


def uniform(masker, tokens, ratio, draws):
    """``masker``'s uniform masks of ``tokens`` at a constant ``ratio``."""
    return UniformUnits(masker, RatioSchedule.build("constant", ratio, 0))(tokens, draws, 0)


def word_start_table():
    """Even ids start a word, odd ids continue one."""
    table = torch.zeros(VOCAB, dtype=torch.bool)
    table[4::2] = True
    return table


def test_masking_package_imports_no_fairseq():
    """masking/ is pure torch: no module in it imports fairseq (checked in the
    source), and it imports in a process where fairseq cannot be imported."""
    for path in MASKING_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "fairseq" for n in names), f"{path.name} imports fairseq"
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'fairseq':\n"
        "            raise ModuleNotFoundError('blocked', name='fairseq')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fairseq_maskplug.masking\n"
        "assert not any(m.split('.')[0] == 'fairseq' for m in sys.modules), 'fairseq got imported'\n"
    )
    subprocess.run([sys.executable, "-c", blocker], check=True, cwd=MASKING_DIR.parents[1])


def test_masking_package_names_no_command_line_flag():
    """masking/ names its own parameters (the task translates them into
    option names): no ``--flag`` anywhere in its source."""
    for path in MASKING_DIR.glob("*.py"):
        flags = re.findall(r"--[a-z][a-z-]+", path.read_text())
        assert not flags, f"{path.name} names {flags}"


def test_never_selects_special_tokens():
    tokens = make_batch()
    masked = uniform(make_masker(), tokens, 0.9, draws_for(tokens, 1, 0))
    special = (tokens == BOS) | (tokens == EOS) | (tokens == PAD)
    assert masked.predicted.any()
    assert not (masked.predicted & special).any()
    assert torch.equal(masked.src_tokens[special], tokens[special])


def test_count_is_stochastic_rounding_of_ratio():
    """Each row predicts floor(p·n) or ceil(p·n) positions, and the mean over
    draws is p·n within 4 standard errors."""
    tokens = make_batch(rows=8)
    masker = make_masker()
    maskable = ((tokens != BOS) & (tokens != EOS) & (tokens != PAD)).sum(1).double()
    counts = torch.stack(
        [uniform(masker, tokens, 0.15, draws_for(tokens, 3, update)).predicted.sum(1).double() for update in range(2000)]
    )
    expected = 0.15 * maskable
    assert ((counts == expected.floor()) | (counts == expected.ceil())).all()
    frac = expected - expected.floor()
    standard_error = (frac * (1 - frac) / 2000).sqrt().clamp(min=1e-3)
    assert ((counts.mean(0) - expected).abs() <= 4 * standard_error).all()


def test_corruption_shares_follow_the_rule():
    """Of 200k predicted positions, <mask>/random/kept shares are 0.8/0.1/0.1
    within 0.005 (> 5 standard errors); with 0.2/0.3 configured, they follow."""
    tokens = make_batch(rows=512, length=128)
    for rule, shares in ((CorruptionRule(), (0.8, 0.1, 0.1)), (CorruptionRule(0.2, 0.3), (0.5, 0.3, 0.2))):
        totals = torch.zeros(3)
        for update in range(12):
            m = uniform(make_masker(rule), tokens, 0.5, draws_for(tokens, 0, update))
            c = m.corruption
            totals += torch.tensor([c.replaced_by_mask.sum(), c.replaced_by_random.sum(), c.kept.sum()]).float()
            assert torch.equal(c.replaced_by_mask | c.replaced_by_random | c.kept, m.predicted)
            assert (m.src_tokens[c.replaced_by_mask] == MASK).all()
            assert torch.equal(m.src_tokens[c.kept], tokens[c.kept])
            randomised = m.src_tokens[c.replaced_by_random]
            assert ((randomised >= 4) & (randomised != MASK)).all()
        assert totals.sum() > 200_000
        assert torch.allclose(totals / totals.sum(), torch.tensor(shares), atol=0.005)


def test_target_holds_original_ids_at_predicted_positions_only():
    tokens = make_batch()
    m = uniform(make_masker(), tokens, 0.3, draws_for(tokens, 0, 0))
    assert torch.equal(m.target[m.predicted], tokens[m.predicted])
    assert (m.target[~m.predicted] == PAD).all()


def test_whole_word_mode_never_splits_a_word_and_counts_words():
    tokens = make_batch(rows=256, length=64)
    masker = make_masker(word_starts=word_start_table())
    maskable = (tokens != BOS) & (tokens != EOS) & (tokens != PAD)
    starts = maskable & ((tokens % 2 == 0) | torch.nn.functional.pad(~maskable[:, :-1], (1, 0), value=True))
    # one id per word of the batch (row, word number), for every maskable piece
    word = (torch.arange(tokens.size(0))[:, None] * (tokens.size(1) + 1) + starts.long().cumsum(1))[maskable]
    pieces = torch.bincount(word)

    def whole_words(flags):
        """Each word has all of its pieces flagged or none."""
        flagged = torch.bincount(word, weights=flags[maskable].double(), minlength=len(pieces))
        return bool(((flagged == 0) | (flagged == pieces)).all())

    selected_words = 0
    for update in range(5):
        m = uniform(masker, tokens, 0.2, draws_for(tokens, 0, update))
        assert whole_words(m.predicted), "a word was split"
        assert whole_words(m.corruption.replaced_by_mask) and whole_words(m.corruption.kept), (
            "a word's pieces were corrupted differently"
        )
        selected_words += (m.predicted & starts).sum().item()
    # the ratio counts words, as stock --mask-whole-words does
    assert selected_words / (5 * starts.sum().item()) == pytest.approx(0.2, abs=0.01)


def test_same_generator_state_gives_same_masks_and_seeds_separate_updates():
    tokens = make_batch()
    masker = make_masker()
    a = uniform(masker, tokens, 0.15, draws_for(tokens, 7, 11))
    b = uniform(masker, tokens, 0.15, draws_for(tokens, 7, 11))
    c = uniform(masker, tokens, 0.15, draws_for(tokens, 7, 12))
    d = uniform(masker, tokens, 0.15, draws_for(tokens, 7, 11, ids=range(1, 65)))
    assert torch.equal(a.src_tokens, b.src_tokens) and torch.equal(a.predicted, b.predicted)
    assert not torch.equal(a.predicted, c.predicted)
    assert not torch.equal(a.predicted, d.predicted)


def test_a_sequences_mask_does_not_depend_on_its_batch_or_padding():
    """Draws are per sequence (seed, update, id) and laid out per position: a
    row masked alone, or in a batch padded to twice the length, gets the same
    mask."""
    tokens = make_batch(rows=16, length=40)
    masker = make_masker(word_starts=word_start_table())
    batch = uniform(masker, tokens, 0.15, draws_for(tokens, 3, 9))
    padded = torch.nn.functional.pad(tokens, (0, 40), value=PAD)
    wide = uniform(masker, padded, 0.15, draws_for(padded, 3, 9))
    for row in (0, 5, 15):
        alone_tokens = tokens[row : row + 1]
        alone = uniform(masker, alone_tokens, 0.15, draws_for(alone_tokens, 3, 9, ids=[row]))
        assert torch.equal(alone.src_tokens[0], batch.src_tokens[row])
        assert torch.equal(wide.src_tokens[row, :40], batch.src_tokens[row])


def test_invalid_rules_are_refused():
    with pytest.raises(ValueError, match="`leave_unmasked_prob` \\+ `random_token_prob` must be at most 1"):
        CorruptionRule(0.6, 0.5)
    with pytest.raises(ValueError, match="`random_token_prob` must lie in \\[0, 1\\]"):
        CorruptionRule(0.1, -0.1)


def test_zero_ratio_rows_and_fully_padded_rows_are_safe():
    tokens = make_batch(rows=4)
    tokens[1, 1:] = PAD
    m = uniform(make_masker(), tokens, 0.15, draws_for(tokens, 0, 0))
    assert not m.predicted[1].any()
    assert math.isclose(m.maskable[1].sum().item(), 0)
