"""Mask-only gradient variance of masking strategies on a fixed batch.

    python scripts/measure_mask_variance.py --data DIR [--checkpoint CKPT] \\
        --strategies random,random_k,fully_explored,fully_explored_contiguous[,mapnet] \\
        --draws 32 --json OUT [--segments 7] [--hamming-curve]

Without --checkpoint, a freshly initialised RoBERTa of the size --encoder
(seed --seed) is measured. Dropout is off, so
the only randomness is the masks.
"""

import argparse
import json
import logging
import sys

import torch

from fairseq_maskplug.data.vocabulary import build_masker
from fairseq_maskplug.masking import CorruptionRule
from fairseq_maskplug.scoring.validation import load_for_masking
from maskplug_lab.diagnostics.gradient_variance import (
    against_uniform,
    as_dicts,
    estimate,
    hamming_curve,
    measure_strategies,
    ratio_estimate,
    selected_parameters,
    strategies,
    uniform_reference,
)
from maskplug_lab.experiments.configurations import ENCODERS, TINY


def fresh_model(data, args):
    from fairseq import options

    parser = options.get_training_parser()
    ns = options.parse_args_and_arch(
        parser,
        [
            data,
            "--task",
            "masked_lm_plus",
            *ENCODERS[args.encoder].flags(),
            "--tokens-per-sample",
            str(args.tokens_per_sample),
            "--max-positions",
            str(args.tokens_per_sample),
            "--seed",
            str(args.seed),
            "--cpu",
        ],
    )
    from fairseq import tasks

    torch.manual_seed(args.seed)
    task = tasks.setup_task(ns)
    model = task.build_model(ns)
    model.eval()
    return task, model


def load_mapnet_criterion(checkpoint, task):
    """The trained proposal network of a mapnet_masked_lm checkpoint."""
    if checkpoint is None:
        sys.exit("--strategies mapnet needs --checkpoint of a run with --criterion mapnet_masked_lm")
    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint)
    if state["cfg"]["criterion"].get("_name") != "mapnet_masked_lm":
        sys.exit(f"--strategies mapnet: {checkpoint} was not trained with --criterion mapnet_masked_lm")
    if "mapnet_proposal" not in (state.get("task_state") or {}):
        sys.exit(f"--strategies mapnet: {checkpoint} holds no proposal network in its task state (earlier "
                 "versions of fairseq-maskplug kept it with the criterion; re-train it)")  # fmt: skip
    criterion = task.build_criterion(state["cfg"]["criterion"])
    criterion.learner.load_state_dict(state["task_state"]["mapnet_proposal"])
    return criterion


def _ci(record, key):
    low, high = record[f"{key}_ci"]
    return f"[{low:.4f}, {high:.4f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--strategies", default="random,random_k,fully_explored,fully_explored_contiguous")
    parser.add_argument("--draws", type=int, default=32, help="mask realisations per strategy (R)")
    parser.add_argument(
        "--reference-draws",
        type=int,
        default=0,
        help="uniform-mask draws whose mean is the reference gradient (default 4 x --draws)",
    )
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--segments", type=int, default=7, help="K for random_k and fully-explored (ratio 1/K)")
    parser.add_argument(
        "--corruption",
        choices=("80_10_10", "mask_only"),
        default="80_10_10",
        help="what a masked position shows: stock 80/10/10, or <mask> always (the additive case is closer)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="sequences in the fixed batch")
    parser.add_argument("--split", default="valid", help="split the fixed batch is taken from (its first sequences)")
    parser.add_argument("--params", default=".", help="regex over parameter names (default: all parameters)")
    parser.add_argument("--hamming-curve", action="store_true", help="also the covariance vs Hamming distance curve")
    parser.add_argument("--pairs", type=int, default=16, help="mask pairs per overlap for the Hamming curve")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--tokens-per-sample", type=int, default=TINY.tokens_per_sample, help="block length without --checkpoint"
    )
    parser.add_argument("--encoder", default="tiny", choices=sorted(ENCODERS), help="encoder size without --checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)

    task, model = load_for_masking(args.checkpoint, args.data) if args.checkpoint else fresh_model(args.data, args)
    criterion = load_mapnet_criterion(args.checkpoint, task) if "mapnet" in args.strategies else None
    if args.corruption == "mask_only":
        task.train_masker = build_masker(task.dictionary, task.mask_idx, CorruptionRule(0.0, 0.0), False, False)
    available = strategies(task.train_masker, args.segments, args.seed, model, criterion)
    names = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in names if s not in available]
    if unknown:
        sys.exit(f"--strategies: unknown {', '.join(unknown)}; valid: {', '.join(available)}")
    task.load_dataset(args.split)
    dataset = task.dataset(args.split)
    ids = list(range(min(args.batch_size, len(dataset))))
    batch = dataset.collater([dataset[i] for i in ids])
    tokens = batch["net_input"]["src_tokens"]
    params = selected_parameters(model, args.params)
    grads = measure_strategies(
        model, params, tokens, batch["id"].tolist(), task.dictionary.pad(), {n: available[n] for n in names}, args.draws
    )
    estimates = [estimate(name, g) for name, g in grads.items()]
    reference_draws = args.reference_draws or 4 * args.draws
    reference = measure_strategies(
        model, params, tokens, batch["id"].tolist(), task.dictionary.pad(),
        {"reference": uniform_reference(task.train_masker, args.segments, args.seed)}, reference_draws,
    )["reference"]  # fmt: skip
    if "random" not in grads:
        grads["random"] = measure_strategies(
            model, params, tokens, batch["id"].tolist(), task.dictionary.pad(), {"random": available["random"]}, args.draws
        )["random"]  # fmt: skip
    versus_uniform = against_uniform(grads, reference)
    result = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "split": args.split,
        "sequences": len(ids),
        "segments": args.segments,
        "ratio_per_mask": 1 / args.segments,
        "parameters": args.params,
        "parameter_count": sum(p.numel() for p in params),
        "draws": args.draws,
        "dropout": "off (model.eval())",
        "corruption": args.corruption,
        "reference": {"draws": reference_draws, "mean_gradient_sq_norm": reference.double().mean(0).pow(2).sum().item()},
        "strategies": [entry | versus_uniform[entry["strategy"]] for entry in as_dicts(estimates)],
    }
    if "random_k" in grads and "fully_explored" in grads:
        result["fully_explored_over_random_k"] = ratio_estimate(grads["fully_explored"], grads["random_k"])
    if args.hamming_curve:
        result["hamming_curve"] = hamming_curve(
            model, params, tokens, batch["id"].tolist(), task.train_masker, 1 / args.segments, args.pairs, args.seed
        )
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=2)
    for e in estimates:
        print(f"{e.strategy:28s} relative_variance {e.relative_variance:.4f}  95% CI [{e.ci_low:.4f}, {e.ci_high:.4f}]")
    for key, label in (
        ("fully_explored_over_random_k", "fully_explored / random_k"),
        ("mapnet_over_random", "mapnet / random"),
    ):
        if key in result:
            r = result[key]
            print(f"{label}: {r['ratio']:.4f}  95% CI [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
    for point in result.get("hamming_curve", []):
        print(
            f"overlap {point['overlap_fraction']:.2f}  H {point['mean_hamming']:6.2f}  "
            f"cov/var {point['covariance_over_variance']:.4f}  cos {point['cosine']:.4f}"
        )


if __name__ == "__main__":
    main()
