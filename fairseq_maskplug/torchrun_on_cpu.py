"""fairseq 0.12 launched by torchrun on machines without a GPU.

fairseq reads torchrun's environment (``MASTER_ADDR``, ``MASTER_PORT``,
``WORLD_SIZE``, ``RANK``) in ``distributed.utils._infer_torch_distributed_launch_init``,
which sets ``device_id = rank % torch.cuda.device_count()``: a
ZeroDivisionError where no GPU is visible, so ``--cpu`` data-parallel runs
(gloo) cannot be launched by torchrun or across machines that way.

:func:`install`, run when the plugin loads, wraps that function: where a GPU
is visible it is fairseq's own; where none is, it makes the same settings
(init method ``env://``, world size and rank from the environment, no spawn)
with ``device_id`` torchrun's ``LOCAL_RANK``, which ``--cpu`` never uses.
"""

import functools
import os

import torch


def install():
    """Wrap fairseq's torchrun initialisation (idempotent)."""
    from fairseq.distributed import utils as distributed_utils

    original = distributed_utils._infer_torch_distributed_launch_init
    if getattr(original, "works_without_a_gpu", False):
        return

    @functools.wraps(original)
    def infer_torch_distributed_launch_init(cfg):
        if torch.cuda.device_count() > 0:
            return original(cfg)
        cfg.distributed_init_method = "env://"
        cfg.distributed_world_size = int(os.environ["WORLD_SIZE"])
        cfg.distributed_rank = int(os.environ["RANK"])
        cfg.device_id = int(os.environ.get("LOCAL_RANK", 0))
        cfg.distributed_no_spawn = True

    infer_torch_distributed_launch_init.works_without_a_gpu = True
    distributed_utils._infer_torch_distributed_launch_init = infer_torch_distributed_launch_init
