"""The result table: one row per model, dataset, task, features, regime, seed and metric."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow

from chadavit.atomic import atomic_write

COLUMNS = ("model", "dataset", "task", "features", "regime", "seed", "metric", "value")
GROUP = ["model", "dataset", "task", "features", "regime", "metric"]
TEXT_COLUMNS = ("model", "dataset", "task", "features", "metric")
NUMBER_COLUMNS = ("regime", "seed", "value")
FLAG_KEY = ["model", "dataset", "task", "features"]  # a warning applies to every row of this key


class ResultsError(ValueError):
    """An existing results table that cannot be read or does not have the result table's columns."""


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


def summarise(results: pd.DataFrame, warnings: Sequence[Mapping[str, str]] = ()) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one seed) and seed count of every metric.

    `warning`: the reasons (run.json's `warnings`) why a row's number means less than it seems,
    joined by "; ", or "" when there is none.
    """
    if results.empty:
        return pd.DataFrame(columns=[*GROUP, "mean", "std", "n_seeds", "warning"])
    grouped = results.groupby(GROUP, sort=True, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    reasons: dict[tuple, list[str]] = {}
    for flag in warnings:
        reasons.setdefault(tuple(flag[k] for k in FLAG_KEY), []).append(flag["reason"])
    summary["warning"] = [
        "; ".join(reasons.get(tuple(key), [])) for key in summary[FLAG_KEY].itertuples(index=False)
    ]
    return summary


def write_tables(
    out: Path, results: pd.DataFrame, warnings: Sequence[Mapping[str, str]] = ()
) -> pd.DataFrame:
    """results.parquet, results.csv and summary.csv under `out`; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    results = results.sort_values(list(COLUMNS[:-1]), kind="stable").reset_index(drop=True)
    summary = summarise(results, warnings)
    atomic_write(out / "results.parquet", lambda tmp: results.to_parquet(tmp, index=False))
    atomic_write(out / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
    atomic_write(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    return summary


def read_results(out: Path) -> pd.DataFrame | None:
    """OUT's result table, None when there is none; `ResultsError` naming the file when it is unusable."""
    path = out / "results.parquet"
    if not path.exists():
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        raise ResultsError(
            f"{path} cannot be read as a parquet table ({error}); move it away or choose another folder"
        ) from error
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} is not a chadavit-bench result table: no column(s) {missing}")
    for column in TEXT_COLUMNS:
        if not frame[column].map(lambda v: isinstance(v, str)).all():
            raise ResultsError(f"{path}: column {column!r} must hold text only")
    for column in NUMBER_COLUMNS:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise ResultsError(f"{path}: column {column!r} must hold numbers, not {frame[column].dtype}")
    if not frame["seed"].map(lambda v: float(v).is_integer()).all():
        raise ResultsError(f"{path}: column 'seed' must hold whole numbers")
    return frame[list(COLUMNS)].astype({"regime": float, "seed": int, "value": float})
