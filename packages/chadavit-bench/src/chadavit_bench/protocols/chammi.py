"""The CHAMMI protocol: 1-nearest-neighbour classification per task, scored as MorphEm scores it.

Source of every rule: `morphem/evaluation.py` and `morphem/benchmark.py` of MorphEm (github
broadinstitute/MorphEm, the official CHAMMI evaluator); this is our own implementation:
- the reference set is the `Train` rows; a task's queries are the rows whose task column is True;
- the leave-out task (HPA Task_three, CP Task_four) is scored leave-one-group-out: for each group
  (in order of first appearance), the reference set is Train plus that task's rows of the other
  groups, and the predictions of all groups are pooled before scoring;
- distance `l2` (faiss IndexFlatL2, the official default) or `cosine` (vectors L2-normalised, then
  the largest inner product: faiss IndexFlatIP), exact search, k = 1;
- macro-F1 over the labels present in the ground truth (scikit-learn `f1_score`, `average="macro"`,
  `labels=np.unique(ground_truth)`), and accuracy.

The search is exact and blocked: float64 matrix products, one block of queries at a time (faiss
computes in float32, so the two can differ only where two references are equally near to float32
precision); among exact ties the first reference wins, as in faiss's k = 1 search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

METRICS = ("l2", "cosine")
BLOCK_BYTES = 256 * 2**20  # the distance block of one query batch stays under this


@dataclass(frozen=True)
class TaskScore:
    dataset: str  # the CHAMMI folder: Allen, HPA or CP
    task: str
    accuracy: float
    f1_macro: float
    n_queries: int


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    if metric not in METRICS:
        raise ValueError(f"unknown CHAMMI distance {metric!r}; expected one of {METRICS}")
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    return x


def nearest_neighbour(
    reference: np.ndarray, queries: np.ndarray, metric: str = "l2", block_bytes: int = BLOCK_BYTES
) -> np.ndarray:
    """Index into `reference` of each query's nearest neighbour (exact; the first of exact ties)."""
    ref, query = _prepare(reference, metric), _prepare(queries, metric)
    if len(ref) == 0:
        raise ValueError("the 1-NN reference set is empty")
    ref_t = torch.from_numpy(ref)
    # l2: |q|^2 is the same for every reference, so |r|^2 - 2 q.r ranks as |q - r|^2.
    ref_sq = (ref_t * ref_t).sum(dim=1) if metric == "l2" else None
    rows = max(1, block_bytes // (8 * len(ref)))
    nearest = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), rows):
        products = torch.from_numpy(query[start : start + rows]) @ ref_t.T
        # In place: one (rows, references) block in memory. torch's argmin / argmax return the first
        # extremum, as faiss's k = 1 search keeps the first nearest it meets.
        if ref_sq is not None:
            best = torch.argmin(products.mul_(-2).add_(ref_sq[None, :]), dim=1)
        else:
            best = torch.argmax(products, dim=1)
        nearest[start : start + len(products)] = best.numpy()
    return nearest


def macro_f1(ground_truth: np.ndarray, predictions: np.ndarray) -> float:
    """scikit-learn's macro-F1 over the labels present in the ground truth (MorphEm's choice)."""
    from sklearn.metrics import f1_score

    labels = np.unique(ground_truth)
    return float(f1_score(ground_truth, predictions, labels=labels, average="macro", zero_division=0))


def evaluate_subdataset(
    dataset: str,
    features: np.ndarray,
    labels: np.ndarray,
    splits: Sequence[str],
    task_rows: Mapping[str, np.ndarray],
    leave_out: str | None = None,
    groups: np.ndarray | None = None,
    metric: str = "l2",
) -> list[TaskScore]:
    """Every task of one CHAMMI sub-dataset, in `task_rows`' order.

    `labels` (N,) integers, `splits` the `train_test_split` of each row, `task_rows` the rows whose
    task column is True, `groups` the leave-out column (needed when `leave_out` is one of the tasks).
    """
    train = np.flatnonzero(np.asarray(splits) == "Train")
    if len(train) == 0:
        raise ValueError(f"{dataset}: no Train rows, so no 1-NN reference set")
    scores = []
    for task, queries in task_rows.items():
        queries = np.asarray(queries, dtype=np.int64)
        if len(queries) == 0:
            raise ValueError(f"{dataset}: {task} has no rows whose {task} column is True")
        if task != leave_out:
            found = train[nearest_neighbour(features[train], features[queries], metric)]
            truth, predicted = labels[queries], labels[found]
        else:
            if groups is None:
                raise ValueError(f"{dataset}: {task} is scored leave-one-group-out but no groups were given")
            truth_parts, predicted_parts = [], []
            task_groups = groups[queries]
            for group in dict.fromkeys(task_groups):  # order of first appearance, as pandas' unique
                held = queries[task_groups == group]
                reference = np.concatenate([train, queries[task_groups != group]])
                found = reference[nearest_neighbour(features[reference], features[held], metric)]
                truth_parts.append(labels[held])
                predicted_parts.append(labels[found])
            truth, predicted = np.concatenate(truth_parts), np.concatenate(predicted_parts)
        scores.append(
            TaskScore(
                dataset=dataset,
                task=task,
                accuracy=float(np.mean(predicted == truth)),
                f1_macro=macro_f1(truth, predicted),
                n_queries=len(queries),
            )
        )
    return scores


# The out-of-distribution tasks each sub-dataset's mean takes (the CHAMMI score's definition, as
# ChA-MAEViT's Table 8 "Average OOD" columns compute it).
OOD_TASKS = {
    "Allen": ("Task_two",),
    "HPA": ("Task_two", "Task_three"),
    "CP": ("Task_two", "Task_three", "Task_four"),
}


def ood_means(f1: Mapping[tuple[str, str], float]) -> dict[str, float]:
    """Each sub-dataset's mean macro-F1 over its out-of-distribution tasks (those it has)."""
    means = {}
    for dataset, tasks in OOD_TASKS.items():
        values = [f1[(dataset, task)] for task in tasks if (dataset, task) in f1]
        if len(values) == len(tasks):
            means[dataset] = float(np.mean(values))
    return means


def chammi_score(f1: Mapping[tuple[str, str], float]) -> float | None:
    """WTC2 / 3 + (HPA2 + HPA3) / 6 + (CP2 + CP3 + CP4) / 9: the mean of the three sub-datasets'
    out-of-distribution means; None unless all six tasks were scored."""
    means = ood_means(f1)
    if len(means) != len(OOD_TASKS):
        return None
    return float(np.mean(list(means.values())))
