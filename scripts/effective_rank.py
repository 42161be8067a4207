#!/usr/bin/env python
"""Effective rank of real-token representations per encoder layer: see
``maskplug_lab/diagnostics/effective_rank.py`` (``--help``).

    python scripts/effective_rank.py --data DIR --checkpoint CKPT [--checkpoint CKPT2] --json OUT
"""

from maskplug_lab.diagnostics.effective_rank import main

if __name__ == "__main__":
    main()
