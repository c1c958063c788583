"""The emulator honours the IDR web API contract (docs/idr-api.md) route by route."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image as PILImage

from idrcell.emulator import EmulatorServer, load_catalogue

OME = "http://www.openmicroscopy.org/Schemas/OME/2016-06"

# Keys of the real IDR answer for /webgateway/imgData/122770/ (shared/data/idr-samples).
REAL_IMGDATA_KEYS = {
    "id", "meta", "perms", "tiles", "interpolate", "size", "pixel_size", "init_zoom",
    "pixel_range", "channels", "split_channel", "rdefs",
}  # fmt: skip
REAL_META_KEYS = {
    "imageName", "imageDescription", "imageAuthor", "projectName", "projectId", "projectDescription",
    "datasetName", "datasetId", "datasetDescription", "wellSampleId", "wellId", "imageTimestamp",
    "imageId", "pixelsType",
}  # fmt: skip
REAL_CHANNEL_KEYS = {
    "emissionWave", "label", "color", "inverted", "reverseIntensity", "family", "coefficient",
    "window", "active",
}  # fmt: skip

# A catalogue with one image shaped like IDR image 122770 (696 x 520, 3 channels, uint16).
ACTINOME_LIKE = {
    "name": "actinome-like",
    "plane_limit": 600,
    "studies": [
        {
            "study": "idr0990-emu-actinome",
            "container": "screenB",
            "id": 206,
            "plates": 1,
            "wells": [1, 2],
            "fields": 1,
            "image": {"width": 696, "height": 520, "channels": 3, "pixels_type": "uint16"},
        }
    ],
}


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, bytes]:
    async with session.get(url) as response:
        return response.status, response.headers, await response.read()


def fetch(base: str, *paths: str, warm: bool = True) -> list[tuple[int, Any, bytes]]:
    """GET each path in order within one client session (after the session warm-up by default)."""

    async def run() -> list[tuple[int, Any, bytes]]:
        # unsafe=True: aiohttp keeps no cookies from IP-address hosts otherwise.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            if warm:
                status, _, _ = await _get(session, f"{base}/webclient/?experimenter=-1")
                assert status == 200
            return [await _get(session, f"{base}{path}") for path in paths]

    return asyncio.run(run())


def fetch_json(base: str, *paths: str) -> list[Any]:
    results = fetch(base, *paths)
    for (status, _, body), path in zip(results, paths, strict=True):
        assert status == 200, (path, body)
    return [json.loads(body) for _, _, body in results]


def decode(body: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(body)).convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def tiny():
    with EmulatorServer("tiny", max_limit=4) as server:
        yield server


def _walk_values(value: Any):
    if isinstance(value, dict):
        for item in value.values():
            yield item
            yield from _walk_values(item)
    elif isinstance(value, list):
        for item in value:
            yield item
            yield from _walk_values(item)


def test_session_cookie_is_required_and_every_answer_carries_the_api_version(tiny):
    (cold,) = fetch(tiny.base_url, "/api/v0/m/screens/", warm=False)
    assert cold[0] == 403 and json.loads(cold[2]) == {"message": "Not logged in"}
    assert cold[1]["X-OMERO-ApiVersion"] == "0.2"

    async def warm_up() -> tuple[str, list[int]]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{tiny.base_url}/webclient/?experimenter=-1") as response:
                cookie = response.cookies["sessionid_idr"]
                assert response.headers["X-OMERO-ApiVersion"] == "0.2"
            statuses = [(await _get(session, f"{tiny.base_url}{p}"))[0] for p in ("/api/v0/m/screens/",) * 2]
            return cookie.value, statuses

    token, statuses = asyncio.run(warm_up())
    assert len(token) >= 16 and statuses == [200, 200]
    # A forged cookie is no session.
    forged = asyncio.run(_with_cookie(tiny.base_url, "/api/v0/m/screens/", "not-a-session"))
    assert forged == 403


async def _with_cookie(base: str, path: str, value: str) -> int:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        session.cookie_jar.update_cookies({"sessionid_idr": value}, response_url=aiohttp.client.URL(base))
        return (await _get(session, f"{base}{path}"))[0]


def test_lists_cap_the_limit_and_page_to_the_total(tiny):
    plate_id = tiny.catalogue.screens[0].child_ids[0]
    expected = tiny.catalogue.plates[plate_id].wells
    assert len(expected) > 4  # more wells than maxLimit, so paging is exercised
    seen, offset = [], 0
    while True:
        (page,) = fetch_json(tiny.base_url, f"/api/v0/m/plates/{plate_id}/wells/?limit=1000&offset={offset}")
        meta = page["meta"]
        assert meta["limit"] == 4 and meta["maxLimit"] == 4 and meta["offset"] == offset
        assert meta["totalCount"] == len(expected)
        seen += page["data"]
        offset += meta["limit"]
        if offset >= meta["totalCount"]:
            break
    assert sorted(w["@id"] for w in seen) == sorted(w.id for w in expected)
    # Wells come ordered by Column, then Row (the catalogue creates them row by row).
    assert [(w["Column"], w["Row"]) for w in seen] == sorted((w["Column"], w["Row"]) for w in seen)
    assert [w["@id"] for w in seen] != sorted(w["@id"] for w in seen)
    (default,) = fetch_json(tiny.base_url, "/api/v0/m/screens/")
    assert default["meta"]["limit"] == 4 and default["meta"]["totalCount"] == 2


def test_bad_integers_unknown_objects_and_unknown_routes_answer_json_errors(tiny):
    bad, missing, nowhere, bad_annotation = fetch(
        tiny.base_url,
        "/api/v0/m/screens/?limit=foo",
        "/api/v0/m/screens/424242/",
        "/api/v0/m/nothing/",
        "/webclient/api/annotations/?type=map&screen=abc",
    )
    assert bad[0] == 400 and json.loads(bad[2]) == {
        "message": "invalid literal for int() with base 10: 'foo'"
    }
    assert missing[0] == 404 and "424242" in json.loads(missing[2])["message"]
    assert nowhere[0] == 404 and "message" in json.loads(nowhere[2])
    assert bad_annotation[0] == 400
    for _, headers, _ in (bad, missing, nowhere):
        assert headers["Content-Type"].startswith("application/json")


def test_screens_plates_wells_follow_omero_marshal(tiny):
    screens, one = fetch_json(tiny.base_url, "/api/v0/m/screens/", "/api/v0/m/screens/901/")
    by_name = {s["Name"]: s for s in screens["data"]}
    assert set(by_name) == {"idr0901-emu-mitosis/screenA", "idr0903-emu-painting/screenA"}
    screen = by_name["idr0901-emu-mitosis/screenA"]
    assert screen["@type"] == f"{OME}#Screen" and screen["@id"] == 901
    assert screen["url:plates"].endswith("/api/v0/m/screens/901/plates/")
    assert screen["omero:details"]["owner"]["@type"] == f"{OME}#Experimenter"
    assert one["data"]["Name"] == screen["Name"]
    (plates,) = fetch_json(tiny.base_url, "/api/v0/m/screens/901/plates/")
    plate = plates["data"][0]
    assert plate["@type"] == f"{OME}#Plate" and {"Rows", "Columns", "url:wells"} <= set(plate)
    wells = fetch_json(tiny.base_url, *(f"/api/v0/m/plates/{p['@id']}/wells/" for p in plates["data"]))
    samples = [w["WellSamples"] for page in wells for w in page["data"]]
    assert min(map(len, samples)) == 0 and max(map(len, samples)) >= 2  # empty wells and many fields
    sample = next(s for fields in samples for s in fields)
    assert sample["@type"] == f"{OME}#WellSample"
    assert {"@id", "Name", "omero:series", "url:image"} <= set(sample["Image"])
    assert "Pixels" not in sample["Image"]
    for page in [screens, plates, *wells]:
        assert None not in list(_walk_values(page["data"]))  # null fields are omitted


def test_projects_datasets_images_carry_pixels(tiny):
    projects, project = fetch_json(tiny.base_url, "/api/v0/m/projects/", "/api/v0/m/projects/902/")
    assert [p["Name"] for p in projects["data"]] == ["idr0902-emu-organelles/experimentA"]
    assert project["data"]["@type"] == f"{OME}#Project"
    (datasets,) = fetch_json(tiny.base_url, "/api/v0/m/projects/902/datasets/")
    assert len(datasets["data"]) == 2 and datasets["data"][0]["@type"] == f"{OME}#Dataset"
    dataset_id = datasets["data"][0]["@id"]
    (images,) = fetch_json(tiny.base_url, f"/api/v0/m/datasets/{dataset_id}/images/?limit=2&offset=1")
    assert images["meta"]["offset"] == 1 and len(images["data"]) == 2
    image = images["data"][0]
    pixels = image["Pixels"]
    expected = tiny.catalogue.images[image["@id"]]
    assert (pixels["SizeX"], pixels["SizeY"], pixels["SizeZ"], pixels["SizeC"], pixels["SizeT"]) == (
        expected.width,
        expected.height,
        expected.size_z,
        expected.size_c,
        expected.size_t,
    )
    assert pixels["Type"]["value"] == "uint8" and "Channels" not in pixels
    (single,) = fetch_json(tiny.base_url, f"/api/v0/m/images/{image['@id']}/")
    assert [c["Name"] for c in single["data"]["Pixels"]["Channels"]] == [c.label for c in expected.channels]


def test_study_annotations_have_the_idr_namespace_with_missing_and_repeated_keys(tiny):
    mitosis, organelles, painting, unknown = fetch_json(
        tiny.base_url,
        "/webclient/api/annotations/?type=map&screen=901",
        "/webclient/api/annotations/?type=map&project=902",
        "/webclient/api/annotations/?type=map&screen=903",
        "/webclient/api/annotations/?type=map&screen=5",
    )

    def study_values(answer: dict[str, Any]) -> list[list[str]]:
        (info,) = [a for a in answer["annotations"] if a["ns"] == "idr.openmicroscopy.org/study/info"]
        return info["values"]

    assert ["Imaging Method", "fluorescence microscopy"] in study_values(mitosis)
    assert len(mitosis["annotations"]) == 2  # another namespace the client must ignore
    assert mitosis["annotations"][0]["link"]["parent"] == {
        "id": 901,
        "class": "ScreenI",
        "name": "idr0901-emu-mitosis/screenA",
    }
    assert organelles["annotations"][0]["link"]["parent"]["class"] == "ProjectI"
    assert "Cell Line" not in [key for key, _ in study_values(organelles)]
    assert [key for key, _ in study_values(painting)].count("Cell Line") == 2
    assert unknown == {"annotations": [], "experimenters": []}


def test_img_data_is_shaped_like_the_real_idr_answer():
    catalogue = load_catalogue(ACTINOME_LIKE)
    image = next(iter(catalogue.images.values()))
    with EmulatorServer(catalogue) as server:
        (answer,) = fetch_json(server.base_url, f"/webgateway/imgData/{image.id}/")
    assert set(answer) >= REAL_IMGDATA_KEYS and set(answer["meta"]) == REAL_META_KEYS
    assert all(set(channel) == REAL_CHANNEL_KEYS for channel in answer["channels"])
    assert answer["size"] == {"width": 696, "height": 520, "z": 1, "t": 1, "c": 3}
    # The split-channel grid of the real answer for a 696 x 520, 3-channel image.
    assert answer["split_channel"]["g"] == {
        "width": 1398,
        "height": 1046,
        "border": 2,
        "gridx": 2,
        "gridy": 2,
    }
    assert answer["meta"]["wellId"] == image.well_id and answer["meta"]["projectName"] == "Multiple"
    assert answer["pixel_range"] == [0, 65535] and answer["rdefs"]["defaultZ"] == 0
    window = answer["channels"][0]["window"]
    assert window["min"] <= window["start"] < window["end"] <= window["max"]


def test_render_parameters_change_the_jpeg(tiny):
    image = next(i for i in tiny.catalogue.images.values() if i.size_c == 3 and not i.forbidden and i.width)
    ch = image.channels[0]
    base = f"/webgateway/render_image/{image.id}/0/0/"
    grey = f"?c=1|{ch.window_start:g}:{ch.window_end:g}$FFFFFF&m=g&q=1.0"
    results = fetch(
        tiny.base_url,
        base + grey,
        base + grey,
        f"/webgateway/render_image/{image.id}/?c=1|{ch.window_start:g}:{ch.window_end:g}$FFFFFF&m=g&q=1.0",
        base + f"?c=2|{ch.window_start:g}:{ch.window_end:g}$FFFFFF&m=g&q=1.0",
        base + f"?c=1|{ch.window_start:g}:{ch.window_end:g}$FFFFFF&m=g&q=0.2",
        base + f"?c=1|{ch.window_min:g}:{ch.window_max:g}$FFFFFF&m=g&q=1.0",
        base + "?c=1$FF0000&m=c&q=1.0",
        base + "?c=1$FF0000,2$00FF00,-3&m=c&q=1.0",
        base + "?c=9&m=g",
        base + "?q=2",
    )
    for status, headers, _ in results[:8]:
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
    first, again, implicit_plane, channel2, low_quality, full_range, red, red_green, bad_c, bad_q = (
        body for _, _, body in results
    )
    assert first == again == implicit_plane  # deterministic, and {z}/{t} default to the rdefs
    pixels = decode(first)
    assert pixels.shape == (image.height, image.width, 3)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 2  # greyscale
    assert np.abs(decode(channel2) - pixels).mean() > 3  # another channel, other structures
    assert len(low_quality) < len(first) / 2  # q is JPEG quality
    # min:max instead of the window: the background (above min) is no longer black.
    assert np.percentile(decode(full_range), 5) > np.percentile(pixels, 5)
    red_only = decode(red)
    assert red_only[..., 0].mean() > 5 * max(red_only[..., 1].mean(), red_only[..., 2].mean(), 0.5)
    both = decode(red_green)
    assert both[..., 1].mean() > 2 * both[..., 2].mean()  # channel 3 listed as off
    assert results[8][0] == 400 and b"out of range" in bad_c
    assert results[9][0] == 400 and b"[0, 1]" in bad_q


def test_render_region_and_the_plane_limit():
    catalogue = load_catalogue(ACTINOME_LIKE)  # plane_limit 600 < 696 px
    image = next(iter(catalogue.images.values()))
    with EmulatorServer(catalogue) as server:
        whole, tile, edge, empty, region_missing = fetch(
            server.base_url,
            f"/webgateway/render_image/{image.id}/0/0/?c=1&m=g",
            f"/webgateway/render_image_region/{image.id}/0/0/?region=100,50,300,200&c=1&m=g",
            f"/webgateway/render_image_region/{image.id}/0/0/?region=600,400,300,300&c=1&m=g",
            f"/webgateway/render_image_region/{image.id}/0/0/?region=800,0,10,10&c=1&m=g",
            f"/webgateway/render_image_region/{image.id}/0/0/?c=1&m=g",
        )
        (info,) = fetch_json(server.base_url, f"/webgateway/imgData/{image.id}/")
    assert whole[0] == 400 and "plane limit" in json.loads(whole[2])["message"]
    assert info["tiles"] is True
    assert tile[0] == 200 and decode(tile[2]).shape == (200, 300, 3)
    assert edge[0] == 200 and decode(edge[2]).shape == (120, 96, 3)  # clipped to the image
    assert empty[0] == 400 and region_missing[0] == 400


def test_forbidden_and_empty_images(tiny):
    forbidden = next(i for i in tiny.catalogue.images.values() if i.forbidden)
    empty = next(i for i in tiny.catalogue.images.values() if i.width == 0)
    results = fetch(
        tiny.base_url,
        f"/webgateway/imgData/{forbidden.id}/",
        f"/webgateway/render_image/{forbidden.id}/0/0/?c=1&m=g",
        f"/api/v0/m/images/{forbidden.id}/",
        f"/webgateway/imgData/{empty.id}/",
        f"/webgateway/render_image/{empty.id}/0/0/?c=1&m=g",
    )
    for status, _, body in results[:3]:
        assert status == 403 and "public user" in json.loads(body)["message"]
    assert results[3][0] == 200 and json.loads(results[3][2])["size"]["width"] == 0
    assert results[4][0] == 400
