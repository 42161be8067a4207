"""fairseq checkpoints under torch's safe loader.

torch >= 2.6 unpickles with ``weights_only=True`` unless told otherwise:
tensors, containers, numbers, strings and the types allow-listed with
``torch.serialization.add_safe_globals``, nothing else, so a downloaded
checkpoint cannot run code. fairseq 0.12's checkpoints hold one type beyond
those: ``argparse.Namespace``, the ``cfg.model`` of models registered with
argparse options (RoBERTa, MAE-LM). Found by loading every kind this plugin
writes (each method, fp16, MAPNet's proposal state, POS running losses,
resumed runs, MAE-LM before and after export; ``tests/test_safe_loading.py``).

Importing the plugin allow-lists exactly that type, so fairseq's own
``torch.load`` (no ``weights_only`` argument) reads those checkpoints with
safe loading on; a checkpoint holding any other type is still refused.

One more path unpickles: when every data-parallel rank resumes, rank 0 loads
the checkpoint and fairseq sends its state to the other ranks by pickling it
(``distributed.utils._broadcast_object_slow``), its configuration by then
omegaconf objects. Those bytes come from rank 0's memory, not from a file;
while fairseq unpickles them, and only then, the omegaconf types of
:func:`broadcast_types` are allowed too (:func:`allow_resume_broadcast`).

Nothing else changes: no environment variable is set, no warning filtered,
and child processes inherit nothing.
"""

import argparse
import collections
import functools
import typing

import torch

CHECKPOINT_TYPES = (argparse.Namespace,)

# ``python -c STOCK_FAIRSEQ_TRAIN ARGS``: stock fairseq-train (no plugin) with the same allow-list, for
# fine-tuning a checkpoint under torch >= 2.6 with nothing but fairseq (docs/methods/mae_lm.md)
STOCK_FAIRSEQ_TRAIN = (
    "import argparse, sys, torch; torch.serialization.add_safe_globals([argparse.Namespace]); "
    "sys.argv[0] = 'fairseq-train'; from fairseq_cli.train import cli_main; cli_main()"
)


def broadcast_types() -> tuple:
    """What rank 0's resumed state holds once fairseq has turned its config
    into omegaconf objects and set its tensors aside (found with
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` on it), and
    omegaconf's other value nodes."""
    from fairseq.distributed.utils import _TensorPlaceholder
    from omegaconf import DictConfig, ListConfig, nodes
    from omegaconf.base import ContainerMetadata, Metadata

    return (
        DictConfig, ListConfig, ContainerMetadata, Metadata, nodes.AnyNode, nodes.StringNode, nodes.IntegerNode,
        nodes.FloatNode, nodes.BooleanNode, typing.Any, dict, list, int, collections.defaultdict, _TensorPlaceholder,
    )  # fmt: skip


def allow_resume_broadcast():
    """While fairseq's ``_broadcast_object_slow`` runs, torch's safe loader
    also allows :func:`broadcast_types` (idempotent)."""
    from fairseq.distributed import utils as distributed_utils

    original = distributed_utils._broadcast_object_slow
    if getattr(original, "allows_resume_broadcast", False):
        return
    allowed = [*CHECKPOINT_TYPES, *broadcast_types()]

    @functools.wraps(original)
    def broadcast_object_slow(*args, **kwargs):
        with torch.serialization.safe_globals(allowed):
            return original(*args, **kwargs)

    broadcast_object_slow.allows_resume_broadcast = True
    distributed_utils._broadcast_object_slow = broadcast_object_slow


def allow_checkpoint_types():
    """Add :data:`CHECKPOINT_TYPES` to torch's safe-loading allow-list."""
    torch.serialization.add_safe_globals(list(CHECKPOINT_TYPES))


def load_checkpoint(path, **kwargs):
    """A fairseq checkpoint's state on the CPU, unpickled with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
