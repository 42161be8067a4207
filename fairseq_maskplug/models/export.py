"""Export an MAE-LM checkpoint as a stock fairseq ``roberta`` checkpoint.

The encoder (``encoder.*``, RoBERTa's names) is kept, the decoder dropped;
the config becomes a stock ``roberta`` model with a stock ``masked_lm`` task
and no ``--user-dir``, so stock fairseq loads it
(``RobertaModel.from_pretrained(OUT_DIR, 'model.pt', bpe='sentencepiece')``)
and fine-tunes it (``fairseq-train --task sentence_prediction --restore-file
OUT_DIR/model.pt``). Before writing anything, the export builds both models
and checks that the stock encoder gives the MAE-LM encoder's outputs; a
checkpoint it cannot reproduce is refused.
"""

import copy
import os
import shutil
from argparse import Namespace
from dataclasses import fields
from typing import Optional

import torch
from fairseq.tasks.masked_lm import MaskedLMConfig
from omegaconf import OmegaConf

from ..errors import ExportError
from .mae_lm import DECODER_OPTIONS

STOCK_TASK_FIELDS = {f.name for f in fields(MaskedLMConfig)} - {"seed"}


def model_name(model_cfg) -> str:
    """The registered model of a checkpoint's model config (argparse-built
    configs name the arch in ``_name``)."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    name = getattr(model_cfg, "_name", None) or getattr(model_cfg, "arch", None)
    return ARCH_MODEL_NAME_REGISTRY.get(name, name)


def roberta_config(cfg, out_dir: str):
    """The checkpoint config for stock fairseq (a dict, as fairseq saves it):
    roberta model, masked_lm task reading ``out_dir``, no user dir."""
    plain = {
        key: OmegaConf.to_container(cfg[key], resolve=False) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "model"
    }
    model = Namespace(**{k: v for k, v in vars(copy.deepcopy(cfg.model)).items() if k not in DECODER_OPTIONS})
    model._name = model.arch = "roberta"
    plain["model"] = model
    task = {k: v for k, v in plain["task"].items() if k in STOCK_TASK_FIELDS}
    task.update(_name="masked_lm", data=os.path.abspath(out_dir), seed=plain["common"]["seed"])
    plain["task"] = task
    plain["criterion"] = {"_name": "masked_lm", "tpu": False}
    plain["common"]["user_dir"] = None
    return plain


def encoder_outputs_agree(mae_model, roberta_model, vocab_size: int, tolerance: float = 1e-5) -> float:
    """Largest difference of the two encoders' final features on a random
    batch of up to 32 tokens per sequence, no longer than the encoder's
    positions (eval mode); raises ExportError above ``tolerance``."""
    generator = torch.Generator().manual_seed(0)
    length = min(32, int(roberta_model.max_positions()))
    tokens = torch.randint(4, vocab_size - 1, (4, length), generator=generator)
    tokens[:, 0] = 0
    mae_model.eval()
    roberta_model.eval()
    with torch.no_grad():
        a = mae_model(tokens, features_only=True)[0]
        b = roberta_model(tokens, features_only=True)[0]
    difference = (a - b).abs().max().item()
    if difference > tolerance:
        raise ExportError(f"the exported encoder differs from the MAE-LM encoder by {difference:g} (> {tolerance})")
    return difference


def export_roberta(
    checkpoint: str,
    out_dir: str,
    dictionary: Optional[str] = None,
    sentencepiece_model: Optional[str] = None,
    force: bool = False,
) -> str:
    """Write OUT_DIR/model.pt, dict.txt (and sentencepiece.bpe.model when
    found) from an MAE-LM ``checkpoint``; returns the model path. Nothing is
    written unless every check passes; an existing OUT_DIR/model.pt is kept
    unless ``force``."""
    from fairseq import checkpoint_utils, tasks

    if os.path.exists(os.path.join(out_dir, "model.pt")) and not force:
        raise ExportError(f"{out_dir}/model.pt exists: choose another OUT_DIR or pass --force")
    state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint)
    cfg = state["cfg"]
    if model_name(cfg.model) != "mae_lm":
        raise ExportError(
            f"{checkpoint} is not an MAE-LM checkpoint (model {model_name(cfg.model)!r}, arch "
            f"{getattr(cfg.model, 'arch', None)!r}): only mae_lm checkpoints are exported "
            "(a roberta checkpoint loads in stock fairseq as it is)"
        )
    data_dir = str(cfg.task.data).split(":")[0]
    dictionary = dictionary or os.path.join(data_dir, "dict.txt")
    if not os.path.isfile(dictionary):
        raise ExportError(f"no dictionary at {dictionary}: pass --dict PATH (the dict.txt the model was trained with)")
    sentencepiece_model = sentencepiece_model or os.path.join(data_dir, "spm.model")

    task = tasks.setup_task(cfg.task)
    mae_model = task.build_model(cfg.model)
    mae_model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)

    stock_cfg = roberta_config(cfg, out_dir)
    stock_task = tasks.setup_task(OmegaConf.create(dict(stock_cfg["task"], data=os.path.dirname(dictionary))))
    roberta_model = stock_task.build_model(stock_cfg["model"])
    encoder_state = {k: v for k, v in mae_model.state_dict().items() if k in roberta_model.state_dict()}
    try:
        roberta_model.load_state_dict(encoder_state, strict=True)
    except RuntimeError as error:
        raise ExportError(f"the MAE-LM encoder does not map onto a stock roberta encoder: {error}") from error
    encoder_outputs_agree(mae_model, roberta_model, len(task.source_dictionary))

    os.makedirs(out_dir, exist_ok=True)
    shutil.copy(dictionary, os.path.join(out_dir, "dict.txt"))
    path = os.path.join(out_dir, "model.pt")
    torch.save(
        {
            "cfg": stock_cfg,
            "model": encoder_state,
            "optimizer_history": [
                {
                    "criterion_name": "MaskedLmLoss",
                    "optimizer_name": "none",
                    "lr_scheduler_state": {"best": None},
                    "num_updates": state["optimizer_history"][-1].get("num_updates", 0),
                }
            ],
            "extra_state": {"exported_from": os.path.abspath(checkpoint)},
            "last_optimizer_state": None,
        },
        path,
    )
    if os.path.isfile(sentencepiece_model):
        shutil.copy(sentencepiece_model, os.path.join(out_dir, "sentencepiece.bpe.model"))
    return path
