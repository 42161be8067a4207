"""Measurements on trained models: standard validation loss (more in later issues)."""
