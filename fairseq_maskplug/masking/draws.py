"""Random draws for one masking call: seeded on the CPU, used on any device.

Masks are a pure function of (seed, update number, the batch's sample ids): the
generator is seeded from a hash of those, every draw is made on the CPU with a
fixed shape, and only then moved to the tokens' device. The same batch therefore
gets the same masks on CPU and GPU, and a resumed run draws what the
uninterrupted run would have drawn.
"""

import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch


def seeded_generator(seed: int, update_num: int, sample_ids: Sequence[int], stream: str = "train") -> torch.Generator:
    """A CPU generator whose state depends only on the arguments.

    ``stream`` separates independent uses of the same batch (training masks,
    the fixed validation mask, ...).
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{stream}:{int(seed)}:{int(update_num)}:".encode())
    digest.update(torch.as_tensor(list(sample_ids), dtype=torch.int64).numpy().tobytes())
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1))
    return generator


@dataclass
class MaskDraws:
    """Uniform and categorical draws for a (B, L) batch, all on one device.

    unit_scores: (B, L) float64 in [0, 1), the order in which units are chosen.
    rounding_noise: (B,) float64 in [0, 1), for stochastic rounding of counts.
    decision_noise: (B, L) float64 in [0, 1), for the 80/10/10 decision.
    random_tokens: (B, L) long, replacement ids (None when never needed).
    """

    unit_scores: torch.Tensor
    rounding_noise: torch.Tensor
    decision_noise: torch.Tensor
    random_tokens: Optional[torch.Tensor]

    @classmethod
    def draw(
        cls,
        generator: torch.Generator,
        shape,
        replacement_weights: Optional[torch.Tensor],
        device,
    ) -> "MaskDraws":
        """Draw on the CPU in a fixed order, then move to ``device``.

        ``replacement_weights`` (V,) are the unnormalised probabilities of the
        random replacement ids; ``None`` skips that draw.
        """
        batch, length = shape
        unit_scores = torch.rand(batch, length, generator=generator, dtype=torch.float64)
        rounding_noise = torch.rand(batch, generator=generator, dtype=torch.float64)
        decision_noise = torch.rand(batch, length, generator=generator, dtype=torch.float64)
        random_tokens = None
        if replacement_weights is not None:
            random_tokens = torch.multinomial(
                replacement_weights, batch * length, replacement=True, generator=generator
            ).view(batch, length)
        return cls(
            unit_scores.to(device),
            rounding_noise.to(device),
            decision_noise.to(device),
            None if random_tokens is None else random_tokens.to(device),
        )
