"""docs/format.md's promises about bytes and order, read back with tarfile and pyarrow alone."""

from __future__ import annotations

import json
import random
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# docs/format.md, "index.parquet": the columns, in order, with their types.
INDEX_SCHEMA = [
    ("key", pa.string()), ("shard", pa.string()), ("study", pa.string()), ("container", pa.string()),
    ("image_id", pa.int64()), ("image_name", pa.string()), ("plate", pa.string()), ("well", pa.string()),
    ("field", pa.int32()), ("dataset", pa.string()), ("imaging_method", pa.string()),
    ("organism", pa.string()), ("cell_line", pa.string()), ("n_channels", pa.int32()),
    ("channel_labels", pa.list_(pa.string())), ("width", pa.int32()), ("height", pa.int32()),
    ("pixels_type", pa.string()),
]  # fmt: skip
MTIME = datetime(2020, 1, 1, tzinfo=UTC).timestamp()  # docs/format.md: 2020-01-01T00:00:00Z


def shard_order(out: Path) -> list[tuple[str, str]]:
    """(shard name, sample key) of every sample, in the order the shards hold them."""
    order = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key = member.name.split(".")[0]
                if not order or order[-1] != (shard.name, key):
                    order.append((shard.name, key))
    return order


def test_index_parquet_has_the_documented_columns_types_and_order(clean_build: Path) -> None:
    index = pq.read_table(clean_build / "index.parquet")
    assert [(field.name, field.type) for field in index.schema] == INDEX_SCHEMA
    metadata = pq.ParquetFile(clean_build / "index.parquet").metadata
    codecs = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"ZSTD"}
    rows = index.to_pylist()
    assert [(row["shard"], row["key"]) for row in rows] == shard_order(clean_build)  # shard order
    assert all(len(row["channel_labels"]) == row["n_channels"] for row in rows)


def test_every_tar_header_holds_the_documented_fixed_fields(clean_build: Path) -> None:
    shards = sorted((clean_build / "shards").glob("*.tar"))
    assert shards
    for shard in shards:
        data = shard.read_bytes()
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
        assert members
        for member in members:
            fields = (member.mtime, member.uid, member.gid, member.uname, member.gname, member.mode)
            assert fields == (MTIME, 0, 0, "", "", 0o644), (shard.name, member.name, fields)
            assert member.isreg(), member.name
            # USTAR: the magic and version at byte 257 of the member's 512-byte header block.
            assert data[member.offset + 257 : member.offset + 265] == b"ustar\x0000", member.name


def test_samples_follow_the_documented_shuffle_of_the_sorted_keys(clean_build: Path) -> None:
    seed = json.loads((clean_build / "dataset.json").read_text())["seed"]
    keys = sorted(key for _, key in shard_order(clean_build))
    random.Random(seed).shuffle(keys)
    assert [key for _, key in shard_order(clean_build)] == keys
