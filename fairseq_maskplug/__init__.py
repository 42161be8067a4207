"""fairseq-maskplug: smarter masking for masked-LM pre-training, as a fairseq user dir.

``fairseq-train --user-dir fairseq_maskplug`` (or ``common.user_dir=`` under
``fairseq-hydra-train``) imports this package, which registers its tasks,
criterions and models.
"""

from .platform_warnings import silence_platform_notices
from .safe_loading import allow_checkpoint_types

silence_platform_notices()
# torch's safe loader reads fairseq's checkpoints once their one extra type is allow-listed (safe_loading.py)
allow_checkpoint_types()

# masking/ is pure torch and must import without fairseq; everything that
# registers with fairseq is imported only where fairseq is installed.
try:
    import fairseq  # noqa: E402,F401
except ModuleNotFoundError as error:
    if error.name != "fairseq":
        raise
else:
    from . import criterions, models, tasks  # noqa: E402,F401
    from .atomic_checkpoints import install as install_atomic_checkpoint_copies  # noqa: E402
    from .bf16_without_tpu import install as bf16_without_tpu  # noqa: E402
    from .clean_exit import register as register_clean_exit  # noqa: E402
    from .data_parallel_faults import install as explain_lost_ranks  # noqa: E402
    from .safe_loading import allow_resume_broadcast  # noqa: E402
    from .torchrun_on_cpu import install as launch_with_torchrun_on_cpu  # noqa: E402

    allow_resume_broadcast()
    bf16_without_tpu()
    launch_with_torchrun_on_cpu()
    register_clean_exit()
    install_atomic_checkpoint_copies()
    explain_lost_ranks()

__version__ = "0.3.0"
