"""Per-iteration schedules as plain arrays, indexed by the global step (as in DINO's `utils`).

Arrays rather than stateful schedulers: a resumed run indexes the same array at its step, so the
schedules' position is the step itself and needs no state of its own.
"""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    """Linear warm-up from `warmup_start` to `base` over `warmup_epochs`, then cosine to `final`."""
    total = epochs * steps_per_epoch
    warmup = min(round(warmup_epochs * steps_per_epoch), total)
    ramp = np.linspace(warmup_start, base, warmup, endpoint=False) if warmup > 0 else np.array([])
    remaining = np.arange(total - warmup)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * remaining / max(len(remaining), 1)))
    schedule = np.concatenate([ramp, cosine])
    assert len(schedule) == total
    return schedule


def linear_warmup_then_constant(
    start: float, end: float, warmup_epochs: float, epochs: int, steps_per_epoch: int
) -> np.ndarray:
    """DINO's teacher temperature: linear from `start` to `end` over `warmup_epochs`, then `end`.

    A run shorter than the warm-up stops part-way up the ramp, as DINO's per-epoch array does.
    """
    warmup = round(warmup_epochs * steps_per_epoch)
    total = epochs * steps_per_epoch
    ramp = np.linspace(start, end, warmup) if warmup > 0 else np.array([])
    return np.concatenate([ramp, np.full(max(total - warmup, 0), end)])[:total]
