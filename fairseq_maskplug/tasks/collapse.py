"""Telling a user that the model has collapsed to one prediction.

A masked LM that predicts the same distribution at every ``<mask>``
position, whatever its input, has stopped reading context: its loss there
sits at the train unigram's and its ``spread_at_mask`` (the mean KL
divergence of each position's prediction from their average, bits; see
:func:`~fairseq_maskplug.tasks.position_kinds.prediction_spread_bits`) is 0.
Measured here: MAE-LM in the study's configuration at lr 3e-3, logits equal
across positions to 1e-5. Early in training every model sits near the
unigram for a while, so the warning waits for the learning-rate warm-up to
end and for two validations in a row that show it.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

# measured in the study's configuration (validation every 300 updates, warm-up 600): MAE-LM at lr 3e-3
# below 0.0005 bits from update 300 on; stock masked_lm on its unigram plateau 0.001 at update 300 (in
# the warm-up), then 0.056, 0.115, 0.094 before it leaves the plateau (docs/measuring.md, "Collapse")
COLLAPSED_SPREAD_BITS = 0.01
# a model whose loss at <mask> is this far below the train unigram's reads something, whatever its spread
AT_UNIGRAM_BITS = 0.1
# validations in a row past the warm-up that must show it
VALIDATIONS_IN_A_ROW = 2


@dataclass
class ValidationFigures:
    """What one validation said at the ``<mask>`` positions (bits)."""

    updates: int
    loss: float
    unigram: float
    spread: float

    @property
    def collapsed(self) -> bool:
        return self.spread < COLLAPSED_SPREAD_BITS and self.loss > self.unigram - AT_UNIGRAM_BITS


class CollapseMonitor:
    """Watches the learning rate (to know when its warm-up has ended) and the
    validations; warns once, naming ``--lr``, when the model has collapsed."""

    def __init__(self, learning_rates: Optional[Sequence[float]]):
        self.learning_rates = learning_rates
        self.previous_lr: Optional[float] = None
        self.warmed_up = False
        self.in_a_row = 0
        self.warned = False

    def observe_lr(self, lr: float):
        """Called once per update with the optimizer's rate: the warm-up has
        ended once the rate stops rising."""
        if self.previous_lr is not None and lr <= self.previous_lr:
            self.warmed_up = True
        self.previous_lr = lr

    def observe_validation(self, stats: dict) -> Optional[str]:
        """The warning to print for a validation's ``stats`` (fairseq's valid
        stats: ``num_updates``, ``loss_at_mask``, ``unigram_at_mask``,
        ``spread_at_mask``), once per run; None otherwise."""
        if any(key not in stats for key in ("loss_at_mask", "unigram_at_mask", "spread_at_mask")):
            return None
        figures = ValidationFigures(
            int(stats.get("num_updates", 0)), stats["loss_at_mask"], stats["unigram_at_mask"], stats["spread_at_mask"]
        )
        self.in_a_row = self.in_a_row + 1 if self.warmed_up and figures.collapsed else 0
        if self.warned or self.in_a_row < VALIDATIONS_IN_A_ROW:
            return None
        self.warned = True
        return collapse_warning(figures, self.learning_rates)


def collapse_warning(figures: ValidationFigures, learning_rates: Optional[Sequence[float]]) -> str:
    rate = ",".join(f"{lr:g}" for lr in learning_rates) if learning_rates else "(unknown)"
    return (
        f"the model has collapsed to one prediction: at update {figures.updates}, after the learning-rate warm-up, "
        f"its predictions at the <mask> positions are the same everywhere (spread_at_mask {figures.spread:.4f} bits, "
        f"{VALIDATIONS_IN_A_ROW} validations in a row) and its loss there sits at the train unigram's "
        f"({figures.loss:.3f} against {figures.unigram:.3f} bits): it ignores its input. --lr {rate} is likely too "
        "high for this model: try a third of it, or a longer --warmup-updates (docs/measuring.md, 'Collapse')"
    )
