"""Low-data regimes: stratified, seeded subsets of a training split (paper's Figure 4: 1 %, 10 %, 100 %)."""

from __future__ import annotations

import numpy as np

FRACTIONS = (0.01, 0.1, 1.0)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a subset keeping `fraction` of every class (at least one per class).

    Per-class rounding keeps the class balance of the full split, and the one-per-class floor keeps
    every class learnable at 1 %, where rare classes would otherwise vanish.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen))


def random_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a seeded subset of `fraction` of n items (at least one), for regression."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(n)
    count = max(1, round(fraction * n))
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
