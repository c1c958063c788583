"""The OME-Zarr pixel source against the emulator's 2026 mode: the same samples as render_image.

Ground truth is the emulator's own lossless pixels: the synthesised plane (or its pyramid level),
windowed as OMERO renders it, then the builder's one resize and PNG encoding. The render path
cannot equal it byte for byte because it goes through a JPEG (lossy even at q=1.0), so that path is
compared by closeness instead.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from idrcell.client import ClientConfig
from idrcell.emulator import EmulatorServer, load_catalogue
from idrcell.emulator.render import ChannelSetting, render_rgb
from idrcell.experiments import parse_experiments
from idrcell.render import encode_png, resize_to_square
from idrcell.stage import StageConfig, stage_experiment
from idrcell.zarr_resolve import ZarrSourceError
from idrcell.zarr_source import choose_level

SPEC = {
    "schema": "idrcell-emulator-catalogue-v1",
    "name": "zarr-kinds",
    "studies": [
        {  # zarr v2 (OME-NGFF 0.4), blosc, plates by id; some images have 2 timepoints (tczyx)
            "study": "idr0801-zarr-plates",
            "container": "screenA",
            "id": 801,
            "plates": 1,
            "wells": [2, 2],
            "fields": [1, 2],
            "zarr": {"version": "0.4", "compressor": "blosc"},
            "image": {"width": [470, 520], "height": [460, 500], "t": [1, 2], "channels": 2},
        },
        {  # zarr v3 (OME-NGFF 0.5), gzip, images by id, a z-stack
            "study": "idr0802-zarr-images",
            "container": "experimentA",
            "id": 802,
            "datasets": 1,
            "images_per_dataset": 4,
            "zarr": {"version": "0.5", "compressor": "zlib"},
            "image": {
                "width": [230, 300],
                "height": [230, 300],
                "z": 3,
                "channels": 1,
                "pixels_type": "uint8",
            },
        },
        {  # zarr v3, blosc, a plate named by its name like idr0010/76-45.ome.zarr; float pixels
            "study": "idr0803-zarr-named",
            "container": "screenB",
            "id": 803,
            "plates": 1,
            "plate_names": ["76-45"],
            "wells": [2, 2],
            "fields": 1,
            "zarr": {"version": "0.5", "compressor": "blosc", "naming": "name"},
            "image": {"width": 256, "height": 240, "channels": 3, "pixels_type": "float"},
        },
        {  # zarr v2 with zlib, under a folder no naming rule knows (found by listing or the zarr column)
            "study": "idr0804-zarr-odd",
            "container": "experimentC",
            "id": 804,
            "datasets": 1,
            "images_per_dataset": 3,
            "zarr": {"version": "0.4", "compressor": "zlib"},
            "image": {"width": 240, "height": 240, "channels": 2},
        },
        {  # not converted: no OME-Zarr copy at all
            "study": "idr0805-not-converted",
            "container": "screenA",
            "id": 805,
            "plates": 1,
            "wells": [1, 2],
            "fields": 1,
            "zarr": False,
            "image": {"width": 240, "height": 240, "channels": 1},
        },
    ],
}


def _samples(out: Path) -> dict[int, tuple[dict, list[np.ndarray]]]:
    """image id -> (KEY.json, channel planes) of every staged sample under `out`."""
    result = {}
    for path in sorted(out.glob("staging/*/samples/*.tar")):
        with tarfile.open(path) as tar:
            members = sorted(tar.getmembers(), key=lambda m: m.name)
            meta = json.loads(tar.extractfile(next(m for m in members if m.name.endswith(".json"))).read())
            planes = [
                np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())))
                for m in members
                if m.name.endswith(".png")
            ]
        result[meta["image_id"]] = (meta, planes)
    return result


def _stage(server: EmulatorServer, row: str, out: Path, source: str, n_images: int = 4):
    experiment = parse_experiments("study,container,id,n_images,zarr\n" + row.format(n=n_images))[0]
    config = StageConfig(
        client=ClientConfig(base_url=server.base_url, max_retries=1),
        pixel_source=source,
        zarr_base_url=server.zarr_base_url,
    )
    return stage_experiment(experiment, out, config)


def _ground_truth(server: EmulatorServer, image_id: int, channel: int, z: int, t: int, level: int) -> bytes:
    """The emulator's lossless windowed plane at `level`, through the builder's resize and PNG."""
    emulator = server._emulator
    image = server.catalogue.images[image_id]
    raw = emulator.zarr.level_plane(image, channel, z, t, level)
    setting = ChannelSetting(
        channel, True, image.channels[channel].window_start, image.channels[channel].window_end, "FFFFFF"
    )
    grey = render_rgb(lambda _index: raw, [setting], "g", raw.shape)[:, :, 0]
    return encode_png(resize_to_square(grey))


@pytest.fixture(scope="module")
def server_2026():
    with EmulatorServer(load_catalogue(SPEC), mode="2026") as server:
        yield server


@pytest.mark.parametrize(
    ("row", "version", "dtype"),
    [
        ("idr0801-zarr-plates,screenA,801,{n},", "0.4", "uint16"),
        ("idr0802-zarr-images,experimentA,802,{n},", "0.5", "uint8"),
        ("idr0803-zarr-named,screenB,803,{n},", "0.5", "float32"),
    ],
)
def test_2026_server_zarr_samples_equal_the_lossless_ground_truth(server_2026, tmp_path, row, version, dtype):
    result = _stage(server_2026, row, tmp_path, "auto")
    assert result.complete and result.selected == 4, result
    samples = _samples(tmp_path)
    assert len(samples) == 4
    levels = set()
    for image_id, (meta, planes) in samples.items():
        image = server_2026.catalogue.images[image_id]
        source = meta["source"]
        assert source["pixel_source"] == "zarr" and source["dtype"] == dtype
        assert (source["width"], source["height"], source["z"], source["t"]) == (
            image.width,
            image.height,
            image.default_z,
            0,
        )
        # the smallest level whose short side is still >= 224 px
        shapes = [(image.height >> k, image.width >> k) for k in range(4)]
        level = choose_level([s for s in shapes if min(s) >= 32])
        assert source["zarr_level"] == level
        levels.add(level)
        for position, channel in enumerate(meta["channels"]):
            index = channel["index"] - 1
            assert channel["label"] == image.channels[index].label
            assert channel["window"] == [image.channels[index].window_start, image.channels[index].window_end]
            truth = _ground_truth(server_2026, image_id, index, source["z"], 0, level)
            assert encode_png(planes[position]) == truth, (image_id, position)
    if version == "0.4":
        assert levels == {1}  # 460-520 px fields: level 1 (230-260 px) is read, not full resolution
    stats = server_2026.stats
    assert stats.requests.get("render_image", 0) == 0


def test_same_samples_from_render_and_zarr_on_a_server_that_has_both(tmp_path):
    """Classic mode serves render_image and the stores: same selection, same KEY.json but for the
    source fields Zarr adds, and pixels within JPEG noise of each other."""
    row = "idr0802-zarr-images,experimentA,802,{n},"
    with EmulatorServer(load_catalogue(SPEC), mode="classic") as server:
        rendered = _samples(tmp_path / "r") if _stage(server, row, tmp_path / "r", "render") else {}
        from_zarr = _samples(tmp_path / "z") if _stage(server, row, tmp_path / "z", "zarr") else {}
        auto = _samples(tmp_path / "a") if _stage(server, row, tmp_path / "a", "auto") else {}
    assert sorted(rendered) == sorted(from_zarr) == sorted(auto) and len(rendered) == 4
    for image_id, (meta_r, planes_r) in rendered.items():
        meta_z, planes_z = from_zarr[image_id]
        extra = {"pixel_source", "dtype", "zarr_level", "zarr_level_size"}
        assert {k: v for k, v in meta_z["source"].items() if k not in extra} == meta_r["source"]
        assert {**meta_z, "source": None} == {**meta_r, "source": None}
        assert "pixel_source" not in meta_r["source"]  # render-sourced KEY.json keeps its bytes
        for a, b in zip(planes_r, planes_z, strict=True):
            difference = np.abs(a.astype(int) - b.astype(int))
            assert difference.mean() < 1.0 and difference.max() <= 12
    # auto on a server that still renders renders: byte-identical to the render source
    assert {k: v[0] for k, v in auto.items()} == {k: v[0] for k, v in rendered.items()}


def test_store_outside_the_naming_rules_is_found_by_listing_or_the_zarr_column(tmp_path):
    catalogue = load_catalogue(SPEC)
    container = next(c for c in catalogue.containers if c.id == 804)
    # The emulator puts it at v0.4/idr0804C/<id>.zarr; a rule-following resolver finds that directly,
    # so move the study under a folder no rule names by renaming it in the server's tree.
    with EmulatorServer(catalogue, mode="2026") as server:
        tree = server._emulator.zarr
        for key in [k for k in tree.roots if k.startswith("v0.4/idr0804C/")]:
            tree.roots[key.replace("v0.4/idr0804C/", "v0.5/idr0804/")] = tree.roots.pop(key)
        found = _stage(server, "idr0804-zarr-odd,experimentC,804,{n},", tmp_path / "listed", "zarr", 3)
        assert found.selected == 3  # found under v0.5/idr0804/ by listing the study folder
        for key in [k for k in tree.roots if k.startswith("v0.5/idr0804/")]:
            tree.roots[key.replace("v0.5/idr0804/", "special/odd/")] = tree.roots.pop(key)
        with pytest.raises(ZarrSourceError) as error:
            _stage(server, "idr0804-zarr-odd,experimentC,804,{n},", tmp_path / "lost", "zarr", 3)
        message = str(error.value)
        assert "\n" not in message and "idr0804-zarr-odd/experimentC" in message
        assert f"{server.zarr_base_url}/v0.4/idr0804C/" in message and "listing" in message
        column = "idr0804-zarr-odd,experimentC,804,{n},special/odd/{{image_id}}.zarr"
        by_column = _stage(server, column, tmp_path / "column", "zarr", 3)
        assert by_column.selected == 3
    assert container.zarr is not None


def test_unconverted_experiment_fails_with_one_line_naming_what_was_tried(server_2026, tmp_path):
    with pytest.raises(ZarrSourceError) as error:
        _stage(server_2026, "idr0805-not-converted,screenA,805,{n},", tmp_path, "auto", 2)
    message = str(error.value)
    assert "\n" not in message
    assert "no OME-Zarr copy found" in message and "v0.4/idr0805A/" in message


def test_choose_level_is_the_smallest_with_a_short_side_of_224():
    assert choose_level([(2000, 3000), (1000, 1500), (500, 750), (250, 375), (125, 187)]) == 3
    assert choose_level([(300, 200), (150, 100)]) == 0  # nothing reaches 224: full resolution
    assert choose_level([(448, 448), (224, 224)]) == 1


def test_zarr_column_is_checked_and_written_only_when_used():
    from idrcell.experiments import ExperimentListError, experiments_to_csv

    plain = parse_experiments("study,container,id\nidr0001-a,screenA,1\n")
    assert experiments_to_csv(plain).splitlines()[0] == "study,container,id,n_images,channels,z,t"
    with_zarr = parse_experiments(
        "study,container,zarr\nidr0001-a,screenA,v0.5/{study_id}/{plate_name}.ome.zarr\n"
    )
    text = experiments_to_csv(with_zarr)
    assert text.splitlines()[0].endswith(",zarr") and parse_experiments(text) == with_zarr
    with pytest.raises(ExperimentListError) as error:
        parse_experiments("study,container,zarr\nidr0001-a,screenA,v0.4/{plate}.zarr\n")
    assert "line 2: column 'zarr' has unknown placeholder {plate}" in str(error.value)


def test_zarr_build_through_faults_gives_the_same_bytes(tmp_path):
    """Chunk and metadata fetches go through the client's retries: 5xx, 429 and cut bodies on the
    object store change nothing in the samples."""
    from idrcell.emulator import FaultConfig

    row = "idr0801-zarr-plates,screenA,801,{n},"
    with EmulatorServer(load_catalogue(SPEC), mode="2026") as server:
        clean = _stage(server, row, tmp_path / "clean", "zarr")
        server.set_faults(
            FaultConfig(rate=0.3, kinds=("500", "502", "truncated", "429"), retry_after_s=0, seed=3)
        )
        experiment = parse_experiments("study,container,id,n_images\n" + row.format(n=4).rstrip(","))[0]
        config = StageConfig(
            client=ClientConfig(
                base_url=server.base_url, max_retries=12, backoff_base_s=0.01, backoff_max_s=0.05
            ),
            pixel_source="zarr",
            zarr_base_url=server.zarr_base_url,
        )
        faulty = stage_experiment(experiment, tmp_path / "faulty", config)
        injected = server.stats.faults
    assert clean.selected == faulty.selected == 4 and faulty.complete
    assert sum(injected.values()) > 0 and injected.get("truncated", 0) > 0, injected
    assert sum(faulty.retries.values()) >= sum(injected.values())
    clean_files = sorted((tmp_path / "clean").glob("staging/*/samples/*.tar"))
    faulty_files = sorted((tmp_path / "faulty").glob("staging/*/samples/*.tar"))
    assert [p.name for p in clean_files] == [p.name for p in faulty_files]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(clean_files, faulty_files, strict=True))
