"""fairseq datasets and checks used at training time: vocabulary tables for
the Masker, checks of data files, the POS side input, the fully-explored
dataset. Offline corpus preparation lives in ``corpus/``."""
