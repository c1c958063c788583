"""What one OME-Zarr read may allocate is bounded: declared sizes are checked before reading and every
chunk before zarr's codecs decode it (zarr_limits.py). Hostile stores are the emulator's own, with
some files swapped on the way out; the rest of the experiment stages as usual."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from idrcell.client import ClientConfig
from idrcell.emulator import EmulatorServer, load_catalogue
from idrcell.experiments import parse_experiments
from idrcell.stage import StageConfig, stage_experiment
from idrcell.zarr_limits import (
    MAX_CHUNK_BYTES,
    ZarrTooLarge,
    ZarrUnbounded,
    check_array,
    zstd_content_size,
)

SPEC = {
    "schema": "idrcell-emulator-catalogue-v1",
    "name": "zarr-bombs",
    "studies": [
        {  # 600 px images: level 1 (300 px) is the one read
            "study": "idr0811-zarr-bombs",
            "container": "experimentA",
            "id": 811,
            "datasets": 1,
            "images_per_dataset": 5,
            "zarr": {"version": "0.4", "compressor": "zlib"},
            "image": {"width": 600, "height": 600, "channels": 2},
        },
        {
            "study": "idr0812-zarr-blosc",
            "container": "experimentA",
            "id": 812,
            "datasets": 1,
            "images_per_dataset": 2,
            "zarr": {"version": "0.4", "compressor": "blosc"},
            "image": {"width": 240, "height": 240, "channels": 1},
        },
    ],
}
# A zlib stream of 32 KB that inflates to 32 MiB, in place of a chunk of 256 x 256 x 2 bytes.
ZLIB_BOMB = zlib.compress(bytes(32 * 2**20), 9)


def _edit_array(body: bytes, **changes: object) -> bytes:
    meta = json.loads(body)
    meta.update(changes)
    return json.dumps(meta).encode()


def _blosc_liar(body: bytes) -> bytes:
    """A real blosc chunk whose header declares 2 GiB of output."""
    return body[:4] + (2**31).to_bytes(4, "little") + body[8:]


# image id -> (file under its store, what to serve instead)
HOSTILE = {
    100001: ("1/0/0/0/0", lambda body: ZLIB_BOMB),
    100002: ("1/.zarray", lambda body: _edit_array(body, chunks=[1, 1, 8192, 8192], dtype="<f8")),
    100003: ("1/.zarray", lambda body: _edit_array(body, shape=[2, 1, 300_000, 300_000])),
    100004: ("1/.zarray", lambda body: _edit_array(body, compressor={"id": "bz2", "level": 1})),
    100006: ("0/0/0/0/0", _blosc_liar),
}


@pytest.fixture(scope="module")
def hostile_server():
    with EmulatorServer(load_catalogue(SPEC), mode="2026") as server:
        tree = server._emulator.zarr
        honest = tree.get

        def get(path: str) -> bytes | None:
            body = honest(path)
            for image_id, (name, swap) in HOSTILE.items():
                if body is not None and path.endswith(f"/{image_id}.zarr/{name}"):
                    return swap(body)
            return body

        tree.get = get
        yield server


def _stage(server: EmulatorServer, row: str, out: Path):
    experiment = parse_experiments("study,container,id,n_images\n" + row)[0]
    config = StageConfig(
        client=ClientConfig(base_url=server.base_url, max_retries=1),
        pixel_source="zarr",
        zarr_base_url=server.zarr_base_url,
    )
    result = stage_experiment(experiment, out, config)
    failures = out / "staging" / experiment.name / "failures.jsonl"
    records = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    return result, {record["image_id"]: record for record in records}


def test_hostile_stores_are_skipped_by_name_and_the_rest_stages(hostile_server, tmp_path: Path) -> None:
    result, failures = _stage(hostile_server, "idr0811-zarr-bombs,experimentA,811,5", tmp_path / "a")
    assert result.complete and result.selected == 1, result
    assert result.skipped == {"oversized_zarr": 3, "unreadable_zarr": 1}
    assert failures[100001]["reason"] == "oversized_zarr"
    assert (
        "zarr/1/0/0/0/0 (32,623 bytes, zlib) decodes to more than 131,072 bytes; its declared chunk "
        "shape holds 131,072" in (failures[100001]["detail"])
    )  # inflation stopped one byte past the declared chunk
    assert "above the 67,108,864-byte cap of one chunk" in failures[100002]["detail"]
    assert "above the 1,073,741,824-byte cap of one image's read" in failures[100003]["detail"]
    assert failures[100004]["reason"] == "unreadable_zarr"
    assert "compressor bz2 cannot be bounded" in failures[100004]["detail"]

    result, failures = _stage(hostile_server, "idr0812-zarr-blosc,experimentA,812,2", tmp_path / "b")
    assert result.selected == 1 and result.skipped == {"oversized_zarr": 1}
    assert "decodes to 2,147,483,648 bytes" in failures[100006]["detail"]


def test_zstd_frames_declare_their_size_or_are_refused() -> None:
    frame = numcodecs.Zstd(level=3).encode(bytes(100_000))
    assert zstd_content_size(bytes(frame)) == 100_000
    assert zstd_content_size(bytes(frame) * 2) == 200_000  # concatenated frames add up
    # A valid frame that declares no size (descriptor 0, a window byte, one raw last block): zarr's
    # codec would inflate it without a bound, so it is refused.
    payload = bytes(1000)
    unsized = (0xFD2FB528).to_bytes(4, "little") + bytes([0, 0x58])
    unsized += (1 | len(payload) << 3).to_bytes(3, "little") + payload
    assert bytes(numcodecs.Zstd().decode(unsized)) == payload
    with pytest.raises(ZarrTooLarge, match="does not declare its decoded size"):
        zstd_content_size(unsized)
    with pytest.raises(ZarrTooLarge, match="a zstd chunk holds something that is not a zstd frame"):
        zstd_content_size(b"not zstd at all")


def test_a_sharded_array_checks_every_inner_chunk() -> None:
    store = zarr.storage.MemoryStore()
    array = zarr.create_array(
        store, shape=(2, 512, 512), chunks=(1, 256, 256), shards=(1, 512, 512), dtype="uint16"
    )
    array[:] = np.arange(2 * 512 * 512, dtype="uint16").reshape(2, 512, 512)
    check = check_array(array, ["c", "y", "x"], 1, "memory")
    assert (check.chunk_bytes, check.codec, check.inner_chunks) == (256 * 256 * 2, "zstd", 4)
    shard = store._store_dict["c/0/0/0"].to_bytes()
    check("c/0/0/0", shard)  # an honest shard passes

    bomb = bytes(numcodecs.Zstd().encode(bytes(4 * 2**20)))
    empty = [2**64 - 1, 2**64 - 1]
    index = np.array([[0, len(bomb)], empty, empty, empty], dtype="<u8").tobytes() + bytes(4)
    with pytest.raises(ZarrTooLarge, match=r"inner chunk 0 .* decodes to 4,194,304 bytes"):
        check("c/0/0/0", bomb + index)
    outside = np.array([[0, 10**6], empty, empty, empty], dtype="<u8").tobytes() + bytes(4)
    with pytest.raises(ZarrTooLarge, match="inner chunk 0 lies outside the shard"):
        check("c/0/0/0", bomb + outside)


def test_declared_sizes_and_unknown_codecs_are_refused_before_reading() -> None:
    big = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(1, 8192, 8192), chunks=(1, 4096, 4096), dtype="float64"
    )
    with pytest.raises(ZarrTooLarge, match="above the 67,108,864-byte cap of one chunk"):
        check_array(big, ["c", "y", "x"], 1, "memory")
    assert MAX_CHUNK_BYTES == 64 * 2**20
    lz4 = zarr.create_array(
        zarr.storage.MemoryStore(),
        shape=(1, 64, 64),
        chunks=(1, 64, 64),
        dtype="uint8",
        zarr_format=2,
        compressors=numcodecs.LZ4(),
    )
    with pytest.raises(ZarrUnbounded, match="compressor lz4 cannot be bounded"):
        check_array(lz4, ["c", "y", "x"], 1, "memory")
