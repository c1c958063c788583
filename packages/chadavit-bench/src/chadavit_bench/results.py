"""The result table: one row per model, dataset, task, features, regime, seed and metric."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from chadavit.atomic import atomic_write

COLUMNS = ("model", "dataset", "task", "features", "regime", "seed", "metric", "value")
GROUP = ["model", "dataset", "task", "features", "regime", "metric"]


@dataclass(frozen=True)
class Row:
    model: str
    dataset: str
    task: str
    features: str  # "cls", "tokens", or "-" where the task does not use the choice
    regime: float  # fraction of the training split (1.0 for tasks without low-data regimes)
    seed: int
    metric: str
    value: float


def rows_for(
    metrics: dict[str, float], model: str, dataset: str, task: str, features: str, regime: float, seed: int
) -> list[Row]:
    return [Row(model, dataset, task, features, regime, seed, name, float(v)) for name, v in metrics.items()]


def to_frame(rows: Iterable[Row]) -> pd.DataFrame:
    frame = pd.DataFrame([asdict(r) for r in rows], columns=list(COLUMNS))
    return frame.astype({"regime": float, "seed": int, "value": float})


def merge(previous: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """New rows replace earlier rows of the same model, dataset and task; the others are kept.

    So `chadavit-bench run knn` then `run linear` into one folder accumulate one result table.
    """
    if previous is None or previous.empty:
        return new.reset_index(drop=True)
    replaced = set(map(tuple, new[["model", "dataset", "task"]].drop_duplicates().to_numpy()))
    keep = ~previous[["model", "dataset", "task"]].apply(tuple, axis=1).isin(replaced)
    return pd.concat([previous[keep], new], ignore_index=True)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one seed) and seed count of every metric."""
    if results.empty:
        return pd.DataFrame(columns=[*GROUP, "mean", "std", "n_seeds"])
    grouped = results.groupby(GROUP, sort=True, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    return summary


def write_tables(out: Path, results: pd.DataFrame) -> pd.DataFrame:
    """results.parquet, results.csv and summary.csv under `out`; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    results = results.sort_values(list(COLUMNS[:-1]), kind="stable").reset_index(drop=True)
    summary = summarise(results)
    atomic_write(out / "results.parquet", lambda tmp: results.to_parquet(tmp, index=False))
    atomic_write(out / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
    atomic_write(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    return summary


def read_results(out: Path) -> pd.DataFrame | None:
    path = out / "results.parquet"
    return pd.read_parquet(path) if path.is_file() else None
