"""`idrcell stats`: how a dataset is made up, from its index (no shard is opened).

A folder that is not a finished, readable dataset raises `StatsError`, one line naming the file
and what is wrong with it: `dataset.json` (written last, so its absence means an unfinished build)
and `index.parquet` with the columns counted here, of the types `idrcell.dataset` writes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from idrcell.dataset import DATASET_FILE, INDEX_FILE


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


# The index columns counted, each with the test of its Arrow type and what that test expects.
COLUMNS = {
    "study": (_is_text, "text"),
    "container": (_is_text, "text"),
    "imaging_method": (_is_text, "text"),
    "n_channels": (pa.types.is_integer, "whole numbers"),
}
REQUIRED = ("study", "container", "n_channels")  # imaging_method may be empty: counted as "unknown"


class StatsError(ValueError):
    """The dataset folder cannot be described: a file missing, unreadable or of the wrong shape."""


def _file(out: Path, name: str) -> Path:
    path = out / name
    if path.is_dir():
        raise StatsError(f"{path} is a directory, not a file; is {out} an idrcell dataset?")
    if not path.is_file():
        raise StatsError(f"{path} does not exist; is {out} a finished idrcell dataset?")
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _index_rows(out: Path) -> int:
    """The number of index rows dataset.json records (it is written last, from the same rows)."""
    path = _file(out, DATASET_FILE)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise StatsError(f"{path} is not readable JSON ({_first_line(error)})") from error
    if not isinstance(info, dict):
        raise StatsError(f"{path} holds a JSON {type(info).__name__}, not an object")
    index = info.get("index")
    rows = index.get("rows") if isinstance(index, dict) else None
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise StatsError(f"{path}: 'index' is {index!r:.60}, not an object with a whole number of 'rows'")
    return rows


def _index_table(out: Path, expected_rows: int) -> dict[str, list[Any]]:
    path = _file(out, INDEX_FILE)
    try:
        schema = pq.read_schema(path)
        missing = [name for name in COLUMNS if name not in schema.names]
        if missing:
            raise StatsError(f"{path} has no column {', '.join(missing)}; is it an idrcell index?")
        wrong = [
            f"'{name}' holds {schema.field(name).type}, not {what}"
            for name, (valid, what) in COLUMNS.items()
            if not valid(schema.field(name).type)
        ]
        if wrong:
            raise StatsError(f"{path}: {'; '.join(wrong)}")
        table = pq.read_table(path, columns=list(COLUMNS))
    except StatsError:
        raise
    except Exception as error:  # pyarrow raises several types (ArrowInvalid, OSError...) for a damaged file
        raise StatsError(f"{path} is not a readable index ({_first_line(error)})") from error
    if table.num_rows != expected_rows:
        raise StatsError(
            f"{path} holds {table.num_rows} rows, {DATASET_FILE} says {expected_rows}; "
            "the index is not this dataset's (rebuild it)"
        )
    empty = [name for name in REQUIRED if table.column(name).null_count]
    if empty:
        raise StatsError(f"{path}: column {', '.join(repr(n) for n in empty)} has empty values")
    columns = table.to_pydict()
    if any(count < 1 for count in columns["n_channels"]):
        raise StatsError(f"{path}: 'n_channels' holds a value below 1")
    return columns


def dataset_stats(out: Path | str) -> dict[str, Any]:
    """Counts of samples and channels per experiment, per imaging method and per channel count."""
    out = Path(out)
    columns = _index_table(out, _index_rows(out))
    experiments: Counter[str] = Counter()
    experiment_channels: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    channel_counts: Counter[int] = Counter()
    for study, container, method, n_channels in zip(
        columns["study"], columns["container"], columns["imaging_method"], columns["n_channels"], strict=True
    ):
        name = f"{study}/{container}"
        experiments[name] += 1
        experiment_channels[name] += n_channels
        methods[method or "unknown"] += 1
        channel_counts[n_channels] += 1
    return {
        "samples": sum(experiments.values()),
        "channels": sum(experiment_channels.values()),
        "experiments": {
            name: {"samples": experiments[name], "channels": experiment_channels[name]}
            for name in sorted(experiments)
        },
        "imaging_methods": dict(sorted(methods.items())),
        "channel_counts": {str(k): v for k, v in sorted(channel_counts.items())},
    }
