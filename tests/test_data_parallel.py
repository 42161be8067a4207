"""Data-parallel equivalence, for every method: 2 gloo ranks with batch B reach
the parameters 1 process with batch 2B reaches, on the same data.

What is compared, and why it is the right comparison: a sequence's mask is a
function of (--seed, update, sample id) only, never of its rank, batch or
padding, so the two set-ups draw identical masks when every update holds the
same sequences. The train split here holds exactly 2B blocks, so every update
is one epoch: one batch of 2B on one rank, or B on each of two ranks (fairseq
shards an epoch's batches over the ranks). The gradient is then the same sum
over the same masked sequences divided by the same predicted-token count (the
trainer all-reduces it), the POS running losses are updated once per update
from sums all-reduced over the ranks, and the proposal network sees the same
sequences. What differs is only the order of floating-point additions (per
rank, then all-reduced), hence a small tolerance. Dropout is off: its draws
depend on a row's place in its batch, which the two set-ups do not share.
"""

import logging
import shutil

import pytest
import torch
from fairseq.data import Dictionary, data_utils, indexed_dataset

from harness import (
    METHOD_FLAGS,
    POS_METHODS,
    TOKENS_PER_SAMPLE,
    checkpoint_state,
    dump_task_state_preamble,
    logged_values,
    max_param_difference,
    train_args,
    train_data_parallel,
    train_in_process,
)

B = 4
UPDATES = 3
TOLERANCE = 1e-5  # measured here: at most 1.2e-7 (model), 1e-8 (proposal network)
FLAGS = [
    "--dropout",
    "0",
    "--attention-dropout",
    "0",
    "--train-subset",
    "dp",
    "--disable-validation",
    "--log-interval",
    "1",
    "--required-batch-size-multiple",
    "1",
]  # fairseq drops sequences when --batch-size is below the multiple


def write_split(source_prefix, out_prefix, dictionary, tokens: int):
    """The first ``tokens`` tokens of ``source_prefix``'s lines (the last line
    cut short) as a new binarised split."""
    lines = data_utils.load_indexed_dataset(str(source_prefix), dictionary)
    builder = indexed_dataset.make_builder(str(out_prefix) + ".bin", impl="mmap", vocab_size=len(dictionary))
    left = tokens
    for i in range(len(lines)):
        line = lines[i][:left]
        builder.add_item(line)
        left -= len(line)
        if left == 0:
            break
    builder.finalize(str(out_prefix) + ".idx")


@pytest.fixture(scope="module")
def two_batch_data(brown_pos_data, tmp_path_factory):
    """The POS Brown slice plus a split 'dp' of exactly 2B blocks (tokens and tags)."""
    data = tmp_path_factory.mktemp("dp") / "data"
    shutil.copytree(brown_pos_data, data)
    tokens = 2 * B * (TOKENS_PER_SAMPLE - 1)  # blocks hold tokens_per_sample - 1 tokens, then <s> is prepended
    write_split(data / "train", data / "dp", Dictionary.load(str(data / "dict.txt")), tokens)
    write_split(data / "pos" / "train", data / "pos" / "dp", Dictionary.load(str(data / "pos" / "dict.txt")), tokens)
    return data


def run_args(method, data, save_dir, batch_size):
    return train_args(data, save_dir, updates=UPDATES, batch_size=batch_size, extra=[*METHOD_FLAGS[method], *FLAGS])


@pytest.mark.parametrize("method", sorted(METHOD_FLAGS))
def test_two_ranks_of_batch_b_match_one_rank_of_batch_2b(method, two_batch_data, tmp_path, caplog):
    """Also: each rank ends holding what the other holds (the task state
    every rank keeps, not only rank 0's checkpoint)."""
    caplog.set_level(logging.INFO)
    train_in_process(run_args(method, two_batch_data, tmp_path / "single", 2 * B))
    single_output = caplog.text
    ranks = train_data_parallel(run_args(method, two_batch_data, tmp_path / "ranks", B),
                                preamble=dump_task_state_preamble(tmp_path))  # fmt: skip

    copies = 4 if method == "fully_explored" else 1
    for output in (single_output, ranks[0]):
        assert logged_values(output, "num_updates") == [1.0, 2.0, 3.0]
        assert logged_values(output, "bsz") == [float(2 * B * copies)] * UPDATES  # one epoch per update
    losses = logged_values(single_output, "loss")
    assert logged_values(ranks[0], "loss") == losses
    one, two = (
        checkpoint_state(tmp_path / "single" / "checkpoint_last.pt"),
        checkpoint_state(tmp_path / "ranks" / "checkpoint_last.pt"),
    )
    difference = max_param_difference(one["model"], two["model"])
    print(f"{method}: largest parameter difference {difference:.3g}")  # shown with pytest -s
    assert difference <= TOLERANCE
    if method == "mapnet":
        proposals = [state["task_state"]["mapnet_proposal"]["network"] for state in (one, two)]
        assert max_param_difference(*proposals) <= TOLERANCE
    if method in POS_METHODS:
        running = [state["task_state"]["pos_running_loss"]["running"] for state in (one, two)]
        assert running[0].gt(0).sum() >= 8
        assert torch.allclose(running[0], running[1], rtol=0, atol=TOLERANCE)
        by_rank = [torch.load(tmp_path / f"rank{r}.pt")["pos_running_loss"]["running"] for r in (0, 1)]
        assert torch.equal(*by_rank)  # summed across the ranks before the step: bit for bit the same


def test_pos_running_losses_move_once_per_update_whatever_the_update_freq(two_batch_data, tmp_path):
    """--update-freq 2 with batch B reaches the running losses (and the
    parameters) --update-freq 1 with batch 2B reaches: the per-tag sums of an
    update's micro-batches are added up and move the averages once, at the
    optimizer step, as the reference moves them once per step."""
    method = "time_variant_pos"
    single = run_args(method, two_batch_data, tmp_path / "one", 2 * B)
    accumulated = run_args(method, two_batch_data, tmp_path / "two", B) + ["--update-freq", "2"]
    train_in_process(single)
    train_in_process(accumulated)
    one, two = (checkpoint_state(tmp_path / name / "checkpoint_last.pt") for name in ("one", "two"))
    assert one["optimizer_history"][-1]["num_updates"] == two["optimizer_history"][-1]["num_updates"] == UPDATES
    running = [state["task_state"]["pos_running_loss"] for state in (one, two)]
    assert torch.equal(running[0]["observations"], running[1]["observations"])
    assert running[0]["observations"].max() == UPDATES  # one step per update, not per micro-batch
    difference = (running[0]["running"] - running[1]["running"]).abs().max().item()
    print(f"update-freq 2 x {B} against 1 x {2 * B}: running losses differ by {difference:.3g}")
    assert difference <= TOLERANCE
    assert max_param_difference(one["model"], two["model"]) <= TOLERANCE
