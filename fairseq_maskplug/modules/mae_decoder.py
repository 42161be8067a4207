"""MAE-LM's encoder pieces: a RoBERTa sentence encoder that takes explicit
positions, and the shallow decoder used only in pre-training."""

import copy
from argparse import Namespace
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.models.transformer import TransformerConfig, TransformerEncoder
from fairseq.modules import LayerNorm, PositionalEmbedding
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from fairseq.modules.transformer_sentence_encoder import init_bert_params


class PositionedTransformerEncoder(TransformerEncoder):
    """fairseq's TransformerEncoder (same modules and parameter names, so its
    weights are a RoBERTa encoder's) whose position embeddings can be looked up
    at given positions instead of 0..n-1: MAE-LM's encoder input is the
    unmasked tokens only, each at its original position."""

    def forward(
        self,
        src_tokens,
        src_lengths=None,
        return_all_hiddens: bool = False,
        token_embeddings: Optional[torch.Tensor] = None,
        positions: Optional[torch.Tensor] = None,
    ):
        """``positions`` (B, T): fairseq position ids (original index +
        padding_idx + 1; padding_idx at padding). None: the usual 0..n-1."""
        self._positions = positions
        try:
            return self.forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)
        finally:
            self._positions = None

    def forward_embedding(self, src_tokens, token_embedding: Optional[torch.Tensor] = None):
        positions = getattr(self, "_positions", None)
        if positions is None:
            return super().forward_embedding(src_tokens, token_embedding)
        if token_embedding is None:
            token_embedding = self.embed_tokens(src_tokens)
        x = embed = self.embed_scale * token_embedding
        if self.embed_positions is not None:
            # a lookup at the given ids (fairseq's module refuses explicit positions when it has a padding_idx)
            x = embed + F.embedding(positions, self.embed_positions.weight, self.embed_positions.padding_idx)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout_module(x)
        if self.quant_noise is not None:
            x = self.quant_noise(x)
        return x, embed


def decoder_layer_config(args) -> TransformerConfig:
    """A TransformerConfig whose *encoder* fields describe the decoder's layers
    (they are bidirectional self-attention layers, like the encoder's)."""
    layer_args = Namespace(**vars(copy.copy(args))) if isinstance(args, Namespace) else copy.deepcopy(args)
    layer_args.encoder_embed_dim = args.decoder_embed_dim
    layer_args.encoder_ffn_embed_dim = args.decoder_ffn_embed_dim
    layer_args.encoder_attention_heads = args.decoder_attention_heads
    layer_args.encoder_normalize_before = args.encoder_normalize_before
    layer_args.dropout = args.decoder_dropout
    layer_args.attention_dropout = args.decoder_dropout
    layer_args.activation_dropout = args.decoder_dropout
    layer_args.encoder_layerdrop = 0.0
    return TransformerConfig.from_namespace(layer_args)


class MaeDecoder(nn.Module):
    """Full-length bidirectional decoder over the encoder outputs scattered
    back to their positions, with the ``<mask>`` embedding at removed ones.

    Input (B, L, encoder_dim) → optional projection to decoder_dim → + its
    own learned position table (or ``shared_positions``, the encoder's) →
    LayerNorm → dropout → decoder layers (key padding mask) → (B, L, decoder_dim).
    """

    def __init__(self, args, padding_idx: int, max_positions: int, shared_positions: Optional[nn.Module] = None):
        super().__init__()
        self.padding_idx = padding_idx
        encoder_dim, decoder_dim = args.encoder_embed_dim, args.decoder_embed_dim
        self.input_projection = nn.Linear(encoder_dim, decoder_dim) if encoder_dim != decoder_dim else None
        own = PositionalEmbedding(max_positions, decoder_dim, padding_idx, learned=True) if shared_positions is None else None
        self.embed_positions = own
        self.layernorm_embedding = LayerNorm(decoder_dim)
        self.dropout = nn.Dropout(args.decoder_dropout)
        config = decoder_layer_config(args)
        self.layers = nn.ModuleList([TransformerEncoderLayerBase(config) for _ in range(args.decoder_layers)])
        self.apply(init_bert_params)
        if shared_positions is not None:  # after the initialisation: the encoder's table keeps its values
            self.embed_positions = shared_positions

    def forward(self, hidden: torch.Tensor, src_tokens: torch.Tensor) -> torch.Tensor:
        padding = src_tokens.eq(self.padding_idx)
        if self.input_projection is not None:
            hidden = self.input_projection(hidden)
        x = hidden + self.embed_positions(src_tokens)
        x = self.dropout(self.layernorm_embedding(x))
        x = x.masked_fill(padding.unsqueeze(-1), 0).transpose(0, 1)
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=padding if padding.any() else None)
        return x.transpose(0, 1)
