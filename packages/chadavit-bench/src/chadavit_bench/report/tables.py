"""Summary rows as report tables: one row per dataset/features/metric, one column per model."""

from __future__ import annotations

import numpy as np
import pandas as pd

WARNING_MARK = " ⚠"  # after a cell whose evaluation was flagged (see the report's Warnings)


def cell(mean: float, std: float, n: int, digits: int = 3) -> str:
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def preferred_features(part: pd.DataFrame, features: str = "cls") -> pd.DataFrame:
    """Rows of `features` (CLS: the paper's protocol) when the task has them, else its first kind."""
    kinds = list(dict.fromkeys(part["features"]))
    choice = features if features in kinds else kinds[0]
    return part[part["features"] == choice]


def wide(summary: pd.DataFrame, index: list[str], models: list[str], digits: int = 3) -> pd.DataFrame:
    """Rows `index`, one column per model, cells `mean ± std` (marked when the summary flags them)."""
    flagged = summary["warning"].fillna("") != "" if "warning" in summary else np.zeros(len(summary), bool)
    cells = [
        cell(m, s, n, digits) + (WARNING_MARK if f else "")
        for (m, s, n), f in zip(summary[["mean", "std", "n_seeds"]].to_numpy(), flagged, strict=True)
    ]
    table = summary.assign(cell=cells).pivot_table(
        index=index, columns="model", values="cell", aggfunc="first"
    )
    table = table.reset_index()
    table.columns.name = None
    present = [m for m in models if m in table.columns]
    return table[[*index, *present]].fillna("")


def task_table(
    summary: pd.DataFrame, task: str, metrics: list[str] | None, index: list[str], models: list[str]
) -> pd.DataFrame | None:
    """The task's rows (optionally only `metrics`) as a wide table, or None when it has none."""
    part = summary[summary["task"] == task]
    if metrics is not None:
        part = part[part["metric"].isin(metrics)]
    return wide(part, index, models) if not part.empty else None


def model_table(run: dict) -> pd.DataFrame:
    rows = [
        {
            "model": m["label"],
            "source": m["source"],
            "architecture": m.get("name") or m["architecture"],
            "width": m["embed_dim"],
            "parameters": f"{m['parameters']:,}",
            "weights sha256": m["checksum"][:12],
        }
        for m in run.get("models", [])
    ]
    return pd.DataFrame(rows)


def dataset_table(run: dict) -> pd.DataFrame:
    rows = [
        {
            "dataset": name,
            "task kind": d["kind"],
            "images": d["images"],
            "channels": ", ".join(d["channels"]),
            "fit / eval split": "all images"
            if d["kind"] == "joint"
            else f"{d['fit_split']} / {d['eval_split']}",
            "intensity": d.get("intensity", "unrecorded"),  # absent from run.json before it was kept
        }
        for name, d in sorted(run.get("datasets", {}).items())
    ]
    return pd.DataFrame(rows)
