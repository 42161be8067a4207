"""Interrupted training loses nothing. A run killed with SIGKILL between two
checkpoints, started again with the same command, resumes from its last
checkpoint and ends in exactly the state an uninterrupted run ends in:
parameters, proposal network, optimizer moments, learning-rate schedule, data
iterator and running POS losses. A checkpoint trained with other masking
options is refused before any update, unless the user resets."""

import logging
import re
import shutil
import signal

import pytest
import torch

from fairseq_maskplug.errors import ResumeMismatchError
from harness import (
    METHOD_FLAGS,
    POS_METHODS,
    built_once,
    checkpoint_state,
    kill_at_update_preamble,
    start_fairseq_train,
    tensorboard_tags,
    train_args,
    train_in_process,
)

UPDATES, SAVE_EVERY, KILL_AT = 12, 4, 10  # killed after update 10: updates 9 and 10 are lost


def method_args(method, data, save_dir):
    return train_args(
        data, save_dir, updates=UPDATES, extra=[*METHOD_FLAGS[method], "--save-interval-updates", str(SAVE_EVERY)]
    )


def assert_identical(a, b, where: str):
    """``a`` and ``b`` hold the same keys and bit-identical tensors."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), f"{where}: max difference {(a.double() - b.double()).abs().max().item():.3g}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def training_state(path):
    """What a resumed run must reproduce, from a checkpoint."""
    state = checkpoint_state(path)
    history = state["optimizer_history"][-1]
    return {
        "model": state["model"],
        "criterion": state.get("criterion", {}),
        "optimizer": state["last_optimizer_state"],
        "lr_scheduler": history["lr_scheduler_state"],
        "num_updates": history["num_updates"],
        "train_iterator": state["extra_state"]["train_iterator"],
        "task_state": state.get("task_state", {}),
    }


# method -> the TensorBoard tags only that method logs (besides fairseq's own and mask_ratio)
SIGNATURE_TAGS = {
    "random": set(),
    "fully_explored": set(),
    "pos_cosine": {"mask_ratio_scheduled", "pos_ema_NOUN", "pos_loss_NOUN", "pos_share_NOUN", "pos_base_NOUN"},
    "mapnet": {"mlm_loss", "mapnet_loss", "mapnet_entropy", "mapnet_ess", "mapnet_corr", "mapnet_max_weight", "mapnet_clip"},
    "mae_lm": set(),
}


@pytest.mark.parametrize("method", sorted(METHOD_FLAGS))
def test_killed_run_resumes_to_the_uninterrupted_state(method, brown_data, brown_pos_data, tmp_path, caplog):
    """The killed run is a child process; the uninterrupted run and the
    resumed one run in this process. Also: fairseq's --tensorboard-logdir
    works for every method (on the uninterrupted run) and its event files
    hold the plugin's metrics."""
    data = brown_pos_data if method in POS_METHODS else brown_data
    logdir = tmp_path / "tensorboard"
    killed = start_fairseq_train(method_args(method, data, tmp_path / "killed"), kill_at_update_preamble(KILL_AT))
    train_in_process(method_args(method, data, tmp_path / "straight") + ["--tensorboard-logdir", str(logdir)])
    killed_output = killed.communicate(timeout=300)[0]
    assert killed.returncode == -signal.SIGKILL, killed_output[-3000:]
    assert training_state(tmp_path / "killed" / "checkpoint_last.pt")["num_updates"] == 8

    caplog.set_level(logging.INFO)
    train_in_process(method_args(method, data, tmp_path / "killed"))  # the same command again, in this process
    assert "(epoch 1 @ 8 updates)" in caplog.text

    uninterrupted = training_state(tmp_path / "straight" / "checkpoint_last.pt")
    assert uninterrupted["num_updates"] == UPDATES
    if method in POS_METHODS:
        assert uninterrupted["task_state"]["pos_running_loss"]["running"].gt(0).sum() >= 10
    if method == "mapnet":
        assert uninterrupted["task_state"]["mapnet_proposal"]["optimizer"]["state"], "the proposal and its Adam are saved"
    assert_identical(training_state(tmp_path / "killed" / "checkpoint_last.pt"), uninterrupted, method)

    tags = tensorboard_tags(logdir / "train_inner") | tensorboard_tags(logdir / "train")
    assert {"loss", "mask_ratio"} | SIGNATURE_TAGS[method] <= tags, sorted(tags)
    assert "mask_ratio" in tensorboard_tags(logdir / "valid")


# ---------------------------------------------------------------- refusals

BASE_RUN = {"updates": 2, "total_updates": 4}


@pytest.fixture(scope="session")
def checkpoints(brown_data, tmp_path_factory):
    """Checkpoints after 2 updates of: defaults, a cosine schedule, MAPNet,
    stock masked_lm (made once per run; tests copy them before resuming)."""
    runs = {
        "default": {},
        "cosine": {"extra": ["--mask-schedule", "cosine"]},
        "mapnet": {"extra": ["--criterion", "mapnet_masked_lm"]},
        "stock": {"task": "masked_lm"},
    }

    def train(root):
        for name, options in runs.items():
            train_in_process(train_args(brown_data, root / name, **BASE_RUN, **options))

    return built_once(tmp_path_factory, "resumable", train)


MISMATCHES = [
    ("default", {"extra": ["--mask-prob", "0.2"]}, r"--mask-prob: 0\.15 in the checkpoint, 0\.2 now"),
    ("default", {"extra": ["--masking", "fully_explored"]}, r"--masking: random in the checkpoint, fully_explored now"),
    ("default", {"extra": ["--mask-whole-words"]}, r"--mask-whole-words: False in the checkpoint, True now"),
    ("default", {"extra": ["--leave-unmasked-prob", "0"]}, r"--leave-unmasked-prob: 0\.1 in the checkpoint, 0\.0 now"),
    ("default", {"extra": ["--mask-schedule", "linear"]}, r"--mask-schedule: constant in the checkpoint, linear now"),
    (
        "default",
        {"extra": ["--criterion", "mapnet_masked_lm"]},
        r"--criterion: masked_lm in the checkpoint, mapnet_masked_lm now\nResuming",
    ),
    ("default", {"seed": 2}, r"--seed: 1 in the checkpoint, 2 now"),
    ("default", {"extra": ["--tokens-per-sample", "32"]}, r"--tokens-per-sample: 64 in the checkpoint, 32 now"),
    (
        "cosine",
        {"extra": ["--mask-schedule", "cosine"]},  # T defaults to --max-update: 2, now 4
        r"--mask-schedule-updates: 2 in the checkpoint, 4 now",
    ),
    (
        "mapnet",
        {"extra": ["--criterion", "mapnet_masked_lm", "--mapnet-uniform-share", "0.1"]},
        r"--mapnet-uniform-share: 0\.5 in the checkpoint, 0\.1 now",
    ),
    ("stock", {}, r"--task: masked_lm in the checkpoint, masked_lm_plus \(or a preset\) now"),
]


@pytest.mark.parametrize("checkpoint,options,message", MISMATCHES, ids=[m[2].split(":")[0] for m in MISMATCHES])
def test_resuming_with_other_masking_options_is_refused(checkpoints, brown_data, tmp_path, checkpoint, options, message):
    save_dir = tmp_path / "ckpt"
    shutil.copytree(checkpoints / checkpoint, save_dir)
    before = (save_dir / "checkpoint_last.pt").read_bytes()
    run = dict(BASE_RUN, updates=4) | options
    with pytest.raises(ResumeMismatchError) as refusal:
        train_in_process(train_args(brown_data, save_dir, **run))
    assert re.search(message, str(refusal.value)), str(refusal.value)
    assert "--reset-dataloader" in str(refusal.value) and "--finetune-from-model" in str(refusal.value)
    assert (save_dir / "checkpoint_last.pt").read_bytes() == before


def test_reset_dataloader_accepts_other_masking_options(checkpoints, brown_data, tmp_path, caplog):
    save_dir = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "default", save_dir)
    train_in_process(
        train_args(brown_data, save_dir, updates=4, total_updates=4, extra=["--mask-prob", "0.2", "--reset-dataloader"])
    )
    assert "--mask-prob: 0.15 in the checkpoint, 0.2 now" in caplog.text
    assert training_state(save_dir / "checkpoint_last.pt")["num_updates"] == 4


def test_same_options_resume_without_a_word(checkpoints, brown_data, tmp_path, caplog):
    save_dir = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "default", save_dir)
    train_in_process(train_args(brown_data, save_dir, updates=4, total_updates=4))
    assert "masking options" not in caplog.text
    assert training_state(save_dir / "checkpoint_last.pt")["num_updates"] == 4


def test_a_checkpoint_of_the_old_per_sequence_generator_draws_is_refused_or_reset(checkpoints, brown_data, tmp_path):
    """fairseq-maskplug 0.1 drew masks from one seeded generator per sequence
    and saved no draws version: the same options now draw other masks, so
    such a checkpoint is refused, naming the change, unless the user resets."""
    save_dir = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "default", save_dir)
    state = checkpoint_state(save_dir / "checkpoint_last.pt")
    assert state["task_state"]["mask_draws"] == "counter-splitmix64-v1"
    del state["task_state"]["mask_draws"]
    torch.save(state, save_dir / "checkpoint_last.pt")
    with pytest.raises(
        ResumeMismatchError,
        match=r"mask draws: per-sequence seeded generators \(fairseq-maskplug 0\.1\) "
        r"in the checkpoint, counter-splitmix64-v1 now",
    ):
        train_in_process(train_args(brown_data, save_dir, **dict(BASE_RUN, updates=4)))
    train_in_process(train_args(brown_data, save_dir, updates=4, total_updates=4, extra=["--reset-dataloader"]))
    assert training_state(save_dir / "checkpoint_last.pt")["num_updates"] == 4


def test_a_legacy_format_checkpoint_is_checked_too(checkpoints, brown_data, tmp_path):
    """Checkpoints written before torch's zip format (the published
    roberta.base, say) cannot be memory-mapped: they are read whole."""
    save_dir = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "stock", save_dir)
    state = checkpoint_state(save_dir / "checkpoint_last.pt")
    torch.save(state, save_dir / "checkpoint_last.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(ResumeMismatchError, match=r"--task: masked_lm in the checkpoint"):
        train_in_process(train_args(brown_data, save_dir, updates=4, total_updates=4))


# ------------------------------------------------------- interrupted saves

# the second copy of the interval checkpoint to checkpoint_last.pt writes 4 KiB, says so and stalls: the test
# kills the run there. {copier}: the plugin's atomic copy (shutil.copyfileobj into checkpoint_last.pt.partial),
# or fairseq's own copy (shutil.copyfile), the plugin's fix undone
SLOW_SECOND_COPY = """
import shutil, sys, time
_copies = []
def _stall(target):
    _copies.append(target)
    if len(_copies) == 2:
        print("COPYING", target, flush=True)
        time.sleep(120)
{copier}
"""
ATOMIC_COPIER = """
_copyfileobj = shutil.copyfileobj
def _copyfileobj_slowly(source, target, length=0):
    if target.name.endswith("checkpoint_last.pt.partial"):
        target.write(source.read(4096)); target.flush()
        _stall(target.name)
    return _copyfileobj(source, target, length)
shutil.copyfileobj = _copyfileobj_slowly
"""
FAIRSEQ_COPIER = """
import fairseq_maskplug
from fairseq import checkpoint_utils, file_io
checkpoint_utils.PathManager = file_io.PathManager  # fairseq 0.12 as it is
_copyfile = shutil.copyfile
def _copyfile_slowly(source, target, **kwargs):
    if str(target).endswith("checkpoint_last.pt"):
        with open(source, "rb") as s, open(target, "wb") as t:
            t.write(s.read(4096)); t.flush()
        _stall(str(target))
    return _copyfile(source, target, **kwargs)
shutil.copyfile = _copyfile_slowly
"""


def killed_while_copying(args, copier: str) -> str:
    """Start fairseq-train ARGS, SIGKILL it while it copies its second
    interval checkpoint to checkpoint_last.pt; return its output."""
    run = start_fairseq_train(args, SLOW_SECOND_COPY.format(copier=copier))
    lines = []
    for line in run.stdout:
        lines.append(line)
        if line.startswith("COPYING"):
            run.kill()
            break
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "".join(lines)[-3000:]
    return "".join(lines)


def test_a_run_killed_inside_the_copy_to_checkpoint_last_resumes_from_a_whole_checkpoint(brown_data, tmp_path, caplog):
    """Killed while copying the update-8 checkpoint to checkpoint_last.pt:
    with fairseq's own copy the file is truncated (unloadable); with the
    plugin's, checkpoint_last.pt is still update 4's, whole, and the same
    command resumes from it to exactly the uninterrupted run's state."""
    output = killed_while_copying(method_args("random", brown_data, tmp_path / "fairseq"), FAIRSEQ_COPIER)
    assert "COPYING" in output and (tmp_path / "fairseq" / "checkpoint_last.pt").stat().st_size == 4096
    with pytest.raises(RuntimeError, match="failed reading zip archive"):
        torch.load(tmp_path / "fairseq" / "checkpoint_last.pt")

    args = method_args("random", brown_data, tmp_path / "killed")
    output = killed_while_copying(args, ATOMIC_COPIER)
    assert "checkpoint_last.pt.partial" in output.splitlines()[-1]
    assert training_state(tmp_path / "killed" / "checkpoint_last.pt")["num_updates"] == SAVE_EVERY  # whole, update 4's
    caplog.set_level(logging.INFO)
    train_in_process(args)  # the same command again
    assert f"(epoch 1 @ {SAVE_EVERY} updates)" in caplog.text
    assert not (tmp_path / "killed" / "checkpoint_last.pt.partial").exists()  # the next copy replaced it
    train_in_process(method_args("random", brown_data, tmp_path / "straight"))
    assert_identical(
        training_state(tmp_path / "killed" / "checkpoint_last.pt"),
        training_state(tmp_path / "straight" / "checkpoint_last.pt"),
        "resumed after a kill inside the copy",
    )
