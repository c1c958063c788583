"""Builtin and user catalogues: what they promise, determinism, pixels, and the shipped experiment lists."""

from __future__ import annotations

import csv
import json
from importlib import resources

import numpy as np
import pytest

from idrcell.emulator import BUILTIN_CATALOGUES, CatalogueSpecError, load_catalogue
from idrcell.emulator.pixels import PlaneCache, synthesize_plane


def _methods(catalogue) -> set[str]:
    return {m for c in catalogue.containers for m in c.annotation_values("Imaging Method")}


def _regular_channel_counts(catalogue) -> set[int]:
    return {c.size_c for c in catalogue.images.values() if c.size_c != 12}


def test_tiny_has_the_cases_builder_tests_need():
    tiny = load_catalogue("tiny")
    assert len(tiny.containers) == 3
    assert all(25 <= len(tiny.container_images(c)) <= 40 for c in tiny.containers)
    counts = _regular_channel_counts(tiny)
    assert min(counts) == 1 and max(counts) == 10
    images = list(tiny.images.values())
    assert sum(i.size_c == 12 for i in images) == 1
    assert sum(i.forbidden for i in images) == 1
    assert sum(i.width == 0 and i.height == 0 for i in images) == 1
    assert {i.pixels_type for i in images} == {"uint8", "uint16", "float"}


def test_demo_spreads_channels_methods_sizes_and_edge_cases():
    demo = load_catalogue("demo")
    assert len(demo.containers) >= 6 and len(_methods(demo)) >= 3
    assert all(len(demo.container_images(c)) >= 24 for c in demo.containers)
    counts = _regular_channel_counts(demo)
    assert min(counts) == 1 and max(counts) == 10
    images = list(demo.images.values())
    assert any(i.size_c == 12 for i in images) and sum(i.forbidden for i in images) >= 2
    assert sum(max(i.width, i.height) > demo.plane_limit for i in images) == 1
    assert any(i.width != i.height for i in images) and any(i.size_z > 1 for i in images)
    assert any(i.size_t > 1 for i in images)
    assert {i.pixels_type for i in images} == {"uint8", "uint16", "float"}
    assert any(ch.emission_wave is None for i in images for ch in i.channels)


def test_hostile_names_try_every_escape():
    hostile = load_catalogue("hostile")
    names = [c.name for c in hostile.containers]
    names += [p.name for p in hostile.plates.values()] + [d.name for d in hostile.datasets.values()]
    names += [i.name for i in hostile.images.values()]
    assert any("../" in n for n in names) and any(n.startswith("/") for n in names)
    assert any("\x00" in n for n in names) and any("\n" in n for n in names)
    assert any(len(n.encode()) > 255 for n in names) and any(not n.isascii() for n in names)
    assert any(n in ("..", ".", "/") for n in names)


def test_catalogues_are_deterministic_from_the_seed():
    assert load_catalogue("demo", seed=0) == load_catalogue("demo", seed=0)
    other = load_catalogue("demo", seed=1)
    assert [i.width for i in other.images.values()] != [
        i.width for i in load_catalogue("demo").images.values()
    ]
    image = next(i for i in load_catalogue("tiny").images.values() if i.width and i.size_c >= 3)
    first = synthesize_plane(image, 2, 0, 0, seed=0)
    assert np.array_equal(first, synthesize_plane(image, 2, 0, 0, seed=0))
    assert not np.array_equal(first, synthesize_plane(image, 2, 0, 0, seed=1))


def test_pixels_look_like_fluorescence_within_the_channel_window():
    demo = load_catalogue("demo")
    image = next(i for i in demo.images.values() if i.study == "idr0912-emu-cellpainting" and i.size_c == 5)
    planes = [synthesize_plane(image, c, 0, 0, seed=0) for c in range(image.size_c)]
    for plane, channel in zip(planes, image.channels, strict=True):
        assert plane.dtype == np.uint16 and plane.shape == (image.height, image.width)
        assert channel.window_min <= plane.min() and plane.max() <= channel.window_max
        scaled = (plane.astype(float) - channel.window_start) / (channel.window_end - channel.window_start)
        # Dark background with bright objects: most pixels near the window start, some near its end.
        assert np.median(scaled) < 0.35 and np.percentile(scaled, 99.5) > 0.5
    nuclei, membrane = (p.astype(float) for p in (planes[0], planes[1]))
    assert abs(np.corrcoef(nuclei.ravel(), membrane.ravel())[0, 1]) < 0.6  # different structures
    brightfield = next(i for i in demo.images.values() if i.channels[0].structure == "brightfield")
    plane = synthesize_plane(brightfield, 0, 0, 0, seed=0).astype(float)
    assert np.median(plane) > 0.3 * brightfield.channels[0].window_max  # bright background


def test_plane_cache_is_bounded_and_reuses_planes():
    tiny = load_catalogue("tiny")
    images = [i for i in tiny.images.values() if i.width and i.size_c == 10][:3]
    one_plane = images[0].width * images[0].height * 4
    cache = PlaneCache(seed=0, max_bytes=3 * one_plane)
    for image in images:
        for channel in range(4):
            cache.plane(image, channel, 0, 0)
    assert cache.cached_bytes <= 3 * one_plane
    again = cache.plane(images[-1], 3, 0, 0)
    assert cache.hits == 1 and np.array_equal(again, synthesize_plane(images[-1], 3, 0, 0, seed=0))


@pytest.mark.parametrize("name", ["tiny", "demo", "hostile"])
def test_shipped_experiment_lists_resolve_in_their_catalogue(name):
    catalogue = load_catalogue(name)
    text = resources.files("idrcell").joinpath("data", f"experiments_{name}.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert rows and {tuple(r.values())[:2] for r in rows} == {
        (c.study, c.container) for c in catalogue.containers
    }
    by_name = {c.name: c for c in catalogue.containers}
    for row in rows:
        container = by_name[f"{row['study']}/{row['container']}"]
        assert row["id"] in ("", str(container.id))
        images = catalogue.container_images(container)
        usable = [i for i in images if not i.forbidden and i.width and i.size_c <= 10]
        assert 0 < int(row["n_images"]) <= len(usable)
        if row["channels"]:
            assert all(1 <= int(k) <= min(i.size_c for i in usable) for k in row["channels"].split(";"))
    assert BUILTIN_CATALOGUES == ("tiny", "demo", "hostile")


def test_json_spec_files_describe_new_catalogues_and_bad_ones_are_named(tmp_path):
    spec = {
        "schema": "idrcell-emulator-catalogue-v1",
        "name": "mine",
        "studies": [
            {
                "study": "idr0999-me-test",
                "container": "experimentA",
                "datasets": 1,
                "images_per_dataset": 3,
                "annotations": [["Imaging Method", "light sheet fluorescence microscopy"]],
                "image": {
                    "width": 64,
                    "height": 48,
                    "pixels_type": ["uint8", "float"],
                    "channels": [
                        {"label": "Hoechst", "structure": "nuclei", "emission": 455, "color": "0000ff"},
                        {"label": "Actin", "structure": "filaments"},
                    ],
                },
            }
        ],
    }
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(spec))
    mine = load_catalogue(path)
    (project,) = mine.projects
    assert project.name == "idr0999-me-test/experimentA" and project.id == 4001
    images = mine.container_images(project)
    assert len(images) == 3 and all((i.width, i.height, i.size_c) == (64, 48, 2) for i in images)
    assert images[0].channels[0].color == "0000FF" and images[0].channels[1].emission_wave is None
    assert mine.experiments_csv_text(n_images=2).splitlines()[1] == '"idr0999-me-test",experimentA,4001,2,,,'

    broken = {
        "studies": [{**spec["studies"][0], "image": {"channels": [{"label": "x", "structure": "glow"}]}}]
    }
    path.write_text(json.dumps(broken))
    with pytest.raises(CatalogueSpecError, match=r"mine\.json.*channels\[0\].*glow"):
        load_catalogue(path)
    path.write_text("{not json")
    with pytest.raises(CatalogueSpecError, match="not valid JSON"):
        load_catalogue(path)
    with pytest.raises(CatalogueSpecError, match="container must start"):
        load_catalogue({"studies": [{"study": "idr1", "container": "plateA"}]})
    with pytest.raises(CatalogueSpecError, match="neither a builtin"):
        load_catalogue(tmp_path / "missing.json")
