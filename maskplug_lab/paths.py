"""Where the plugin and the repository are, for the processes the lab
starts: the plugin's folder is what their ``--user-dir`` names, and the
repository root (where both packages live) goes on their ``PYTHONPATH``."""

from pathlib import Path

import fairseq_maskplug

PLUGIN_DIR = Path(fairseq_maskplug.__file__).resolve().parent
REPO_ROOT = PLUGIN_DIR.parent
