"""Whole checkpoints: fairseq's copies to ``checkpoint_last.pt`` made atomic.

fairseq 0.12 saves the first checkpoint of a save interval atomically (to
``NAME.tmp``, then a rename), then copies it to the others it keeps
(``checkpoint_last.pt``, ``checkpoint_best.pt``, ``checkpoint.best_*``) with
``PathManager.copy``: a plain file copy, so a process killed during it leaves
a truncated ``checkpoint_last.pt``, the file every resume reads (seconds of
copying for a large model).

:func:`install`, run when the plugin loads, gives fairseq's checkpoint module
a ``PathManager`` whose ``copy`` of a local file writes ``DST.partial``,
flushes it to disk, renames it over ``DST`` and syncs the folder: a kill at
any moment leaves either the previous ``DST`` or the new one, whole. Remote
paths (``PathManager.path_requires_pathmanager``) are copied as fairseq
copies them.
"""

import os
import shutil

from fairseq import checkpoint_utils
from fairseq.file_io import PathManager

PARTIAL_SUFFIX = ".partial"
CHUNK_BYTES = 16 << 20


def atomic_copy(src_path: str, dst_path: str) -> None:
    """Copy ``src_path`` to ``dst_path`` so that ``dst_path`` is at every
    moment absent, the old file or the whole new one."""
    partial = dst_path + PARTIAL_SUFFIX
    with open(src_path, "rb") as source, open(partial, "wb") as target:
        shutil.copyfileobj(source, target, CHUNK_BYTES)
        target.flush()
        os.fsync(target.fileno())
    os.replace(partial, dst_path)
    folder = os.open(os.path.dirname(os.path.abspath(dst_path)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class AtomicCopyPathManager(PathManager):
    """fairseq's PathManager, with atomic copies of local files."""

    @staticmethod
    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
            return PathManager.copy(src_path, dst_path, overwrite)
        if not overwrite and os.path.exists(dst_path):
            return False
        atomic_copy(src_path, dst_path)
        return True


def install():
    """Make fairseq's checkpoint copies atomic (idempotent)."""
    checkpoint_utils.PathManager = AtomicCopyPathManager
