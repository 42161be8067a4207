"""Mask-ratio schedules over updates (time-variant masking, MRD).

Every schedule is p(t) = start + (end − start) · progress(t / T), t the
update number (clipped to T). ``start`` is p(0) and ``end`` is p(T), except for the
two V/Λ shapes (``poly_asc``, ``poly_desc``), where ``end`` is the turning value
at T/2 and p(T) returns to ``start``. Defaults reproduce the reference
schedules of the MRD paper's code for a base ratio p (p = 0.15 gives the numbers in
brackets):

    constant        p                                              (0.15)
    linear          (1 − t/T) · 2p                                 (0.30 → 0.00)
    cosine          p · (1 + cos(π t/T)) + 0.02                    (0.32 → 0.02)
    asc             (t/T) · 2p                                     (0.00 → 0.30)
    square_above    2p + 0.01 − (t/T)² · 2p                        (0.31 → 0.01)
    square_below    2p · (1 − t/T)²                                (0.30 → 0.00)
    poly_asc        4p·t/T, then 4p·(1 − t/T) after T/2            (0 → 0.30 → 0)
    poly_desc       2p(1 − 2t/T) + 0.01, then 2p(2t/T − 1) + 0.01  (0.31 → 0.01 → 0.31)
    lin_warm_decay  0 → 2p linearly over W updates, then 2p → 0   (W = warmup)
    step            start until T/2, then end                      (0.30, then 0.15)
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

# progress(x): how far p has moved from `start` towards `end` at x = t / T
PROGRESS: Dict[str, Callable[[float], float]] = {
    "constant": lambda x: 0.0,
    "linear": lambda x: x,
    "cosine": lambda x: (1.0 - math.cos(math.pi * x)) / 2.0,
    "asc": lambda x: x,
    "square_above": lambda x: x * x,
    "square_below": lambda x: 1.0 - (1.0 - x) ** 2,
    "poly_asc": lambda x: 1.0 - abs(2.0 * x - 1.0),
    "poly_desc": lambda x: 1.0 - abs(2.0 * x - 1.0),
    "step": lambda x: 0.0 if x < 0.5 else 1.0,
}
SCHEDULES = tuple(PROGRESS) + ("lin_warm_decay",)


def reference_endpoints(name: str, base: float) -> Tuple[float, float]:
    """(start, end) of the reference schedule ``name`` for base ratio ``base``."""
    return {
        "constant": (base, base),
        "linear": (2 * base, 0.0),
        "cosine": (2 * base + 0.02, 0.02),
        "asc": (0.0, 2 * base),
        "square_above": (2 * base + 0.01, 0.01),
        "square_below": (2 * base, 0.0),
        "poly_asc": (0.0, 2 * base),
        "poly_desc": (2 * base + 0.01, 0.01),
        "lin_warm_decay": (2 * base, 0.0),
        "step": (2 * base, base),
    }[name]


def check_name(name: str):
    if name not in SCHEDULES:
        raise ValueError(f"`name` must be one of {', '.join(SCHEDULES)}, got {name!r}")


@dataclass(frozen=True)
class RatioSchedule:
    """p(t) for ``name`` between ``start`` and ``end`` over ``updates`` updates
    (``warmup`` updates of linear warm-up for ``lin_warm_decay``)."""

    name: str
    start: float
    end: float
    updates: int
    warmup: int = 0

    def __post_init__(self):
        check_name(self.name)
        for parameter, value in (("start", self.start), ("end", self.end)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"`{parameter}` must lie in [0, 1), got {value}")
        if self.name != "constant" and self.updates <= 0:
            raise ValueError(f"`name` {self.name} needs a length: `updates` must be > 0, got {self.updates}")
        if self.name == "lin_warm_decay" and not 0 < self.warmup < self.updates:
            raise ValueError(f"lin_warm_decay needs 0 < `warmup` < {self.updates}, got {self.warmup}")

    @classmethod
    def build(
        cls, name: str, base: float, updates: int, start: Optional[float] = None, end: Optional[float] = None, warmup: int = 0
    ) -> "RatioSchedule":
        """The reference schedule for ``base``, with ``start``/``end`` overriding
        its endpoints when given."""
        check_name(name)
        ref_start, ref_end = reference_endpoints(name, base)
        return cls(name, ref_start if start is None else start, ref_end if end is None else end, updates, warmup)

    def __call__(self, update: int) -> float:
        t = min(max(update, 0), self.updates)
        if self.name == "lin_warm_decay":
            if t < self.warmup:
                return self.start * t / self.warmup
            x = (t - self.warmup) / (self.updates - self.warmup)
            return self.start + (self.end - self.start) * x
        x = t / self.updates if self.updates > 0 else 0.0
        return self.start + (self.end - self.start) * PROGRESS[self.name](x)
