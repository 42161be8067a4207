"""Measurements on models, as a library: the loss on the fixed standard
validation mask, mask-only gradient variance, effective rank, the cost of
making masks. The experiments that run them live in ``experiments/``."""
