"""Registered criterions."""

from . import mapnet_masked_lm  # noqa: F401  (registers mapnet_masked_lm)
