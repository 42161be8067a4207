"""Training throughput of one masking arm, measured inside fairseq's Trainer.

One arm per process (``python -m maskplug_lab.experiments.throughput
JSON``), so that each arm's peak memory is its own. The process sets up
fairseq-train's trainer, runs ``warmup`` updates, prints ``READY`` and then
serves its parent line by line on stdin: ``block`` runs ``updates`` updates
and prints one ``BLOCK`` JSON line; ``finish`` prints the ``FINISH`` JSON line
(memory, sizes) and exits. The parent can so interleave the arms' blocks, and
a slow spell of the machine touches every arm alike. The loop is
fairseq-train's: the epoch iterator (data loading, with stock masking in it
for ``--task masked_lm``) then ``Trainer.train_step``; each update is timed
from asking for the batch to the end of the optimizer step (synchronised on a
GPU).
"""

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import List, Sequence

import torch


@dataclass
class Block:
    """``updates`` consecutive updates."""

    seconds: float = 0.0
    loading_seconds: float = 0.0  # of which: getting the batch from the data iterator
    text_tokens: int = 0  # tokens of the unique sequences (padding excluded)
    processed_tokens: int = 0  # tokens fed to the model (fully-explored: every copy)
    predicted_tokens: int = 0
    update_seconds: List[float] = field(default_factory=list)


@dataclass
class ArmFacts:
    """What an arm reports once, after its blocks."""

    peak_memory_bytes: int  # peak RSS (CPU) or torch.cuda.max_memory_allocated (GPU)
    memory_before_training_bytes: int  # RSS after set-up, before the first update (CPU); 0 on a GPU
    vocab_size: int
    parameters: int
    encoder_input_length: float  # mean padded length the encoder ran on (MAE-LM: visible tokens only)


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def build_trainer(fairseq_args: Sequence[str]):
    """fairseq-train's set-up for ARGS: (cfg, task, trainer, epoch iterator)."""
    import numpy as np
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, input_args=list(fairseq_args)))
    utils.import_user_module(cfg.common)
    np.random.seed(cfg.common.seed)
    utils.set_torch_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    epoch_itr = trainer.get_train_iterator(epoch=1, load_dataset=True)
    return cfg, task, trainer, epoch_itr


class ArmRunner:
    """fairseq-train's trainer for one arm, run update by update."""

    def __init__(self, fairseq_args: Sequence[str], copies: int):
        self.cfg, self.task, self.trainer, self.epoch_itr = build_trainer(fairseq_args)
        self.cuda = torch.cuda.is_available() and not self.cfg.common.cpu
        self.copies = copies
        self.lengths: List[int] = []
        self.trainer.model.encoder.sentence_encoder.register_forward_pre_hook(
            lambda module, args: self.lengths.append(args[0].size(1)) if args else None
        )
        self.batches = self.epoch_itr.next_epoch_itr(shuffle=True)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.memory_before_training = 0 if self.cuda else current_rss_bytes()

    def update(self, block: Block):
        """One timed update, added to ``block``."""
        started = time.perf_counter()
        if not self.batches.has_next():
            self.batches = self.epoch_itr.next_epoch_itr(shuffle=True)
        sample = next(self.batches)
        loaded = time.perf_counter()
        text_tokens = int(sample["ntokens"])
        logging_output = self.trainer.train_step([sample])
        if self.cuda:
            torch.cuda.synchronize()
        finished = time.perf_counter()
        block.update_seconds.append(finished - started)
        block.seconds += finished - started
        block.loading_seconds += loaded - started
        block.text_tokens += text_tokens
        block.processed_tokens += text_tokens * self.copies
        block.predicted_tokens += int(logging_output["sample_size"]) if logging_output else 0  # None: fp16 overflow

    def release_cache(self):
        """On a GPU, hand the allocator's cached blocks back while the other
        arms run: every arm's process stays alive, and at large batches their
        caches together would not fit. Peak statistics are unaffected."""
        if self.cuda:
            torch.cuda.empty_cache()

    def facts(self) -> ArmFacts:
        peak = torch.cuda.max_memory_allocated() if self.cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return ArmFacts(
            peak,
            self.memory_before_training,
            len(self.task.source_dictionary),
            sum(p.numel() for p in self.trainer.model.parameters()),
            sum(self.lengths) / max(len(self.lengths), 1),
        )


def serve(fairseq_args: Sequence[str], copies: int, warmup: int, updates: int):
    """The stdin/stdout protocol of the module docstring."""
    runner = ArmRunner(fairseq_args, copies)
    for _ in range(warmup):
        runner.update(Block())
    runner.lengths.clear()  # the encoder lengths of the measured updates only
    runner.release_cache()
    print("READY", flush=True)
    for command in sys.stdin:
        if command.strip() == "block":
            block = Block()
            for _ in range(updates):
                runner.update(block)
            runner.release_cache()
            print("BLOCK " + json.dumps(asdict(block)), flush=True)
        elif command.strip() == "finish":
            print("FINISH " + json.dumps(asdict(runner.facts())), flush=True)
            return


if __name__ == "__main__":
    serve(**json.loads(sys.argv[1]))
