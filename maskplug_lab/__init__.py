"""The lab beside the plugin: the study, calibration, benchmark, GPU kit,
corpus preparation and the diagnostics only experiments use. It imports the
plugin (``fairseq_maskplug``); the plugin never imports it, and
``--user-dir fairseq_maskplug`` loads none of it."""
