"""The generic manifest: evaluate your own images without code.

A CSV or parquet file with one row per image:
- `channels` (required): the channel files in channel order, as a JSON list, a Python list literal,
  a `;`-separated string, or (parquet) a list column. Relative paths are relative to the manifest.
- `label` (classification, integer or text) or `target` (regression, a number).
- `split`: `train`, `val` or `test` (required for labelled manifests; `val` is used for evaluation
  when present, else `test`).
- optional: `key` (default the row number), `group` (e.g. a compound), `channel_names` (same format
  as `channels`; every row must agree).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow

from chadavit_bench.datasets.base import (
    SPLITS,
    DatasetFormatError,
    DownstreamDataset,
    Record,
    TaskKind,
    require_files,
    require_path,
)

MANIFEST_SUFFIXES = (".csv", ".parquet")


def parse_list(value: object, path: Path, column: str) -> tuple[str, ...]:
    """A list cell in any of the accepted spellings, as a tuple of strings."""
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(str(v) for v in value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()  # an empty cell: the caller names the row
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError) as error:
                raise DatasetFormatError(f"{path}: cannot parse the {column} cell {text!r}") from error
        return tuple(str(v) for v in parsed)
    return tuple(part.strip() for part in text.split(";") if part.strip())


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix not in MANIFEST_SUFFIXES:
        raise DatasetFormatError(f"{path}: a manifest must be a .csv or .parquet file")
    if not path.is_file():
        raise DatasetFormatError(f"{path}: a manifest must be a file")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"key": str, "split": str, "group": str, "compound": str})
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pyarrow.ArrowException) as error:
        # EmptyDataError and ParserError are ValueErrors; the message of each names no file.
        raise DatasetFormatError(f"{path}: cannot be read as a {path.suffix[1:]} table ({error})") from error


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | column.astype(object).map(lambda v: isinstance(v, str) and not v.strip())


def _rows(mask: pd.Series, splits: pd.Series) -> str:
    """'3 rows (first: row 12, split val)' for the True positions of `mask` (rows numbered from 0)."""
    positions = np.flatnonzero(mask.to_numpy())
    first = int(positions[0])
    return f"{len(positions)} row(s) (first: row {first}, split {splits.iloc[first]})"


def _splits(table: pd.DataFrame, path: Path) -> pd.Series:
    blank = _blank(table["split"])
    if blank.any():
        raise DatasetFormatError(f"{path}: {_rows(blank, pd.Series(['?'] * len(table)))} have no split")
    splits = table["split"].astype(str)
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise DatasetFormatError(f"{path}: unknown split values {bad}; use train, val or test (lower case)")
    return splits


def _labels(raw: pd.Series, splits: pd.Series, path: Path) -> tuple[tuple[str, ...], list[int | None]]:
    """Class names and each row's class index; integer labels are indices, text labels sorted names."""
    blank = _blank(raw)
    if blank.any():
        raise DatasetFormatError(f"{path}: {_rows(blank, splits)} have no label; every row needs one")
    numeric = pd.to_numeric(raw, errors="coerce")
    whole = numeric.notna().all() and bool((numeric == numeric.round()).all())
    if whole and not pd.api.types.is_bool_dtype(raw):
        values = numeric.astype(np.int64)
        if (values < 0).any():
            raise DatasetFormatError(f"{path}: {_rows(values < 0, splits)} have a negative label")
        return tuple(str(v) for v in range(int(values.max()) + 1)), [int(v) for v in values]
    text = raw.astype(str)
    class_names = tuple(sorted(text.unique()))
    index = {name: i for i, name in enumerate(class_names)}
    return class_names, [index[v] for v in text]


def _targets(raw: pd.Series, splits: pd.Series, path: Path) -> list[float | None]:
    numbers = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = ~np.isfinite(numbers)
    if bad.any():
        raise DatasetFormatError(f"{path}: {_rows(bad, splits)} have no finite number in `target`")
    return [float(v) for v in numbers]


def load_manifest(
    path: Path,
    name: str | None = None,
    channel_names: Sequence[str] | None = None,
    kind: TaskKind | None = None,
    require_split: bool = True,
    group_column: str = "group",
) -> DownstreamDataset:
    """Read a manifest. `kind` defaults to classification with `label`, regression with `target`."""
    path = require_path(name or path.stem, path, "a manifest file")
    table = read_table(path)
    name = name or path.stem
    if "channels" not in table.columns:
        raise DatasetFormatError(f"{path}: a manifest needs a `channels` column (the channel files)")
    if kind is None:
        kind = "classification" if "label" in table.columns else "regression" if "target" in table else None
        if kind is None:
            raise DatasetFormatError(f"{path}: a manifest needs a `label` or a `target` column")
    if kind == "joint" and group_column not in table.columns:
        raise DatasetFormatError(
            f"{path}: a manifest for the joint embedding needs a `{group_column}` column"
        )
    if require_split and "split" not in table.columns:
        raise DatasetFormatError(f"{path}: a manifest needs a `split` column (train, val or test)")
    splits = _splits(table, path) if "split" in table.columns else pd.Series(["train"] * len(table))
    class_names: tuple[str, ...] = ()
    labels: list[int | None] = [None] * len(table)
    if kind == "classification":
        if "label" not in table.columns:
            raise DatasetFormatError(f"{path}: a classification manifest needs a `label` column")
        class_names, labels = _labels(table["label"], splits, path)
    targets: list[float | None] = [None] * len(table)
    if kind == "regression":
        if "target" not in table.columns:
            raise DatasetFormatError(f"{path}: a regression manifest needs a `target` column")
        targets = _targets(table["target"], splits, path)

    base = path.parent
    records: list[Record] = []
    names_seen: set[tuple[str, ...]] = set()
    for i, row in enumerate(table.itertuples(index=False)):
        cells = row._asdict()
        files = parse_list(cells["channels"], path, "channels")
        if not files:
            raise DatasetFormatError(f"{path}: row {i} lists no channel files")
        if "channel_names" in cells:
            names_seen.add(parse_list(cells["channel_names"], path, "channel_names"))
        resolved = tuple(str(Path(f) if Path(f).is_absolute() else (base / f).resolve()) for f in files)
        records.append(
            Record(
                key=str(cells["key"]) if "key" in cells else f"{i:06d}",
                split=splits.iloc[i],
                files=resolved,
                label=labels[i],
                target=targets[i],
                group=str(cells[group_column]) if group_column in cells else None,
            )
        )
    if not records:
        raise DatasetFormatError(f"{path}: the manifest has no rows")
    counts = {len(r.files) for r in records}
    if len(counts) != 1:
        raise DatasetFormatError(f"{path}: rows have different channel counts {sorted(counts)}")
    if len(names_seen) > 1:
        raise DatasetFormatError(f"{path}: rows disagree on channel_names: {sorted(names_seen)}")
    n_channels = counts.pop()
    if channel_names is None:
        channel_names = names_seen.pop() if names_seen else tuple(f"c{i}" for i in range(n_channels))
    if len(channel_names) != n_channels:
        raise DatasetFormatError(f"{path}: {n_channels} channel files per row but names {channel_names}")
    root = Path("/")  # record files are absolute after resolution
    require_files(name, root, records, source=str(path))
    present = {r.split for r in records}
    if require_split and ("train" not in present or not present & {"val", "test"}):
        # A probe needs rows to fit on and rows to score: without either it would fail or score nothing.
        raise DatasetFormatError(
            f"{path}: the manifest needs train rows and val or test rows; its splits are {sorted(present)}"
        )
    return DownstreamDataset(
        name=name,
        root=root,
        kind=kind,
        channel_names=tuple(channel_names),
        records=records,
        class_names=class_names,
        fit_split="train",
        eval_split="val" if "val" in present else "test",
    )


def find_manifests(folder: Path) -> list[Path]:
    """Manifest files in a folder, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
