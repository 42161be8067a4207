"""Can a masked-LM model read its context at all? A synthetic check.

Every sequence is pairs of equal random words (``a a b b c c …``); 15 % of
the positions are masked, never both of a pair, so every masked word is
exactly its unmasked partner: a model that reads context reaches 0 bits, one
that does not stays at log2(words). The task needs only one attention hop
from a masked position to its neighbour, so it isolates whether the
architecture (for MAE-LM: a decoder of a given depth over the scattered
encoder outputs) can learn to route position information, independent of any
corpus.
"""

import math
from argparse import Namespace
from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F
from fairseq.data import Dictionary


@dataclass
class CopyTaskSettings:
    """The synthetic task and the optimizer that trains on it."""

    words: int = 200  # distinct words; chance level is log2(words) bits
    pairs: int = 32  # pairs per sequence: sequences are 2 x pairs tokens
    batch_size: int = 16
    mask_prob: float = 0.15
    steps: int = 1500
    lr: float = 1e-3
    report_every: int = 250
    seed: int = 0


@dataclass
class CopyTaskResult:
    """Masked-word loss (bits) at every report step, and the final copy accuracy."""

    model: str
    steps: List[int]
    loss_bits: List[float]
    accuracy: float
    chance_bits: float


def copy_dictionary(words: int) -> Dictionary:
    dictionary = Dictionary()
    for index in range(words):
        dictionary.add_symbol(f"w{index}")
    dictionary.add_symbol("<mask>")
    return dictionary


def pair_batch(settings: CopyTaskSettings, dictionary: Dictionary, generator: torch.Generator):
    """(tokens (B, 2P), masked (B, 2P) bool): pairs of equal words, at most one of each pair masked."""
    words = torch.randint(dictionary.nspecial, dictionary.nspecial + settings.words,
                          (settings.batch_size, settings.pairs), generator=generator)  # fmt: skip
    tokens = words.repeat_interleave(2, dim=1)
    masked = torch.rand(tokens.shape, generator=generator) < settings.mask_prob
    pairs = masked.view(settings.batch_size, settings.pairs, 2)
    pairs[..., 1] &= ~pairs[..., 0]
    return tokens, masked


def build_copy_model(kind: str, dictionary: Dictionary, settings: CopyTaskSettings, encoder_layers: int,
                     decoder_layers: int, dim: int = 64):  # fmt: skip
    """``kind`` "roberta" or "mae_lm": width ``dim``, two heads, no dropout."""
    from fairseq.models.roberta import RobertaModel

    from fairseq_maskplug.models.mae_lm import MaeLMModel

    class Task:
        source_dictionary = dictionary

    args = Namespace(encoder_layers=encoder_layers, encoder_embed_dim=dim, encoder_ffn_embed_dim=2 * dim,
                     encoder_attention_heads=2, max_positions=2 * settings.pairs, decoder_layers=decoder_layers,
                     dropout=0.0, attention_dropout=0.0, tokens_per_sample=2 * settings.pairs)  # fmt: skip
    models = {"roberta": RobertaModel, "mae_lm": MaeLMModel}
    if kind not in models:
        raise ValueError(f"unknown model {kind!r}; valid: {', '.join(models)}")
    return models[kind].build_model(args, Task())


def train_copy_task(kind: str, settings: CopyTaskSettings, encoder_layers: int = 2, decoder_layers: int = 1):
    """Train a fresh model on the pair task with Adam; :class:`CopyTaskResult`."""
    return fit_copy_model(kind, settings, encoder_layers, decoder_layers)[1]


def fit_copy_model(kind: str, settings: CopyTaskSettings, encoder_layers: int = 2, decoder_layers: int = 1):
    """(the trained model in eval mode, its :class:`CopyTaskResult`)."""
    dictionary = copy_dictionary(settings.words)
    torch.manual_seed(settings.seed)
    model = build_copy_model(kind, dictionary, settings, encoder_layers, decoder_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.9, 0.98), eps=1e-6)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    mask_idx = dictionary.index("<mask>")
    steps, losses = [], []
    for step in range(settings.steps + 1):
        tokens, masked = pair_batch(settings, dictionary, generator)
        logits, _ = model(tokens.masked_fill(masked, mask_idx), masked_tokens=masked)
        loss = F.cross_entropy(logits.float(), tokens[masked])
        if step % settings.report_every == 0 or step == settings.steps:
            steps.append(step)
            losses.append(loss.item() / math.log(2))
        if step < settings.steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        tokens, masked = pair_batch(settings, dictionary, generator)
        logits, _ = model(tokens.masked_fill(masked, mask_idx), masked_tokens=masked)
        accuracy = logits.argmax(-1).eq(tokens[masked]).float().mean().item()
    label = kind if kind == "roberta" else f"mae_lm (decoder {decoder_layers})"
    return model, CopyTaskResult(
        f"{label}, {encoder_layers}-layer encoder", steps, losses, accuracy, math.log2(settings.words)
    )
