"""Where the Zarr source gets an image's sizes when the JSON API's answer has no `Pixels`, and what a
skipped image's failures.jsonl line says about the stores looked for."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from idrcell.client import ClientConfig
from idrcell.emulator import EmulatorServer
from idrcell.emulator import marshal as emulator_marshal
from idrcell.experiments import parse_experiments
from idrcell.stage import EmptyStageError, StageConfig, stage_experiment

ORGANELLES = "idr0902-emu-organelles_experimentA"
ROW = "idr0902-emu-organelles,experimentA,902,4"


def _stage(server: EmulatorServer, out: Path):
    experiment = parse_experiments("study,container,id,n_images\n" + ROW)[0]
    config = StageConfig(
        client=ClientConfig(base_url=server.base_url, max_retries=1),
        pixel_source="zarr",
        zarr_base_url=server.zarr_base_url,
    )
    return stage_experiment(experiment, out, config)


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "staging" / ORGANELLES / "samples").glob("*.tar"))}


def _failures(out: Path) -> list[dict]:
    path = out / "staging" / ORGANELLES / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _without_pixels(base, item, with_channels):
    answer = ORIGINAL_IMAGE(base, item, with_channels)
    return {key: value for key, value in answer.items() if key != "Pixels"}


ORIGINAL_IMAGE = emulator_marshal.image


def test_sizes_come_from_img_data_when_the_api_answer_lacks_pixels(tmp_path: Path) -> None:
    """On a server whose imgData still answers sizes, an API answer without `Pixels` costs one imgData
    request per image and changes no byte; where imgData answers an Exception too (the 2026 IDR), the
    image is skipped, naming both."""
    with EmulatorServer("tiny", mode="classic") as server:
        with_pixels = _stage(server, tmp_path / "api")
        assert server.stats.requests.get("imgData", 0) == 0  # sizes from the API alone
        with mock.patch.object(emulator_marshal, "image", _without_pixels):
            fallback = _stage(server, tmp_path / "imgdata")
        assert server.stats.requests.get("imgData", 0) >= 4
    assert with_pixels.selected == fallback.selected == 4 and fallback.complete
    assert _files(tmp_path / "imgdata") == _files(tmp_path / "api") and len(_files(tmp_path / "api")) == 4

    with (
        EmulatorServer("tiny", mode="2026") as server,
        mock.patch.object(emulator_marshal, "image", _without_pixels),
        pytest.raises(EmptyStageError, match="skipped: unreadable_metadata 31"),
    ):
        _stage(server, tmp_path / "neither")
    details = [f["detail"] for f in _failures(tmp_path / "neither")]
    assert len(details) == 31
    assert "no Pixels sizes in api/v0/m/images/" in details[0] and "imgData (an Exception" in details[0]


def test_a_no_zarr_skip_names_the_urls_tried_for_that_image(tmp_path: Path) -> None:
    with EmulatorServer("tiny", mode="2026") as server:
        roots = server._emulator.zarr.roots
        lost = 100030
        del roots[f"v0.5/idr0902/{lost}.zarr"]
        experiment = parse_experiments(
            "study,container,id,n_images\nidr0902-emu-organelles,experimentA,902,1000"
        )[0]
        config = StageConfig(
            client=ClientConfig(base_url=server.base_url, max_retries=1),
            pixel_source="zarr",
            zarr_base_url=server.zarr_base_url,
        )
        result = stage_experiment(experiment, tmp_path, config)
        base = server.zarr_base_url
    assert result.skipped.get("no_zarr") == 1, result
    (record,) = [f for f in _failures(tmp_path) if f.get("reason") == "no_zarr"]
    assert record["image_id"] == lost
    detail = record["detail"]
    assert detail.startswith(f"image {lost}: no OME-Zarr copy found; tried ")
    for url in (
        f"{base}/v0.4/idr0902A/{lost}.zarr",
        f"{base}/v0.5/idr0902/{lost}.zarr",
        f"{base}/v0.5/idr0902A/{lost}.zarr",
        f"listing {base}/v0.5/idr0902/",
    ):
        assert url in detail, url
