"""Training throughput of one masking arm, measured inside fairseq's Trainer.

One arm per process (``python -m fairseq_maskplug.diagnostics.throughput
JSON``, which prints one JSON line), so that each arm's peak memory is its own.
The loop is fairseq-train's: the epoch iterator (data loading, with stock
masking in it for ``--task masked_lm``) then ``Trainer.train_step``; each
update is timed from asking for the batch to the end of the optimizer step
(synchronised on a GPU), after ``warmup`` updates, in ``repeats`` blocks of
``updates``; the caller takes medians over the blocks.
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

    seconds: float
    loading_seconds: float  # of which: getting the batch from the data iterator
    text_tokens: int  # tokens of the unique sequences (padding excluded)
    processed_tokens: int  # tokens fed to the model (fully-explored: every copy)
    predicted_tokens: int


@dataclass
class ArmMeasurement:
    arm: str
    blocks: List[Block] = field(default_factory=list)
    update_seconds: List[float] = field(default_factory=list)
    peak_memory_bytes: int = 0  # peak RSS (CPU) or torch.cuda.max_memory_allocated (GPU)
    memory_before_training_bytes: int = 0  # RSS after setup (CPU); 0 on a GPU
    vocab_size: int = 0
    parameters: int = 0
    encoder_input_length: float = 0.0  # mean padded length the encoder ran on (MAE-LM: visible tokens only)


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


def measure(arm: str, fairseq_args: Sequence[str], copies: int, warmup: int, updates: int, repeats: int) -> ArmMeasurement:
    cfg, task, trainer, epoch_itr = build_trainer(fairseq_args)
    cuda = torch.cuda.is_available() and not cfg.common.cpu
    model = trainer.model
    result = ArmMeasurement(arm, vocab_size=len(task.source_dictionary),
                            parameters=sum(p.numel() for p in model.parameters()))
    lengths = []
    model.encoder.sentence_encoder.register_forward_pre_hook(lambda module, args: lengths.append(args[0].size(1)) if args else None)
    batches = epoch_itr.next_epoch_itr(shuffle=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        result.memory_before_training_bytes = current_rss_bytes()
    block = Block(0.0, 0.0, 0, 0, 0)
    for step in range(warmup + updates * repeats):
        started = time.perf_counter()
        if not batches.has_next():
            batches = epoch_itr.next_epoch_itr(shuffle=True)
        sample = next(batches)
        loaded = time.perf_counter()
        text_tokens = int(sample["ntokens"])
        logging_output = trainer.train_step([sample])
        if cuda:
            torch.cuda.synchronize()
        finished = time.perf_counter()
        if step < warmup:
            lengths.clear()
            continue
        result.update_seconds.append(finished - started)
        block.seconds += finished - started
        block.loading_seconds += loaded - started
        block.text_tokens += text_tokens
        block.processed_tokens += text_tokens * copies
        block.predicted_tokens += int(logging_output["sample_size"]) if logging_output else 0  # None: fp16 overflow
        if len(result.update_seconds) % updates == 0:
            result.blocks.append(block)
            block = Block(0.0, 0.0, 0, 0, 0)
    result.encoder_input_length = sum(lengths) / max(len(lengths), 1)
    if cuda:
        result.peak_memory_bytes = torch.cuda.max_memory_allocated()
    else:
        result.peak_memory_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    measurement = measure(**request)
    print("THROUGHPUT " + json.dumps(asdict(measurement)), flush=True)
