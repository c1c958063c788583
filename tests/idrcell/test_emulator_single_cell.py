"""`cell_layout: single`: one cell per image whose structures survive downscaling to a training size."""

from __future__ import annotations

import copy
import json
from importlib import resources

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import ndimage

from idrcell.emulator import CatalogueSpecError, load_catalogue
from idrcell.emulator.pixels import COMPARTMENTS, _structure_signal, cell_field, localised, synthesize_plane


def _demo_spec() -> dict:
    text = resources.files("idrcell.emulator").joinpath("catalogues", "demo.json").read_text()
    return json.loads(text)


def _scaled(plane: np.ndarray, channel, size: int = 32) -> np.ndarray:
    values = (plane.astype(np.float32) - channel.window_start) / (channel.window_end - channel.window_start)
    return np.asarray(PILImage.fromarray(np.clip(values, 0, 1)).resize((size, size), PILImage.BILINEAR))


def test_single_cell_images_hold_one_centred_cell_whose_puncta_survive_32_px():
    demo = load_catalogue("demo")
    image = next(i for i in demo.images.values() if i.study == "idr0912-emu-cellpainting" and i.size_c == 5)
    assert image.cell_layout == "single"
    structures = [c.structure for c in image.channels]
    nuclei = _scaled(synthesize_plane(image, structures.index("nuclei"), 0, 0, seed=0), image.channels[0])
    # One nucleus, near the centre of the 32 px image.
    _, count = ndimage.label(nuclei > 0.5 * nuclei.max())
    assert count == 1
    centre = np.array(ndimage.center_of_mass(nuclei > 0.5 * nuclei.max()))
    assert np.all(np.abs(centre - 15.5) < 5)
    # The organelle spots are a few pixels wide at 32 px, not lost in the downscaling.
    index = structures.index("puncta")
    puncta = _scaled(synthesize_plane(image, index, 0, 0, seed=0), image.channels[index])
    peaks = (puncta == ndimage.maximum_filter(puncta, size=3)) & (puncta > 0.4 * puncta.max())
    assert peaks.sum() >= 3


def test_cell_layout_is_per_study_and_checked():
    spec = _demo_spec()
    layouts = {s["study"]: s.get("cell_layout", "field") for s in spec["studies"]}
    demo = load_catalogue("demo")
    assert all(i.cell_layout == layouts[i.study] for i in demo.images.values())
    # The layout takes no random draw: without it, every image keeps its size and channels.
    plain = copy.deepcopy(spec)
    for study in plain["studies"]:
        study.pop("cell_layout", None)
    fields = load_catalogue(plain)
    assert [(i.width, i.height, i.channels) for i in fields.images.values()] == [
        (i.width, i.height, i.channels) for i in demo.images.values()
    ]
    assert {i.cell_layout for i in fields.images.values()} == {"field"}
    spec["studies"][0]["cell_layout"] = "crowd"
    with pytest.raises(CatalogueSpecError, match=r"studies\[0\]\.cell_layout: must be one of field, single"):
        load_catalogue(spec)


def test_per_image_localisation_varies_a_channel_between_images_not_between_planes():
    spec = _demo_spec()
    study = next(s for s in spec["studies"] if s["study"] == "idr0913-emu-spindle")
    assert study["localisation"] == "per_image"  # as `make demo` pretrains on
    catalogue = load_catalogue(spec)
    images = [i for i in catalogue.images.values() if i.study == study["study"] and i.size_c == 3]
    assert all(i.localisation == "per_image" for i in images)
    shown = {tuple(localised(i, c, i.channels[c].structure, seed=0) for c in range(3)) for i in images}
    # The nuclear counterstain stays; the other channels show other compartments from image to image.
    assert {combo[0] for combo in shown} == {"nuclei"} and len(shown) >= 10
    assert all(set(combo) <= set(COMPARTMENTS) for combo in shown)
    # A study without the key keeps one structure per channel (Cell Painting's stains).
    fixed = load_catalogue("demo")
    image = next(i for i in fixed.images.values() if i.study == "idr0912-emu-cellpainting" and i.size_c == 5)
    assert [localised(image, c, ch.structure, 0) for c, ch in enumerate(image.channels)] == [
        ch.structure for ch in image.channels
    ]
    study["localisation"] = "random"
    expected = r"localisation: must be one of fixed, per_image, per_image_all"
    with pytest.raises(CatalogueSpecError, match=expected):
        load_catalogue(spec)


def test_per_image_all_localisation_draws_the_first_channel_too():
    spec = _demo_spec()
    study = next(s for s in spec["studies"] if s["study"] == "idr0916-emu-organelles")
    assert study["localisation"] == "per_image_all"  # as `make demo` pretrains on
    images = [i for i in load_catalogue(spec).images.values() if i.study == study["study"] and i.size_c == 4]
    firsts = {localised(i, 0, i.channels[0].structure, seed=0) for i in images}
    # No counterstain: the first channel shows most compartments across a few dozen images.
    assert len(firsts) >= 5 and firsts <= set(COMPARTMENTS)


def _at_32_px(structure: str, seed: int) -> np.ndarray:
    """One structure of a single-cell image of the demo catalogue, scaled to [0, 1] at 32 x 32 px."""
    image = next(i for i in load_catalogue("demo").images.values() if i.study == "idr0916-emu-organelles")
    signal = _structure_signal(structure, cell_field(image, seed, 0), np.random.default_rng(seed))
    signal = (signal - signal.min()) / (np.ptp(signal) + 1e-6)
    return np.asarray(PILImage.fromarray(signal.astype(np.float32)).resize((32, 32), PILImage.BILINEAR))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_centrosomes_are_two_bodies_either_side_of_the_centre_at_32_px(seed: int):
    plane = _at_32_px("centrosomes", seed)
    bodies, count = ndimage.label(plane > 0.3)
    assert count == 2
    first, second = (np.array(c) for c in ndimage.center_of_mass(plane, bodies, [1, 2]))
    # On opposite sides of the cell's centre, a few pixels apart.
    midpoint = (first + second) / 2
    assert np.all(np.abs(midpoint - 15.5) < 6) and np.linalg.norm(first - second) > 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stress_fibres_are_parallel_bundles_at_32_px(seed: int):
    plane = _at_32_px("stress_fibres", seed)
    # Parallel lines: the image's gradients all point along one axis (a strong structure-tensor
    # anisotropy), and several separate bundles cross the cell.
    gy, gx = np.gradient(plane)
    tensor = np.array([[np.sum(gy * gy), np.sum(gy * gx)], [np.sum(gy * gx), np.sum(gx * gx)]])
    low, high = np.linalg.eigvalsh(tensor)
    assert low / high < 0.35
    _, count = ndimage.label(plane > 0.4)
    assert count >= 3
