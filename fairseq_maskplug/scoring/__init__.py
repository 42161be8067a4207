"""The yardstick a user scores a checkpoint with: the loss on the fixed
standard validation mask, split by what the input shows at each predicted
position, against what ignoring context scores there (``scripts/score_checkpoint.py``)."""
