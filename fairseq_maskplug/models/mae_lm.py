"""MAE-LM: a RoBERTa encoder that never sees ``<mask>``, and a shallow decoder
used only in pre-training (Meng et al., ICLR 2024).

Reuses RoBERTa and changes only what it must (the model of fairseq's
``examples/linformer``): the encoder is RoBERTa's, module for module and name
for name, so its weights become a stock ``roberta`` checkpoint
(``scripts/export_roberta.py``).

Masked-LM forward (``masked_tokens`` given, or the input holds ``<mask>``):
positions whose input is ``<mask>`` are removed from the encoder input; the
kept tokens (kept and randomly replaced predicted positions included) are
encoded at their original positions; the outputs are scattered back to full
length with the ``<mask>`` token embedding at removed positions; the decoder
runs over all positions; logits come only at the predicted positions, from
``encoder.lm_head`` (dense, LayerNorm, output tied to the input embedding),
which MAE-LM uses only after the decoder. Every other call (``features_only``,
classification heads: fine-tuning, feature extraction) is RoBERTa's encoder on
full sequences; the decoder is not used.
"""

import logging

import torch
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import (
    RobertaEncoder,
    RobertaModel,
    init_bert_params,
    roberta_base_architecture,
    roberta_large_architecture,
)
from fairseq.utils import safe_getattr, safe_hasattr

from ..errors import ModelOptionError
from ..modules.mae_decoder import MaeDecoder, PositionedTransformerEncoder
from ..modules.mae_layout import gather_kept, kept_layout, scatter_kept

logger = logging.getLogger(__name__)

# the options MAE-LM adds to RoBERTa's: its pre-training decoder's
DECODER_OPTIONS = (
    "decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads", "decoder_dropout",
    "no_decoder_projection", "decoder_positions",
)  # fmt: skip
DECODER_POSITIONS = ("own", "encoder")


@register_model("mae_lm")
class MaeLMModel(RobertaModel):
    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        parser.add_argument("--decoder-layers", type=int, help="decoder layers (pre-training only)")
        parser.add_argument("--decoder-embed-dim", type=int, help="decoder width")
        parser.add_argument("--decoder-ffn-embed-dim", type=int, help="decoder FFN width")
        parser.add_argument("--decoder-attention-heads", type=int, help="decoder attention heads")
        parser.add_argument("--decoder-dropout", type=float, help="decoder dropout, attention and activation (default 0)")
        parser.add_argument(
            "--no-decoder-projection",
            action="store_true",
            help="do not add the Linear encoder -> decoder width projection (needs equal widths)",
        )
        parser.add_argument(
            "--decoder-positions",
            choices=DECODER_POSITIONS,
            help="the decoder's position table: own (learned apart, the reference's; default) or encoder (the "
            "encoder's table, shared; needs equal widths)",
        )

    @classmethod
    def build_model(cls, args, task):
        from omegaconf import OmegaConf

        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, False)
        base_architecture(args)
        if not safe_hasattr(args, "max_positions"):
            args.max_positions = args.tokens_per_sample
        check_decoder_options(args)
        encoder = MaeLMEncoder(args, task.source_dictionary)
        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, True)
        return cls(args, encoder)

    def forward(
        self,
        src_tokens,
        features_only=False,
        return_all_hiddens=False,
        classification_head_name=None,
        masked_tokens=None,
        **kwargs,
    ):
        if classification_head_name is not None or features_only:
            return super().forward(
                src_tokens,
                features_only=True,
                return_all_hiddens=return_all_hiddens,
                classification_head_name=classification_head_name,
                **kwargs,
            )
        return self.encoder.masked_lm(src_tokens, masked_tokens, return_all_hiddens)


def check_decoder_options(args):
    for name in ("decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads"):
        if getattr(args, name) < 1:
            raise ModelOptionError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.decoder_embed_dim % args.decoder_attention_heads:
        raise ModelOptionError(
            f"--decoder-embed-dim {args.decoder_embed_dim} must be divisible by "
            f"--decoder-attention-heads {args.decoder_attention_heads}"
        )
    if args.no_decoder_projection and args.decoder_embed_dim != args.encoder_embed_dim:
        raise ModelOptionError(
            f"--decoder-embed-dim {args.decoder_embed_dim} differs from --encoder-embed-dim "
            f"{args.encoder_embed_dim} but --no-decoder-projection removes the projection between them: "
            "drop --no-decoder-projection or use equal widths"
        )
    if not 0 <= args.decoder_dropout < 1:
        raise ModelOptionError(f"--decoder-dropout must lie in [0, 1), got {args.decoder_dropout}")
    if args.decoder_positions not in DECODER_POSITIONS:
        raise ModelOptionError(
            f"--decoder-positions must be one of {', '.join(DECODER_POSITIONS)}, got {args.decoder_positions!r}"
        )
    if args.decoder_positions == "encoder" and args.decoder_embed_dim != args.encoder_embed_dim:
        raise ModelOptionError(
            f"--decoder-positions encoder shares the encoder's {args.encoder_embed_dim}-wide position table, but "
            f"--decoder-embed-dim is {args.decoder_embed_dim}: use equal widths or --decoder-positions own"
        )


class MaeLMEncoder(RobertaEncoder):
    """RoBERTa's encoder (positions can be given) plus the pre-training decoder."""

    def __init__(self, args, dictionary):
        super().__init__(args, dictionary)
        self.mask_idx = dictionary.index("<mask>")
        if self.mask_idx == dictionary.unk():
            raise ModelOptionError("mae_lm needs a dictionary with <mask> (use a masked-LM task)")
        shared = self.sentence_encoder.embed_positions if args.decoder_positions == "encoder" else None
        self.decoder = MaeDecoder(args, dictionary.pad(), args.max_positions, shared_positions=shared)
        self.lm_head_input = (
            torch.nn.Linear(args.decoder_embed_dim, args.encoder_embed_dim)
            if args.decoder_embed_dim != args.encoder_embed_dim
            else None
        )
        if self.lm_head_input is not None:
            self.lm_head_input.apply(init_bert_params)

    def build_encoder(self, args, dictionary, embed_tokens):
        encoder = PositionedTransformerEncoder(args, dictionary, embed_tokens)
        encoder.apply(init_bert_params)
        return encoder

    def masked_lm(self, src_tokens, masked_tokens=None, return_all_hiddens=False):
        """Logits (N, V) at the N predicted positions ``masked_tokens`` (B, L)
        bool (all positions, (B, L, V), when None, as RoBERTa does), and
        {"inner_states": the encoder's states on its shortened input, when asked}."""
        padding_idx = self.sentence_encoder.padding_idx
        removed = src_tokens.eq(self.mask_idx)
        layout = kept_layout(~removed & src_tokens.ne(padding_idx))
        encoder_tokens = gather_kept(src_tokens, layout, padding_idx)
        positions = torch.where(layout.valid, layout.index + padding_idx + 1, torch.full_like(layout.index, padding_idx))
        encoded = self.sentence_encoder(encoder_tokens, positions=positions, return_all_hiddens=return_all_hiddens)
        hidden = encoded["encoder_out"][0].transpose(0, 1)  # B x K x C
        mask_row = self.sentence_encoder.embed_tokens.weight[self.mask_idx].to(hidden.dtype)
        background = mask_row.expand(*src_tokens.shape, -1) * removed.unsqueeze(-1).to(hidden.dtype)
        full = scatter_kept(hidden, layout, background)
        decoded = self.decoder(full, src_tokens)
        # like RoBERTa: logits at the predicted positions only, or everywhere when not told which
        features = decoded if masked_tokens is None else decoded[masked_tokens]
        if self.lm_head_input is not None:
            features = self.lm_head_input(features)
        logits = self.lm_head(features)
        inner_states = encoded["encoder_states"] if return_all_hiddens else None
        return logits, {"inner_states": inner_states}


@register_model_architecture("mae_lm", "mae_lm")
def base_architecture(args):
    args.decoder_layers = safe_getattr(args, "decoder_layers", 4)
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", safe_getattr(args, "encoder_embed_dim", 768))
    args.decoder_ffn_embed_dim = safe_getattr(args, "decoder_ffn_embed_dim", safe_getattr(args, "encoder_ffn_embed_dim", 3072))
    args.decoder_attention_heads = safe_getattr(
        args, "decoder_attention_heads", safe_getattr(args, "encoder_attention_heads", 12)
    )
    args.decoder_dropout = safe_getattr(args, "decoder_dropout", 0.0)
    args.no_decoder_projection = safe_getattr(args, "no_decoder_projection", False)
    args.decoder_positions = safe_getattr(args, "decoder_positions", "own")
    roberta_base_architecture(args)


@register_model_architecture("mae_lm", "mae_lm_base")
def mae_lm_base_architecture(args):
    base_architecture(args)


@register_model_architecture("mae_lm", "mae_lm_large")
def mae_lm_large_architecture(args):
    roberta_large_architecture(args)
    base_architecture(args)
