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
Nothing else changes: no environment variable is set, no warning filtered,
and child processes inherit nothing.
"""

import argparse

import torch

CHECKPOINT_TYPES = (argparse.Namespace,)

# ``python -c STOCK_FAIRSEQ_TRAIN ARGS``: stock fairseq-train (no plugin) with the same allow-list, for
# fine-tuning a checkpoint under torch >= 2.6 with nothing but fairseq (docs/methods/mae_lm.md)
STOCK_FAIRSEQ_TRAIN = (
    "import argparse, sys, torch; torch.serialization.add_safe_globals([argparse.Namespace]); "
    "sys.argv[0] = 'fairseq-train'; from fairseq_cli.train import cli_main; cli_main()"
)


def allow_checkpoint_types():
    """Add :data:`CHECKPOINT_TYPES` to torch's safe-loading allow-list."""
    torch.serialization.add_safe_globals(list(CHECKPOINT_TYPES))


def load_checkpoint(path, **kwargs):
    """A fairseq checkpoint's state on the CPU, unpickled with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
