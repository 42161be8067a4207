"""fairseq-maskplug: smarter masking for masked-LM pre-training, as a fairseq user dir.

``fairseq-train --user-dir fairseq_maskplug`` (or ``common.user_dir=`` under
``fairseq-hydra-train``) imports this package, which registers its tasks,
criterions and models.
"""

import os

# torch >= 2.6 loads checkpoints with weights_only=True, which refuses fairseq's
# checkpoints (they pickle argparse/omegaconf objects). setdefault: a user's own
# choice wins.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from .platform_warnings import silence_platform_notices  # noqa: E402

silence_platform_notices()

# masking/ is pure torch and must import without fairseq; everything that
# registers with fairseq is imported only where fairseq is installed.
try:
    import fairseq  # noqa: E402,F401
except ModuleNotFoundError as error:
    if error.name != "fairseq":
        raise
else:
    from . import criterions, models, tasks  # noqa: E402,F401
    from .clean_exit import register as register_clean_exit  # noqa: E402

    register_clean_exit()

__version__ = "0.2.0"
