"""Joint embedding of two datasets with different channels (the paper's Figure 5: BBBC021 x Bray).

Both datasets go through the same encoder; only the compounds they share are kept. The embeddings
are z-scored together and projected with PCA and UMAP. Reported:
- `pc1_dataset_accuracy`: cross-validated logistic regression predicting the dataset from PC1 alone
  (1.0: PC1 separates the datasets; 0.5: it does not);
- `pc12_compound_accuracy`: the same, predicting the compound from PC1 and PC2;
- `silhouette_dataset`, `silhouette_compound`: cosine silhouettes of the full embedding;
- `compound_transfer_accuracy`: kNN compound accuracy across datasets (fit on one, query the
  other, mean of both directions): do the same compounds land together whatever the channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

from chadavit_bench.protocols.knn import knn_predict


class JointEmbeddingError(ValueError):
    """The two datasets cannot be embedded jointly (different widths, too few shared compounds)."""


@dataclass(frozen=True)
class JointConfig:
    max_per_group: int = 200  # images per (dataset, compound), so one big dataset cannot dominate
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    transfer_k: int = 5
    folds: int = 5


@dataclass(frozen=True)
class JointResult:
    metrics: dict[str, float]
    pca: np.ndarray  # (N, 2)
    umap: np.ndarray | None  # (N, 2), None when not asked for
    dataset: np.ndarray  # (N,) dataset name per point
    compound: np.ndarray  # (N,) compound per point
    explained_variance: tuple[float, float]


def normalise_compound(name: str) -> str:
    return " ".join(str(name).casefold().split())


def _cv_accuracy(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    _, counts = np.unique(y, return_counts=True)
    splits = min(folds, int(counts.min()))
    if len(counts) < 2 or splits < 2:
        return float("nan")
    cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=cv)
    return float(np.mean(scores))


def _umap(x: np.ndarray, config: JointConfig, seed: int) -> np.ndarray:
    import warnings

    import umap  # imported here: loading numba costs seconds, paid only by the joint task

    with warnings.catch_warnings():
        # umap-learn warns that a fixed random_state disables parallelism: that is the point.
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(
            n_neighbors=max(2, min(config.umap_neighbors, len(x) - 1)),
            min_dist=config.umap_min_dist,
            random_state=seed,
            n_jobs=1,
        )
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def shared_subset(
    compounds_a: np.ndarray, compounds_b: np.ndarray, max_per_group: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Positions in A and in B of images whose compound both datasets have, capped per compound."""
    norm_a = np.array([normalise_compound(c) for c in compounds_a])
    norm_b = np.array([normalise_compound(c) for c in compounds_b])
    shared = sorted(set(norm_a) & set(norm_b))
    rng = np.random.default_rng(seed)
    picks: list[np.ndarray] = []
    for norm in (norm_a, norm_b):
        chosen = []
        for compound in shared:
            members = np.flatnonzero(norm == compound)
            if len(members) > max_per_group:
                members = np.sort(rng.choice(members, size=max_per_group, replace=False))
            chosen.append(members)
        picks.append(np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64))
    return picks[0], picks[1], shared


def run_joint(
    embeddings: dict[str, np.ndarray],
    compounds: dict[str, np.ndarray],
    seed: int = 0,
    config: JointConfig = JointConfig(),
    with_umap: bool = True,
) -> JointResult:
    """Joint-embedding metrics and 2-D projections for exactly two datasets."""
    if len(embeddings) != 2:
        raise JointEmbeddingError(f"the joint embedding compares two datasets, got {sorted(embeddings)}")
    (name_a, a), (name_b, b) = embeddings.items()
    compounds = {name: np.asarray(values, dtype=str) for name, values in compounds.items()}
    if a.shape[1] != b.shape[1]:
        raise JointEmbeddingError(
            f"{name_a} and {name_b} embeddings differ in width ({a.shape[1]} vs {b.shape[1]}): "
            "this encoder does not map different channel counts to one space"
        )
    pick_a, pick_b, shared = shared_subset(compounds[name_a], compounds[name_b], config.max_per_group, seed)
    if len(shared) < 2:
        raise JointEmbeddingError(
            f"{name_a} and {name_b} share {len(shared)} compounds; the joint embedding needs at least 2"
        )
    x = np.concatenate([a[pick_a], b[pick_b]]).astype(np.float64)
    dataset = np.array([name_a] * len(pick_a) + [name_b] * len(pick_b))
    compound = np.array(
        [normalise_compound(c) for c in compounds[name_a][pick_a]]
        + [normalise_compound(c) for c in compounds[name_b][pick_b]]
    )
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)
    pca = PCA(n_components=2, random_state=seed).fit(z)
    projected = pca.transform(z)
    metrics: dict[str, Any] = {
        "pc1_dataset_accuracy": _cv_accuracy(projected[:, :1], dataset, config.folds, seed),
        "pc12_compound_accuracy": _cv_accuracy(projected, compound, config.folds, seed),
        "silhouette_dataset": float(silhouette_score(z, dataset, metric="cosine")),
        "silhouette_compound": float(silhouette_score(z, compound, metric="cosine")),
    }
    in_a = dataset == name_a
    labels = {c: i for i, c in enumerate(shared)}
    y = np.array([labels[c] for c in compound])
    transfer = []
    for fit, query in ((in_a, ~in_a), (~in_a, in_a)):
        predicted = knn_predict(z[fit], y[fit], z[query], config.transfer_k, 0.07, len(shared))
        transfer.append(float(np.mean(predicted == y[query])))
    metrics["compound_transfer_accuracy"] = float(np.mean(transfer))
    metrics["n_shared_compounds"] = float(len(shared))
    ratio = pca.explained_variance_ratio_
    return JointResult(
        metrics=metrics,
        pca=projected.astype(np.float32),
        umap=_umap(z.astype(np.float32), config, seed) if with_umap else None,
        dataset=dataset,
        compound=compound,
        explained_variance=(float(ratio[0]), float(ratio[1])),
    )
