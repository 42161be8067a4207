"""The study's results, gathered: each arm's mean and spread over seeds of
the loss at the ``<mask>`` positions (the ranking figure) at equal updates,
tokens and training seconds, next to the references on the same positions;
verdicts against random masking, the downstream probes, plots and Markdown
tables."""

import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional

DECODER_NOTE = (
    "MAE-LM arms: the loss at `<mask>` is their pre-training decoder's prediction from the same visible tokens, "
    "so it ranks the pre-training systems; what the encoder alone learned is the probes'"
)


def load_results(out: Path, order: List[str]) -> Dict[str, List[dict]]:
    """{arm: [result.json of each seed, by seed]}, arms in ``order``."""
    results: Dict[str, List[dict]] = {}
    for path in sorted((out / "runs").glob("*/seed*/result.json")):
        record = json.loads(path.read_text())
        results.setdefault(record["arm"], []).append(record)
    return {arm: sorted(results[arm], key=lambda r: r["seed"]) for arm in order if arm in results}


def mean_sd(values: List[float]):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def loss_at(curve: List[dict], axis: str, value: float) -> float:
    """The loss at ``<mask>`` where the curve's ``axis`` ("seconds" of training
    or "tokens" processed) reaches ``value``, linear between evaluations."""
    points = sorted((p[axis], p["at_mask_bits"]) for p in curve)
    if value <= points[0][0]:
        return points[0][1]
    for (t0, y0), (t1, y1) in zip(points, points[1:]):
        if t0 <= value <= t1:
            return y0 + (y1 - y0) * (value - t0) / max(t1 - t0, 1e-9)
    return points[-1][1]


def verdict(ours: List[float], random: List[float], lower_is_better: bool = True) -> Dict:
    """Mean difference against random masking and its standard error over
    seeds; "ahead" when the difference favours ours by more than twice the
    standard error, "behind" when it disfavours it by as much, else "within
    noise"; "too few seeds" when either side has fewer than two (its spread
    is unknown)."""
    (m_ours, s_ours), (m_random, s_random) = mean_sd(ours), mean_sd(random)
    difference = m_ours - m_random
    error = math.sqrt(s_ours**2 / max(len(ours), 1) + s_random**2 / max(len(random), 1))
    better = -difference if lower_is_better else difference
    call = "within noise"
    if min(len(ours), len(random)) < 2:
        call = "too few seeds"
    elif better > 2 * error:
        call = "ahead"
    elif -better > 2 * error:
        call = "behind"
    return {"difference": difference, "standard_error": error, "verdict": call}


def summarise(results: Dict[str, List[dict]]) -> Dict[str, Dict]:
    """Per arm: means and spreads of the final loss at ``<mask>``, the other
    kinds of position and the references, training seconds, tokens, probes;
    verdicts against random at equal updates and equal
    tokens processed and equal seconds (each the smaller of the two arms'
    means: a longer arm is read off its curve there)."""
    summary = {}
    random = results.get("random", [])
    for arm, seeds in results.items():
        final = [r["final_at_mask_bits"] for r in seeds]
        scores = [r["final_scores"] for r in seeds]
        seconds = [r["train_seconds"] for r in seeds]
        layers = len(seeds[0]["pos_probe"]["layer_accuracy"])
        row = {
            "seeds": [r["seed"] for r in seeds],
            "decoder_loss": seeds[0]["decoder_loss"],
            "final_at_mask_bits": mean_sd(final),
            "unigram_at_mask_bits": mean_sd([s["unigram_at_mask_bits"] for s in scores]),
            "neighbours_at_mask_bits": mean_sd([s["neighbours_at_mask_bits"] for s in scores]),
            "at_unchanged_bits": mean_sd([s["at_unchanged"]["loss_bits"] for s in scores]),
            "all_predicted_bits": mean_sd([s["all_predicted_bits"] for s in scores]),
            "train_seconds": mean_sd(seconds),
            "tokens": mean_sd([r["curve"][-1]["tokens"] for r in seeds]),
            "test_top1_at_mask": mean_sd([r["test_top1_at_mask"] for r in seeds]),
            "genre_accuracy": mean_sd([r["genre_accuracy"] for r in seeds]),
            "pos_probe": [mean_sd([r["pos_probe"]["layer_accuracy"][k] for r in seeds]) for k in range(layers)],
        }
        if random and arm != "random":
            row["vs_random_equal_updates"] = verdict(final, [r["final_at_mask_bits"] for r in random])
            for axis in ("tokens", "seconds"):
                common = min(statistics.fmean(r["curve"][-1][axis] for r in seeds),
                             statistics.fmean(r["curve"][-1][axis] for r in random))  # fmt: skip
                row[f"equal_{axis}"] = common
                row[f"vs_random_equal_{axis}"] = verdict(
                    [loss_at(r["curve"], axis, common) for r in seeds], [loss_at(r["curve"], axis, common) for r in random]
                )
            row["vs_random_pos_probe"] = verdict([r["pos_probe"]["layer_accuracy"][-1] for r in seeds],
                                                 [r["pos_probe"]["layer_accuracy"][-1] for r in random], False)  # fmt: skip
            if all(r["genre_accuracy"] is not None for r in seeds + random):
                row["vs_random_genre"] = verdict([r["genre_accuracy"] for r in seeds], [r["genre_accuracy"] for r in random],
                                                 False)  # fmt: skip
        summary[arm] = row
    return summary


def plot_curves(results: Dict[str, List[dict]], unigram_bits: float, path: Path, title: str):
    """Loss at the ``<mask>`` positions against updates, tokens and seconds:
    the mean over seeds with a ±1 sd band, the unigram reference as a line;
    MAE-LM arms (their decoder's) in their own row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("loss at <mask>, bits (fixed standard mask)", [a for a, r in results.items() if not r[0]["decoder_loss"]]),
            ("MAE-LM: loss at <mask>, bits (same mask)", [a for a, r in results.items() if r[0]["decoder_loss"]])]  # fmt: skip
    rows = [(label, arms) for label, arms in rows if arms]
    colours = plt.get_cmap("tab20")
    figure, axes = plt.subplots(len(rows), 3, figsize=(16, 4.6 * len(rows)), squeeze=False, sharey="row")
    for row_axes, (label, arms) in zip(axes, rows):
        low = []
        for index, arm in enumerate(arms):
            curves = [r["curve"] for r in results[arm]]
            length = min(len(c) for c in curves)
            for axis, key in zip(row_axes, ("updates", "tokens", "seconds")):
                xs = [statistics.fmean(c[i][key] for c in curves) for i in range(length)]
                ys = [[c[i]["at_mask_bits"] for c in curves] for i in range(length)]
                mean = [statistics.fmean(y) for y in ys]
                sd = [statistics.stdev(y) if len(y) > 1 else 0.0 for y in ys]
                axis.plot(xs, mean, color=colours(index % 20), label=arm, linewidth=1.3)
                axis.fill_between(xs, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                                  color=colours(index % 20), alpha=0.2)  # fmt: skip
            low += [p["at_mask_bits"] for c in curves for p in c[1:]]
        for axis, xlabel in zip(row_axes, ("updates", "tokens processed (all copies)", "training seconds")):
            axis.axhline(unigram_bits, color="black", linestyle="--", linewidth=1, label="train unigram at <mask>")
            axis.set_xlabel(xlabel)
            axis.grid(alpha=0.3)
        if low:
            row_axes[0].set_ylim(min(low) - 0.05, max(max(low), unigram_bits) + 0.1)
        row_axes[0].set_ylabel(label)
        row_axes[0].legend(fontsize=7, ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_probes(summary: Dict[str, Dict], baselines: Dict[str, float], path: Path):
    """POS probe accuracy per layer (0 = embeddings), mean ± sd over seeds,
    with the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab20")
    figure, axis = plt.subplots(figsize=(8, 5))
    for index, (arm, row) in enumerate(summary.items()):
        means = [m for m, _ in row["pos_probe"]]
        sds = [s for _, s in row["pos_probe"]]
        axis.errorbar(range(len(means)), means, yerr=sds, color=colours(index % 20), marker="o", capsize=2, label=arm)
    styles = {"random_init": ":", "piece_majority": "--", "majority": "-."}
    for name, value in baselines.items():
        if isinstance(value, list):
            axis.plot(range(len(value)), value, color="black", linestyle=styles[name], label=name.replace("_", " "))
        else:
            axis.axhline(value, color="grey", linestyle=styles[name], label=name.replace("_", " "))
    axis.set_xlabel("layer (0 = embeddings)")
    axis.set_ylabel("POS probe accuracy (test split)")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def fmt(pair, digits=4) -> str:
    mean, sd = pair
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown(summary: Dict[str, Dict], unigram_bits: float, baselines: Dict, genre_majority: Optional[float]) -> str:
    lines = [
        f"Loss at the `<mask>` positions of the fixed standard validation mask (the ranking figure), against what "
        f"ignoring context scores on the same positions (train unigram, {unigram_bits:.3f} bits) and the two-neighbour "
        "count model; the loss where the input shows the original token and over all predicted positions (copying "
        "included) are shown, never ranked. Mean ± sd over seeds.",
        "",
        "| arm | seeds | loss at `<mask>` | below unigram | two neighbours | at unchanged | all predicted (copying) | "
        "train s | tokens | top-1 at `<mask>` (test) | POS probe (last layer) | genre acc. |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, row in summary.items():
        bits = row["final_at_mask_bits"]
        name = f"{arm} (decoder)" if row["decoder_loss"] else arm
        lines.append(
            f"| {name} | {len(row['seeds'])} | {fmt(bits)} | {row['unigram_at_mask_bits'][0] - bits[0]:.3f} | "
            f"{row['neighbours_at_mask_bits'][0]:.3f} | {row['at_unchanged_bits'][0]:.3f} | "
            f"{row['all_predicted_bits'][0]:.3f} | {row['train_seconds'][0]:.0f} | {row['tokens'][0]:,.0f} | "
            f"{fmt(row['test_top1_at_mask'])} | {fmt(row['pos_probe'][-1])} | {fmt(row['genre_accuracy'])} |"
        )
    lines += ["", f"POS probe baselines: majority tag {baselines['majority']:.4f}, each piece's most frequent tag "
              f"{baselines['piece_majority']:.4f}, randomly initialised encoder (per layer) "
              f"{', '.join(f'{a:.4f}' for a in baselines['random_init'])}."]  # fmt: skip
    if genre_majority is not None:
        lines.append(f"Genre task (15 classes, held-out documents): majority baseline {genre_majority:.4f}.")
    lines += [
        "",
        "Verdicts against random masking (`masked_lm_plus` defaults) on the loss at `<mask>`: difference of the means "
        "(ours − random), its standard error, and the call (ahead: better by more than 2 standard errors).",
        "",
        "| arm | equal updates: Δ bits (SE) | call | equal tokens: at M | Δ bits (SE) | call | equal seconds: at s | "
        "Δ bits (SE) | call | POS probe Δ (SE) | call | genre Δ (SE) | call |",
        "|---|---:|---|---:|---:|---|---:|---:|---|---:|---|---:|---|",
    ]
    for arm, row in summary.items():
        if "vs_random_equal_updates" not in row:
            continue
        cells = []
        for key in ("vs_random_equal_updates", "vs_random_equal_tokens", "vs_random_equal_seconds", "vs_random_pos_probe",
                    "vs_random_genre"):  # fmt: skip
            if key == "vs_random_equal_tokens":
                cells.append(f"{row['equal_tokens'] / 1e6:.1f}")
            if key == "vs_random_equal_seconds":
                cells.append(f"{row['equal_seconds']:.0f}")
            v = row.get(key)
            cells += ["n/a", ""] if v is None else [f"{v['difference']:+.4f} ({v['standard_error']:.4f})", v["verdict"]]
        name = f"{arm} (decoder)" if row["decoder_loss"] else arm
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", DECODER_NOTE + "."]
    return "\n".join(lines)
