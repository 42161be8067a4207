"""The study's results, gathered: each arm's learning-rate grid (seed 1,
valid split) and, at its chosen rate, the mean and spread over seeds of the
loss at the ``<mask>`` positions on the test split, on both yardsticks (the
standard mask and the whole-word one; an arm is ranked on its own: the
whole-word one for whole-word arms), next to the train unigram on the same
positions; collapsed seeds flagged; verdicts against random masking at equal
updates (test) and equal tokens and seconds (read off the valid curves), the
downstream probes beside a randomly initialised encoder's, plots and Markdown
tables."""

import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .study import WHOLE_WORD_ARMS, lr_label

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


def load_grid(out: Path, order: Sequence[str] = ()) -> Dict[str, Dict[float, Dict[int, dict]]]:
    """{arm: {learning rate: {seed: result.json}}} of every job trained at a
    rate of its own (``OUT/runs/ARM/lrLR/seedS/result.json``); the arms of
    ``order`` first, in that order, then the others (parity arms, tries)."""
    grid: Dict[str, Dict[float, Dict[int, dict]]] = {}
    for path in sorted((out / "runs").glob("*/lr*/seed*/result.json")):
        record = json.loads(path.read_text())
        grid.setdefault(record["arm"], {}).setdefault(record["lr"], {})[record["seed"]] = record
    return {arm: grid[arm] for arm in dict.fromkeys([*order, *grid]) if arm in grid}


def yardstick(arm: str) -> str:
    """The key of the figure an arm is chosen and ranked on: ``at_mask``, or
    ``whole_words`` for the whole-word arms (their training masks are words)."""
    return "whole_words" if arm in WHOLE_WORD_ARMS else "at_mask"


def split_bits(result: dict, split: str, key: str) -> float:
    """The loss at ``<mask>`` (bits) of a result.json on ``split`` (valid or
    test) under yardstick ``key`` (``at_mask`` or ``whole_words``)."""
    scores = result["final_scores" if split == "valid" else "test_scores"]
    found = scores.get(key)
    return found["loss_bits"] if found else math.nan


def split_unigram_bits(result: dict, split: str, key: str) -> float:
    scores = result["final_scores" if split == "valid" else "test_scores"]
    return scores["unigram_at_mask_bits"] if key == "at_mask" else scores["whole_words"]["unigram_bits"]


def selection_bits(arm: str, result: dict) -> float:
    """What an arm's learning rate is chosen on: its own yardstick, valid split."""
    return split_bits(result, "valid", yardstick(arm))


def mean_sd(values: List[float]):
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def loss_at(curve: List[dict], axis: str, value: float, key: str = "at_mask_bits") -> float:
    """The loss ``key`` (``at_mask_bits``, ``at_mask_ww_bits``) where the
    curve's ``axis`` ("seconds" of training or "tokens" processed) reaches
    ``value``, linear between evaluations."""
    points = sorted((p[axis], p[key]) for p in curve)
    if value <= points[0][0]:
        return points[0][1]
    for (t0, y0), (t1, y1) in zip(points, points[1:]):
        if t0 <= value <= t1:
            return y0 + (y1 - y0) * (value - t0) / max(t1 - t0, 1e-9)
    return points[-1][1]


def verdict(ours: List[float], random: List[float], lower_is_better: bool = True, fixed_reference: bool = False) -> Dict:
    """Mean difference against random masking and its standard error over
    seeds; "ahead" when the difference favours ours by more than twice the
    standard error, "behind" when it disfavours it by as much, else "within
    noise"; "too few seeds" when either side has fewer than two (its spread
    is unknown). ``fixed_reference``: ``random`` is one figure without a
    spread of its own (a baseline measured once); only ours needs seeds."""
    (m_ours, s_ours), (m_random, s_random) = mean_sd(ours), mean_sd(random)
    difference = m_ours - m_random
    error = math.sqrt(s_ours**2 / max(len(ours), 1) + s_random**2 / max(len(random), 1))
    better = -difference if lower_is_better else difference
    call = "within noise"
    if len(ours) < 2 or (len(random) < 2 and not fixed_reference):
        call = "too few seeds"
    elif better > 2 * error:
        call = "ahead"
    elif -better > 2 * error:
        call = "behind"
    return {"difference": difference, "standard_error": error, "verdict": call}


CURVE_KEYS = {"at_mask": "at_mask_bits", "whole_words": "at_mask_ww_bits"}


def grid_cell(result: dict) -> Dict:
    """A grid job's figures: valid split, both yardsticks, collapse."""
    return {
        "at_mask_bits": split_bits(result, "valid", "at_mask"),
        "whole_words_bits": split_bits(result, "valid", "whole_words"),
        "collapsed": result["collapsed"],
    }


def summarise(results: Dict[str, List[dict]], grid: "Grid", baselines: Optional[Dict] = None,
              genre_random_init: Optional[List[float]] = None) -> Dict[str, Dict]:  # fmt: skip
    """Per arm (``results``: its seeds at the chosen rate): the rate and its
    grid (seed 1, valid, both yardsticks, collapse); on the test split the
    means and spreads over seeds of the loss at ``<mask>`` on both
    yardsticks with their unigram references, the spread of the predictions,
    the other kinds of position; training seconds, tokens, probes; verdicts
    against random masking on both yardsticks at equal updates (test), and on
    the arm's own yardstick at equal tokens and seconds (the valid curves:
    each the smaller of the two arms' means, a longer arm read off its curve);
    the downstream figures against a randomly initialised encoder's
    (``baselines["random_init"]``: the POS probe's, per layer, measured once;
    ``genre_random_init``: the genre task's, per seed)."""
    summary = {}
    random = results.get("random", [])
    for arm, seeds in results.items():
        own = yardstick(arm)
        tests = [r["test_scores"] for r in seeds]
        layers = len(seeds[0]["pos_probe"]["layer_accuracy"]) if seeds[0]["pos_probe"] else 0
        row = {
            "lr": seeds[0]["lr"],
            "yardstick": own,
            "grid": {lr_label(lr): grid_cell(found[1]) for lr, found in sorted(grid.get(arm, {}).items()) if 1 in found},
            "seeds": [r["seed"] for r in seeds],
            "collapsed_seeds": [r["seed"] for r in seeds if r["collapsed"]],
            "decoder_loss": seeds[0]["decoder_loss"],
            "ranking_bits": mean_sd([split_bits(r, "test", own) for r in seeds]),
            "test_at_mask_bits": mean_sd([split_bits(r, "test", "at_mask") for r in seeds]),
            "test_unigram_at_mask_bits": mean_sd([t["unigram_at_mask_bits"] for t in tests]),
            "test_whole_words_bits": mean_sd([split_bits(r, "test", "whole_words") for r in seeds]),
            "test_unigram_whole_words_bits": mean_sd([t["whole_words"]["unigram_bits"] for t in tests]),
            "test_spread_at_mask_bits": mean_sd([t["spread_at_mask_bits"] for t in tests]),
            "test_at_unchanged_bits": mean_sd([t["at_unchanged"]["loss_bits"] for t in tests]),
            "test_all_predicted_bits": mean_sd([t["all_predicted_bits"] for t in tests]),
            "valid_at_mask_bits": mean_sd([split_bits(r, "valid", "at_mask") for r in seeds]),
            "valid_whole_words_bits": mean_sd([split_bits(r, "valid", "whole_words") for r in seeds]),
            "train_seconds": mean_sd([r["train_seconds"] for r in seeds]),
            "seconds_per_seed": [r["train_seconds"] for r in seeds],
            "tokens": mean_sd([r["curve"][-1]["tokens"] for r in seeds]),
            "test_top1_at_mask": mean_sd([r["test_top1_at_mask"] for r in seeds]),
            "genre_accuracy": mean_sd([r["genre_accuracy"] for r in seeds]),
            "pos_probe": [mean_sd([r["pos_probe"]["layer_accuracy"][k] for r in seeds]) for k in range(layers)],
        }
        if layers and baselines:
            row["vs_random_init_pos_probe"] = verdict([r["pos_probe"]["layer_accuracy"][-1] for r in seeds],
                                                      [baselines["random_init"][-1]], False, fixed_reference=True)  # fmt: skip
        if genre_random_init and all(r["genre_accuracy"] is not None for r in seeds):
            row["vs_random_init_genre"] = verdict([r["genre_accuracy"] for r in seeds], genre_random_init, False)
        if random and arm != "random":
            for key in CURVE_KEYS:
                row[f"vs_random_{key}"] = verdict([split_bits(r, "test", key) for r in seeds],
                                                  [split_bits(r, "test", key) for r in random])  # fmt: skip
            row["vs_random_equal_updates"] = row[f"vs_random_{own}"]
            for axis in ("tokens", "seconds"):
                common = min(statistics.fmean(r["curve"][-1][axis] for r in seeds),
                             statistics.fmean(r["curve"][-1][axis] for r in random))  # fmt: skip
                row[f"equal_{axis}"] = common
                row[f"vs_random_equal_{axis}"] = verdict(
                    [loss_at(r["curve"], axis, common, CURVE_KEYS[own]) for r in seeds],
                    [loss_at(r["curve"], axis, common, CURVE_KEYS[own]) for r in random],
                )
            if layers and random[0]["pos_probe"]:
                ours, theirs = ([r["pos_probe"]["layer_accuracy"][-1] for r in found] for found in (seeds, random))
                row["vs_random_pos_probe"] = verdict(ours, theirs, False)
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


def cell(pair, digits=3) -> str:
    return fmt(pair, digits)


Grid = Dict[str, Dict[float, Dict[int, dict]]]  # {arm: {learning rate: {seed: result.json}}}


def grid_markdown(grid: Grid, chosen: Dict[str, Optional[float]]) -> List[str]:
    """The learning-rate grid of the study's arms (``chosen``'s keys): seed 1,
    valid split, loss at ``<mask>`` on the standard mask / the whole-word
    yardstick, the chosen rate in bold."""
    rates = sorted({lr for found in grid.values() for lr, seeds in found.items() if 1 in seeds})
    lines = [
        "Learning-rate grid: seed 1, valid split, loss at `<mask>` in bits on the standard mask / on the whole-word "
        "yardstick; the arm's own yardstick (whole-word for whole-word arms) chooses, collapsed runs (one prediction "
        "everywhere) only when every rate collapsed; **bold**: the chosen rate; `…`: not run.",
        "",
        "| arm | " + " | ".join(lr_label(lr) for lr in rates) + " | chosen |",
        "|---|" + "---:|" * len(rates) + "---:|",
    ]
    for arm in chosen:
        found = grid.get(arm, {})
        cells = []
        for lr in rates:
            if 1 not in found.get(lr, {}):
                cells.append("…")
                continue
            result = found[lr][1]
            text = f"{split_bits(result, 'valid', 'at_mask'):.3f} / {split_bits(result, 'valid', 'whole_words'):.3f}"
            text += " (collapsed)" if result["collapsed"] else ""
            cells.append(f"**{text}**" if chosen.get(arm) == lr else text)
        choice = chosen.get(arm)
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {lr_label(choice) if choice else 'not yet'} |")
    return lines


# the verdicts on the loss at <mask>, which a collapsed seed voids (the probes stand: they read the encoder)
LOSS_VERDICTS = ("vs_random_at_mask", "vs_random_whole_words", "vs_random_equal_tokens", "vs_random_equal_seconds")


def markdown(summary: Dict[str, Dict], grid: Dict[str, Dict[float, Dict[int, dict]]], chosen: Dict[str, Optional[float]],
             baselines: Dict, genre_majority: Optional[float], genre_random_init: List[float]) -> str:  # fmt: skip
    lines = grid_markdown(grid, chosen) + [
        "",
        "At each arm's chosen rate, test split: the loss at the `<mask>` positions of the fixed standard mask and of "
        "the whole-word yardstick (15 % of words, every piece masked), each against what ignoring context scores on "
        "the same positions (the train unigram); an arm is ranked on its own yardstick (whole-word arms on the "
        "whole-word one). Spread: how much the predictions at `<mask>` differ between positions (0: collapsed). "
        "Mean ± sd over seeds.",
        "",
        "| arm | lr | seeds | ranked on | loss at `<mask>` | below unigram | whole-word: loss at `<mask>` | below unigram "
        "| spread | collapsed seeds | top-1 at `<mask>` | POS probe (last layer) | genre acc. |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for arm, row in summary.items():
        name = f"{arm} (decoder)" if row["decoder_loss"] else arm
        standard, words = row["test_at_mask_bits"], row["test_whole_words_bits"]
        lines.append(
            f"| {name} | {lr_label(row['lr'])} | {len(row['seeds'])} | "
            f"{'whole words' if row['yardstick'] == 'whole_words' else 'standard'} | {cell(standard)} | "
            f"{row['test_unigram_at_mask_bits'][0] - standard[0]:.3f} | {cell(words)} | "
            f"{row['test_unigram_whole_words_bits'][0] - words[0]:.3f} | {cell(row['test_spread_at_mask_bits'], 4)} | "
            f"{', '.join(map(str, row['collapsed_seeds'])) or 'none'} | {cell(row['test_top1_at_mask'])} | "
            f"{cell(row['pos_probe'][-1]) if row['pos_probe'] else 'n/a'} | {cell(row['genre_accuracy'])} |"
        )
    lines += downstream_markdown(summary)
    lines += ["", f"POS probe baselines: majority tag {baselines['majority']:.4f}, each piece's most frequent tag "
              f"{baselines['piece_majority']:.4f}, randomly initialised encoder (per layer) "
              f"{', '.join(f'{a:.4f}' for a in baselines['random_init'])}."]  # fmt: skip
    if genre_majority is not None:
        random_init = mean_sd(genre_random_init)
        lines.append(f"Genre task (15 classes, held-out documents): majority baseline {genre_majority:.4f}; a randomly "
                     f"initialised encoder fine-tuned the same way {fmt(random_init)} "
                     f"({len(genre_random_init)} seeds).")  # fmt: skip
    lines += [
        "",
        "Verdicts against random masking (`masked_lm_plus` defaults, at its own chosen rate): difference of the means "
        "(ours − random), its standard error, and the call (ahead: better by more than 2 standard errors). Equal "
        "updates: the test split, on both yardsticks. Equal tokens and seconds: the arm's own yardstick, read off the "
        "valid curves; equal seconds makes no call: the jobs shared the machine's cores under a load that varied "
        f"(the same arm's seeds took {seconds_range(summary)} s), so training seconds measure the load as much as "
        "the method.",
        "",
        "| arm | standard: Δ bits (SE) | call | whole-word: Δ bits (SE) | call | equal tokens: at M | Δ bits (SE) | call "
        "| equal seconds: at s | Δ bits (SE) | call | POS probe Δ (SE) | call | genre Δ (SE) | call |",
        "|---|---:|---|---:|---|---:|---:|---|---:|---:|---|---:|---|---:|---|",
    ]
    for arm, row in summary.items():
        if "vs_random_at_mask" not in row:
            continue
        cells = []
        for key in (*LOSS_VERDICTS, "vs_random_pos_probe", "vs_random_genre"):
            if key == "vs_random_equal_tokens":
                cells.append(f"{row['equal_tokens'] / 1e6:.1f}")
            if key == "vs_random_equal_seconds":
                cells.append(f"{row['equal_seconds']:.0f}")
            v = row.get(key)
            call = "no call" if key == "vs_random_equal_seconds" else v and v["verdict"]
            if row["collapsed_seeds"] and key in LOSS_VERDICTS:
                call = "no verdict: collapsed"
            cells += ["n/a", ""] if v is None else [f"{v['difference']:+.4f} ({v['standard_error']:.4f})", call]
        name = f"{arm} (decoder)" if row["decoder_loss"] else arm
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", DECODER_NOTE + "."]
    return "\n".join(lines)


def seconds_range(summary: Dict[str, Dict]) -> str:
    """The widest spread of training seconds between one arm's seeds, as
    "LOW-HIGH" (the arm where it is widest)."""
    low, high = max(((min(r), max(r)) for r in (row["seconds_per_seed"] for row in summary.values()) if r),
                    key=lambda pair: pair[1] - pair[0], default=(0, 0))  # fmt: skip
    return f"{low:.0f}-{high:.0f}"


def grid_extent(summary: Dict[str, Dict]) -> str:
    """The rates the arms tried on seed 1: "N to M rates between LOW and
    HIGH" (one rate: "LOW")."""
    grids = [[float(lr) for lr in row["grid"]] for row in summary.values() if row["grid"]]
    if not grids:
        return "no rate yet"
    rates = sorted({lr for grid in grids for lr in grid})
    sizes = sorted({len(grid) for grid in grids})
    if len(rates) == 1:
        return lr_label(rates[0])
    count = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    return f"{count} rates between {lr_label(rates[0])} and {lr_label(rates[-1])}"


def headline_markdown(report: Dict) -> str:
    """The README's summary of a study.json: the regime, then per arm its
    rate, its loss at ``<mask>`` on both yardsticks against the unigram
    (test split), and its calls against random masking at equal updates and
    equal tokens on its own yardstick; collapsed arms say so."""
    config = report["configuration"]
    encoder = config["encoder"]
    seeds = sorted({len(row["seeds"]) for row in report["summary"].values()})
    lines = [
        f"The study ([docs/STUDY.md](docs/STUDY.md)): every method as an arm in one CPU regime (a {encoder['layers']} × "
        f"{encoder['dim']} RoBERTa on {config['tokens_per_sample']}-piece blocks, {config['batch_size']} blocks per update, "
        f"{config['updates']:,} updates), each at its own learning rate (chosen on seed 1 by the valid split from "
        f"{grid_extent(report['summary'])}: each arm's grid in docs/STUDY.md), "
        f"{' or '.join(map(str, seeds)) or 'as yet no'} seeds, reported on the test split: the loss at the `<mask>` "
        "positions of a fixed standard mask and of a fixed whole-word mask, each against the train unigram on the same "
        "positions. An arm is ranked on its own yardstick (whole-word arms on the whole-word one); a call needs a "
        "difference beyond twice its standard error. MAE-LM's figures are its pre-training decoder's.",
        "",
        "| arm | lr | seeds | loss at `<mask>` (bits) | below the unigram | whole words: loss at `<mask>` | below the "
        "unigram | against random, equal updates (SE) | equal tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for arm, row in report["summary"].items():
        standard, words = row["test_at_mask_bits"], row["test_whole_words_bits"]
        own = "whole words" if row["yardstick"] == "whole_words" else "standard"
        call = row.get("vs_random_equal_updates")
        tokens = row.get("vs_random_equal_tokens")
        against = f"{call['difference']:+.2f} ({call['standard_error']:.2f}) {call['verdict']}, {own}" if call else ""
        if row["collapsed_seeds"]:
            collapsed = row["collapsed_seeds"]
            against = f"collapsed (seed{'s' * (len(collapsed) > 1)} {', '.join(map(str, collapsed))}): no verdict"
        name = f"{arm} (decoder)" if row["decoder_loss"] else arm
        lines.append(
            f"| {name} | {lr_label(row['lr'])} | {len(row['seeds'])} | {fmt(standard, 3)} | "
            f"{row['test_unigram_at_mask_bits'][0] - standard[0]:.2f} | {fmt(words, 3)} | "
            f"{row['test_unigram_whole_words_bits'][0] - words[0]:.2f} | {against} | "
            f"{tokens['verdict'] if tokens and not row['collapsed_seeds'] else ''} |"
        )
    return "\n".join(lines)


def downstream_markdown(summary: Dict[str, Dict]) -> List[str]:
    """Each arm's POS probe (last layer) and genre accuracy against a
    randomly initialised encoder probed or fine-tuned the same way, and
    whether either task tells pre-training from none at all."""
    rows = [(arm, row) for arm, row in summary.items() if "vs_random_init_pos_probe" in row or "vs_random_init_genre" in row]
    if not rows:
        return []
    lines = ["", "Downstream against a randomly initialised encoder (same probe, same fine-tuning): difference "
             "(arm − random init), its standard error, the call.", "",
             "| arm | POS probe Δ (SE) | call | genre Δ (SE) | call |", "|---|---:|---|---:|---|"]  # fmt: skip
    for arm, row in rows:
        cells = []
        for key in ("vs_random_init_pos_probe", "vs_random_init_genre"):
            v = row.get(key)
            cells += ["n/a", ""] if v is None else [f"{v['difference']:+.4f} ({v['standard_error']:.4f})", v["verdict"]]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    for key, task in (("vs_random_init_pos_probe", "The POS probe"), ("vs_random_init_genre", "The genre task")):
        calls = [row[key]["verdict"] for _, row in rows if key in row]
        if calls and "ahead" not in calls:
            lines += ["", f"{task} does not tell pre-training from none at this size: no arm is ahead of a randomly "
                      "initialised encoder on it, so it ranks nothing here."]  # fmt: skip
    return lines


def tries_markdown(grid: Dict[str, Dict[float, Dict[int, dict]]], planned: List[str],
                   chosen: Dict[str, Optional[float]]) -> List[str]:  # fmt: skip
    """The single tries, valid and test, both yardsticks: every job of an arm
    outside ``planned`` (the study's arms and the parity arms), and a planned
    arm's jobs beyond its plan (a seed other than 1 at a rate other than
    its ``chosen`` one)."""
    rows = []
    for arm, rates in grid.items():
        for lr, seeds in sorted(rates.items()):
            for seed, result in sorted(seeds.items()):
                if arm in planned and (seed == 1 or lr == chosen.get(arm)):
                    continue
                rows.append(
                    f"| {arm} | {lr_label(lr)} | {seed} | {split_bits(result, 'valid', 'at_mask'):.3f} | "
                    f"{split_bits(result, 'test', 'at_mask'):.3f} | {split_bits(result, 'test', 'whole_words'):.3f} | "
                    f"{result['test_scores']['unigram_at_mask_bits'] - split_bits(result, 'test', 'at_mask'):.2f} | "
                    f"{'yes' if result['collapsed'] else 'no'} |"
                )
    if not rows:
        return []
    return ["", "Single tries (jobs outside the study's plan):", "",
            "| arm | lr | seed | valid: loss at `<mask>` | test: loss at `<mask>` | test: whole words | below the unigram "
            "(test) | collapsed |", "|---|---:|---:|---:|---:|---:|---:|---|", *rows]  # fmt: skip


def parity_markdown(grid: Dict[str, Dict[float, Dict[int, dict]]], lr: float) -> List[str]:
    """Stock ``masked_lm`` against ``masked_lm_plus``'s defaults (and with
    ``--never-mask-bos-eos``) at one shared rate, valid split, per seed."""
    rows = []
    for arm in ("stock", "random", "random_never_bos_eos"):
        found = grid.get(arm, {}).get(lr, {})
        if found:
            bits = [split_bits(found[seed], "valid", "at_mask") for seed in sorted(found)]
            rows.append(f"| {arm} | {', '.join(map(str, sorted(found)))} | {', '.join(f'{b:.3f}' for b in bits)} | "
                        f"{fmt(mean_sd(bits), 3)} |")  # fmt: skip
    if not rows:
        return []
    return [f"Parity at lr {lr_label(lr)} (valid split, loss at `<mask>`, bits):", "",
            "| arm | seeds | per seed | mean ± sd |", "|---|---|---|---:|", *rows]  # fmt: skip
