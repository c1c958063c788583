"""`OUT/report.md` and `OUT/report.html` from `OUT/results.parquet`, `OUT/run.json` and `OUT/artifacts/`.

The report can be rebuilt at any time (`chadavit-bench report OUT`): it reads only those files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chadavit.atomic import atomic_write_text
from chadavit_bench import __version__
from chadavit_bench.report import figures
from chadavit_bench.report.document import Block, Figure, Heading, Paragraph, Table, to_html, to_markdown
from chadavit_bench.results import read_results, summarise

TITLE = "ChAda-ViT downstream evaluation"
# (task, metric, short name) of the headline score of each benchmark, as in the paper's Figure 1.
HEADLINES = (
    ("knn", "accuracy", "kNN acc."),
    ("linear", "accuracy", "linear acc."),
    ("regression", "r2", "R2"),
    ("reconstruction", "r2", "recon. R2"),
    ("joint", "compound_transfer_accuracy", "compound transfer"),
)


class ReportError(FileNotFoundError):
    """The output folder holds no results to report."""


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    figures: list[Path]


def _fmt(mean: float, std: float, n: int) -> str:
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _preferred_features(part: pd.DataFrame, features: str = "cls") -> pd.DataFrame:
    """Rows of `features` (CLS: the paper's protocol) when the task has them, else its first kind."""
    kinds = list(dict.fromkeys(part["features"]))
    choice = features if features in kinds else kinds[0]
    return part[part["features"] == choice]


def headline_scores(summary: pd.DataFrame, features: str = "cls") -> pd.DataFrame:
    """benchmark, model, score and std on a 0 to 100 scale (accuracies and R2 x 100, clipped at 0).

    `features` picks the embedding (cls or tokens) where a task was run on several.
    """
    records = []
    for task, metric, short in HEADLINES:
        part = summary[(summary["task"] == task) & (summary["metric"] == metric) & (summary["regime"] == 1.0)]
        for dataset, by_dataset in part.groupby("dataset", sort=True):
            for _, row in _preferred_features(by_dataset, features).iterrows():
                records.append(
                    {
                        "benchmark": f"{dataset} {short}",
                        "model": row["model"],
                        "score": float(np.clip(100 * row["mean"], 0, 100)),
                        "std": float(100 * row["std"]),
                        "mean": row["mean"],
                        "n_seeds": row["n_seeds"],
                    }
                )
    return pd.DataFrame(records, columns=["benchmark", "model", "score", "std", "mean", "n_seeds"])


def _wide(summary: pd.DataFrame, index: list[str], models: list[str]) -> pd.DataFrame:
    """Rows `index`, one column per model, cells `mean ± std`."""
    cells = summary.assign(cell=[_fmt(m, s, n) for m, s, n in summary[["mean", "std", "n_seeds"]].to_numpy()])
    table = cells.pivot_table(index=index, columns="model", values="cell", aggfunc="first").reset_index()
    table.columns.name = None
    present = [m for m in models if m in table.columns]
    return table[[*index, *present]].fillna("")


def _model_table(run: dict) -> pd.DataFrame:
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


def _dataset_table(run: dict) -> pd.DataFrame:
    rows = [
        {
            "dataset": name,
            "task kind": d["kind"],
            "images": d["images"],
            "channels": ", ".join(d["channels"]),
            "fit / eval split": "all images"
            if d["kind"] == "joint"
            else f"{d['fit_split']} / {d['eval_split']}",
        }
        for name, d in sorted(run.get("datasets", {}).items())
    ]
    return pd.DataFrame(rows)


def _section(
    summary: pd.DataFrame, task: str, metrics: list[str] | None, index: list[str], models: list[str]
):
    part = summary[summary["task"] == task]
    if metrics is not None:
        part = part[part["metric"].isin(metrics)]
    return _wide(part, index, models) if not part.empty else None


def build_report(out: Path) -> ReportFiles:
    """Write report.md, report.html and the figures under `out/figures/`."""
    results = read_results(out)
    if results is None:
        raise ReportError(
            f"{out} has no results.parquet; run `chadavit-bench run-all` with --out {out} first"
        )
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    summary = summarise(results)
    models = [m["label"] for m in run.get("models", [])] or sorted(results["model"].unique())
    figure_dir = out / "figures"
    blocks: list[Block] = [Heading(TITLE, 1)]
    blocks.append(
        Paragraph(
            f"Written by chadavit-bench {__version__}. Every number is the mean over seeds "
            "(± standard deviation where there are several); all rows are in `results.csv` and "
            "`results.parquet`, the means in `summary.csv`."
        )
    )
    blocks += [Heading("Models"), Table(_model_table(run)), Heading("Datasets"), Table(_dataset_table(run))]
    made: list[Path] = []

    scores = headline_scores(summary)
    if not scores.empty:
        made.append(figures.score_bars(scores, figure_dir / "fig1_scores.png", models))
        blocks += [
            Heading("Headline scores (Figure 1)"),
            Paragraph(
                "Each benchmark's headline metric on a 0 to 100 scale: accuracy or R2 times 100, "
                "clipped at 0; CLS features, all training data."
            ),
            Figure(made[-1], "Headline scores per benchmark, models side by side"),
            Table(_wide(scores.assign(std=scores["std"] / 100), ["benchmark"], models)),
        ]

    knn = _section(summary, "knn", ["accuracy", "f1_macro"], ["dataset", "features", "metric"], models)
    if knn is not None:
        blocks += [
            Heading("kNN classification"),
            Paragraph("Cosine similarity, weighted vote, k = 20, T = 0.07."),
            Table(knn),
        ]

    linear = summary[(summary["task"] == "linear") & (summary["metric"] == "accuracy")]
    if not linear.empty:
        curves = pd.concat([_preferred_features(p) for _, p in linear.groupby("dataset", sort=True)])
        made.append(figures.low_data_curves(curves, figure_dir / "fig4_low_data.png", models))
        blocks += [
            Heading("Linear probe and low-data regimes (Figure 4)"),
            Paragraph(
                "A linear classifier on standardised frozen features, trained on a stratified, seeded "
                "fraction of the training split."
            ),
            Figure(made[-1], "Linear-probe accuracy against the fraction of training data (CLS features)"),
            Table(_wide(linear, ["dataset", "features", "regime"], models)),
        ]

    regression = _section(summary, "regression", None, ["dataset", "features", "metric"], models)
    if regression is not None:
        blocks += [
            Heading("Regression"),
            Paragraph("Ridge regression on standardised features."),
            Table(regression),
        ]

    reconstruction = _section(summary, "reconstruction", None, ["dataset", "features", "metric"], models)
    if reconstruction is not None:
        blocks += [
            Heading("Channel reconstruction"),
            Paragraph(
                "A convolutional decoder on the frozen embedding of DAPI and Tubulin predicts Actin; "
                "`*_mean_image` rows score the train split's mean image, the baseline to beat."
            ),
            Table(reconstruction),
        ]

    joint = _section(summary, "joint", None, ["dataset", "features", "metric"], models)
    artifacts = sorted((out / "artifacts" / "joint").glob("*.npz"))
    if joint is not None or artifacts:
        blocks.append(Heading("Joint embedding (Figure 5)"))
        blocks.append(
            Paragraph(
                "BBBC021 (3 channels) and Bray (5 channels) through the same encoder, shared compounds "
                "only. `pc1_dataset_accuracy`: how well PC1 alone separates the datasets; "
                "`pc12_compound_accuracy`: compounds from PC1 and PC2; `compound_transfer_accuracy`: "
                "kNN compound accuracy across datasets."
            )
        )
        if artifacts:
            made.append(figures.joint_embedding(artifacts, figure_dir / "fig5_joint_embedding.png"))
            blocks.append(
                Figure(made[-1], "PCA and UMAP of the joint embedding (colour: compound, marker: dataset)")
            )
        if joint is not None:
            blocks.append(Table(joint))

    attention = sorted((out / "artifacts" / "attention").glob("*.npz"))
    if attention:
        blocks.append(Heading("Attention maps (Figure 3)"))
        for artifact in attention:
            made.append(figures.attention_grid(artifact, figure_dir / f"fig3_attention_{artifact.stem}.png"))
            blocks.append(Figure(made[-1], f"Per-channel attention, {artifact.stem.rsplit('-', 1)[0]}"))

    skipped = run.get("skipped", [])
    if skipped:
        blocks += [Heading("Skipped"), Table(pd.DataFrame(skipped)[["task", "dataset", "model", "reason"]])]

    markdown_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(markdown_path, to_markdown(blocks, out))
    atomic_write_text(html_path, to_html(blocks, TITLE))
    return ReportFiles(markdown=markdown_path, html=html_path, figures=made)
