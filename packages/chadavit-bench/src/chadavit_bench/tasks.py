"""The task names and what each does (kept free of heavy imports: the CLI's help reads them)."""

from __future__ import annotations

TASK_HELP = {
    "knn": "weighted kNN on cosine similarity (classification datasets)",
    "linear": "linear probe at 1 %, 10 %, 100 % of the training split, over seeds (classification)",
    "regression": "ridge regression of the target (NF-kB and regression manifests)",
    "reconstruction": "decode Actin from the embedding of DAPI + Tubulin (BBBC021)",
    "joint": "joint embedding of BBBC021 and Bray: PCA, UMAP, separation scores",
    "attention": "per-channel attention maps of a few images (figure only)",
}
TASKS = tuple(TASK_HELP)
