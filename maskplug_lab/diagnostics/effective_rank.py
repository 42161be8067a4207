"""Effective rank of token representations per encoder layer (MAE-LM's
claim: its encoder's representations have a higher rank than RoBERTa's).

For a checkpoint and held-out text: the vectors of real tokens (not ``<s>``,
``</s>``, padding or ``<mask>``) at every encoder layer, for inputs with the
fixed standard 15 % mask and without any mask; for a model that sees
``<mask>`` (RoBERTa), also the ``<mask>``-token vectors and the principal
angles between the two subspaces. MAE-LM's encoder never sees ``<mask>``: its
"with mask" condition is its pre-training input, the unmasked tokens only.

Measures of a centred (N, d) matrix with singular values σ:
rank@τ = min{k : Σ_{j≤k} σ_j² / Σ σ_j² ≥ τ} for τ = 0.9 and 0.99, and the
entropy effective rank exp(−Σ π_j log π_j), π_j = σ_j / Σ σ.

    python scripts/effective_rank.py --data DIR --checkpoint CKPT [--checkpoint CKPT2] --json OUT
    python -m maskplug_lab.diagnostics.effective_rank ...   (the same)
"""

import argparse
import json
import logging
import math
from typing import Dict, List

import torch

from fairseq_maskplug.modules.mae_layout import gather_kept, kept_layout
from fairseq_maskplug.scoring.validation import load_for_masking


def rank_measures(vectors: torch.Tensor) -> Dict[str, float]:
    """rank@0.9, rank@0.99 and entropy rank of the rows of ``vectors`` (N, d)."""
    centred = vectors.double() - vectors.double().mean(0)
    singular = torch.linalg.svdvals(centred)
    energy = singular.pow(2).cumsum(0) / singular.pow(2).sum()
    shares = singular / singular.sum()
    shares = shares[shares > 0]
    return {
        "rank_90": int((energy < 0.9).sum().item()) + 1,
        "rank_99": int((energy < 0.99).sum().item()) + 1,
        "entropy_rank": math.exp(-(shares * shares.log()).sum().item()),
        "tokens": vectors.size(0),
        "dimension": vectors.size(1),
    }


def principal_angles(a: torch.Tensor, b: torch.Tensor, dims_a: int, dims_b: int) -> List[float]:
    """Principal angles (degrees, ascending) between the top ``dims_a``
    principal directions of ``a`` (N, d) and the top ``dims_b`` of ``b`` (M, d)."""
    basis_a = torch.linalg.svd(a.double() - a.double().mean(0), full_matrices=False).Vh[:dims_a]
    basis_b = torch.linalg.svd(b.double() - b.double().mean(0), full_matrices=False).Vh[:dims_b]
    cosines = torch.linalg.svdvals(basis_a @ basis_b.T).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cosines)).tolist()


class LayerCollector:
    """Accumulates per-layer vectors, up to ``limit`` rows each."""

    def __init__(self, limit: int):
        self.limit = limit
        self.layers: List[List[torch.Tensor]] = []

    def add(self, states: List[torch.Tensor], select: torch.Tensor):
        """``states``: per layer (T, B, C); ``select`` (B, T) bool rows to keep."""
        if not self.layers:
            self.layers = [[] for _ in states]
        for store, state in zip(self.layers, states):
            if sum(x.size(0) for x in store) < self.limit:
                store.append(state.transpose(0, 1)[select].float().cpu())

    def full(self) -> bool:
        return bool(self.layers) and sum(x.size(0) for x in self.layers[0]) >= self.limit

    def matrices(self) -> List[torch.Tensor]:
        return [torch.cat(store)[: self.limit] for store in self.layers]


def is_mae_lm(model) -> bool:
    return hasattr(model.encoder, "masked_lm")


def layer_states(model, tokens: torch.Tensor, special: torch.Tensor, mask_idx: int, removes_mask: bool):
    """(states per layer (T, B, C), real-token selector (B, T), mask selector
    or None). ``special`` holds <s>, </s> and, last, <pad>."""
    if removes_mask and (tokens == mask_idx).any():
        pad = int(special[-1])
        layout = kept_layout(~tokens.eq(mask_idx) & tokens.ne(pad))  # the layout MAE-LM's encoder sees
        encoder_tokens = gather_kept(tokens, layout, pad)
        _, extra = model.encoder.masked_lm(tokens, masked_tokens=tokens.eq(mask_idx), return_all_hiddens=True)
        return extra["inner_states"], layout.valid & ~torch.isin(encoder_tokens, special), None
    _, extra = model(tokens, features_only=True, return_all_hiddens=True)
    real = ~torch.isin(tokens, special) & tokens.ne(mask_idx)
    return extra["inner_states"], real, tokens.eq(mask_idx)


def measure_checkpoint(task, model, split: str, max_tokens: int, batch_size: int = 32) -> Dict:
    """Per-layer rank measures for inputs with and without ``<mask>``."""
    d = task.dictionary
    special = torch.tensor([d.bos(), d.eos(), d.pad()])
    removes_mask = is_mae_lm(model)
    with_mask, without_mask, mask_vectors = LayerCollector(max_tokens), LayerCollector(max_tokens), LayerCollector(max_tokens)
    batches = task.get_batch_iterator(
        task.dataset(split), max_sentences=batch_size, max_positions=task.max_positions(), ignore_invalid_inputs=True, seed=1
    ).next_epoch_itr(shuffle=False)
    model.eval()
    with torch.no_grad():
        for sample in batches:
            clean = sample["net_input"]["src_tokens"]
            masked = task.validation_masks(sample).src_tokens
            states, real, _ = layer_states(model, clean, special, task.mask_idx, removes_mask)
            without_mask.add(states, real)
            states, real, is_mask = layer_states(model, masked, special, task.mask_idx, removes_mask)
            with_mask.add(states, real)
            if is_mask is not None:
                mask_vectors.add(states, is_mask)
            if without_mask.full() and with_mask.full():
                break
    layers = []
    for i, (a, c) in enumerate(zip(with_mask.matrices(), without_mask.matrices())):
        layer = {"layer": i, "with_mask_real": rank_measures(a), "without_mask_real": rank_measures(c)}
        if mask_vectors.layers:
            m = mask_vectors.matrices()[i]
            layer["mask_tokens"] = rank_measures(m)
            layer["principal_angles_deg"] = principal_angles(
                a, m, layer["with_mask_real"]["rank_90"], layer["mask_tokens"]["rank_90"]
            )
        layers.append(layer)
    return {"model": "mae_lm" if removes_mask else "roberta", "split": split, "layers": layers}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", action="append", required=True, help="repeat to compare checkpoints")
    parser.add_argument("--json", required=True)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--max-tokens", type=int, default=10000, help="token vectors per layer and condition")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, force=True)
    results = {}
    for checkpoint in args.checkpoint:
        task, model = load_for_masking(checkpoint, args.data)
        task.load_dataset(args.split)
        results[checkpoint] = measure_checkpoint(task, model, args.split, args.max_tokens)
        print(f"{checkpoint} ({results[checkpoint]['model']})")
        print("  layer  with<mask>: r90 r99 entropy | without: r90 r99 entropy | <mask> tokens r90 | mean angle")
        for layer in results[checkpoint]["layers"]:
            w, c = layer["with_mask_real"], layer["without_mask_real"]
            extra = ""
            if "mask_tokens" in layer:
                angles = layer["principal_angles_deg"]
                extra = f" | {layer['mask_tokens']['rank_90']:4d} | {sum(angles) / len(angles):5.1f}"
            print(
                f"  {layer['layer']:5d}  {w['rank_90']:4d} {w['rank_99']:4d} {w['entropy_rank']:7.2f} | "
                f"{c['rank_90']:4d} {c['rank_99']:4d} {c['entropy_rank']:7.2f}{extra}"
            )
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
