"""Export any checkpoint this plugin trains to Hugging Face ``transformers``:
a RoBERTa model directory that ``AutoModelForMaskedLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load offline.

The encoder comes from the checkpoint's model (RoBERTa with any masking
option; MAPNet's model without its proposal network, which lives in the
criterion; MAE-LM's encoder without its decoder) and its masked-LM head; the
weights are mapped onto transformers' own ``RobertaForMaskedLM`` (the one
thing written by hand here is the name mapping). The tokenizer is built with
the ``tokenizers`` library from the sentencepiece model and fairseq's
``dict.txt``: sentencepiece's normaliser and pieces, each piece at its
fairseq id (``dict.txt`` orders pieces by frequency, not by sentencepiece id),
the specials ``<s> <pad> </s> <unk>`` at 0-3 and ``<mask>`` last.

Before anything is written, the export checks that on held-out sentences the
transformers model's logits equal fairseq's (max abs difference ≤ 1e-4, float32)
and that the tokenizer gives fairseq's ids (sentencepiece + dictionary) for
every test-split line; otherwise it refuses and writes nothing.
"""

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from ..errors import ExportError
from ..safe_loading import load_checkpoint

LOGIT_TOLERANCE = 1e-4


def hide_broken_torchaudio():
    """transformers imports torchaudio whenever it is installed; a torchaudio
    built for another torch (fairseq pulls one in) fails to load its C++
    library. Such a torchaudio is hidden, as if not installed; a working one
    is left alone."""
    if "torchaudio" in sys.modules:
        return
    try:
        import torchaudio  # noqa: F401
    except (OSError, ImportError):
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio"] = None  # find_spec then reports it missing; import raises ImportError


SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


@dataclass
class HfExport:
    path: str
    max_logit_difference: float
    lines_checked: int
    parameters: int


def fairseq_model(checkpoint: str, data: Optional[str]):
    """(task, eval-mode model, data dir) of any checkpoint this plugin trains."""
    from ..scoring.validation import load_for_masking

    state = load_checkpoint(checkpoint)
    data = data or str(state["cfg"]["task"]["data"]).split(":")[0]
    if not os.path.isfile(os.path.join(data, "dict.txt")):
        raise ExportError(f"no dict.txt in {data}: pass --data, the data dir the model was trained on")
    task, model = load_for_masking(checkpoint, data)
    return task, model, data


def hf_config(model, dictionary):
    hide_broken_torchaudio()
    from transformers import RobertaConfig

    encoder = model.encoder.sentence_encoder
    args = model.args if hasattr(model, "args") else model.cfg
    if getattr(args, "encoder_normalize_before", False):
        raise ExportError("this encoder normalises before its layers (pre-LN): transformers' RoBERTa is post-LN")
    return RobertaConfig(
        vocab_size=len(dictionary), hidden_size=encoder.embed_tokens.embedding_dim,
        num_hidden_layers=len(encoder.layers), num_attention_heads=encoder.layers[0].self_attn.num_heads,
        intermediate_size=encoder.layers[0].fc1.out_features, hidden_act="gelu",
        max_position_embeddings=encoder.embed_positions.weight.size(0), type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=dictionary.pad(), bos_token_id=dictionary.bos(), eos_token_id=dictionary.eos(),
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )  # fmt: skip


def hf_state_dict(model) -> Dict[str, torch.Tensor]:
    """fairseq RoBERTa names -> transformers RobertaForMaskedLM names."""
    fs = {k: v.float() for k, v in model.state_dict().items()}
    encoder, head = "encoder.sentence_encoder.", "encoder.lm_head."
    out = {
        "roberta.embeddings.word_embeddings.weight": fs[encoder + "embed_tokens.weight"],
        "roberta.embeddings.position_embeddings.weight": fs[encoder + "embed_positions.weight"],
        "roberta.embeddings.token_type_embeddings.weight": torch.zeros(1, fs[encoder + "embed_tokens.weight"].size(1)),
        "roberta.embeddings.LayerNorm.weight": fs[encoder + "layernorm_embedding.weight"],
        "roberta.embeddings.LayerNorm.bias": fs[encoder + "layernorm_embedding.bias"],
        "lm_head.dense.weight": fs[head + "dense.weight"],
        "lm_head.dense.bias": fs[head + "dense.bias"],
        "lm_head.layer_norm.weight": fs[head + "layer_norm.weight"],
        "lm_head.layer_norm.bias": fs[head + "layer_norm.bias"],
        "lm_head.decoder.weight": fs[head + "weight"],
        "lm_head.bias": fs[head + "bias"],
        "lm_head.decoder.bias": fs[head + "bias"],
    }
    names = {"attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
             "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
             "attention.output.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
             "output.dense": "fc2", "output.LayerNorm": "final_layer_norm"}  # fmt: skip
    for i in range(len(model.encoder.sentence_encoder.layers)):
        for hf_name, fs_name in names.items():
            for kind in ("weight", "bias"):
                out[f"roberta.encoder.layer.{i}.{hf_name}.{kind}"] = fs[f"{encoder}layers.{i}.{fs_name}.{kind}"]
    return out


def hf_tokenizer(spm_path: str, dictionary):
    """A ``PreTrainedTokenizerFast`` that segments like the sentencepiece model
    and numbers pieces like fairseq's dictionary."""
    hide_broken_torchaudio()
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    with open(spm_path, "rb") as handle:
        proto.ParseFromString(handle.read())
    score = {piece.piece: piece.score for piece in proto.pieces}
    symbols = dictionary.symbols
    padding = {s for s in symbols if s.startswith("madeupword")}  # fairseq pads the dictionary to a multiple of 8
    missing = [s for s in symbols[dictionary.nspecial :] if s != "<mask>" and s not in score and s not in padding]
    if missing:
        raise ExportError(f"dict.txt holds {len(missing)} symbols the sentencepiece model lacks (e.g. {missing[:3]}): "
                          "the data was not encoded with this model")  # fmt: skip
    never = min(score.values()) - 100.0  # padding symbols: in the vocabulary, never preferred by the segmentation
    vocab = [(s, 0.0 if s in SPECIALS or s == "<mask>" else score.get(s, never)) for s in symbols]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=dictionary.unk(), byte_fallback=False))
    normalizers_list = []
    if proto.normalizer_spec.precompiled_charsmap:
        normalizers_list.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    normalizers_list.append(normalizers.Replace(Regex(" {2,}"), " "))
    tokenizer.normalizer = normalizers.Sequence(normalizers_list)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens([AddedToken(s, special=True) for s in SPECIALS])
    tokenizer.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", dictionary.bos()), ("</s>", dictionary.eos())],
    )  # fmt: skip
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>", model_max_length=None,
    )  # fmt: skip


def check_tokenizer(tokenizer, spm_path: str, dictionary, lines: List[str]) -> int:
    """Every line's ids equal fairseq's (sentencepiece pieces looked up in
    dict.txt); returns the number of lines checked."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=spm_path)
    for number, line in enumerate(lines):
        expected = [dictionary.index(p) for p in processor.encode(line, out_type=str)]
        got = tokenizer(line, add_special_tokens=False)["input_ids"]
        if got != expected:
            unknown = sum(i == dictionary.unk() for i in expected)
            raise ExportError(
                f"the tokenizer disagrees with fairseq on test line {number + 1} ({line[:60]!r}): {got[:12]} vs "
                f"{expected[:12]}" + (f"; fairseq maps {unknown} piece(s) absent from dict.txt to <unk>, which a "
                                      "tokenizer cannot reproduce" if unknown else "")
            )  # fmt: skip
    return len(lines)


def check_logits(model, hf_model, tokenizer, lines: List[str], dictionary) -> float:
    """Largest |fairseq logit − transformers logit| on the lines (batched, padded), float32."""
    hf_model.eval()
    batch = tokenizer(lines, padding=True, return_tensors="pt", truncation=True,
                      max_length=hf_model.config.max_position_embeddings - dictionary.pad() - 1)  # fmt: skip
    with torch.no_grad():
        ours = model(batch["input_ids"], features_only=False)[0] if not is_mae(model) else roberta_logits(model, batch)
        theirs = hf_model(**batch).logits
    keep = batch["attention_mask"].bool()
    return float((ours.float() - theirs.float())[keep].abs().max())


def is_mae(model) -> bool:
    return hasattr(model.encoder, "decoder")


def roberta_logits(model, batch):
    """MAE-LM: its encoder on full sequences and the masked-LM head (what the export holds, no decoder)."""
    features = model(batch["input_ids"], features_only=True)[0]
    return model.encoder.lm_head(features)


def export_hf(
    checkpoint: str, out_dir: str, data: Optional[str] = None, check_lines: int = 0, force: bool = False
) -> HfExport:
    """Write OUT_DIR (config.json, model.safetensors, tokenizer.json and its
    configuration) from ``checkpoint``; nothing is written unless both checks
    pass. ``check_lines``: how many test-split lines the logits are compared
    on (0: 64); the tokenizer is checked on every test-split line."""
    hide_broken_torchaudio()
    from transformers import AutoModelForMaskedLM, AutoTokenizer, RobertaForMaskedLM

    if os.path.exists(os.path.join(out_dir, "config.json")) and not force:
        raise ExportError(f"{out_dir}/config.json exists: choose another OUT_DIR or pass --force")
    task, model, data = fairseq_model(checkpoint, data)
    dictionary = task.source_dictionary
    spm_path = os.path.join(data, "spm.model")
    if not os.path.isfile(spm_path):
        raise ExportError(f"no sentencepiece model at {spm_path}: the HF tokenizer is built from it")
    test_text = os.path.join(data, "raw", "test.txt")
    if not os.path.isfile(test_text):
        raise ExportError(f"no {test_text}: the checks need the test split's text (prepare_corpus.py writes it)")
    lines = [line.strip() for line in open(test_text, encoding="utf-8") if line.strip()]
    tokenizer = hf_tokenizer(spm_path, dictionary)
    checked = check_tokenizer(tokenizer, spm_path, dictionary, lines)
    hf_model = RobertaForMaskedLM(hf_config(model, dictionary))
    missing, unexpected = hf_model.load_state_dict(hf_state_dict(model), strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise ExportError(f"the weights do not map onto transformers' RoBERTa: missing {missing}, unexpected {unexpected}")
    difference = check_logits(model, hf_model, tokenizer, lines[: check_lines or 64], dictionary)
    if difference > LOGIT_TOLERANCE:
        raise ExportError(f"transformers' logits differ from fairseq's by {difference:g} (> {LOGIT_TOLERANCE})")
    staging = tempfile.mkdtemp(prefix="export_hf_", dir=os.path.dirname(os.path.abspath(out_dir)) or None)
    try:
        hf_model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        reloaded = AutoModelForMaskedLM.from_pretrained(staging)  # what a user will load, checked once more
        again = check_logits(model, reloaded, AutoTokenizer.from_pretrained(staging), lines[:8], dictionary)
        if again > LOGIT_TOLERANCE:
            raise ExportError(f"the saved model's logits differ from fairseq's by {again:g}")
        os.makedirs(out_dir, exist_ok=True)
        for name in os.listdir(staging):
            shutil.move(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return HfExport(out_dir, difference, checked, sum(p.numel() for p in hf_model.parameters()))
