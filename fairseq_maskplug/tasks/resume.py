"""What the task does when fairseq-train resumes from a checkpoint.

fairseq saves ``task.state_dict()`` in every checkpoint (``task_state``), but
its trainer restores only the model, criterion, optimizer and data iterator.
The task therefore reads the checkpoint the trainer will resume from
(fairseq's rule: ``--restore-file``, by default ``SAVE_DIR/checkpoint_last.pt``)
itself, before any update, to

- refuse it when it was trained with other masking options than this run
  (the resumed run would not draw the masks the interrupted one would have
  drawn), unless the user resets with ``--reset-dataloader``;
- restore the task's running state (``task_state``) otherwise.
"""

import logging
import os
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional

from ..errors import ResumeMismatchError
from ..masking.draws import VERSION as DRAWS_VERSION
from ..safe_loading import load_checkpoint
from .config import flag, resolved

logger = logging.getLogger(__name__)

# task options that decide the training masks (and the blocks that sample ids
# name); compared on resume under their command-line names
MASKING_TASK_OPTIONS = (
    "tokens_per_sample", "sample_break_mode", "seed",
    "mask_prob", "leave_unmasked_prob", "random_token_prob", "freq_weighted_replacement", "mask_whole_words",
    "mask_multiple_length", "mask_stdev",
    "masking", "fe_segments", "fe_partition", "fe_mask_size",
    "mask_schedule", "mask_schedule_start", "mask_schedule_end", "mask_schedule_warmup",
    "content_weighting", "pos_selection", "pos_momentum", "pos_temperature", "pos_bias_correction",
    "valid_mask_prob", "valid_mask_seed",
)  # fmt: skip
# registered tasks that draw masks on the device; presets differ only in defaults
DEVICE_MASKING_TASKS = ("masked_lm_plus", "fully_explored_masked_lm", "time_variant_masked_lm")
DEVICE_MASKING_SIGNATURE = "masked_lm_plus (or a preset)"
# criteria whose options change the masks (all their options but the seed mirror)
MASKING_CRITERIA = ("mapnet_masked_lm",)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Enum) else value


def masking_signature(task: Mapping, criterion: Mapping, max_update: Optional[int]) -> Dict[str, Any]:
    """The options that decide the training masks, by command-line flag.

    ``task`` / ``criterion``: the task and criterion configs, as saved in a
    checkpoint's ``cfg`` or live (any mapping with ``get``); ``max_update``:
    the run's ``--max-update`` (a schedule's default length).
    """
    name = task.get("_name")
    if name not in DEVICE_MASKING_TASKS:
        return {"--task": name}
    signature = {"--task": DEVICE_MASKING_SIGNATURE}
    signature.update({flag(key): _plain(task.get(key)) for key in MASKING_TASK_OPTIONS})
    if str(task.get("mask_schedule")) != "constant":
        signature["--mask-schedule-updates"] = task.get("mask_schedule_updates") or max_update
    criterion_name = criterion.get("_name")
    signature["--criterion"] = criterion_name
    if criterion_name in MASKING_CRITERIA:
        signature.update({flag(k): _plain(v) for k, v in criterion.items() if k not in ("_name", "seed")})
    return signature


def live_masking_signature(task_cfg, criterion_cfg) -> Dict[str, Any]:
    """:func:`masking_signature` of this run's configs (interpolations resolved)."""
    task = {key: resolved(task_cfg, key, None) for key in ("_name", *MASKING_TASK_OPTIONS, "mask_schedule_updates")}
    criterion = {key: resolved(criterion_cfg, key, None) for key in criterion_cfg.keys()}
    return masking_signature(task, criterion, resolved(task_cfg, "max_update", None))


def signature_differences(saved: Dict[str, Any], live: Dict[str, Any]) -> List[str]:
    """One line per flag whose value differs: ``--flag: A in the checkpoint,
    B now``. Options only one side has (another task's or criterion's) are
    covered by the ``--task`` / ``--criterion`` line."""
    if saved.get("--task") != live.get("--task"):
        return [f"--task: {saved.get('--task')} in the checkpoint, {live.get('--task')} now"]
    return [
        f"{key}: {saved[key]} in the checkpoint, {live[key]} now"
        for key in sorted(set(saved) & set(live))
        if saved[key] != live[key]
    ]


def draws_difference(saved_version: Optional[str]) -> List[str]:
    """The line naming a change of the random draws masks are made from
    (fairseq-maskplug 0.1 drew them from one seeded generator per sequence;
    its checkpoints carry no version), or none."""
    if saved_version == DRAWS_VERSION:
        return []
    saved = saved_version or "per-sequence seeded generators (fairseq-maskplug 0.1)"
    return [f"mask draws: {saved} in the checkpoint, {DRAWS_VERSION} now (the same options draw other masks)"]


def resume_checkpoint(cfg) -> Optional[str]:
    """The checkpoint fairseq-train will resume from, or None (first launch,
    or a task config built outside fairseq-train)."""
    save_dir = resolved(cfg, "save_dir", None)
    restore_file = resolved(cfg, "restore_file", None)
    if not save_dir or not restore_file:
        return None
    path = os.path.join(save_dir, "checkpoint_last.pt") if restore_file == "checkpoint_last.pt" else restore_file
    return path if os.path.isfile(path) else None


def load_checkpoint_lazily(path: str) -> dict:
    """The checkpoint, its tensors memory-mapped (only its config and task
    state are read) where the file format allows; legacy (pre-zip) files,
    such as the published roberta.base, are read whole."""
    try:
        return load_checkpoint(path, mmap=True)
    except RuntimeError:
        return load_checkpoint(path)


def task_state_to_restore(task_cfg, criterion_cfg) -> Optional[dict]:
    """Check the checkpoint being resumed against this run's masking options;
    return its ``task_state`` (None when nothing is resumed or nothing saved).

    Raises :class:`ResumeMismatchError` naming every differing option, unless
    ``--reset-dataloader`` is set: then the difference is logged and the
    running state starts afresh (None).
    """
    path = resume_checkpoint(task_cfg)
    if path is None:
        return None
    state = load_checkpoint_lazily(path)
    saved_cfg = state.get("cfg") or {}
    differences = []
    if saved_cfg.get("task") is not None:
        saved = masking_signature(
            saved_cfg["task"], saved_cfg.get("criterion") or {}, (saved_cfg.get("optimization") or {}).get("max_update")
        )
        differences = signature_differences(saved, live_masking_signature(task_cfg, criterion_cfg))
        if saved.get("--task") == DEVICE_MASKING_SIGNATURE:
            differences += draws_difference((state.get("task_state") or {}).get("mask_draws"))
    if not differences:
        task_state = state.get("task_state") or None
        if task_state:
            logger.info("restoring the task's running state from %s", path)
        return task_state
    listing = "\n  ".join(differences)
    if resolved(task_cfg, "reset_dataloader", False):
        logger.warning(
            "%s was trained with other masking options (--reset-dataloader given, so they are accepted and "
            "the masks' running state starts afresh):\n  %s",
            path,
            listing,
        )
        return None
    raise ResumeMismatchError(
        f"{path} was trained with other masking options than this run:\n  {listing}\n"
        "Resuming would not draw the masks the interrupted run would have drawn. To resume it, run with the "
        "checkpoint's options. To start a new phase from its weights with the new options, add "
        "--reset-dataloader (fairseq-hydra-train: checkpoint.reset_dataloader=true; the masks' running state "
        "then starts afresh), or train into a new --save-dir with --finetune-from-model " + path
    )
