"""The format doc promises WebDataset tars: webdataset itself, with no project code, reads a built dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import webdataset as wds


def test_webdataset_reads_every_sample_of_a_built_dataset(clean_build: Path) -> None:
    shards = sorted(str(path) for path in (clean_build / "shards").glob("*.tar"))
    counts = json.loads((clean_build / "dataset.json").read_text())["counts"]
    channels_by_key = {
        row["key"]: row["n_channels"] for row in pq.read_table(clean_build / "index.parquet").to_pylist()
    }
    assert len(shards) == counts["shards"] >= 1

    samples = list(wds.WebDataset(shards, shardshuffle=False))

    assert len(samples) == counts["samples"] == len(channels_by_key)
    assert {sample["__key__"] for sample in samples} == set(channels_by_key)
    for sample in samples:
        metadata = json.loads(sample["json"])
        n_channels = channels_by_key[sample["__key__"]]
        assert metadata["key"] == sample["__key__"] and metadata["n_channels"] == n_channels
        members = {name for name in sample if not name.startswith("__")}
        assert members == {"json", *(f"c{index:02d}.png" for index in range(n_channels))}
    assert len(set(channels_by_key.values())) > 1, "the tiny build should mix channel counts"

    # webdataset's own image decoder reads the channels as 224 x 224 8-bit greyscale.
    first = next(iter(wds.WebDataset(shards[:1], shardshuffle=False).decode("l8")))
    planes = [value for name, value in first.items() if name.endswith(".png")]
    assert planes and all(plane.shape == (224, 224) and plane.dtype == np.uint8 for plane in planes)
