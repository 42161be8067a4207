"""Registered tasks."""

from . import masked_lm_plus  # noqa: F401  (registers masked_lm_plus)
