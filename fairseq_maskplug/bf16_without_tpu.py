"""``--bf16`` on GPUs (and CPUs), not only on TPUs.

fairseq 0.12's command line turns ``--bf16`` into ``--tpu`` as well
(``options.parse_args_and_arch``: "use bfloat16; implies --tpu"), so on a
machine without torch_xla its trainer asks for an XLA device and fails
before any update; yet its trainer and optimizer have a working bfloat16
path of their own (the model in bfloat16, float32 master weights, no loss
scaling). :func:`install`, run when the plugin loads, wraps fairseq's
``distributed.utils.call_main``: for a ``--bf16`` run with ``--tpu`` set where
torch_xla is not installed (so ``--tpu`` cannot be what the user meant), it
clears ``--tpu`` and says so, and the run trains in bfloat16 on its GPU (or
CPU). With torch_xla installed nothing changes.
"""

import functools
import importlib.util
import logging

logger = logging.getLogger(__name__)


def install():
    """Wrap fairseq's ``call_main`` (idempotent)."""
    from fairseq.distributed import utils as distributed_utils

    original = distributed_utils.call_main
    if getattr(original, "bf16_without_tpu", False):
        return

    @functools.wraps(original)
    def call_main(cfg, main, **kwargs):
        common = cfg.common
        if common.bf16 and common.tpu and importlib.util.find_spec("torch_xla") is None:
            common.tpu = False
            where = "the CPU" if common.cpu else "CUDA"
            logger.info("--bf16 without torch_xla: training in bfloat16 on %s, not on a TPU", where)
        return original(cfg, main, **kwargs)

    call_main.bf16_without_tpu = True
    distributed_utils.call_main = call_main
