"""Registered models."""

from . import mae_lm  # noqa: F401  (registers mae_lm and its archs)
