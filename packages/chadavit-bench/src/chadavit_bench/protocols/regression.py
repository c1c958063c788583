"""Regression probe: ridge regression on frozen, standardised features (NF-kB translocation ratio).

The ridge penalty is chosen by efficient leave-one-out cross-validation on the training split
(scikit-learn's RidgeCV), so the probe has no seed-dependent randomness; seeds only change the
low-data subsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import RidgeCV

from chadavit_bench.protocols.metrics import regression_metrics, standardise

REGRESSION_HEADS = ("ridge", "linear_mse")


@dataclass(frozen=True)
class RegressionConfig:
    alphas: Sequence[float] = tuple(10.0**p for p in range(-3, 5))
    # "ridge" (the default) or "linear_mse": the authors' nn.Linear + MSE head, AdamW, 150 epochs
    # (chadavit_bench.protocols.paper_heads), one fit per seed.
    head: str = "ridge"


def run_regression(
    train: np.ndarray,
    train_targets: np.ndarray,
    query: np.ndarray,
    query_targets: np.ndarray,
    config: RegressionConfig = RegressionConfig(),
) -> dict[str, float]:
    """R2, MSE, MAE and Pearson's r of the ridge predictions on the query split."""
    train_z, query_z = standardise(train, query)
    model = RidgeCV(alphas=tuple(config.alphas)).fit(train_z.astype(np.float64), train_targets)
    return regression_metrics(query_targets, model.predict(query_z.astype(np.float64)))
