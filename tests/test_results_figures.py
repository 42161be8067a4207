"""docs/RESULTS.md's CPU tables are the JSON they cite: the benchmark's
(docs/benchmark_cpu.json, every cell of every row) and the masking cost's
two runs (run A in benchmark_cpu.json, run B in masking_cost_cpu_b.json)."""

import json
from typing import List

from maskplug_lab.diagnostics.masking_cost import MaskingCost
from maskplug_lab.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
# RESULTS.md's row labels -> the benchmark's arm names
BENCHMARK_ROWS = {
    "stock `masked_lm`": "stock", "`masked_lm_plus` (defaults)": "random", "fully-explored (K = 7)": "fully_explored",
    "linear schedule (0.30 → 0)": "linear", "cosine schedule": "cosine", "POS weighting (whole words)": "pos",
    "MAPNet (2-layer proposal)": "mapnet", "MAE-LM (4-layer decoder)": "mae_lm",
    "stock, batch 8 (FLOP check)": "stock@8", "MAE-LM, batch 8 (FLOP check)": "mae_lm@8",
}  # fmt: skip


def table(text: str, header: str) -> List[List[str]]:
    """The cells of each row of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_benchmark_table_is_its_json():
    report = json.loads((DOCS / "benchmark_cpu.json").read_text())
    rows = table((DOCS / "RESULTS.md").read_text(), "| arm | text tok/s |")
    assert [row[0] for row in rows] == list(BENCHMARK_ROWS)
    for label, *cells in rows:
        arm = BENCHMARK_ROWS[label]
        s, r = report["arms"][arm], report["ratios_to_stock"][arm]
        expected = [
            f"{s['text_tokens_per_s']:,.0f}", f"{r['text_tokens_per_s']:.3f}",
            f"{s['processed_tokens_per_s']:,.0f}", f"{r['processed_tokens_per_s']:.3f}",
            f"{s['predicted_tokens_per_s']:,.0f}", f"{r['predicted_tokens_per_s']:.3f}",
            f"{s['s_per_update']:.3f}", f"{s['peak_memory_mib']:,.0f}", f"{r['peak_memory_mib']:.3f}",
        ]  # fmt: skip
        assert cells[:9] == expected, label
        met = {True: "yes", False: "**no**", None: ""}[r.get("meets_target")]
        assert cells[10].split(" (")[0] == met, label  # the MAE-LM row adds its margin


def test_the_masking_cost_table_is_its_two_runs():
    names = ("benchmark_cpu.json", "masking_cost_cpu_b.json")
    runs = [json.loads((DOCS / name).read_text())["masking_cost"] for name in names]
    costs = [
        MaskingCost(**{key: run[key] for key in MaskingCost.__dataclass_fields__}
                    | {"seconds_by_batch": {int(b): s for b, s in run["seconds_by_batch"].items()}})
        for run in runs
    ]  # fmt: skip

    def both(format_one):
        return " / ".join(format_one(cost) for cost in costs)

    def per_sequence(seconds, cost):
        return seconds * 1e6 / cost.sequences

    rows = {row[0]: row[1:] for row in table((DOCS / "RESULTS.md").read_text(), "| masking | µs per sequence, run A")}
    stock = rows["stock `MaskTokensDataset` (data loading, CPU; source + target item)"]
    assert stock[0] == both(lambda c: f"{per_sequence(c.stock_seconds, c):.1f}")
    for batch in (8, 32, 256):
        cells = rows[f"ours, batches of {batch}" + (" (draws + masking)" if batch == 8 else "")]
        assert cells[0] == both(lambda c, b=batch: f"{per_sequence(c.seconds_by_batch[b], c):.1f}"), batch
        assert cells[1] == "**" + both(lambda c, b=batch: f"{c.stock_seconds / c.seconds_by_batch[b]:.1f}") + "**", batch
    draws = rows["of which the draws, batches of 32"][0]
    assert draws == both(lambda c: f"{per_sequence(c.masker_draws_seconds, c):.1f}") + " (" + both(
        lambda c: f"{c.masker_draws_seconds / c.masker_seconds:.0%}".replace("%", " %")) + ")"  # fmt: skip
    line = rows["one batch of B sequences (least squares over the three sizes)"][0]
    assert line == both(lambda c: f"{c.per_batch_line()[0] * 1e6:.0f} µs + B × {c.per_batch_line()[1] * 1e6:.1f} µs")
