"""Restore the task's running state when fairseq-train resumes.

fairseq saves ``task.state_dict()`` in every checkpoint (``task_state``), but
its trainer restores only the model, criterion, optimizer and data iterator.
The task therefore reads ``task_state`` itself from the checkpoint the
trainer will resume from (fairseq's rule: ``--restore-file``, by default
``SAVE_DIR/checkpoint_last.pt``), when it is built, before any update.
"""

import logging
import os
from typing import Optional

import torch

from .config import resolved

logger = logging.getLogger(__name__)


def resume_checkpoint(cfg) -> Optional[str]:
    """The checkpoint fairseq-train will resume from, or None (first launch,
    or a task config built outside fairseq-train)."""
    save_dir = resolved(cfg, "save_dir", None)
    restore_file = resolved(cfg, "restore_file", None)
    if not save_dir or not restore_file:
        return None
    path = os.path.join(save_dir, "checkpoint_last.pt") if restore_file == "checkpoint_last.pt" else restore_file
    return path if os.path.isfile(path) else None


def running_state_to_restore(cfg) -> Optional[dict]:
    """``task_state`` of the checkpoint being resumed, or None."""
    path = resume_checkpoint(cfg)
    if path is None:
        return None
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    task_state = state.get("task_state") or None
    if task_state:
        logger.info("restoring the task's running state from %s", path)
    return task_state
