"""Named configurations, each said once: encoder sizes, the optimizer recipe
and the training configurations built from them (tiny: tests and quick
runs); a method's flags (the plugin's registry, ``fairseq_maskplug.methods``)
at an encoder size.

Used by the tests, the scripts, the benchmark, the learning curves and the
docs; the hydra override ``config/pretraining/size/tiny.yaml`` is checked
against :data:`TINY` by a test.
"""

from dataclasses import dataclass, field
from typing import Dict, List

from fairseq_maskplug import methods


@dataclass(frozen=True)
class EncoderSize:
    """A RoBERTa encoder size, and the depth of the MAE-LM decoder that goes
    with it (about a third of the encoder's, at least 1)."""

    layers: int
    dim: int
    ffn: int
    heads: int
    decoder_layers: int

    def flags(self) -> List[str]:
        return [
            "--arch", "roberta_base", "--encoder-layers", str(self.layers), "--encoder-embed-dim", str(self.dim),
            "--encoder-ffn-embed-dim", str(self.ffn), "--encoder-attention-heads", str(self.heads),
        ]  # fmt: skip


ENCODERS: Dict[str, EncoderSize] = {
    "tiny": EncoderSize(layers=2, dim=64, ffn=128, heads=2, decoder_layers=1),
    "small": EncoderSize(layers=4, dim=256, ffn=1024, heads=4, decoder_layers=4),
    # about BERT-medium, the small-scale protocol's size; its MAE-LM decoder scaled from 4/12
    "medium": EncoderSize(layers=6, dim=512, ffn=2048, heads=8, decoder_layers=2),
    "base": EncoderSize(layers=12, dim=768, ffn=3072, heads=12, decoder_layers=4),
}


@dataclass(frozen=True)
class OptimizerRecipe:
    """Adam with polynomial decay after a linear warm-up over
    ``warmup_percent`` % of the updates (at least one)."""

    lr: float = 1e-3
    betas: str = "(0.9,0.98)"
    eps: float = 1e-6
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    warmup_percent: int = 10

    def flags(self, updates: int) -> List[str]:
        return [
            "--optimizer", "adam", "--adam-betas", self.betas, "--adam-eps", str(self.eps),
            "--weight-decay", str(self.weight_decay), "--clip-norm", str(self.clip_norm), "--lr", str(self.lr),
            "--lr-scheduler", "polynomial_decay",
            "--warmup-updates", str(max(1, updates * self.warmup_percent // 100)), "--total-num-update", str(updates),
            "--max-update", str(updates),
        ]  # fmt: skip


@dataclass(frozen=True)
class TrainingConfiguration:
    """Model, blocks, batch, optimizer and length of a training run on the CPU."""

    encoder: EncoderSize
    tokens_per_sample: int
    batch_size: int
    updates: int
    optimizer: OptimizerRecipe = field(default_factory=OptimizerRecipe)

    def flags(self, updates: int = None, cpu: bool = True) -> List[str]:
        """``fairseq-train`` flags for everything but the data, the method and
        where to save (``updates`` overrides the configured length; ``cpu``:
        train on the CPU even where a GPU is visible)."""
        updates = updates or self.updates
        return [
            *self.encoder.flags(), "--tokens-per-sample", str(self.tokens_per_sample),
            "--max-positions", str(self.tokens_per_sample), "--sample-break-mode", "none",
            *self.optimizer.flags(updates), "--batch-size", str(self.batch_size), "--num-workers", "0",
            *(["--cpu"] if cpu else []),
        ]  # fmt: skip


# the tests' model, and the learning curves' quick comparisons
TINY = TrainingConfiguration(ENCODERS["tiny"], tokens_per_sample=64, batch_size=16, updates=400)

# the study's (docs/STUDY.md, "Calibration"): the tiny encoder on 16-piece blocks of a 1,000-piece
# vocabulary (prepare_corpus.py --vocab-size 1000), 64 blocks per update, lr 3e-3. At 64-piece blocks
# the learned positions never let attention find the neighbours within 6,000 updates (the loss at
# <mask> stays at the unigram's); at 16 it reads them within 2,000. One CPU core, about 5 minutes.
STUDY_VOCABULARY = 1000
STUDY = TrainingConfiguration(ENCODERS["tiny"], tokens_per_sample=16, batch_size=64, updates=6000,
                              optimizer=OptimizerRecipe(lr=3e-3))  # fmt: skip
# the study's learning rates (docs/STUDY.md, "Learning rates"): each arm's rate is chosen from this grid on
# seed 1, by the loss at <mask> on the valid split (the whole-word yardstick's for the whole-word arms),
# the grid extended by a factor of 2 past an edge that wins, within the limits. 3e-3 is the first 3-seed
# study's rate (every arm's): with it in the grid no arm is chosen worse than it was trained there
STUDY_LR_GRID = (5e-4, 1e-3, 2e-3, 3e-3, 5e-3)
STUDY_LR_LIMITS = (1e-4, 2e-2)
# each study arm's chosen rate, as docs/study/study.json records it (a test checks they agree): the study
# trains an arm as STUDY.flags() + its method's flags + ["--lr", its rate]
STUDY_LEARNING_RATES: Dict[str, float] = {
    "stock": 0.003,
    "random": 0.003,
    "mae_lm_decoder4": 0.002,
    "mae_lm": 0.001,
    "cosine_mae_lm": 0.002,
    "fully_explored_mae_lm": 0.001,
    "linear": 0.005,
    "cosine": 0.005,
    "whole_word": 0.003,
    "pos": 0.005,
    "mapnet": 0.005,
    "mapnet_reference": 0.003,
    "fully_explored_compute": 0.003,
    "fully_explored": 0.005,
}
# the same, two hundred times shorter: the tests and a first look
STUDY_QUICK = TrainingConfiguration(ENCODERS["tiny"], tokens_per_sample=16, batch_size=32, updates=30,
                                    optimizer=OptimizerRecipe(lr=3e-3))  # fmt: skip
# the first study's (4,000 pieces, 64-piece blocks, 16 per update): its models stayed at the unigram
# at the <mask> positions and scored by copying; kept to reproduce what its figures measured
FIRST_STUDY_VOCABULARY = 4000
FIRST_STUDY = TrainingConfiguration(ENCODERS["tiny"], tokens_per_sample=64, batch_size=16, updates=6000,
                                    optimizer=OptimizerRecipe(lr=3e-3))  # fmt: skip
# the GPU study kit's (docs/gpu.md, "The GPU study kit"): the medium encoder (23 M parameters with the
# 8,000-piece vocabulary, about 170 times the study's) on 128-piece blocks, 64 per update, fp16, lr 1e-3;
# its seven arms train side by side on one GPU. Sized from the H100's measured 63 ms per update of RoBERTa
# base at 16 x 128 (launch-bound: 62 ms at 8), an estimate until a lent GPU measures it: 2,000 updates each
# in about 3.5 minutes of training, seven at once
GPU_STUDY_VOCABULARY = 8000
GPU_STUDY = TrainingConfiguration(ENCODERS["medium"], tokens_per_sample=128, batch_size=64, updates=2000,
                                  optimizer=OptimizerRecipe(lr=1e-3, warmup_percent=6))  # fmt: skip
# the kit's machinery on the CPU in seconds (the tests)
GPU_STUDY_QUICK = TrainingConfiguration(ENCODERS["tiny"], tokens_per_sample=16, batch_size=8, updates=8,
                                        optimizer=OptimizerRecipe(lr=3e-3))  # fmt: skip
CONFIGURATIONS: Dict[str, TrainingConfiguration] = {
    "tiny": TINY, "study": STUDY, "study_quick": STUDY_QUICK, "first_study": FIRST_STUDY,
    "gpu_study": GPU_STUDY, "gpu_study_quick": GPU_STUDY_QUICK,
}  # fmt: skip


def method_flags(name: str, encoder: EncoderSize = TINY.encoder) -> List[str]:
    """The flags of method ``name`` (:data:`fairseq_maskplug.methods.METHODS`);
    an MAE-LM method's decoder gets the depth that goes with ``encoder``."""
    return methods.method_flags(name, encoder.decoder_layers)
