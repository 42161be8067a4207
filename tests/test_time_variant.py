"""Time-variant masking: ratio schedules (MRD) and POS-weighted content (PTW)."""

import logging
import math

import pytest
import torch
from fairseq.data import Dictionary, data_utils
from test_masking import BOS, EOS, make_masker, uniform
from test_task_masking import batches

from fairseq_maskplug.masking import MaskDraws, WeightedUnits
from fairseq_maskplug.masking.class_losses import ClassLossTracker, class_loss_sums
from fairseq_maskplug.masking.schedules import SCHEDULES, RatioSchedule
from fairseq_maskplug.masking.selection import select_first_fit
from fairseq_maskplug.tasks.masked_lm_plus import MaskedLMPlusConfig, MaskedLMPlusTask
from harness import TOKENS_PER_SAMPLE, checkpoint_state, logged_values, train_args, train_in_process

P, T = 0.15, 1000

# formula of every reference schedule (the MRD paper's code) at t, for p = 0.15
FORMULAS = {
    "constant": lambda t: P,
    "linear": lambda t: (1 - t / T) * 2 * P,
    "cosine": lambda t: P * (1 + math.cos(math.pi * t / T)) + 0.02,
    "asc": lambda t: (t / T) * 2 * P,
    "square_above": lambda t: 2 * P + 0.01 - (t / T) ** 2 * 2 * P,
    "square_below": lambda t: 2 * P * (t - T) ** 2 / T**2,
    "poly_asc": lambda t: 4 * P * t / T if t < T / 2 else 4 * P * (1 - t / T),
    "poly_desc": lambda t: 2 * P * (1 - 2 * t / T) + 0.01 if t < T / 2 else 2 * P * (2 * t - T) / T + 0.01,
    "step": lambda t: 2 * P if t < T / 2 else P,
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_schedule_values_match_the_reference_formulas(name):
    schedule = RatioSchedule.build(name, P, T)
    for t in (0, T // 4, T // 2, 3 * T // 4, T, 2 * T):
        assert schedule(t) == pytest.approx(FORMULAS[name](min(t, T)), abs=1e-12), (name, t)


def test_reference_endpoints_and_overrides():
    assert RatioSchedule.build("linear", P, T)(0) == pytest.approx(0.30)
    assert RatioSchedule.build("linear", P, T)(T) == pytest.approx(0.0)
    assert RatioSchedule.build("cosine", P, T)(0) == pytest.approx(0.32)
    assert RatioSchedule.build("cosine", P, T)(T) == pytest.approx(0.02)
    custom = RatioSchedule.build("linear", P, T, start=0.4, end=0.1)
    assert (custom(0), custom(T // 2), custom(T)) == pytest.approx((0.4, 0.25, 0.1))
    warm = RatioSchedule.build("lin_warm_decay", P, T, warmup=200)
    assert (warm(0), warm(100), warm(200), warm(600), warm(T)) == pytest.approx((0, 0.15, 0.3, 0.15, 0))
    assert set(FORMULAS) | {"lin_warm_decay"} == set(SCHEDULES)


def test_realised_ratio_tracks_the_schedule_and_never_predicts_nothing(brown_task):
    """Over a linear 0.30 → 0.00 schedule, each batch's realised ratio is within
    0.01 of the scheduled one (per-sequence stochastic rounding; the floor of
    one predicted token per sequence included), and at the end (ratio 0)
    every sequence still predicts exactly one token."""
    task = brown_task
    schedule = RatioSchedule.build("linear", P, 100)
    samples = list(batches(task, limit=11))
    for t, sample in zip(range(0, 101, 10), samples):
        m = uniform(task.train_masker, sample["net_input"]["src_tokens"], schedule(t), task.train_draws(sample, t))
        maskable = m.maskable.sum(1).double()
        realised = m.predicted.sum().item() / maskable.sum().item()
        expected = (maskable * schedule(t)).clamp(min=1).sum().item() / maskable.sum().item()
        assert abs(realised - expected) < 0.01, (t, realised, expected)
    assert (m.predicted.sum(1) == 1).all()


def test_logged_realised_ratio_follows_the_cosine_schedule(brown_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_in_process(train_args(brown_data, tmp_path / "cos", task="time_variant_masked_lm", updates=40))
    output = caplog.text
    realised, scheduled = logged_values(output, "mask_ratio"), logged_values(output, "mask_ratio_scheduled")
    assert len(realised) == len(scheduled) == 8
    assert scheduled[0] > 0.3 and scheduled[-1] < 0.03
    assert all(abs(r - s) < 0.005 for r, s in zip(realised, scheduled))


def pos_task(data, **overrides):
    cfg = MaskedLMPlusConfig(data=str(data), tokens_per_sample=TOKENS_PER_SAMPLE, seed=1, content_weighting="pos", **overrides)
    return MaskedLMPlusTask.setup_task(cfg)


def test_pos_side_input_lines_up_with_the_tokens_in_every_split(brown_pos_data):
    """For every block of train/valid/test: same length, specials at the same
    positions, a tag on every other position."""
    task = pos_task(brown_pos_data)
    d, pd = task.dictionary, task.pos_weighting.tag_dictionary
    for split in ("train", "valid", "test"):
        task.load_dataset(split)
        fields = task.dataset(split).dataset.defn
        tokens, tags = fields["net_input.src_tokens"].dataset, fields["pos"].dataset
        assert len(tokens) == len(tags) > 0
        for i in range(len(tokens)):
            tok, tag = tokens[i], tags[i]
            assert len(tok) == len(tag)
            assert torch.equal(tok == d.bos(), tag == pd.bos()) and torch.equal(tok == d.eos(), tag == pd.eos())
            special = (tok == d.bos()) | (tok == d.eos())
            assert (tag[~special] >= pd.nspecial).all()


def test_tags_of_a_known_sentence(brown_pos_data):
    """The first Brown sentence: 'The Fulton County Grand Jury said Friday an
    investigation of Atlanta's recent primary election produced "no
    evidence" that any irregularities took place.'"""
    d, pd = Dictionary.load(str(brown_pos_data / "dict.txt")), Dictionary.load(str(brown_pos_data / "pos" / "dict.txt"))
    tokens = data_utils.load_indexed_dataset(str(brown_pos_data / "train"), d)
    tags = data_utils.load_indexed_dataset(str(brown_pos_data / "pos" / "train"), pd)
    pieces, labels = d.string(tokens[0]).split(), pd.string(tags[0]).split()
    text = "".join(pieces).replace("\u2581", " ")
    assert text.strip().startswith("The Fulton County Grand Jury said Friday")
    piece_spans, cursor = [], 0
    for piece in pieces:
        surface = piece.replace("\u2581", " ")
        piece_spans.append((cursor + len(surface) - len(surface.lstrip(" ")), cursor + len(surface)))
        cursor += len(surface)
    expected = [
        ("The", "DET"),
        ("Fulton", "NOUN"),
        ("said", "VERB"),
        ("Friday", "NOUN"),
        ("an", "DET"),
        ("investigation", "NOUN"),
        ("of", "ADP"),
        ("recent", "ADJ"),
        ("election", "NOUN"),
        ("produced", "VERB"),
        ('"', "."),
        ("no", "DET"),
        ("evidence", "NOUN"),
        ("that", "ADP"),
        ("any", "DET"),
        ("irregularities", "NOUN"),
        ("took", "VERB"),
        ("place", "NOUN"),
        (".", "."),
    ]
    cursor = 0
    for word, tag in expected:
        start = text.index(word, cursor)
        cursor = start + len(word)
        covering = [label for (a, b), label in zip(piece_spans, labels) if a < cursor and b > start]
        assert covering and set(covering) == {tag}, (word, covering)


def test_class_loss_tracker_follows_the_reference_update():
    tracker = ClassLossTracker(3, momentum=0.9, temperature=2.0)
    sums, counts = class_loss_sums(torch.tensor([1.0, 3.0, 2.0, 5.0]), torch.tensor([0, 0, 1, -1]), 3)
    assert sums.tolist() == [4.0, 2.0, 0.0] and counts.tolist() == [2.0, 1.0, 0.0]
    tracker.update(sums, counts)
    assert tracker.running.tolist() == pytest.approx([0.2, 0.2, 0.0])  # 0.1 * mean; unseen class keeps 0
    z = (tracker.running - tracker.running.mean()) / tracker.running.std()  # the sample std, as the reference
    assert torch.allclose(tracker.weights(), torch.sigmoid(2.0 * z))
    corrected = ClassLossTracker(3, momentum=0.9, temperature=2.0, bias_correction=True)
    corrected.update(sums, counts)
    assert corrected.losses().tolist() == pytest.approx([2.0, 2.0, 0.0])


def test_heavily_weighted_tags_are_masked_more_often_than_lightly_weighted_ones(brown_pos_data, tmp_path):
    """After 150 updates of POS-weighted training on the Brown slice (the
    reference selection law, whole words): the three frequent tags with the
    highest weights are masked, relative to their frequency, more than twice
    as often as the three with the lowest; the lowest-weighted tag is masked
    below its frequency; the ratio stays at the schedule's (the budget fills:
    far more words are offered than it holds)."""
    save = tmp_path / "ptw"
    train_in_process(
        train_args(
            brown_pos_data, save, updates=150, batch_size=16, extra=["--content-weighting", "pos", "--mask-whole-words"]
        )
    )
    state = checkpoint_state(save / "checkpoint_last.pt")["task_state"]
    task = pos_task(brown_pos_data, mask_whole_words=True)
    task.load_state_dict(state)
    task.load_dataset("train")
    weights = task.pos_weighting.tracker.weights()
    masked = torch.zeros(len(weights))
    base = torch.zeros(len(weights))
    for update, sample in enumerate(batches(task, limit=60)):
        m = task.training_masks(sample, update)
        classes = task.pos_weighting.classes(sample["pos"])
        masked += torch.bincount(classes[m.predicted].clamp(min=0), minlength=len(weights)).float()
        base += torch.bincount(classes[classes >= 0], minlength=len(weights)).float()
    share, frequency = masked / masked.sum(), base / base.sum()
    frequent = (frequency > 0.01).nonzero().flatten()  # tags common enough for a stable share
    by_weight = frequent[weights[frequent].argsort()]
    lift = share / frequency
    print({task.pos_weighting.tags[c]: (round(weights[c].item(), 3), round(lift[c].item(), 2)) for c in frequent.tolist()})
    assert lift[by_weight[-3:]].mean() > 2 * lift[by_weight[:3]].mean()
    assert share[by_weight[0]] < frequency[by_weight[0]]
    assert abs(masked.sum() / base.sum() - 0.15) < 0.01


def test_running_losses_stay_finite_under_memory_efficient_fp16(brown_pos_data, tmp_path):
    train_in_process(
        train_args(
            brown_pos_data,
            tmp_path / "fp16",
            updates=10,
            extra=["--content-weighting", "pos", "--memory-efficient-fp16", "--mask-schedule", "cosine"],
        )
    )
    running = checkpoint_state(tmp_path / "fp16" / "checkpoint_last.pt")["task_state"]["pos_running_loss"]["running"]
    assert torch.isfinite(running).all() and running.gt(0).any()


def first_fit_reference(order, lengths, offered, budget):
    """better_masking's _whole_word_mask loop, for one sequence: units in
    ``order``, each offered or not, taken while it fits, skipped if it would
    overflow, stop when the budget is full."""
    taken, filled = set(), 0
    for unit in sorted(range(len(order)), key=lambda u: order[u]):
        if not offered[unit]:
            continue
        if filled >= budget:
            break
        if filled + lengths[unit] > budget:
            continue
        taken.add(unit)
        filled += lengths[unit]
    return taken


def test_first_fit_selection_is_the_reference_loop_exactly():
    """On random orders, offers, unit lengths (1-4 tokens) and budgets, the
    vectorised selection takes exactly the units the reference's loop takes."""
    generator = torch.Generator().manual_seed(0)
    rows, length = 300, 40
    starts = torch.rand(rows, length, generator=generator) < 0.5
    starts[:, 0] = True
    lengths = torch.zeros(rows, length, dtype=torch.long)
    for b in range(rows):
        positions = starts[b].nonzero().flatten().tolist() + [length]
        for a, z in zip(positions[:-1], positions[1:]):
            lengths[b, a] = z - a
    order = torch.rand(rows, length, generator=generator, dtype=torch.float64)
    offered = torch.rand(rows, length, generator=generator) < 0.6
    budget = torch.randint(1, 20, (rows,), generator=generator)
    chosen = select_first_fit(order, starts, lengths, offered, budget)
    for b in range(rows):
        units = starts[b].nonzero().flatten().tolist()
        expected = first_fit_reference([order[b, u].item() for u in units], [lengths[b, u].item() for u in units],
                                       [offered[b, u].item() for u in units], budget[b].item())  # fmt: skip
        assert {units[i] for i in expected} == set(chosen[b].nonzero().flatten().tolist()), b


WEIGHT_OF_ID = {4 + i: w for i, w in enumerate((0.1, 0.3, 0.5, 0.7, 0.9))}


def inclusion_by_weight(law: str, updates: int = 400):
    """Share of the tokens of each weight class that a law selects, at ratio
    0.30, on rows of 40 tokens whose weights cycle through 0.1 ... 0.9."""
    tokens = torch.tensor([[BOS] + [4 + i % 5 for i in range(40)] + [EOS]]).repeat(64, 1)
    weights = torch.ones(tokens.shape, dtype=torch.float64)
    for token_id, weight in WEIGHT_OF_ID.items():
        weights[tokens == token_id] = weight
    strategy = WeightedUnits(make_masker(), RatioSchedule.build("constant", 0.30, 0), law)
    picked = torch.zeros(5, dtype=torch.float64)
    for update in range(updates):
        draws = MaskDraws.for_sequences("train", 0, update, range(64), tokens.size(1), "cpu")
        predicted = strategy(tokens, draws, update, weights).predicted
        for i, token_id in enumerate(WEIGHT_OF_ID):
            picked[i] += predicted[tokens == token_id].double().sum()
    return picked / (updates * 64 * 8)  # 8 tokens of each class per row


def test_reference_law_matches_the_reference_sampler_and_is_more_selective_than_the_race():
    """Inclusion probability by weight (0.1 ... 0.9) at ratio 0.30: the
    reference law agrees with the reference's sampler (its loop, in Python,
    with Python's random) within 4 standard errors; the race fills the budget
    exactly but favours the heavy units less."""
    import random

    rng = random.Random(0)
    simulated, trials = torch.zeros(5, dtype=torch.float64), 20000
    for _ in range(trials):
        budget = max(1, math.floor(0.30 * 40 + rng.random()))
        order = [rng.random() for _ in range(40)]
        offered = [rng.random() < WEIGHT_OF_ID[4 + i % 5] for i in range(40)]
        for unit in first_fit_reference(order, [1] * 40, offered, budget):
            simulated[unit % 5] += 1
    simulated /= trials * 8
    reference, race = inclusion_by_weight("reference"), inclusion_by_weight("race")
    standard_error = (simulated * (1 - simulated) / (trials * 8)).sqrt() + (
        reference * (1 - reference) / (400 * 64 * 8)
    ).sqrt()
    print("inclusion by weight 0.1..0.9: reference", [round(v, 3) for v in reference.tolist()],
          "simulated", [round(v, 3) for v in simulated.tolist()], "race", [round(v, 3) for v in race.tolist()])  # fmt: skip
    assert ((reference - simulated).abs() < 4 * standard_error).all()
    assert reference[4] / reference[0] > race[4] / race[0]
    assert abs(race.mean().item() - 0.30) < 0.005  # the race fills the budget exactly; the reference may fall short
