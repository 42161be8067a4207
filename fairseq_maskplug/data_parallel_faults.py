"""Saying what happened when a data-parallel rank is lost.

When one rank of a data-parallel run dies (killed, out of memory, its
machine gone), the others fail in their next collective with the transport's
words: gloo's "Read error ... Connection reset by peer" within about a second
on the CPU, NCCL's "communicator was aborted" or its watchdog's timeout on
GPUs (docs/gpu.md: the settings that turn a hang into an exit). The survivor
exits non-zero, but its traceback points into fairseq's trainer and names
no remedy.

:func:`install`, run when the plugin loads, wraps ``sys.excepthook`` (torch
wraps it again when the process group starts, to prefix ``[rankN]``): for an
uncaught error whose message is a lost peer's, it first writes one paragraph
saying that a rank was lost and how to resume (relaunch every rank with the
same command: masks and running state resume exactly), then the traceback
as before. Any other error is reported as before.
"""

import re
import sys
from typing import Optional

# what gloo and NCCL say when the other side of a collective has gone
PEER_LOST = re.compile(
    r"Connection reset by peer|Connection closed by peer|Broken pipe|NCCL communicator was aborted|"
    r"Watchdog caught collective operation timeout|ProcessGroupNCCL.*(?:timeout|abort)|Timed out waiting"
)


def lost_rank_message(error: BaseException) -> Optional[str]:
    """The paragraph to print before ``error``'s traceback, or None when it
    is not a lost peer of an initialised data-parallel run."""
    import torch.distributed as dist

    text = f"{type(error).__name__}: {error}"
    if not PEER_LOST.search(text) or not (dist.is_available() and dist.is_initialized()):
        return None
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"fairseq-maskplug: data-parallel rank {dist.get_rank()} of {dist.get_world_size()} lost another rank "
        f"({dist.get_backend()}: {first_line[:300]}): a rank died or was killed, so this one stops too. Training "
        "resumes exactly from the last checkpoint: relaunch every rank with the same command "
        "(docs/recipes.md, 'A lost rank')."
    )


def install():
    """Wrap ``sys.excepthook`` once (see the module's doc)."""
    previous = sys.excepthook
    if getattr(previous, "explains_lost_ranks", False):
        return

    def excepthook(kind, error, traceback):
        message = lost_rank_message(error)
        if message:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        previous(kind, error, traceback)

    excepthook.explains_lost_ranks = True
    sys.excepthook = excepthook
