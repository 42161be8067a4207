"""Importing the plugin leaves torch's safe loading on: no environment
variable, a crafted pickle is refused, and every kind of checkpoint the
plugin writes loads with ``weights_only=True`` (fairseq's own loader and
``torch.load`` with its default)."""

import os
import subprocess
import sys

import pytest
import torch
from fairseq import checkpoint_utils

from harness import CHILD_ENV, METHOD_FLAGS, POS_METHODS, built_once, train_args, train_in_process

# a pickle that creates MARKER when unpickled (pathlib.Path.touch called by the unpickler)
CRAFT_AND_LOAD = """
import os, pathlib, pickle, sys, torch
import fairseq_maskplug
assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ, "the plugin set it"
marker, path = pathlib.Path(sys.argv[1]), sys.argv[2]
class Payload:
    def __reduce__(self):
        return (pathlib.Path.touch, (marker,))
torch.save({"model": {}, "args": Payload()}, path)
try:
    torch.load(path)
except pickle.UnpicklingError as error:
    print("REFUSED", str(error).splitlines()[0])
print("MARKER", marker.exists())
"""


def test_a_crafted_checkpoint_is_refused_in_a_process_that_imported_the_plugin(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "evil.pt"
    env = {k: v for k, v in CHILD_ENV.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    run = subprocess.run([sys.executable, "-c", CRAFT_AND_LOAD, marker, path], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "REFUSED Weights only load failed" in run.stdout and "MARKER False" in run.stdout, run.stdout
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: unsafe loading runs it
    assert marker.exists()


def test_importing_the_plugin_sets_no_environment_variable():
    import fairseq_maskplug  # noqa: F401  (this worker imported it long ago; again, to say so)

    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


KINDS = {
    **{name: (flags, []) for name, flags in METHOD_FLAGS.items()},
    "stock masked_lm": (["--task", "masked_lm"], []),
    "memory-efficient fp16": (METHOD_FLAGS["random"], ["--memory-efficient-fp16"]),
    "fp16, MAPNet": (METHOD_FLAGS["mapnet"], ["--fp16", "--fp16-no-flatten-grads"]),
}


@pytest.fixture(scope="session")
def checkpoint_kinds(brown_data, brown_pos_data, tmp_path_factory):
    """One checkpoint of every kind the plugin writes: each method, stock,
    fp16 both ways, a resumed run, an MAE-LM export."""

    def build(root):
        for name, (method, extra) in KINDS.items():
            data = brown_pos_data if name in POS_METHODS else brown_data
            train_in_process(train_args(data, root / name, updates=3, extra=[*method, *extra]))
        resumed = train_args(brown_data, root / "random", updates=5, extra=METHOD_FLAGS["random"])
        train_in_process(resumed)  # resumes at update 3, saves at 5
        from fairseq_maskplug.models.export import export_roberta

        export_roberta(str(root / "mae_lm" / "checkpoint_last.pt"), str(root / "mae_lm export"))

    return built_once(tmp_path_factory, "checkpoint_kinds", build)


def test_every_kind_of_checkpoint_loads_with_weights_only(checkpoint_kinds):
    paths = sorted(checkpoint_kinds.glob("*/checkpoint_last.pt")) + [checkpoint_kinds / "mae_lm export" / "model.pt"]
    assert len(paths) == len(KINDS) + 1 == 9
    for path in paths:
        state = torch.load(path, map_location="cpu")  # torch's default: weights_only=True
        assert state["model"], path
        assert checkpoint_utils.load_checkpoint_to_cpu(str(path))["model"].keys() == state["model"].keys()
    resumed = torch.load(checkpoint_kinds / "random" / "checkpoint_last.pt")
    assert resumed["optimizer_history"][-1]["num_updates"] == 5
    assert resumed["task_state"]["mask_draws"] == "counter-splitmix64-v1"
    assert torch.load(checkpoint_kinds / "mapnet" / "checkpoint_last.pt")["task_state"]["mapnet_proposal"]
    assert torch.load(checkpoint_kinds / "pos_cosine" / "checkpoint_last.pt")["task_state"]["pos_running_loss"]
