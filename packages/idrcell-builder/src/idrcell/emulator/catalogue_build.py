"""Generating an emulator catalogue from a spec: ids, studies, plates, wells, datasets and images.

Building is deterministic: the same spec and seed give the same objects, ids and (later, in pixels.py)
the same pixels. Each study draws from its own random stream, so editing one study does not change
the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from idrcell.emulator.catalogue_model import (
    CELL_LAYOUTS,
    LOCALISATIONS,
    PIXEL_TYPES,
    STRUCTURES,
    Catalogue,
    Channel,
    Container,
    Dataset,
    Image,
    Plate,
    Well,
    WellSample,
)
from idrcell.emulator.catalogue_spec import (
    DEFAULT_PLANE_LIMIT,
    SCHEMA,
    CatalogueSpecError,
    container_kind,
    draw_choice,
    draw_int,
    spec_annotations,
    spec_int,
    spec_zarr,
)

# Channel names typical of IDR studies per structure: (label, emission wavelength nm or None, colour).
_CHANNEL_POOL: dict[str, tuple[tuple[str, float | None, str], ...]] = {
    "nuclei": (
        ("DAPI", 461.0, "0000FF"),
        ("Hoechst 33342", 455.0, "0000FF"),
        ("H2B-mCherry", 610.0, "FF0000"),
    ),
    "cytoplasm": (
        ("CellMask Deep Red", 658.0, "FF00FF"),
        ("SYTO 14", 521.0, "00FF00"),
        ("GFP", 509.0, "00FF00"),
    ),
    "puncta": (("MitoTracker", 599.0, "FF0000"), ("LC3-GFP", 509.0, "00FF00"), ("GM130", 520.0, "FFFF00")),
    "membrane": (("WGA AF555", 565.0, "FFFF00"), ("Concanavalin A", 519.0, "00FFFF")),
    "filaments": (("Phalloidin", 520.0, "00FF00"), ("alpha-tubulin", 670.0, "FF00FF")),
    "brightfield": (("Brightfield", None, "FFFFFF"), ("DIC", None, "FFFFFF"), ("Phase", None, "FFFFFF")),
    "real_cell": (("Phase contrast", None, "FFFFFF"),),
    "real_nuclei": (("Hoechst", 455.0, "0000FF"),),
}
# Order in which structures are given to channels 2.. of an image (channel 1 is nuclei).
_STRUCTURE_CYCLE = ("cytoplasm", "puncta", "membrane", "filaments", "brightfield")

# Value ranges per pixel type: (min, max) of the data; OMERO's window min/max come from these.
_TYPE_RANGE = {"uint8": (0.0, 255.0), "uint16": (0.0, 4095.0), "float": (0.0, 1000.0)}


class _Ids:
    """Sequential ids per OMERO object type, skipping ids a spec reserved explicitly."""

    _BASES: ClassVar[dict[str, int]] = {
        "screen": 3001,
        "project": 4001,
        "plate": 10001,
        "well": 20001,
        "wellsample": 30001,
        "plateacquisition": 60001,
        "dataset": 40001,
        "image": 100001,
        "pixels": 200001,
        "annotation": 500001,
    }

    def __init__(self, reserved: Mapping[str, set[int]]) -> None:
        self._next = dict(self._BASES)
        self._reserved = reserved

    def next(self, kind: str) -> int:
        value = self._next[kind]
        while value in self._reserved.get(kind, set()):
            value += 1
        self._next[kind] = value + 1
        return value


@dataclass
class _Builder:
    source: str
    seed: int
    plane_limit: int
    ids: _Ids
    plates: dict[int, Plate] = field(default_factory=dict)
    wells: dict[int, Well] = field(default_factory=dict)
    datasets: dict[int, Dataset] = field(default_factory=dict)
    images: dict[int, Image] = field(default_factory=dict)

    def error(self, where: str, message: str) -> CatalogueSpecError:
        return CatalogueSpecError(f"{self.source}: {where}: {message}")


def build_catalogue(data: Mapping[str, Any], seed: int = 0, source: str = "<dict>") -> Catalogue:
    """Build a deterministic catalogue from a parsed spec (see docs/emulator.md for the schema)."""
    if not isinstance(data, Mapping):
        raise CatalogueSpecError(f"{source}: the top level must be a JSON object")
    if data.get("schema", SCHEMA) != SCHEMA:
        raise CatalogueSpecError(f"{source}: schema must be {SCHEMA!r}, got {data.get('schema')!r}")
    studies = data.get("studies")
    if not isinstance(studies, list) or not studies:
        raise CatalogueSpecError(f"{source}: 'studies' must be a non-empty list")
    reserved: dict[str, set[int]] = {"screen": set(), "project": set()}
    for index, study in enumerate(studies):
        if not isinstance(study, Mapping):
            raise CatalogueSpecError(f"{source}: studies[{index}] must be a JSON object")
        if "id" in study:
            reserved[container_kind(study, source, index)].add(
                spec_int(study["id"], source, f"studies[{index}].id")
            )
    builder = _Builder(
        source=source,
        seed=int(seed),
        plane_limit=spec_int(data.get("plane_limit", DEFAULT_PLANE_LIMIT), source, "plane_limit"),
        ids=_Ids(reserved),
    )
    screens: list[Container] = []
    projects: list[Container] = []
    seen: set[tuple[str, int]] = set()
    for index, study in enumerate(studies):
        container = _build_study(builder, study, index)
        if (container.kind, container.id) in seen:
            raise builder.error(f"studies[{index}]", f"duplicate {container.kind} id {container.id}")
        seen.add((container.kind, container.id))
        (screens if container.kind == "screen" else projects).append(container)
    return Catalogue(
        name=str(data.get("name", source)),
        seed=int(seed),
        plane_limit=builder.plane_limit,
        screens=tuple(screens),
        projects=tuple(projects),
        plates=builder.plates,
        wells=builder.wells,
        datasets=builder.datasets,
        images=builder.images,
    )


def _build_study(builder: _Builder, study: Mapping[str, Any], index: int) -> Container:
    source = builder.source
    where = f"studies[{index}]"
    kind = container_kind(study, source, index)
    name = study.get("study")
    if not isinstance(name, str) or not name:
        raise builder.error(where, "'study' must be a non-empty string")
    container_id = spec_int(study["id"], source, f"{where}.id") if "id" in study else builder.ids.next(kind)
    # One random stream per study (seed, study position) keeps studies independent of each other.
    rng = np.random.default_rng([builder.seed, index, 0x1D2])
    channels = _study_channels(builder, rng, study.get("image", {}).get("channels", [1, 4]), f"{where}.image")
    context = _StudyContext(builder, rng, study, where, name, channels)
    if kind == "screen":
        child_ids = _build_plates(context, container_id)
    else:
        child_ids = _build_datasets(context, container_id)
    _mark_forbidden(context, child_ids, kind)
    description = study.get("description", f"Emulated study {name}, an offline stand-in for IDR.")
    return Container(
        kind=kind,
        id=container_id,
        study=name,
        container=str(study["container"]),
        description=str(description),
        annotation_id=builder.ids.next("annotation"),
        annotations=spec_annotations(study, source, index),
        child_ids=tuple(child_ids),
        zarr=spec_zarr(study, source, index),
    )


def _study_channels(
    builder: _Builder, rng: np.random.Generator, spec: Any, where: str
) -> list[dict[str, Any]]:
    """Channel definitions shared by a study's images (IDR studies keep one channel set)."""
    if isinstance(spec, list) and spec and all(isinstance(item, Mapping) for item in spec):
        result = []
        for position, item in enumerate(spec):
            structure = item.get(
                "structure", "nuclei" if position == 0 else _STRUCTURE_CYCLE[(position - 1) % 5]
            )
            if structure not in STRUCTURES:
                raise builder.error(f"{where}.channels[{position}]", f"unknown structure {structure!r}")
            label = item.get("label")
            if not isinstance(label, str):
                raise builder.error(f"{where}.channels[{position}]", "'label' must be a string")
            result.append(
                {
                    "label": label,
                    "structure": structure,
                    "emission": item.get("emission"),
                    "color": str(item.get("color", "FFFFFF")).upper(),
                }
            )
        return result
    count = draw_int(rng, spec, builder.source, f"{where}.channels", minimum=1)
    return _generated_channels(rng, count)


def _generated_channels(rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    record_emission = bool(rng.random() < 0.5)  # many IDR studies leave emissionWave null
    result = []
    for position in range(count):
        structure = "nuclei" if position == 0 else _STRUCTURE_CYCLE[(position - 1) % len(_STRUCTURE_CYCLE)]
        pool = _CHANNEL_POOL[structure]
        label, emission, color = pool[int(rng.integers(len(pool)))]
        if position >= 6:  # beyond the pool's variety, number repeated stains like multiplexed cycles do
            label = f"{label} cycle {position // 6 + 1}"
        result.append(
            {
                "label": label,
                "structure": structure,
                "emission": emission if record_emission else None,
                "color": color,
            }
        )
    return result


@dataclass
class _StudyContext:
    builder: _Builder
    rng: np.random.Generator
    study: Mapping[str, Any]
    where: str
    name: str
    channels: list[dict[str, Any]]
    serial: int = 0
    name_cursor: int = 0

    def names(self, key: str) -> list[str] | None:
        """An optional list of names from the spec that override generated names, used in turn."""
        value = self.study.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.builder.error(f"{self.where}.{key}", "must be a non-empty list of strings")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        """A study-level choice such as `cell_layout`, its first option by default; no random draw, so
        that adding the key changes no other draw of the catalogue."""
        value = self.study.get(key, allowed[0])
        if value not in allowed:
            options = ", ".join(allowed)
            raise self.builder.error(f"{self.where}.{key}", f"must be one of {options}, got {value!r}")
        return str(value)

    def new_image(
        self, name: str, image_spec: Mapping[str, Any], channels: list[dict[str, Any]], **links: Any
    ) -> Image:
        builder, rng, where = self.builder, self.rng, f"{self.where}.image"
        source = builder.source
        width = draw_int(rng, image_spec.get("width", [256, 512]), source, f"{where}.width")
        height_spec = image_spec.get("height", image_spec.get("width", [256, 512]))
        height = width if image_spec.get("square") else draw_int(rng, height_spec, source, f"{where}.height")
        size_z = draw_int(rng, image_spec.get("z", 1), source, f"{where}.z", minimum=1)
        size_t = draw_int(rng, image_spec.get("t", 1), source, f"{where}.t", minimum=1)
        pixels_type = draw_choice(
            rng, image_spec.get("pixels_type", "uint16"), PIXEL_TYPES, source, f"{where}.pixels_type"
        )
        image_id = builder.ids.next("image")
        self.serial += 1
        image = Image(
            id=image_id,
            pixels_id=builder.ids.next("pixels"),
            name=name,
            width=width,
            height=height,
            size_z=size_z,
            size_t=size_t,
            pixels_type=pixels_type,
            channels=tuple(_channel_with_window(rng, item, pixels_type) for item in channels),
            forbidden=bool(image_spec.get("forbidden", False)),
            series=int(links.pop("series", 0)),
            # 2016-05-26 (IDR's first release) plus a deterministic offset, in ms like omero-marshal.
            acquisition_ms=1464220800000 + self.serial * 61_000,
            pixel_size_um=self.study.get("pixel_size_um", 0.65),
            default_z=size_z // 2,
            default_t=0,
            study=self.name,
            cell_layout=self.choice("cell_layout", CELL_LAYOUTS),
            localisation=self.choice("localisation", LOCALISATIONS),
            **links,
        )
        builder.images[image_id] = image
        return image


def _channel_with_window(rng: np.random.Generator, item: Mapping[str, Any], pixels_type: str) -> Channel:
    low, high = _TYPE_RANGE[pixels_type]
    span = high - low
    if item["structure"] in ("brightfield", "real_cell"):
        start, end = low + 0.15 * span, low + 0.85 * span
    else:
        # Background near 5 % of the range; the end between 40 % and 100 % (some studies keep min:max).
        start = low + float(rng.uniform(0.03, 0.07)) * span
        end = high if rng.random() < 0.3 else low + float(rng.uniform(0.4, 0.9)) * span
    if pixels_type != "float":
        start, end = float(round(start)), float(round(end))
    return Channel(
        label=item["label"],
        structure=item["structure"],
        emission_wave=None if item.get("emission") is None else float(item["emission"]),
        color=item["color"],
        window_min=low,
        window_max=high,
        window_start=start,
        window_end=end,
    )


def _special_specs(context: _StudyContext) -> list[Mapping[str, Any]]:
    specials = context.study.get("special_images", [])
    if not isinstance(specials, list) or not all(isinstance(s, Mapping) for s in specials):
        raise context.builder.error(f"{context.where}.special_images", "must be a list of objects")
    return specials


def _special_channels(
    context: _StudyContext, special: Mapping[str, Any], position: int
) -> list[dict[str, Any]]:
    if "channels" not in special:
        return context.channels
    return _study_channels(
        context.builder, context.rng, special["channels"], f"{context.where}.special_images[{position}]"
    )


def _merged_image_spec(context: _StudyContext, special: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(context.study.get("image", {}))
    merged.pop("forbidden", None)
    merged.update({key: value for key, value in special.items() if key not in ("channels", "name")})
    if "width" in special and "height" not in special:
        merged["height"] = special["width"]
    return merged


@dataclass(frozen=True)
class _PlannedImage:
    name: str
    spec: Mapping[str, Any]
    channels: list[dict[str, Any]]


def _running_totals(plan: list[tuple[int, int, list[_PlannedImage]]]) -> list[int]:
    """The series index of each well's first field (OMERO numbers a plate's images 0, 1, ...)."""
    totals, running = [], 0
    for _, _, fields in plan:
        totals.append(running)
        running += len(fields)
    return totals


def _build_plates(context: _StudyContext, screen_id: int) -> list[int]:
    builder, rng, study, where = context.builder, context.rng, context.study, context.where
    source = builder.source
    n_plates = draw_int(rng, study.get("plates", 2), source, f"{where}.plates", minimum=1)
    grid = study.get("wells", [3, 4])
    if not (isinstance(grid, list) and len(grid) == 2):
        raise builder.error(f"{where}.wells", "must be [rows, columns]")
    rows, columns = (spec_int(v, source, f"{where}.wells") for v in grid)
    if rows < 1 or columns < 1:
        raise builder.error(f"{where}.wells", "rows and columns must be at least 1")
    fields_spec = study.get("fields", [0, 2])
    plate_names = context.names("plate_names")
    image_names = context.names("image_names")
    specials = _special_specs(context)
    plate_ids = []
    for plate_index in range(n_plates):
        plate_id = builder.ids.next("plate")
        plate_name = (
            plate_names[plate_index % len(plate_names)]
            if plate_names
            else f"plate{plate_index + 1}_{plate_id % 1000:03d}"
        )
        acquisition_id = builder.ids.next("plateacquisition") if rng.random() < 0.5 else None
        # Plan every well first (position and the images of its fields), then create them in order.
        plan: list[tuple[int, int, list[_PlannedImage]]] = []
        for row in range(rows):  # created row-major; the API answers them column-major
            for column in range(columns):
                n_fields = draw_int(rng, fields_spec, source, f"{where}.fields")
                fields = []
                for field_index in range(n_fields):
                    name = f"{plate_name} [Well {_row_letter(row)}{column + 1:02d} Field #{field_index + 1}]"
                    if image_names:
                        name = image_names[context.name_cursor % len(image_names)]
                        context.name_cursor += 1
                    fields.append(_PlannedImage(name, study.get("image", {}), context.channels))
                plan.append((row, column, fields))
        extra_rows = 0
        if plate_index == n_plates - 1 and specials:  # special images get extra rows in the last plate
            extra_rows = -(-len(specials) // columns)
            for position, special in enumerate(specials):
                row, column = rows + position // columns, position % columns
                name = special.get("name", f"{plate_name} [Well {_row_letter(row)}{column + 1:02d} Field #1]")
                spec = _merged_image_spec(context, special)
                plan.append(
                    (row, column, [_PlannedImage(name, spec, _special_channels(context, special, position))])
                )
        wells = []
        for series_start, (row, column, fields) in zip(_running_totals(plan), plan, strict=True):
            well_id = builder.ids.next("well")
            samples = []
            for field_index, planned in enumerate(fields):
                image = context.new_image(
                    planned.name,
                    planned.spec,
                    planned.channels,
                    well_id=well_id,
                    series=series_start + field_index,
                )
                sample_id = builder.ids.next("wellsample")
                samples.append(WellSample(sample_id, image.id, field_index, acquisition_id))
            well = Well(well_id, plate_id, row, column, tuple(samples))
            builder.wells[well_id] = well
            wells.append(well)
        builder.plates[plate_id] = Plate(
            plate_id, screen_id, plate_name, rows + extra_rows, columns, tuple(wells)
        )
        plate_ids.append(plate_id)
    return plate_ids


def _build_datasets(context: _StudyContext, project_id: int) -> list[int]:
    builder, rng, study, where = context.builder, context.rng, context.study, context.where
    source = builder.source
    n_datasets = draw_int(rng, study.get("datasets", 2), source, f"{where}.datasets", minimum=1)
    dataset_names = context.names("dataset_names")
    image_names = context.names("image_names")
    specials = _special_specs(context)
    dataset_ids = []
    for dataset_index in range(n_datasets):
        dataset_id = builder.ids.next("dataset")
        dataset_name = (
            dataset_names[dataset_index % len(dataset_names)]
            if dataset_names
            else f"dataset_{dataset_index + 1:02d}"
        )
        count = draw_int(rng, study.get("images_per_dataset", 10), source, f"{where}.images_per_dataset")
        image_ids = []
        links = {"dataset_id": dataset_id, "project_id": project_id}
        for _ in range(count):
            name = (
                image_names[context.serial % len(image_names)]
                if image_names
                else f"{dataset_name}_{context.serial + 1:04d}.ome.tif"
            )
            image_ids.append(context.new_image(name, study.get("image", {}), context.channels, **links).id)
        if dataset_index == n_datasets - 1:
            for position, special in enumerate(specials):
                name = special.get("name", f"{dataset_name}_special_{position + 1}.ome.tif")
                spec = _merged_image_spec(context, special)
                image_ids.append(
                    context.new_image(name, spec, _special_channels(context, special, position), **links).id
                )
        builder.datasets[dataset_id] = Dataset(dataset_id, project_id, dataset_name, tuple(image_ids))
        dataset_ids.append(dataset_id)
    return dataset_ids


def _mark_forbidden(context: _StudyContext, child_ids: list[int], kind: str) -> None:
    """Make `forbidden` regular images of the study unreadable (403) for the public user."""
    builder = context.builder
    count = draw_int(
        context.rng, context.study.get("forbidden", 0), builder.source, f"{context.where}.forbidden"
    )
    if count == 0:
        return
    if kind == "screen":
        ids = [s.image_id for p in child_ids for w in builder.plates[p].wells for s in w.samples]
    else:
        ids = [i for d in child_ids for i in builder.datasets[d].image_ids]
    candidates = [i for i in ids if not builder.images[i].forbidden]
    if count > len(candidates):
        raise builder.error(
            f"{context.where}.forbidden", f"asks for {count} images but the study has {len(candidates)}"
        )
    for position in sorted(context.rng.choice(len(candidates), size=count, replace=False).tolist()):
        image_id = candidates[position]
        builder.images[image_id] = replace(builder.images[image_id], forbidden=True)


def _row_letter(row: int) -> str:
    """Plate row names like OMERO's "letter" convention: A..Z, then AA, AB, ..."""
    letters = ""
    row += 1
    while row:
        row, remainder = divmod(row - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
