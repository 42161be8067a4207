"""The mask proposal network (MAPNet): scores every position of the clean
tokens; a softmax over each sequence's maskable units is the proposal q."""

from argparse import Namespace

import torch
import torch.nn as nn
from fairseq.models.transformer import TransformerConfig
from fairseq.modules import LayerNorm, PositionalEmbedding
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from fairseq.modules.transformer_sentence_encoder import init_bert_params


class MaskProposalNetwork(nn.Module):
    """A small bidirectional transformer over the clean tokens.

    With ``share_embeddings`` its input is the main model's embedding output
    (token + position embeddings and embedding LayerNorm of the sentence
    encoder), detached, in float32, projected from ``model_dim`` to ``dim``:
    its loss never moves the main model. Otherwise it has its own token and
    position embeddings. Output: (B, L) float32 scores, scaled by dim^-1/2.
    """

    def __init__(
        self,
        model_dim: int,
        dim: int,
        layers: int,
        heads: int,
        share_embeddings: bool,
        vocab_size: int,
        padding_idx: int,
        max_positions: int,
    ):
        super().__init__()
        self.padding_idx = padding_idx
        self.share_embeddings = share_embeddings
        if share_embeddings:
            self.input_projection = nn.Linear(model_dim, dim) if model_dim != dim else None
        else:
            self.embed_tokens = nn.Embedding(vocab_size, dim, padding_idx)
            self.embed_positions = PositionalEmbedding(max_positions, dim, padding_idx, learned=True)
            self.layernorm_embedding = LayerNorm(dim)
        config = TransformerConfig.from_namespace(
            Namespace(
                encoder_embed_dim=dim,
                encoder_ffn_embed_dim=4 * dim,
                encoder_attention_heads=heads,
                encoder_normalize_before=True,
                dropout=0.0,
                attention_dropout=0.0,
                activation_dropout=0.0,
                activation_fn="gelu",
            )
        )
        self.layers = nn.ModuleList([TransformerEncoderLayerBase(config) for _ in range(layers)])
        # No biases after the last layer: q is a softmax over each sequence's
        # positions, so a constant added to every score changes nothing and
        # such a bias would only collect rounding noise, which Adam turns
        # into full-size steps.
        self.final_layer_norm = nn.LayerNorm(dim, bias=False)
        self.output = nn.Linear(dim, 1, bias=False)
        self.scale = dim**-0.5
        self.apply(init_bert_params)

    def forward(self, tokens: torch.Tensor, sentence_encoder) -> torch.Tensor:
        """``sentence_encoder``: the main model's (read only when sharing embeddings)."""
        padding = tokens.eq(self.padding_idx)
        if self.share_embeddings:
            x = sentence_encoder.forward_embedding(tokens)[0].detach().float()
            if self.input_projection is not None:
                x = self.input_projection(x)
        else:
            x = self.layernorm_embedding(self.embed_tokens(tokens) + self.embed_positions(tokens))
        x = x.masked_fill(padding.unsqueeze(-1), 0).transpose(0, 1)
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=padding if padding.any() else None)
        scores = self.output(self.final_layer_norm(x)).squeeze(-1).transpose(0, 1)
        return scores.float() * self.scale
