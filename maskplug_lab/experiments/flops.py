"""Training FLOPs of RoBERTa and MAE-LM of one encoder size, to predict their
throughput ratio.

Counts are multiply-adds × 2 of the matrix products (projections, attention
scores and sums, feed-forward, LM head); layer norms, softmax, embeddings and
index gathers are left out (a few percent). Training = 3 × forward (the
backward pass costs twice the forward).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Stack:
    """A stack of post-LN transformer layers: ``layers`` × (width ``dim``, FFN ``ffn``)."""

    layers: int
    dim: int
    ffn: int

    def forward_flops(self, sequences: float, length: float) -> float:
        """Forward FLOPs over ``sequences`` rows of ``length`` positions (padded length: what is computed)."""
        tokens = sequences * length
        per_token = 4 * self.dim * self.dim + 2 * length * self.dim + 2 * self.dim * self.ffn
        return 2.0 * self.layers * tokens * per_token


def lm_head_forward_flops(predicted: float, dim: int, vocab: int) -> float:
    """RoBERTa's LM head (dense + output projection) on the predicted positions only."""
    return 2.0 * predicted * (dim * dim + dim * vocab)


def roberta_training_flops(encoder: Stack, sequences: float, length: float, predicted: float, vocab: int) -> float:
    return 3.0 * (encoder.forward_flops(sequences, length) + lm_head_forward_flops(predicted, encoder.dim, vocab))


def mae_lm_training_flops(
    encoder: Stack,
    decoder: Stack,
    sequences: float,
    length: float,
    visible_length: float,
    predicted: float,
    vocab: int,
    projection: bool,
) -> float:
    """The encoder runs on the visible tokens only (rows padded to
    ``visible_length``), the decoder on all ``length`` positions; a projection
    maps encoder width to decoder width and back when ``projection``."""
    flops = encoder.forward_flops(sequences, visible_length) + decoder.forward_flops(sequences, length)
    if projection:
        flops += 2.0 * sequences * length * encoder.dim * decoder.dim + 2.0 * predicted * decoder.dim * encoder.dim
    return 3.0 * (flops + lm_head_forward_flops(predicted, encoder.dim, vocab))
