"""Measurements on models for the experiments: mask-only gradient variance,
effective rank, the cost of making masks, downstream probes, the pair-copy
task. (The validation yardstick is the plugin's: ``fairseq_maskplug.scoring``.)"""
