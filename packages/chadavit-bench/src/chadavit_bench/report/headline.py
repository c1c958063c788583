"""Headline scores (the paper's Figure 1): each task's headline metric per dataset, on a 0-100 scale."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chadavit_bench.report.tables import preferred_features

COLUMNS = ["benchmark", "model", "score", "std", "mean", "n_seeds", "warning"]


def headline_scores(summary: pd.DataFrame, features: str = "cls") -> pd.DataFrame:
    """benchmark, model, score and std on a 0 to 100 scale (accuracies and R2 x 100, clipped at 0).

    `features` picks the embedding (cls or tokens) where a task was run on several. Scores that are
    not numbers (a model whose embeddings were NaN) are left out; the report's warnings name them.
    """
    # Imported here: task modules import the report's helpers, so the registry cannot be read at import.
    from chadavit_bench.tasks import REGISTRY

    records = []
    for task in REGISTRY.values():
        if task.headline is None:
            continue
        part = summary[
            (summary["task"] == task.name)
            & (summary["metric"] == task.headline.metric)
            & (summary["regime"] == 1.0)
        ]
        for dataset, by_dataset in part.groupby("dataset", sort=True):
            for _, row in preferred_features(by_dataset, features).iterrows():
                if not np.isfinite(row["mean"]):
                    continue
                records.append(
                    {
                        "benchmark": f"{dataset} {task.headline.label}",
                        "model": row["model"],
                        "score": float(np.clip(100 * row["mean"], 0, 100)),
                        "std": float(100 * row["std"]),
                        "mean": row["mean"],
                        "n_seeds": row["n_seeds"],
                        "warning": row.get("warning", "") or "",
                    }
                )
    return pd.DataFrame(records, columns=COLUMNS)
