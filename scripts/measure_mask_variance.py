#!/usr/bin/env python
"""Mask-only gradient variance of masking strategies on a fixed batch: see
``maskplug_lab/diagnostics/measure_mask_variance.py`` (``--help``).

    python scripts/measure_mask_variance.py --data DIR [--checkpoint CKPT] \
        --strategies random,random_k,fully_explored,fully_explored_contiguous[,mapnet] --draws 32 --json OUT
"""

from maskplug_lab.diagnostics.measure_mask_variance import main

if __name__ == "__main__":
    main()
