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
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import torch
from fairseq.data import Dictionary, data_utils, indexed_dataset

from harness import (
    CHILD_ENV,
    METHOD_FLAGS,
    POS_METHODS,
    REPO_ROOT,
    TOKENS_PER_SAMPLE,
    checkpoint_state,
    documented_block,
    dump_task_state_preamble,
    free_port,
    kill_at_update_preamble,
    logged_values,
    max_param_difference,
    start_ranks,
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


def lose_rank_one(args, after_update: int):
    """Two ranks of fairseq-train ARGS, rank 1 SIGKILLed right after update
    ``after_update``: (rank 0's exit status, its output, seconds from rank 1's
    death to rank 0's exit)."""
    ranks = start_ranks(args, ["", kill_at_update_preamble(after_update)])
    try:
        ranks[1].communicate(timeout=300)
        lost = time.monotonic()
        output = ranks[0].communicate(timeout=120)[0]
        return ranks[0].returncode, output, time.monotonic() - lost
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()


def check_a_lost_rank_ends_the_run_and_a_relaunch_resumes_exactly(method, args, uninterrupted, tmp_path):
    """Rank 1 SIGKILLed after update 2 (checkpoint_last.pt holds update 1 or
    2): rank 0 exits non-zero within 30 s, saying a rank was lost; both ranks
    relaunched with the same command end with exactly the parameters (and
    proposal, running losses) of the uninterrupted 2-rank run."""
    status, output, seconds = lose_rank_one(args, after_update=2)
    message = [line for line in output.splitlines() if "lost another rank" in line]
    print(f"{method}: rank 0 exit {status} {seconds:.1f} s after rank 1's death: {message[:1]}")  # pytest -s shows it
    assert status != 0 and seconds < 30, output[-3000:]
    assert message and "fairseq-maskplug: data-parallel rank 0 of 2 lost another rank (gloo: " in message[0], output[-3000:]
    assert "relaunch every rank with the same command" in message[0]
    assert checkpoint_state(tmp_path / "ranks-lost" / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"] < UPDATES
    train_data_parallel(args)
    resumed = checkpoint_state(tmp_path / "ranks-lost" / "checkpoint_last.pt")
    assert max_param_difference(resumed["model"], uninterrupted["model"]) == 0
    assert_same_task_state(resumed["task_state"], uninterrupted["task_state"])


def assert_same_task_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_task_state(a[key], b[key])
        elif torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("method", sorted(METHOD_FLAGS))
def test_two_ranks_of_batch_b_match_one_rank_of_batch_2b(method, two_batch_data, tmp_path, caplog):
    """Also: each rank ends holding what the other holds (the task state
    every rank keeps, not only rank 0's checkpoint); and a run that loses a
    rank ends at once and resumes exactly when relaunched."""
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
    lost_args = run_args(method, two_batch_data, tmp_path / "ranks-lost", B)
    check_a_lost_rank_ends_the_run_and_a_relaunch_resumes_exactly(method, lost_args, two, tmp_path)


def test_pos_running_losses_move_once_per_update_whatever_the_update_freq(two_batch_data, tmp_path):
    """--update-freq 2 with batch B reaches the running losses (and the
    parameters) --update-freq 1 with batch 2B reaches: the per-tag sums of an
    update's micro-batches are added up and move the averages once, at the
    optimizer step, as the reference moves them once per step."""
    method = "pos_cosine"
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


def test_two_machines_started_by_the_documented_torchrun_command_match_one_rank(two_batch_data, tmp_path):
    """docs/recipes.md's torchrun command, run as two separately started
    "machines" (NODE_RANK 0 and 1, one CPU rank each, with the CPU flags the
    page gives), reaches the parameters one rank of batch 2B reaches."""
    command = next(line for line in documented_block("torchrun --nnodes").splitlines() if line.startswith("torchrun"))
    args = [*run_args("random", two_batch_data, tmp_path / "machines", B), "--distributed-backend", "gloo",
            "--ddp-backend", "legacy_ddp"]  # fmt: skip
    assert "--cpu" in args
    machine_set_up = f"NNODES=2 NPROC_PER_NODE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT={free_port()}"
    setup = f"TRAIN_ARGS=({shlex.join(map(str, args))})\n{machine_set_up}\n"
    env = dict(CHILD_ENV, PATH=os.path.dirname(sys.executable) + os.pathsep + CHILD_ENV["PATH"])
    machines = [
        subprocess.Popen(
            ["bash", "-c", f"{setup}NODE_RANK={rank}\n{command}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    try:
        outputs = [machine.communicate(timeout=300)[0] for machine in machines]
    finally:
        for machine in machines:
            if machine.poll() is None:
                machine.kill()
    for machine, output in zip(machines, outputs):
        assert machine.returncode == 0, output[-3000:]
    assert "distributed init (rank 1): env://" in outputs[1] and "training on 2 devices" in outputs[0]
    train_in_process(run_args("random", two_batch_data, tmp_path / "single", 2 * B))
    one, two = (checkpoint_state(tmp_path / name / "checkpoint_last.pt") for name in ("single", "machines"))
    assert two["optimizer_history"][-1]["num_updates"] == UPDATES
    assert max_param_difference(one["model"], two["model"]) <= TOLERANCE
