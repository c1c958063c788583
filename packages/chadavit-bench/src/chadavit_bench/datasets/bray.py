"""Bray et al. 2017 Cell Painting (5 channels), given as a manifest: `ROOT/bray/manifest.{csv,parquet}`.

Columns: `channels` (five files in the order DNA, ER, RNA, AGP, Mito, relative to `ROOT/bray`),
`compound`, optional `key` and `split`. Used for the joint embedding with BBBC021.
"""

from __future__ import annotations

from pathlib import Path

from chadavit_bench.datasets.base import DatasetNotFoundError, DownstreamDataset
from chadavit_bench.datasets.manifest import load_manifest

NAME = "bray"
# Cell Painting stains in the order of Bray et al. 2017's files:
# Hoechst, ConA, SYTO14, phalloidin + WGA, MitoTracker.
CHANNEL_NAMES = ("DNA", "ER", "RNA", "AGP", "Mito")


def load(root: Path) -> DownstreamDataset:
    folder = root / NAME
    candidates = [folder / "manifest.csv", folder / "manifest.parquet"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DatasetNotFoundError(f"{NAME}: expected {candidates[0]} or {candidates[1]} (see docs/bench.md)")
    return load_manifest(
        path,
        name=NAME,
        channel_names=CHANNEL_NAMES,
        kind="joint",
        require_split=False,
        group_column="compound",
    )
