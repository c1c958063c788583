"""The emulator's 2026 mode and its OME-Zarr stores, read with zarr itself (no builder code)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import zarr
from PIL import Image
from zarr.storage import MemoryStore

from idrcell.emulator import EmulatorServer, load_catalogue
from idrcell.emulator.zarr_store import downsample, level_shapes


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def _open(server: EmulatorServer, store: str) -> zarr.Group:
    """Copy a store's files into memory over HTTP (following its metadata) and open it with zarr."""
    files: dict[str, bytes] = {}

    def walk(prefix: str) -> None:
        for name in ("zarr.json", ".zgroup", ".zattrs", ".zarray"):
            status, body, _ = _get(f"{server.zarr_base_url}/{store}/{prefix}{name}")
            if status == 200:
                files[prefix + name] = body
        meta = json.loads(files.get(prefix + "zarr.json", files.get(prefix + ".zattrs", b"{}")))
        attrs = meta.get("attributes", {}).get("ome", meta)
        children = [w["path"] for w in attrs.get("plate", {}).get("wells", [])]
        children += [i["path"] for i in attrs.get("well", {}).get("images", [])]
        children += [d["path"] for m in attrs.get("multiscales", []) for d in m["datasets"]]
        for child in children:
            walk(f"{prefix}{child}/")
        array = json.loads(files.get(prefix + ".zarray", files.get(prefix + "zarr.json", b"{}")))
        if array.get("node_type") == "array" or "chunks" in array:
            shape = array["shape"]
            chunks = array.get("chunks") or array["chunk_grid"]["configuration"]["chunk_shape"]
            grid = np.ndindex(*[-(-s // c) for s, c in zip(shape, chunks, strict=True)])
            lead = "c/" if "node_type" in array else ""
            for index in grid:
                key = prefix + lead + "/".join(map(str, index))
                status, body, _ = _get(f"{server.zarr_base_url}/{store}/{key}")
                assert status == 200, key
                files[key] = body

    walk("")
    assert files, f"nothing served under {store}"
    memory = MemoryStore()
    for key, value in files.items():
        memory._store_dict[key] = zarr.core.buffer.default_buffer_prototype().buffer.from_bytes(value)
    return zarr.open_group(memory, mode="r")


SPEC = {
    "schema": "idrcell-emulator-catalogue-v1",
    "studies": [
        {
            "study": "idr0701-emu-plate",
            "container": "screenA",
            "plates": 1,
            "wells": [1, 2],
            "fields": 2,
            "zarr": {"version": "0.4", "compressor": "zlib"},
            "image": {"width": 300, "height": 270, "t": 2, "channels": 2},
        },
        {
            "study": "idr0702-emu-images",
            "container": "experimentA",
            "datasets": 1,
            "images_per_dataset": 2,
            "zarr": {"version": "0.5", "compressor": "blosc"},
            "image": {"width": 260, "height": 250, "z": 3, "channels": 3, "pixels_type": "uint8"},
        },
    ],
}


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(load_catalogue(SPEC), mode="2026", require_session=False) as running:
        yield running


def test_2026_mode_refuses_renders_and_imgdata_but_serves_api_and_thumbnails(server):
    image = next(iter(server.catalogue.images.values()))
    base = server.base_url
    status, body, _ = _get(f"{base}/webgateway/render_image/{image.id}/0/0/")
    assert (status, body) == (403, b"")
    status, body, _ = _get(f"{base}/webgateway/render_image_region/{image.id}/0/0/?region=0,0,64,64")
    assert (status, body) == (403, b"")
    status, body, _ = _get(f"{base}/webgateway/imgData/{image.id}/")
    answer = json.loads(body)
    assert status == 200 and "Exception" in answer and "size" not in answer
    status, body, kind = _get(f"{base}/webgateway/render_thumbnail/{image.id}/")
    assert status == 200 and kind == "image/jpeg"
    assert max(Image.open(io.BytesIO(body)).size) == 96
    pixels = json.loads(_get(f"{base}/api/v0/m/images/{image.id}/")[1])["data"]["Pixels"]
    assert (pixels["SizeX"], pixels["SizeY"], pixels["SizeC"], pixels["SizeT"]) == (
        image.width,
        image.height,
        image.size_c,
        image.size_t,
    )
    assert [c["Name"] for c in pixels["Channels"]] == [c.label for c in image.channels]


def test_classic_mode_still_renders():
    with EmulatorServer(load_catalogue(SPEC), mode="classic", require_session=False) as classic:
        image = next(iter(classic.catalogue.images.values()))
        status, body, _ = _get(f"{classic.base_url}/webgateway/render_image/{image.id}/0/0/")
        assert status == 200 and body[:2] == b"\xff\xd8"
        assert "size" in json.loads(_get(f"{classic.base_url}/webgateway/imgData/{image.id}/")[1])


def test_v04_plate_store_is_hcs_zarr_v2_with_zlib_and_tczyx_axes(server):
    plate = next(iter(server.catalogue.plates.values()))
    group = _open(server, f"v0.4/idr0701A/{plate.id}.zarr")
    assert group.metadata.zarr_format == 2
    assert [w["path"] for w in group.attrs["plate"]["wells"]] == ["A/1", "A/2"]
    field = group["A/2/1"]
    axes = [a["name"] for a in field.attrs["multiscales"][0]["axes"]]
    assert axes == ["t", "c", "z", "y", "x"]
    assert (
        json.loads(_get(f"{server.zarr_base_url}/v0.4/idr0701A/{plate.id}.zarr/A/2/1/0/.zarray")[1])[
            "compressor"
        ]["id"]
        == "zlib"
    )
    well = next(w for w in plate.wells if w.column == 1)
    image = server.catalogue.images[well.samples[1].image_id]
    planes = server._emulator.planes
    level0 = planes.plane(image, 1, 0, 1)
    assert np.array_equal(field["0"][1, 1, 0], level0)  # the same pixels the classic routes render
    assert np.array_equal(field["1"][1, 1, 0], downsample(level0))
    assert [field[str(k)].shape[-2:] for k in range(len(level_shapes(image)))] == level_shapes(image)
    omero = field.attrs["omero"]
    assert [c["label"] for c in omero["channels"]] == [c.label for c in image.channels]
    assert omero["channels"][0]["window"]["start"] == image.channels[0].window_start


def test_v05_image_store_is_zarr_v3_with_blosc_and_czyx_axes(server):
    image = next(i for i in server.catalogue.images.values() if i.dataset_id is not None)
    group = _open(server, f"v0.5/idr0702/{image.id}.zarr")
    assert group.metadata.zarr_format == 3
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["c", "z", "y", "x"]
    meta = json.loads(_get(f"{server.zarr_base_url}/v0.5/idr0702/{image.id}.zarr/0/zarr.json")[1])
    assert meta["codecs"][1]["name"] == "blosc" and meta["data_type"] == "uint8"
    assert np.array_equal(group["0"][2, 1], server._emulator.planes.plane(image, 2, 1, 0))


def test_bucket_listing_and_missing_keys(server):
    status, body, _ = _get(f"{server.base_url}/idr/?list-type=2&prefix=zarr/v0.5/&delimiter=/")
    assert status == 200 and b"<Prefix>zarr/v0.5/idr0702/</Prefix>" in body
    assert _get(f"{server.zarr_base_url}/v0.4/idr0701A/999.zarr/.zattrs")[0] == 404
    with EmulatorServer(load_catalogue(SPEC), zarr_listing=False) as closed:
        assert _get(f"{closed.base_url}/idr/?list-type=2&prefix=zarr/&delimiter=/")[0] == 403
