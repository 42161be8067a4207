"""Every method the plugin adds, named once: the ``fairseq-train`` flags that
select it (on top of a stock RoBERTa recipe; later flags win), the hydra
recipe that trains it at base size (``config/pretraining/RECIPE.yaml``) and
its row in the README's switch-over table, where it has them.

The study's arms are these methods (its configurations add the model size,
the optimizer and the learning rate); a test checks each recipe against its
method's flags, and the README's switch-over rows are found by their labels here. An MAE-LM method's decoder depth goes
with the encoder's size (see :func:`method_flags`).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .masking.fully_explored import default_segments


@dataclass(frozen=True)
class Method:
    """flags: what selects the method. recipe: the name of its hydra recipe.
    readme_row: the label of its row in the README's switch-over table."""

    flags: Tuple[str, ...]
    recipe: Optional[str] = None
    readme_row: Optional[str] = None


FE_COPIES = default_segments(0.15)  # K of fully-explored masking at the default --mask-prob (7)
PLUS = ("--task", "masked_lm_plus")
POS_WEIGHTING = ("--mask-whole-words", "--content-weighting", "pos")  # the reference's PTW: whole words
MAPNET = (*PLUS, "--criterion", "mapnet_masked_lm")
# the reference's estimator: clipped product weights, REINFORCE, no mixture (and its 1e-4 floor)
MAPNET_REFERENCE = ("--mapnet-weights", "product_clipped", "--mapnet-objective", "reinforce", "--mapnet-uniform-share", "0")
# MAE-LM as its reference trains: every selected position is removed from the encoder (no 80/10/10)
MAE_LM = ("--arch", "mae_lm_base", "--leave-unmasked-prob", "0", "--random-token-prob", "0")

METHODS: Dict[str, Method] = {
    "stock": Method(("--task", "masked_lm")),
    "random": Method(PLUS, "baseline", "stock masking, made on the device"),
    "fully_explored": Method(("--task", "fully_explored_masked_lm"), "fully_explored", "fully-explored masking"),
    "fully_explored_contiguous": Method(("--task", "fully_explored_masked_lm", "--fe-partition", "contiguous")),
    "linear": Method((*PLUS, "--mask-schedule", "linear")),
    "cosine": Method((*PLUS, "--mask-schedule", "cosine"), "time_variant", "time-variant masking (cosine ratio schedule)"),
    "whole_word": Method((*PLUS, "--mask-whole-words")),
    "pos": Method((*PLUS, *POS_WEIGHTING)),
    "pos_cosine": Method((*PLUS, *POS_WEIGHTING, "--mask-schedule", "cosine"), "time_variant_pos", "+ POS-weighted content"),
    "pos_corrected": Method((*PLUS, *POS_WEIGHTING, "--pos-bias-correction")),
    "mapnet": Method(MAPNET, "mapnet", "MAPNet"),
    "mapnet_reference": Method((*MAPNET, *MAPNET_REFERENCE, "--mapnet-proposal-floor", "1e-4")),
    "mae_lm": Method((*PLUS, *MAE_LM), "mae_lm", "MAE-LM"),
    # two combinations no paper has tried
    "cosine_mae_lm": Method((*PLUS, "--mask-schedule", "cosine", *MAE_LM)),
    "fully_explored_mae_lm": Method(("--task", "fully_explored_masked_lm", *MAE_LM)),
}
# methods that need the POS side input (prepare_corpus.py --pos)
POS_METHODS = {name for name, method in METHODS.items() if "pos" in method.flags}


def is_mae_lm(flags) -> bool:
    return any(flag.startswith("mae_lm") for flag in flags)


def method_flags(name: str, decoder_layers: int = 1) -> List[str]:
    """The flags of method ``name``; an MAE-LM method's decoder gets
    ``decoder_layers`` (the depth that goes with the encoder's size)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    flags = list(METHODS[name].flags)
    return flags + ["--decoder-layers", str(decoder_layers)] if is_mae_lm(flags) else flags
