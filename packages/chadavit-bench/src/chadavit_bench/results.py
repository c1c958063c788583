"""The result table: one row per model, dataset, task, features, regime, seed and metric.

Each row also records the settings that shaped its number (`SETTINGS`: image size, intensity mode,
protocol digest, seed count, model checksum), so that rows made differently are never averaged or
shown side by side as if they were one measurement (`summarise` names the setting in the label).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow

from chadavit.atomic import atomic_write

MEASURE = ("model", "dataset", "task", "features", "regime", "seed", "metric", "value")
# How the row was made: --img-size, --intensity, a digest of the protocol settings, --seeds, and the
# sha256 of the model's configuration and weights.
SETTINGS = ("img_size", "intensity", "protocol", "seeds", "model_checksum")
COLUMNS = (*MEASURE, *SETTINGS)
GROUP = ["model", "dataset", "task", "features", "regime", "metric", *SETTINGS]
TEXT_COLUMNS = ("model", "dataset", "task", "features", "metric", "intensity", "protocol", "model_checksum")
NUMBER_COLUMNS = ("regime", "seed", "value", "img_size", "seeds")
# Tables written before the settings were recorded: their rows say so instead of guessing.
UNRECORDED = {
    "img_size": 0,
    "intensity": "unrecorded",
    "protocol": "unrecorded",
    "seeds": 0,
    "model_checksum": "unrecorded",
}
FLAG_KEY = ["model", "dataset", "task", "features"]  # a warning applies to every row of this key


class ResultsError(ValueError):
    """An existing results table that cannot be read or does not have the result table's columns."""


@dataclass(frozen=True)
class Settings:
    """What shaped a model's rows in one run (stamped on every row by the runner)."""

    img_size: int
    intensity: str
    protocol: str
    seeds: int
    model_checksum: str


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


_TYPES = {"regime": float, "seed": int, "value": float, "img_size": int, "seeds": int}


def to_frame(rows: Iterable[Row], settings: Settings | None = None) -> pd.DataFrame:
    """Rows as a table; `settings` fills the setting columns (unrecorded without it)."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=list(MEASURE))
    stamp = asdict(settings) if settings is not None else UNRECORDED
    for column in SETTINGS:
        frame[column] = pd.Series([stamp[column]] * len(frame), dtype=object)
    return frame.astype(_TYPES)


REPLACE_KEY = ["model", "dataset", "task", *SETTINGS]


def merge(previous: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """New rows replace earlier rows of the same model, dataset, task and settings; others are kept.

    So `chadavit-bench run knn` then `run linear` into one folder accumulate one result table, and
    `run knn --img-size 64` into a folder of 32 px results adds 64 px rows beside the 32 px ones.
    """
    if previous is None or previous.empty:
        return new.reset_index(drop=True)
    replaced = set(map(tuple, new[REPLACE_KEY].drop_duplicates().to_numpy()))
    keep = ~previous[REPLACE_KEY].apply(tuple, axis=1).isin(replaced)
    return pd.concat([previous[keep], new], ignore_index=True)


def setting_label(row: Mapping[str, object], fields: Sequence[str]) -> str:
    """ " · 64 px · intensity=dtype" style suffix naming the settings `fields` of one row."""
    parts = []
    for field in fields:
        value = row[field]
        if field == "img_size":
            parts.append(f"{value} px" if value else "size unrecorded")
        elif field == "seeds":
            parts.append(f"{value} seeds" if value else "seeds unrecorded")
        elif field == "model_checksum":
            parts.append(f"weights {str(value)[:8]}")
        else:
            parts.append(f"{field}={value}")
    return "".join(f" · {p}" for p in parts)


def distinguish_settings(summary: pd.DataFrame) -> pd.DataFrame:
    """Model labels that name the settings in which the table's rows differ.

    A setting that varies anywhere in the table (32 and 64 px, two protocols...) is appended to
    every model label ("random · 32 px"), so no table or figure puts numbers made differently side
    by side under plain names; a model whose weights changed between runs also gets its checksum.
    `raw_model` keeps the name the rows were run under.
    """
    summary = summary.assign(raw_model=summary["model"])
    if summary.empty:
        return summary
    shared = [f for f in SETTINGS if f != "model_checksum" and _varies(summary, f)]
    reweighted = set(summary.groupby("raw_model")["model_checksum"].nunique().loc[lambda n: n > 1].index)
    labels = []
    for row in summary.to_dict("records"):
        fields = shared + (["model_checksum"] if row["raw_model"] in reweighted else [])
        labels.append(row["raw_model"] + setting_label(row, fields))
    return summary.assign(model=labels)


def _varies(summary: pd.DataFrame, field: str) -> bool:
    """Whether `field` differs between rows that could sit side by side. The intensity mode is
    compared within each dataset: `--protocol paper` reads each dataset its own way, the same for
    every model."""
    if field == "intensity":
        return bool(summary.groupby("dataset")[field].nunique().max() > 1)
    return bool(summary[field].nunique() > 1)


def summarise(results: pd.DataFrame, warnings: Sequence[Mapping[str, str]] = ()) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one seed) and seed count of every metric.

    `warning`: the reasons (run.json's `warnings`) why a row's number means less than it seems,
    joined by "; ", or "" when there is none.
    """
    if results.empty:
        return pd.DataFrame(columns=[*GROUP, "mean", "std", "n_seeds", "warning", "raw_model"])
    grouped = results.groupby(GROUP, sort=True, dropna=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    reasons: dict[tuple, list[str]] = {}
    for flag in warnings:
        reasons.setdefault(tuple(flag[k] for k in FLAG_KEY), []).append(flag["reason"])
    summary["warning"] = [
        "; ".join(reasons.get(tuple(key), [])) for key in summary[FLAG_KEY].itertuples(index=False)
    ]
    return distinguish_settings(summary)


def write_tables(
    out: Path, results: pd.DataFrame, warnings: Sequence[Mapping[str, str]] = ()
) -> pd.DataFrame:
    """results.parquet, results.csv and summary.csv under `out`; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    order = [c for c in COLUMNS if c != "value"]
    results = results.sort_values(order, kind="stable").reset_index(drop=True)
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
    missing = [c for c in MEASURE if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path} is not a chadavit-bench result table: no column(s) {missing}")
    for column in SETTINGS:  # a table from before the settings were recorded
        if column not in frame.columns:
            frame[column] = UNRECORDED[column]
    for column in TEXT_COLUMNS:
        if not frame[column].map(lambda v: isinstance(v, str)).all():
            raise ResultsError(f"{path}: column {column!r} must hold text only")
    for column in NUMBER_COLUMNS:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            raise ResultsError(f"{path}: column {column!r} must hold numbers, not {frame[column].dtype}")
    if not frame["seed"].map(lambda v: float(v).is_integer()).all():
        raise ResultsError(f"{path}: column 'seed' must hold whole numbers")
    return frame[list(COLUMNS)].astype(_TYPES)
