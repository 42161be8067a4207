"""Throughput and memory of every method against stock ``masked_lm``, and the
cost of making masks; the library behind ``scripts/benchmark.py``.

Every arm trains the same encoder on the same prepared corpus with the same
optimizer and batch; each runs in its own process
(:mod:`.throughput`), after a warm-up, in blocks of updates whose median is
reported, and as a ratio to stock ``masked_lm`` measured in the same run.
"""

import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List

from .flops import Stack, mae_lm_training_flops, roberta_training_flops
from .learning_curves import ARMS as LEARNING_CURVE_ARMS
from .learning_curves import PACKAGE_DIR

# benchmark arm -> the learning-curve arm whose flags select it
ARM_FLAGS_FROM = {
    "stock": "stock", "masked_lm_plus": "random", "fully_explored": "fully_explored", "linear": "linear",
    "cosine": "cosine", "pos": "pos", "mapnet": "mapnet", "mae_lm": "mae_lm",
}
ARMS = list(ARM_FLAGS_FROM)
MAE_LM_DECODER_LAYERS = 4  # mae_lm_base's default and the mae_lm recipe's (the learning curves use 1)
FE_COPIES = 7  # round(1 / 0.15)

# encoder sizes: (layers, width, FFN, heads)
ENCODERS = {"tiny": (2, 64, 128, 2), "small": (4, 256, 1024, 4), "base": (12, 768, 3072, 12)}

# the targets of issue 7: arm -> (minimum ratio to stock, the throughput it is measured on)
TARGETS = {
    "masked_lm_plus": (1.0, "text"),
    "fully_explored": (0.95, "processed"),
    "linear": (0.97, "text"),
    "cosine": (0.97, "text"),
    "pos": (0.97, "text"),
    "mapnet": (0.75, "text"),
}


@dataclass
class BenchmarkSettings:
    data: str
    encoder: str = "small"
    batch_size: int = 16
    tokens_per_sample: int = 128
    warmup: int = 5
    updates: int = 10
    repeats: int = 5
    device: str = "cpu"
    fp16: bool = False

    @property
    def total_updates(self) -> int:
        return self.warmup + self.updates * self.repeats


def arm_flags(arm: str) -> List[str]:
    flags = list(LEARNING_CURVE_ARMS[ARM_FLAGS_FROM[arm]])
    return flags + ["--decoder-layers", str(MAE_LM_DECODER_LAYERS)] if arm == "mae_lm" else flags  # later flag wins


def batch_size(arm: str, settings: BenchmarkSettings) -> int:
    """Sequences per update. Fully-explored takes batch / K unique sequences
    (the fully_explored recipe's memory-matched setting): its K copies each
    then fill about the batch stock processes."""
    return max(1, round(settings.batch_size / FE_COPIES)) if arm == "fully_explored" else settings.batch_size


def fairseq_args(arm: str, settings: BenchmarkSettings) -> List[str]:
    layers, dim, ffn, heads = ENCODERS[settings.encoder]
    length = settings.tokens_per_sample
    return [
        settings.data, "--user-dir", str(PACKAGE_DIR), "--criterion", "masked_lm",
        "--arch", "roberta_base", "--encoder-layers", str(layers), "--encoder-embed-dim", str(dim),
        "--encoder-ffn-embed-dim", str(ffn), "--encoder-attention-heads", str(heads), *arm_flags(arm),
        "--tokens-per-sample", str(length), "--max-positions", str(length), "--sample-break-mode", "none",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.01",
        "--lr", "5e-4", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "10", "--total-num-update", "100000",
        "--max-update", str(settings.total_updates),  # a ratio schedule spans the whole benchmark run
        "--batch-size", str(batch_size(arm, settings)), "--num-workers", "0", "--seed", "1",
        "--no-save", "--disable-validation", "--log-format", "none",
        *(["--fp16"] if settings.fp16 else []), *(["--cpu"] if settings.device == "cpu" else []),
    ]


def measure_arm(arm: str, settings: BenchmarkSettings) -> dict:
    """Run one arm in a child process; its measurement as a dict."""
    request = {"arm": arm, "fairseq_args": fairseq_args(arm, settings),
               "copies": FE_COPIES if arm == "fully_explored" else 1,
               "warmup": settings.warmup, "updates": settings.updates, "repeats": settings.repeats}
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "fairseq_maskplug.diagnostics.throughput", json.dumps(request)],
                            env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("THROUGHPUT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"arm {arm} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("THROUGHPUT "):])


def summarise(measurement: dict) -> dict:
    """Medians over blocks: tokens per second (text, processed, predicted),
    seconds per update, and peak memory."""
    blocks = measurement["blocks"]

    def median_rate(key):
        return statistics.median(b[key] / b["seconds"] for b in blocks)

    return {
        "arm": measurement["arm"],
        "text_tokens_per_s": median_rate("text_tokens"),
        "processed_tokens_per_s": median_rate("processed_tokens"),
        "predicted_tokens_per_s": median_rate("predicted_tokens"),
        "s_per_update": statistics.median(measurement["update_seconds"]),
        "loading_share": statistics.median(b["loading_seconds"] / b["seconds"] for b in blocks),
        "peak_memory_mib": measurement["peak_memory_bytes"] / 2**20,
        "training_memory_mib": (measurement["peak_memory_bytes"] - measurement["memory_before_training_bytes"]) / 2**20,
        "parameters": measurement["parameters"],
        "encoder_input_length": measurement["encoder_input_length"],
        "vocab_size": measurement["vocab_size"],
        "predicted_per_update": sum(b["predicted_tokens"] for b in blocks) / len(measurement["update_seconds"]),
    }


def mae_lm_flop_ratio(settings: BenchmarkSettings, stock: dict, mae: dict) -> float:
    """Throughput ratio MAE-LM / RoBERTa that the FLOP counts predict, from
    the measured encoder input length and predicted tokens per update."""
    layers, dim, ffn, _ = ENCODERS[settings.encoder]
    encoder = Stack(layers, dim, ffn)
    decoder = Stack(MAE_LM_DECODER_LAYERS, dim, ffn)  # at the encoder's width (mae_lm_base's default)
    rows, length = settings.batch_size, settings.tokens_per_sample
    roberta = roberta_training_flops(encoder, rows, length, stock["predicted_per_update"], stock["vocab_size"])
    mae = mae_lm_training_flops(encoder, decoder, rows, length, mae["encoder_input_length"], mae["predicted_per_update"],
                                mae["vocab_size"], projection=False)
    return roberta / mae


def ratios(summaries: Dict[str, dict], settings: BenchmarkSettings) -> Dict[str, dict]:
    """Each arm against stock: throughput ratios, memory ratio, target and verdict."""
    stock = summaries["stock"]
    table = {}
    for arm, summary in summaries.items():
        row = {key: summary[key] / stock[key] for key in
               ("text_tokens_per_s", "processed_tokens_per_s", "predicted_tokens_per_s", "peak_memory_mib")}
        row["s_per_update"] = summary["s_per_update"] / stock["s_per_update"]
        if arm in TARGETS:
            minimum, basis = TARGETS[arm]
            measured = row["text_tokens_per_s" if basis == "text" else "processed_tokens_per_s"]
            row["target"] = f">= {minimum:.2f}x ({basis} tokens/s)"
            row["meets_target"] = measured >= minimum
        if arm == "mae_lm":
            predicted = mae_lm_flop_ratio(settings, stock, summary)
            row["flop_predicted_ratio"] = predicted
            row["target"] = f"within 10 % of the FLOP prediction {predicted:.3f}x"
            row["meets_target"] = abs(row["text_tokens_per_s"] / predicted - 1) <= 0.10
        table[arm] = row
    return table


def markdown(summaries: Dict[str, dict], table: Dict[str, dict], cost, settings: BenchmarkSettings) -> str:
    lines = [
        f"Encoder {settings.encoder} ({'/'.join(map(str, ENCODERS[settings.encoder]))}: layers/width/FFN/heads), "
        f"{settings.batch_size} sequences × {settings.tokens_per_sample} tokens, device {settings.device}"
        f"{', fp16' if settings.fp16 else ''}; medians of {settings.repeats} blocks of {settings.updates} updates "
        f"after {settings.warmup} warm-up updates.",
        "",
        "| arm | text tok/s | × stock | processed tok/s | × stock | predicted tok/s | × stock | s/update | peak MiB | × stock | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for arm, s in summaries.items():
        r = table[arm]
        met = {True: "yes", False: "**no**"}.get(r.get("meets_target"), "")
        lines.append(
            f"| {arm} | {s['text_tokens_per_s']:,.0f} | {r['text_tokens_per_s']:.3f} | {s['processed_tokens_per_s']:,.0f} | "
            f"{r['processed_tokens_per_s']:.3f} | {s['predicted_tokens_per_s']:,.0f} | {r['predicted_tokens_per_s']:.3f} | "
            f"{s['s_per_update']:.3f} | {s['peak_memory_mib']:,.0f} | {r['peak_memory_mib']:.3f} | {r.get('target', '')} | {met} |"
        )
    lines += [
        "",
        f"Masking cost, {cost.sequences} sequences × {cost.length} tokens (15 %, 80/10/10):",
        "",
        "| masking | seconds per 1,000 sequences | µs per sequence | × Masker |",
        "|---|---:|---:|---:|",
        f"| stock `MaskTokensDataset` (data loading, CPU; source + target item) | {cost.stock_seconds * 1000 / cost.sequences:.3f} | "
        f"{cost.stock_seconds * 1e6 / cost.sequences:.1f} | {cost.stock_over_masker:.1f} |",
        f"| `Masker` on {cost.device} (draws + masking) | {cost.masker_seconds * 1000 / cost.sequences:.3f} | "
        f"{cost.masker_seconds * 1e6 / cost.sequences:.1f} | 1.0 |",
        f"| of which the per-sequence draws | {cost.masker_draws_seconds * 1000 / cost.sequences:.3f} | "
        f"{cost.masker_draws_seconds * 1e6 / cost.sequences:.1f} | |",
    ]
    return "\n".join(lines)


def save_json(path: Path, settings: BenchmarkSettings, summaries, table, cost):
    path.write_text(json.dumps({
        "settings": asdict(settings), "arms": summaries, "ratios_to_stock": table,
        "masking_cost": asdict(cost) | {"stock_over_masker": cost.stock_over_masker},
    }, indent=2))
