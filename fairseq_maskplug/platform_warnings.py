"""Warnings the pinned platform prints on every run that name nothing a user
can change, filtered (exactly those, nothing else) when the plugin loads:

- fairseq 0.12 builds its configs with hydra APIs that hydra 1.3 deprecates
  (``hydra.experimental.initialize``/``compose`` without a ``version_base``,
  ``strict=``, ``# @package _group_`` headers, schema matching by name): six
  multi-line ``UserWarning``s from hydra's own modules, and the
  schema-matching one, which hydra raises from outside the stack.
"""

import warnings

HYDRA_MODULES = r"hydra(\..*)?$"
SCHEMA_MATCHING = r"\s*'\w+' is validated against ConfigStore schema with the same name"


def silence_platform_notices():
    warnings.filterwarnings("ignore", category=UserWarning, module=HYDRA_MODULES)
    warnings.filterwarnings("ignore", message=SCHEMA_MATCHING, category=UserWarning)
