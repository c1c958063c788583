"""Two models head to head on the headline score of every benchmark both were run on.

`chadavit-bench compare OUT MODEL BASELINE` answers "does MODEL beat BASELINE here?": per
benchmark the two 0-100 scores, their difference, and whether it exceeds the seeds' spread. A
difference within the spread is a tie: the seeds cannot tell the two models apart there. Two models
whose rows were made under different settings (image size, intensity, protocol, seed count) are not
compared at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chadavit_bench.embed import FEATURE_KINDS
from chadavit_bench.report import ReportError, headline_scores
from chadavit_bench.results import SETTINGS, read_results, summarise


@dataclass(frozen=True)
class Verdict:
    """The outcome over all shared benchmarks."""

    model: str
    baseline: str
    wins: int
    losses: int
    ties: int
    mean_difference: float  # points on the 0-100 scale

    @property
    def benchmarks(self) -> int:
        return self.wins + self.losses + self.ties

    def sentence(self) -> str:
        return (
            f"{self.model} beats {self.baseline} on {self.wins} of {self.benchmarks} benchmarks "
            f"({_count(self.losses, 'loss', 'losses')}, {_count(self.ties, 'tie', 'ties')}), "
            f"mean difference {self.mean_difference:+.1f} points"
        )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# Scores closer than this (0-100 scale) count as a tie: below what the smallest eval splits resolve.
TIE_POINTS = 0.05


def compare_scores(scores: pd.DataFrame, model: str, baseline: str) -> pd.DataFrame:
    """One row per benchmark both models have: scores, difference and whether it beats seed noise."""
    known = set(scores["model"])
    missing = [name for name in (model, baseline) if name not in known]
    if missing:
        raise ValueError(f"no results for {missing}; models in these results: {sorted(known)}")
    wide = scores.pivot_table(
        index="benchmark", columns="model", values=["score", "std", "n_seeds"], aggfunc="first"
    )
    both = wide["score"][[model, baseline]].dropna()
    spread = wide["std"].reindex(both.index)[[model, baseline]].sum(axis=1)
    seeded = (wide["n_seeds"].reindex(both.index)[[model, baseline]] > 1).all(axis=1)
    difference = both[model] - both[baseline]
    # Beyond the spread: larger than the sum of both seed standard deviations (needs 2+ seeds each).
    noise = np.where(~seeded, "one seed", np.where(difference.abs() > spread, "beyond", "within"))
    tie = (difference.abs() <= TIE_POINTS).to_numpy() | (noise == "within")
    outcome = np.where(tie, "tie", np.where(difference > 0, "win", "loss"))
    return pd.DataFrame(
        {
            "benchmark": both.index,
            "model": both[model].to_numpy(),
            "baseline": both[baseline].to_numpy(),
            "difference": difference.to_numpy(),
            "seed_spread": noise,
            "outcome": outcome,
        }
    ).reset_index(drop=True)


def verdict(table: pd.DataFrame, model: str, baseline: str) -> Verdict:
    counts = table["outcome"].value_counts()
    return Verdict(
        model=model,
        baseline=baseline,
        wins=int(counts.get("win", 0)),
        losses=int(counts.get("loss", 0)),
        ties=int(counts.get("tie", 0)),
        mean_difference=float(table["difference"].mean()) if len(table) else 0.0,
    )


def compare_run(out: Path, model: str, baseline: str, features: str = "cls") -> tuple[pd.DataFrame, Verdict]:
    """Read OUT's results (from run-all or run) and compare `model` with `baseline` on `features`."""
    if features not in FEATURE_KINDS:
        raise ValueError(f"--features must be one of {list(FEATURE_KINDS)}, got {features!r}")
    results = read_results(out)
    if results is None or results.empty:
        raise ReportError(f"no results in {out}: run `chadavit-bench run-all ... --out {out}` first")
    summary = summarise(results)
    model, baseline = (resolve_label(summary, name) for name in (model, baseline))
    check_same_settings(summary, model, baseline)
    table = compare_scores(headline_scores(summary, features), model, baseline)
    return table, verdict(table, model, baseline)


def resolve_label(summary: pd.DataFrame, name: str) -> str:
    """`name` as a label of the summary: itself, or the one settings-labelled variant of it."""
    if name in set(summary["model"]):
        return name
    variants = sorted(set(summary.loc[summary["raw_model"] == name, "model"]))
    if len(variants) > 1:
        raise ValueError(
            f"{name} has results under {len(variants)} settings ({'; '.join(variants)}); name one of them"
        )
    return variants[0] if variants else name  # unknown names: compare_scores lists the known ones


def check_same_settings(summary: pd.DataFrame, model: str, baseline: str) -> None:
    """Refuse a head-to-head of rows made differently (the model checksum may differ, of course)."""
    fields = [f for f in SETTINGS if f != "model_checksum"]
    # Per dataset: under --protocol paper each dataset has its own intensity mode.
    made = {
        name: summary.loc[summary["model"] == name, ["dataset", *fields]].drop_duplicates()
        for name in (model, baseline)
    }
    if any(frame.empty or frame["dataset"].duplicated().any() for frame in made.values()):
        return  # absent (compare_scores names it) or already split by label
    both = made[model].merge(made[baseline], on="dataset", suffixes=("_a", "_b"))
    differ = list(
        dict.fromkeys(
            f"{f} {row[f + '_a']} vs {row[f + '_b']}"
            for row in both.to_dict("records")
            for f in fields
            if row[f + "_a"] != row[f + "_b"]
        )
    )
    if differ:
        raise ValueError(
            f"{model} and {baseline} were run under different settings ({', '.join(differ)}); "
            "rerun one of them with the other's settings"
        )
