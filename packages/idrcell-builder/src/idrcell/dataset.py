"""Write a finished dataset: globally shuffled shards, `index.parquet` and `dataset.json`.

Shared by `merge` (samples from staging folders) and `import-hf` (samples from the published PNGs).
`dataset.json` is removed first and written last, so a directory that has one is complete.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from idrcell import __version__
from idrcell.atomic import atomic_open, atomic_write_text, remove_stale_temps
from idrcell.shards import SCHEMA, SHARD_NAME, SHARD_PATTERN, Member, file_sha256, write_tar
from idrcell.testpoint import counted_write

DATASET_FILE = "dataset.json"
INDEX_FILE = "index.parquet"
SHARDS_DIR = "shards"

INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("study", pa.string()),
        ("container", pa.string()),
        ("image_id", pa.int64()),
        ("image_name", pa.string()),
        ("plate", pa.string()),
        ("well", pa.string()),
        ("field", pa.int32()),
        ("dataset", pa.string()),
        ("imaging_method", pa.string()),
        ("organism", pa.string()),
        ("cell_line", pa.string()),
        ("n_channels", pa.int32()),
        ("channel_labels", pa.list_(pa.string())),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("pixels_type", pa.string()),
    ]
)


@dataclass(frozen=True)
class ShardLimits:
    # Issue 4: at most 2,000 samples or 1 GB per shard, whichever comes first.
    max_samples: int = 2000
    max_bytes: int = 1_000_000_000


class UnusableSample(ValueError):
    """Raised by `SampleSource.read` for a sample to leave out; the message is the reason."""


class OutputDirError(ValueError):
    """OUT exists but is not a directory: nothing can be written, and rerunning will not help."""


def check_output_dir(out: Path | str) -> None:
    """Refuse an OUT that is a file (or under one) before anything starts."""
    for path in (Path(out), *Path(out).parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == Path(out) else f"is under {path}, which is a file"
                raise OutputDirError(f"the output folder {out} {where}; give a directory for --out")
            return


class EmptyDatasetError(ValueError):
    """Nothing to write: a dataset without a sample is an error, never a success."""


@dataclass(frozen=True)
class SampleSource:
    """One sample to write: its key, approximate size, and how to read its tar members.

    `read` may raise `UnusableSample`: the sample is then left out, and named in dataset.json.
    """

    key: str
    nbytes: int
    read: Callable[[], list[Member]]


@dataclass(frozen=True)
class DatasetSummary:
    samples: int
    shards: int
    channels: int
    bytes: int
    skipped: tuple[tuple[str, str], ...] = ()  # (key, reason) of the samples left out


def shard_sizes(n_samples: int, total_bytes: int, limits: ShardLimits) -> list[int]:
    """Samples per shard: as few shards as the limits allow, sizes differing by at most one."""
    if n_samples == 0:
        return []
    count = max(1, math.ceil(n_samples / limits.max_samples), math.ceil(total_bytes / limits.max_bytes))
    count = min(count, n_samples)
    base, extra = divmod(n_samples, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def shuffled(sources: Sequence[SampleSource], seed: int) -> list[SampleSource]:
    """Sources in a seeded global shuffle that ignores the order they were given in."""
    ordered = sorted(sources, key=lambda s: s.key)
    for previous, current in itertools.pairwise(ordered):
        if previous.key == current.key:
            raise ValueError(f"two samples share the key {current.key!r}")
    random.Random(seed).shuffle(ordered)
    return ordered


def _index_row(meta: dict[str, Any], shard: str) -> dict[str, Any]:
    source = meta.get("source") or {}
    return {
        "key": meta["key"],
        "shard": shard,
        "study": meta.get("study"),
        "container": meta.get("container"),
        "image_id": meta.get("image_id"),
        "image_name": meta.get("image_name"),
        "plate": meta.get("plate"),
        "well": meta.get("well"),
        "field": meta.get("field"),
        "dataset": meta.get("dataset"),
        "imaging_method": meta.get("imaging_method"),
        "organism": meta.get("organism"),
        "cell_line": meta.get("cell_line"),
        "n_channels": meta["n_channels"],
        "channel_labels": [c.get("label") for c in meta.get("channels", [])],
        "width": source.get("width"),
        "height": source.get("height"),
        "pixels_type": source.get("pixels_type"),
    }


def read_dataset_json(out: Path) -> dict[str, Any] | None:
    path = Path(out) / DATASET_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def is_current(out: Path, fingerprint: str) -> bool:
    """True when OUT already holds a complete dataset built from exactly these inputs."""
    info = read_dataset_json(out)
    if info is None or info.get("fingerprint") != fingerprint:
        return False
    for shard in info.get("shards", []):
        path = Path(out) / SHARDS_DIR / shard["name"]
        if not path.exists() or path.stat().st_size != shard["bytes"]:
            return False
    return (Path(out) / INDEX_FILE).exists()


def current_summary(out: Path, fingerprint: str) -> DatasetSummary | None:
    """What OUT holds when it is already complete for exactly these inputs (a rerun skips), else None."""
    if not is_current(out, fingerprint):
        return None
    info = read_dataset_json(out) or {}
    counts = info.get("counts", {})
    total = sum(shard["bytes"] for shard in info.get("shards", []))
    return DatasetSummary(counts.get("samples", 0), counts.get("shards", 0), counts.get("channels", 0), total)


def write_dataset(
    out: Path,
    sources: Sequence[SampleSource],
    *,
    seed: int,
    limits: ShardLimits,
    fingerprint: str,
    metadata: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> DatasetSummary:
    """Write shards, index and dataset.json for `sources` into `out`; `metadata` joins dataset.json."""
    out = Path(out)
    if not sources:
        raise EmptyDatasetError(f"no sample to write into {out}")
    shards_dir = out / SHARDS_DIR
    shards_dir.mkdir(parents=True, exist_ok=True)
    (out / DATASET_FILE).unlink(missing_ok=True)  # the directory is incomplete until the end
    remove_stale_temps(out)
    remove_stale_temps(shards_dir)
    order = shuffled(sources, seed)
    sizes = shard_sizes(len(order), sum(s.nbytes for s in order), limits)
    rows: list[dict[str, Any]] = []
    shard_records = []
    skipped: list[tuple[str, str]] = []
    channels = written = 0
    position = 0
    for shard_index, size in enumerate(sizes):
        name = SHARD_PATTERN.format(index=shard_index)
        batch = order[position : position + size]
        position += size
        in_shard = 0

        def members(batch: list[SampleSource] = batch, name: str = name, first: int = position - size) -> Any:
            nonlocal channels, written, in_shard
            for done, source in enumerate(batch, start=first + 1):
                try:
                    with counted_write("sharded"):  # tests only: a kill test's pause point (testpoint.py)
                        sample = source.read()
                except UnusableSample as error:
                    skipped.append((source.key, str(error)))
                    continue
                finally:
                    if progress is not None:
                        progress(done, len(order))
                meta = json.loads(sample[0][1])
                if sample[0][0] != f"{source.key}.json" or meta.get("key") != source.key:
                    raise ValueError(f"sample {source.key!r} does not start with its own JSON record")
                rows.append(_index_row(meta, name))
                channels += meta["n_channels"]
                yield from sample
                written += 1
                in_shard += 1

        with atomic_open(shards_dir / name) as handle:
            sha256, nbytes = write_tar(handle, members())
        shard_records.append({"name": name, "samples": in_shard, "bytes": nbytes, "sha256": sha256})
    if not written:  # leave no shard of empty tars behind: nothing was made
        for record in shard_records:
            (shards_dir / record["name"]).unlink(missing_ok=True)
        raise EmptyDatasetError(
            f"none of the {len(order)} samples could be used (first: {skipped[0][0]}: {skipped[0][1]})"
        )
    keep = {record["name"] for record in shard_records}
    for stale in shards_dir.iterdir():
        if SHARD_NAME.match(stale.name) and stale.name not in keep:
            stale.unlink()
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    with atomic_open(out / INDEX_FILE) as handle:
        pq.write_table(table, handle, compression="zstd")
    info = {
        "schema": SCHEMA,
        "builder": f"idrcell {__version__}",
        "seed": seed,
        "shard_limits": {"max_samples": limits.max_samples, "max_bytes": limits.max_bytes},
        "counts": {"samples": written, "shards": len(shard_records), "channels": channels},
        "shards": shard_records,
        "index": {"name": INDEX_FILE, "rows": len(rows), "sha256": file_sha256(out / INDEX_FILE)},
        "fingerprint": fingerprint,
        **metadata,
    }
    if skipped:  # only then: a dataset without skips keeps the bytes it always had
        info["skipped"] = [{"key": key, "reason": reason} for key, reason in skipped]
    text = json.dumps(info, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    atomic_write_text(out / DATASET_FILE, text + "\n")
    total = sum(record["bytes"] for record in shard_records)
    return DatasetSummary(written, len(shard_records), channels, total, tuple(skipped))
