"""Throughput and memory of every method against stock ``masked_lm``, and the
cost of making masks; the library behind ``scripts/benchmark.py``.

Every arm trains the same encoder on the same prepared corpus with the same
optimizer and batch; each runs in its own process
(:mod:`.throughput`), after a warm-up, in blocks of updates whose median is
reported, and as a ratio to stock ``masked_lm`` measured in the same run. The
arms' blocks are interleaved, so a slow spell of the machine touches all alike.
"""

import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List

from fairseq_maskplug.methods import FE_COPIES

from ..diagnostics.masking_cost import REFERENCE_BATCH, MaskingCost
from ..paths import PLUGIN_DIR, REPO_ROOT
from .configurations import ENCODERS, method_flags
from .flops import Stack, mae_lm_training_flops, roberta_training_flops

# the methods benchmarked ("random" is masked_lm_plus with its defaults)
ARMS = ["stock", "random", "fully_explored", "linear", "cosine", "pos", "mapnet", "mae_lm"]

# the benchmark's targets: arm -> (minimum ratio to stock, the throughput it is measured on)
TARGETS = {
    "random": (1.0, "text"),
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


def method(arm: str) -> str:
    """``NAME`` of an arm ``NAME`` or ``NAME@BATCH``."""
    return arm.partition("@")[0]


def batch_size(arm: str, settings: BenchmarkSettings) -> int:
    """Sequences per update: BATCH of ``NAME@BATCH``, else the setting.
    Fully-explored takes batch / K unique sequences (the fully_explored
    recipe's memory-matched setting): its K copies then fill about the batch
    stock processes."""
    name, _, batch = arm.partition("@")
    if batch:
        return int(batch)
    return max(1, round(settings.batch_size / FE_COPIES)) if name == "fully_explored" else settings.batch_size


def flop_check_arms(settings: BenchmarkSettings) -> List[str]:
    """Stock and MAE-LM at half the batch: with the full-batch arms they give
    each one's marginal cost per sequence, free of fixed per-update costs."""
    half = settings.batch_size // 2
    return [f"stock@{half}", f"mae_lm@{half}"]


def fairseq_args(arm: str, settings: BenchmarkSettings) -> List[str]:
    encoder = ENCODERS[settings.encoder]
    length = settings.tokens_per_sample
    return [
        settings.data, "--user-dir", str(PLUGIN_DIR), "--criterion", "masked_lm", *encoder.flags(),
        *method_flags(method(arm), encoder), "--tokens-per-sample", str(length), "--max-positions", str(length),
        "--sample-break-mode", "none", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6",
        "--weight-decay", "0.01", "--lr", "5e-4", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "10",
        "--total-num-update", "100000",
        "--max-update", str(settings.total_updates),  # a ratio schedule spans the whole benchmark run
        "--batch-size", str(batch_size(arm, settings)), "--num-workers", "0", "--seed", "1", "--no-save",
        "--disable-validation", "--log-format", "none", *(["--fp16"] if settings.fp16 else []),
        *(["--cpu"] if settings.device == "cpu" else []),
    ]  # fmt: skip


class ArmProcess:
    """One arm's :mod:`.throughput` process, driven block by block."""

    def __init__(self, arm: str, settings: BenchmarkSettings, log_dir: Path):
        request = {
            "fairseq_args": fairseq_args(arm, settings),
            "copies": FE_COPIES if method(arm) == "fully_explored" else 1,
            "warmup": settings.warmup,
            "updates": settings.updates,
        }
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.arm, self.log = arm, log_dir / f"{arm}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "maskplug_lab.experiments.throughput", json.dumps(request)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.reply("READY")

    def reply(self, kind: str) -> str:
        """The payload of the next stdout line starting with ``kind``."""
        for line in self.process.stdout:
            if line.startswith(kind):
                return line[len(kind) :].strip()
        self.process.wait()
        raise RuntimeError(f"arm {self.arm} failed (exit {self.process.returncode}):\n{self.log.read_text()[-3000:]}")

    def ask(self, command: str, kind: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.reply(kind))


def measure_arms(arms: List[str], settings: BenchmarkSettings, log_dir: Path) -> Dict[str, dict]:
    """Every arm's blocks, interleaved (block r of every arm, then block r + 1),
    and its memory and sizes; one process per arm, set up one after another."""
    processes = []
    try:
        for arm in arms:
            print(f"==> setting up {arm}", flush=True)
            processes.append(ArmProcess(arm, settings, log_dir))
        blocks = {arm: [] for arm in arms}
        for repeat in range(settings.repeats):
            print(f"==> block {repeat + 1} of {settings.repeats}", flush=True)
            for process in processes:
                blocks[process.arm].append(process.ask("block", "BLOCK"))
        results = {
            process.arm: {"arm": process.arm, "blocks": blocks[process.arm], **process.ask("finish", "FINISH")}
            for process in processes
        }
        for process in processes:  # gone before anything else is timed
            process.process.wait(timeout=120)
        return results
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.process.kill()


def summarise(measurement: dict) -> dict:
    """Medians over blocks: tokens per second (text, processed, predicted),
    seconds per update, and peak memory."""
    blocks = measurement["blocks"]
    update_seconds = [seconds for block in blocks for seconds in block["update_seconds"]]

    def median_rate(key):
        return statistics.median(b[key] / b["seconds"] for b in blocks)

    return {
        "arm": measurement["arm"],
        "text_tokens_per_s": median_rate("text_tokens"),
        "processed_tokens_per_s": median_rate("processed_tokens"),
        "predicted_tokens_per_s": median_rate("predicted_tokens"),
        "s_per_update": statistics.median(update_seconds),
        "loading_share": statistics.median(b["loading_seconds"] / b["seconds"] for b in blocks),
        "peak_memory_mib": measurement["peak_memory_bytes"] / 2**20,
        "training_memory_mib": (measurement["peak_memory_bytes"] - measurement["memory_before_training_bytes"]) / 2**20,
        "parameters": measurement["parameters"],
        "encoder_input_length": measurement["encoder_input_length"],
        "vocab_size": measurement["vocab_size"],
        "predicted_per_update": sum(b["predicted_tokens"] for b in blocks) / len(update_seconds),
    }


def mae_lm_flop_ratio(settings: BenchmarkSettings, stock: dict, mae: dict) -> float:
    """Throughput ratio MAE-LM / RoBERTa that the FLOP counts predict, from
    the measured encoder input length and predicted tokens per update."""
    size = ENCODERS[settings.encoder]
    encoder = Stack(size.layers, size.dim, size.ffn)
    decoder = Stack(size.decoder_layers, size.dim, size.ffn)  # at the encoder's width (mae_lm_base's default)
    rows, length = settings.batch_size, settings.tokens_per_sample
    roberta = roberta_training_flops(encoder, rows, length, stock["predicted_per_update"], stock["vocab_size"])
    mae = mae_lm_training_flops(
        encoder,
        decoder,
        rows,
        length,
        mae["encoder_input_length"],
        mae["predicted_per_update"],
        mae["vocab_size"],
        projection=False,
    )
    return roberta / mae


def marginal_seconds_per_sequence(summaries: Dict[str, dict], name: str, settings: BenchmarkSettings) -> float:
    """(s/update at the full batch − at half of it) / the sequences between."""
    half = settings.batch_size // 2
    return (summaries[name]["s_per_update"] - summaries[f"{name}@{half}"]["s_per_update"]) / (settings.batch_size - half)


def ratios(summaries: Dict[str, dict], settings: BenchmarkSettings) -> Dict[str, dict]:
    """Each arm against stock at the same batch: throughput ratios, memory
    ratio, target and verdict. MAE-LM is held to the ratio its FLOP count
    predicts, on its marginal cost per sequence (the FLOPs do not count the
    fixed per-update costs: optimizer step, data loading, Python)."""
    table = {}
    for arm, summary in summaries.items():
        batch = arm.partition("@")[2]
        stock = summaries["stock@" + batch if batch else "stock"]
        row = {
            key: summary[key] / stock[key]
            for key in ("text_tokens_per_s", "processed_tokens_per_s", "predicted_tokens_per_s", "peak_memory_mib")
        }
        row["s_per_update"] = summary["s_per_update"] / stock["s_per_update"]
        if arm in TARGETS:
            minimum, basis = TARGETS[arm]
            measured = row["text_tokens_per_s" if basis == "text" else "processed_tokens_per_s"]
            row["target"] = f">= {minimum:.2f}x ({basis} tokens/s)"
            row["meets_target"] = measured >= minimum
        if arm == "mae_lm":
            predicted = mae_lm_flop_ratio(settings, stock, summary)
            marginal = marginal_seconds_per_sequence(summaries, "stock", settings) / marginal_seconds_per_sequence(
                summaries, "mae_lm", settings
            )
            row.update(flop_predicted_ratio=predicted, marginal_ratio=marginal)
            row["target"] = f"marginal {marginal:.3f}x within 10 % of the FLOP prediction {predicted:.3f}x"
            row["meets_target"] = abs(marginal / predicted - 1) <= 0.10
        table[arm] = row
    return table


def markdown(summaries: Dict[str, dict], table: Dict[str, dict], cost, settings: BenchmarkSettings) -> str:
    lines = [
        f"Encoder {settings.encoder} ({ENCODERS[settings.encoder]}), "
        f"{settings.batch_size} sequences × {settings.tokens_per_sample} tokens, device {settings.device}"
        f"{', fp16' if settings.fp16 else ''}; medians of {settings.repeats} blocks of {settings.updates} updates "
        f"after {settings.warmup} warm-up updates.",
        "",
        "| arm | text tok/s | × stock | processed tok/s | × stock | predicted tok/s | × stock | s/update "
        "| peak MiB | × stock | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for arm, s in summaries.items():
        r = table[arm]
        met = {True: "yes", False: "**no**"}.get(r.get("meets_target"), "")
        cells = [
            f"{s['text_tokens_per_s']:,.0f}", f"{r['text_tokens_per_s']:.3f}",
            f"{s['processed_tokens_per_s']:,.0f}", f"{r['processed_tokens_per_s']:.3f}",
            f"{s['predicted_tokens_per_s']:,.0f}", f"{r['predicted_tokens_per_s']:.3f}",
            f"{s['s_per_update']:.3f}", f"{s['peak_memory_mib']:,.0f}", f"{r['peak_memory_mib']:.3f}",
            r.get("target", ""), met,
        ]  # fmt: skip
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if "mae_lm" in table:
        mae = table["mae_lm"]
        roberta_ms = marginal_seconds_per_sequence(summaries, "stock", settings) * 1e3
        mae_ms = marginal_seconds_per_sequence(summaries, "mae_lm", settings) * 1e3
        lines += [
            "",
            (
                f"MAE-LM against its FLOP count: marginal seconds per sequence (batch {settings.batch_size} against "
                f"{settings.batch_size // 2}) RoBERTa {roberta_ms:.2f} ms, MAE-LM {mae_ms:.2f} ms: "
                f"{mae['marginal_ratio']:.3f}x, FLOP prediction {mae['flop_predicted_ratio']:.3f}x; "
                f"whole updates (fixed costs included) {mae['text_tokens_per_s']:.3f}x."
            ),
        ]
    return "\n".join(lines + ["", masking_cost_markdown(cost)])


def masking_cost_markdown(cost: MaskingCost) -> str:
    """Stock's cost against ours at each batch size, and the draws' share."""

    def microseconds(seconds: float) -> float:
        return seconds * 1e6 / cost.sequences

    lines = [
        f"Masking cost, {cost.sequences} sequences × {cost.length} tokens (15 %, 80/10/10), on {cost.device}:",
        "",
        "| masking | µs per sequence | stock ÷ this |",
        "|---|---:|---:|",
        "| stock `MaskTokensDataset` (data loading, CPU; source + target item) | "
        f"{microseconds(cost.stock_seconds):.1f} | 1.0 |",
    ]
    for batch, seconds in sorted(cost.seconds_by_batch.items()):
        per_sequence, ratio = microseconds(seconds), cost.stock_seconds / seconds
        lines.append(f"| uniform strategy, batches of {batch} (draws + masking) | {per_sequence:.1f} | {ratio:.1f} |")
    share = cost.masker_draws_seconds / cost.masker_seconds
    lines.append(
        f"| of which the draws, batches of {REFERENCE_BATCH} | {microseconds(cost.masker_draws_seconds):.1f} ({share:.0%}) | |"
    )
    if len(cost.seconds_by_batch) > 1:
        fixed, per_sequence = cost.per_batch_line()
        lines += ["", f"One batch of B sequences ≈ {fixed * 1e6:.0f} µs + B × {per_sequence * 1e6:.1f} µs (least squares over "
                  "the batch sizes): the fixed part is what makes small batches dearer per sequence."]  # fmt: skip
    return "\n".join(lines)


def cost_json(cost: MaskingCost) -> dict:
    fixed, per_sequence = cost.per_batch_line()
    return asdict(cost) | {"stock_over_masker": cost.stock_over_masker, "fixed_seconds_per_batch": fixed,
                           "seconds_per_sequence": per_sequence}  # fmt: skip


def save_json(path: Path, settings: BenchmarkSettings, summaries, table, cost):
    path.write_text(
        json.dumps(
            {"settings": asdict(settings), "arms": summaries, "ratios_to_stock": table, "masking_cost": cost_json(cost)},
            indent=2,
        )
    )
