"""Moving tokens between the full sequence and the encoder's shorter input.

MAE-LM's encoder sees only the positions that are not ``<mask>``: they are
gathered, in order, to the front of each row; the encoder's outputs are
scattered back to exactly those positions. Index arithmetic only, so any
dtype (fp16 included) passes through unchanged.
"""

from dataclasses import dataclass

import torch


@dataclass
class KeptLayout:
    """Where the kept positions of a (B, L) batch go.

    index: (B, K) long, the original position of each gathered slot (K = the
        largest number of kept positions in a row); slots past a row's count
        point at position 0 and are invalid.
    valid: (B, K) bool, which gathered slots hold a kept position.
    kept: (B, L) bool, the kept positions in the full layout.
    """

    index: torch.Tensor
    valid: torch.Tensor
    kept: torch.Tensor


def kept_layout(kept: torch.Tensor) -> KeptLayout:
    """The layout that gathers the True positions of ``kept`` (B, L), in
    their original order, to the front of each row."""
    counts = kept.sum(dim=1)
    width = int(counts.max()) if kept.numel() else 0
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=kept.device).unsqueeze(0) < counts.unsqueeze(1)
    return KeptLayout(torch.where(valid, order, torch.zeros_like(order)), valid, kept)


def gather_kept(values: torch.Tensor, layout: KeptLayout, fill) -> torch.Tensor:
    """(B, K, ...) the kept entries of ``values`` (B, L, ...), ``fill`` in
    invalid slots."""
    index = layout.index
    if values.dim() > 2:
        index = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
    gathered = values.gather(1, index)
    valid = layout.valid.view(*layout.valid.shape, *([1] * (values.dim() - 2)))
    return torch.where(valid, gathered, torch.full_like(gathered, fill))


def scatter_kept(gathered: torch.Tensor, layout: KeptLayout, background: torch.Tensor) -> torch.Tensor:
    """``background`` (B, L, ...) with the valid slots of ``gathered``
    (B, K, ...) written back to their original positions (inverse of
    :func:`gather_kept` on the kept positions)."""
    out = background.clone()
    out[layout.kept] = gathered[layout.valid].to(out.dtype)
    return out
