"""Offline corpus preparation: reading raw corpora, sentencepiece, POS tags,
fairseq's binariser, and the quickstart's helpers. Nothing here runs at
training time."""
