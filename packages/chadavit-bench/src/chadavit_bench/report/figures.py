"""The report's figures as PNG files, drawn with matplotlib's Agg backend (no display needed).

- Figure 1 style: headline scores of every model side by side, normalised 0 to 100.
- Figure 4 style: linear-probe accuracy against the fraction of training data.
- Figure 5 style: PCA and UMAP of the BBBC021 x Bray joint embedding.
- Figure 3 style: per-channel CLS attention over a few images.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from chadavit.atomic import atomic_write

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

DPI = 110
# PNG metadata without a version string: the same results draw byte-identical figures.
PNG_METADATA = {"Software": None}


def _save(figure: plt.Figure, path: Path) -> Path:
    try:
        return atomic_write(
            path,
            lambda tmp: figure.savefig(
                tmp, dpi=DPI, format="png", metadata=PNG_METADATA, bbox_inches="tight"
            ),
        )
    finally:
        plt.close(figure)


def _colours(models: list[str]) -> dict[str, tuple]:
    """One colour per model, the same in every figure (models in the run's order)."""
    palette = plt.get_cmap("tab10")
    return {model: palette(i % palette.N) for i, model in enumerate(models)}


def score_bars(scores: pd.DataFrame, path: Path, models: list[str]) -> Path:
    """`scores`: columns benchmark, model, score (0..100), std (0..100)."""
    benchmarks = list(dict.fromkeys(scores["benchmark"]))
    colours = _colours(models)
    models = [m for m in models if m in set(scores["model"])]
    width = 0.8 / max(len(models), 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(benchmarks) + 2), 4.2))
    positions = np.arange(len(benchmarks))
    for i, model in enumerate(models):
        part = scores[scores["model"] == model].set_index("benchmark").reindex(benchmarks)
        axis.bar(
            positions + (i - (len(models) - 1) / 2) * width,
            part["score"].fillna(0).to_numpy(),
            width,
            yerr=part["std"].fillna(0).to_numpy(),
            capsize=2,
            label=model,
            color=colours[model],
        )
    axis.set_xticks(positions, benchmarks, rotation=30, ha="right", fontsize=8)
    axis.set_ylim(0, 105)
    axis.set_ylabel("score (0-100)")
    axis.set_title("Headline score per benchmark")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def low_data_curves(curves: pd.DataFrame, path: Path, models: list[str]) -> Path:
    """`curves`: columns dataset, model, regime, mean, std (linear-probe accuracy, CLS features)."""
    datasets = list(dict.fromkeys(curves["dataset"]))
    colours = _colours(models)
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.0 * len(datasets), 3.4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        part = curves[curves["dataset"] == dataset]
        for model in models:
            line = part[part["model"] == model].sort_values("regime")
            if not line.empty:
                axis.errorbar(
                    100 * line["regime"], 100 * line["mean"], yerr=100 * line["std"], marker="o", label=model,
                    color=colours[model],
                )  # fmt: skip
        axis.set_xscale("log")
        axis.set_xticks([1, 10, 100], ["1 %", "10 %", "100 %"])
        axis.set_xlabel("training data used")
        axis.set_ylabel("accuracy (%)")
        axis.set_title(dataset)
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def joint_embedding(artifacts: list[Path], path: Path) -> Path:
    """One row per model: PCA and UMAP coloured by compound, marker by dataset."""
    figure, axes = plt.subplots(len(artifacts), 2, figsize=(10, 4.2 * len(artifacts)), squeeze=False)
    markers = ("o", "^", "s", "D")
    for row, artifact in zip(axes, artifacts, strict=True):
        with np.load(artifact, allow_pickle=False) as data:
            model = str(data["model"])
            compounds = data["compound"]
            datasets = data["dataset"]
            ratio = data["explained_variance"]
            projections = {"PCA": data["pca"], "UMAP": data["umap"]}
        palette = plt.get_cmap("tab10" if len(set(compounds)) <= 10 else "tab20")
        colour = {c: palette(i % palette.N) for i, c in enumerate(sorted(set(compounds)))}
        for axis, (name, xy) in zip(row, projections.items(), strict=True):
            for d_index, dataset in enumerate(sorted(set(datasets))):
                for compound in sorted(set(compounds)):
                    mask = (datasets == dataset) & (compounds == compound)
                    axis.scatter(
                        xy[mask, 0], xy[mask, 1], s=14, alpha=0.8, marker=markers[d_index % len(markers)],
                        color=colour[compound], label=f"{dataset} · {compound}",
                    )  # fmt: skip
            if name == "PCA":
                axis.set_xlabel(f"PC1 ({100 * ratio[0]:.0f} % variance)")
                axis.set_ylabel(f"PC2 ({100 * ratio[1]:.0f} % variance)")
            axis.set_title(f"{model}: {name}")
        row[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), ncol=1)
    return _save(figure, path)


def attention_grid(artifact: Path, path: Path) -> Path:
    """Rows: images; columns: channels; each cell the channel with its attention map overlaid."""
    with np.load(artifact, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        samples = [(m, data[f"image_{i}"], data[f"attention_{i}"]) for i, m in enumerate(meta["samples"])]
    columns = max(len(m["channels"]) for m, _, _ in samples)
    figure, axes = plt.subplots(
        len(samples), columns, figsize=(2.0 * columns, 2.1 * len(samples)), squeeze=False
    )
    for row, (info, image, attention) in zip(axes, samples, strict=True):
        size = image.shape[-1]
        # Nearest upsampling keeps the patch grid visible; one colour scale per image across channels.
        heat = F.interpolate(torch.from_numpy(attention)[None], size=(size, size), mode="nearest")[0].numpy()
        top = float(heat.max()) or 1.0
        for c, axis in enumerate(row):
            axis.axis("off")
            if c >= image.shape[0]:
                continue
            axis.imshow(image[c], cmap="gray", vmin=0, vmax=1)
            axis.imshow(heat[c], cmap="inferno", alpha=0.5, vmin=0, vmax=top)
            axis.set_title(f"{info['dataset']} · {info['channels'][c]}", fontsize=7)
    figure.suptitle(f"{meta['model']}: last-block CLS attention per channel", fontsize=9)
    return _save(figure, path)
