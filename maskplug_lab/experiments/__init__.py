"""Experiments built on the library: named configurations, the benchmark and
its throughput runner, FLOP counts, learning curves (subprocesses, plots,
Markdown)."""
