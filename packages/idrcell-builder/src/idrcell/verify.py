"""`idrcell verify`: check a dataset directory against the idrcell-v1 contract, listing every problem."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from idrcell.dataset import DATASET_FILE, INDEX_FILE, SHARDS_DIR
from idrcell.naming import is_safe_key
from idrcell.render import IMAGE_SIZE, PixelError, png_size_and_mode
from idrcell.shards import SCHEMA, SHARD_NAME, file_sha256, iter_tar, parse_member_name

REQUIRED_FIELDS = ("schema", "key", "study", "container", "image_id", "n_channels", "channels", "source")
MAX_PROBLEMS_PER_SHARD = 20


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    samples: int = 0
    shards: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Sample:
    key: str
    meta: dict[str, Any] | None = None
    channels: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _check_sample(sample: _Sample, shard: str) -> list[str]:
    where = f"{shard}: sample {sample.key!r}"
    problems = [f"{where}: {p}" for p in sample.problems]
    if not is_safe_key(sample.key):
        problems.append(
            f"{where}: the key is not safe (only A-Z, a-z, 0-9, '_' and '-', at most 88 characters)"
        )
    meta = sample.meta
    if meta is None:
        return [*problems, f"{where}: no {sample.key}.json record"]
    missing = [name for name in REQUIRED_FIELDS if name not in meta]
    if missing:
        problems.append(f"{where}: JSON lacks {', '.join(missing)}")
    if meta.get("schema") != SCHEMA:
        problems.append(f"{where}: schema is {meta.get('schema')!r}, expected {SCHEMA!r}")
    if meta.get("key") != sample.key:
        problems.append(f"{where}: JSON key is {meta.get('key')!r}")
    n_channels = meta.get("n_channels")
    if sample.channels != list(range(len(sample.channels))):
        problems.append(f"{where}: channel PNGs are not c00, c01, ... in order (got {sample.channels})")
    if n_channels != len(sample.channels):
        problems.append(f"{where}: n_channels is {n_channels} but the sample has {len(sample.channels)} PNGs")
    if isinstance(meta.get("channels"), list) and len(meta["channels"]) != n_channels:
        problems.append(
            f"{where}: 'channels' lists {len(meta['channels'])} entries for n_channels={n_channels}"
        )
    return problems


def _scan_shard(path: Path) -> tuple[list[_Sample], list[str]]:
    """Samples of one shard in order; a sample's members must be contiguous (WebDataset groups them)."""
    samples: list[_Sample] = []
    problems: list[str] = []
    current: _Sample | None = None
    keys: set[str] = set()
    try:
        for name, data in iter_tar(path):
            parsed = parse_member_name(name)
            if parsed is None:
                problems.append(f"{path.name}: unexpected member {name!r}")
                continue
            key, extension, channel = parsed
            if current is None or current.key != key:
                if key in keys:
                    problems.append(f"{path.name}: members of {key!r} are not contiguous or repeat")
                keys.add(key)
                current = _Sample(key)
                samples.append(current)
            if extension == "json":
                if current.meta is not None or current.channels:
                    current.problems.append("the JSON record is not the sample's first member")
                try:
                    current.meta = json.loads(data)
                except ValueError:
                    current.problems.append("the JSON record does not parse")
                    current.meta = {}
                continue
            assert channel is not None
            current.channels.append(channel)
            try:
                width, height, mode = png_size_and_mode(data)
            except (PixelError, OSError) as error:
                current.problems.append(f"channel {channel:02d} is not a readable PNG ({error})")
                continue
            if (width, height) != (IMAGE_SIZE, IMAGE_SIZE) or mode != "L":
                current.problems.append(
                    f"channel {channel:02d} is {width} x {height} {mode}, "
                    f"expected {IMAGE_SIZE} x {IMAGE_SIZE} L"
                )
    except (tarfile.TarError, OSError, EOFError) as error:
        problems.append(f"{path.name}: unreadable tar ({error})")
    return samples, problems


def _check_index(out: Path, seen: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    try:
        rows = pq.read_table(out / INDEX_FILE).to_pylist()
    except Exception as error:  # pyarrow raises several types for a damaged file
        return [f"{INDEX_FILE}: unreadable ({error})"]
    problems = []
    indexed = set()
    for row in rows:
        key = row.get("key")
        if key in indexed:
            problems.append(f"{INDEX_FILE}: key {key!r} appears twice")
        indexed.add(key)
        if key not in seen:
            problems.append(f"{INDEX_FILE}: key {key!r} is in no shard")
            continue
        shard, meta = seen[key]
        if row.get("shard") != shard:
            problems.append(f"{INDEX_FILE}: key {key!r} says shard {row.get('shard')!r}, found in {shard!r}")
        if row.get("n_channels") != meta.get("n_channels"):
            problems.append(
                f"{INDEX_FILE}: key {key!r} has n_channels {row.get('n_channels')}, JSON says otherwise"
            )
    for key in sorted(set(seen) - indexed):
        problems.append(f"{INDEX_FILE}: key {key!r} of shard {seen[key][0]} is missing from the index")
    return problems


def verify_dataset(out: Path | str, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    out = Path(out)
    report = VerifyReport()
    dataset_path = out / DATASET_FILE
    try:
        info = json.loads(dataset_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        report.problems.append(f"{DATASET_FILE}: missing (the build or merge did not finish)")
        info = {}
    except ValueError as error:
        report.problems.append(f"{DATASET_FILE}: does not parse ({error})")
        info = {}
    if info and info.get("schema") != SCHEMA:
        report.problems.append(f"{DATASET_FILE}: schema is {info.get('schema')!r}, expected {SCHEMA!r}")
    listed = {shard["name"]: shard for shard in info.get("shards", []) if isinstance(shard, dict)}
    shards_dir = out / SHARDS_DIR
    present = (
        sorted(p.name for p in shards_dir.iterdir() if SHARD_NAME.match(p.name))
        if shards_dir.is_dir()
        else []
    )
    for name in sorted(set(present) - set(listed)):
        report.problems.append(f"{SHARDS_DIR}/{name}: not listed in {DATASET_FILE}")
    for name in sorted(set(listed) - set(present)):
        report.problems.append(f"{SHARDS_DIR}/{name}: listed in {DATASET_FILE} but missing")
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    channels = 0
    for position, name in enumerate(present, start=1):
        path = shards_dir / name
        record = listed.get(name)
        if record is not None and file_sha256(path) != record.get("sha256"):
            report.problems.append(f"{SHARDS_DIR}/{name}: checksum does not match {DATASET_FILE}")
        samples, problems = _scan_shard(path)
        report.problems.extend(problems)
        sample_problems = [p for sample in samples for p in _check_sample(sample, name)]
        report.problems.extend(sample_problems[:MAX_PROBLEMS_PER_SHARD])
        if len(sample_problems) > MAX_PROBLEMS_PER_SHARD:
            report.problems.append(
                f"{name}: {len(sample_problems) - MAX_PROBLEMS_PER_SHARD} more sample problems"
            )
        if record is not None and record.get("samples") != len(samples):
            report.problems.append(
                f"{name}: {len(samples)} samples, {DATASET_FILE} says {record.get('samples')}"
            )
        for sample in samples:
            if sample.key in seen:
                report.problems.append(f"{name}: key {sample.key!r} also in {seen[sample.key][0]}")
            seen[sample.key] = (name, sample.meta or {})
            channels += len(sample.channels)
        report.shards += 1
        if progress is not None:
            progress(position, len(present))
    report.samples = len(seen)
    if (out / INDEX_FILE).exists():
        report.problems.extend(_check_index(out, seen))
        index_record = info.get("index") or {}
        if index_record.get("sha256") not in (None, file_sha256(out / INDEX_FILE)):
            report.problems.append(f"{INDEX_FILE}: checksum does not match {DATASET_FILE}")
    else:
        report.problems.append(f"{INDEX_FILE}: missing")
    counts = info.get("counts") or {}
    if info and counts.get("samples") != len(seen):
        report.problems.append(
            f"{DATASET_FILE}: counts.samples is {counts.get('samples')}, shards hold {len(seen)}"
        )
    if info and counts.get("channels") not in (None, channels):
        report.problems.append(
            f"{DATASET_FILE}: counts.channels is {counts.get('channels')}, shards hold {channels}"
        )
    return report
