"""The emulator catalogue's data model: containers, plates, wells, datasets, images and channels.

These frozen records are what the routes (marshal.py, server.py) and the pixel synthesis (pixels.py)
read; catalogue_build.py creates them from a spec checked by catalogue_spec.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PIXEL_TYPES: tuple[str, ...] = ("uint8", "uint16", "float")
# Compartments a fluorescent stain or a tagged protein shows; a localisation screen draws among them.
COMPARTMENTS: tuple[str, ...] = (
    "nuclei",
    "cytoplasm",
    "puncta",
    "membrane",
    "filaments",
    "centrosomes",
    "stress_fibres",
)
STRUCTURES: tuple[str, ...] = (*COMPARTMENTS, "brightfield", "real_cell", "real_nuclei")
CELL_LAYOUTS: tuple[str, ...] = ("field", "single")
LOCALISATIONS: tuple[str, ...] = ("fixed", "per_image", "per_image_all")
STUDY_INFO_NS = "idr.openmicroscopy.org/study/info"


@dataclass(frozen=True)
class Channel:
    label: str
    structure: str
    emission_wave: float | None
    color: str  # RRGGBB
    window_min: float
    window_max: float
    window_start: float
    window_end: float


@dataclass(frozen=True)
class Image:
    id: int
    pixels_id: int
    name: str
    width: int
    height: int
    size_z: int
    size_t: int
    pixels_type: str
    channels: tuple[Channel, ...]
    forbidden: bool
    series: int
    acquisition_ms: int
    pixel_size_um: float | None
    default_z: int
    default_t: int
    study: str
    well_id: int | None = None
    dataset_id: int | None = None
    project_id: int | None = None
    cell_layout: str = "field"  # "field": many cells; "single": one cell near the centre (pixels.py)
    # "fixed": one structure per channel; "per_image": drawn per image for every channel but the first
    # (the nuclear counterstain); "per_image_all": for the first too (a panel with no counterstain).
    localisation: str = "fixed"

    @property
    def size_c(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class WellSample:
    id: int
    image_id: int
    field_index: int
    plate_acquisition_id: int | None


@dataclass(frozen=True)
class Well:
    id: int
    plate_id: int
    row: int
    column: int
    samples: tuple[WellSample, ...]


@dataclass(frozen=True)
class Plate:
    id: int
    screen_id: int
    name: str
    rows: int
    columns: int
    wells: tuple[Well, ...]  # in creation order (row-major); the API sorts them by column, then row


@dataclass(frozen=True)
class Dataset:
    id: int
    project_id: int
    name: str
    image_ids: tuple[int, ...]


ZARR_VERSIONS: tuple[str, ...] = ("0.4", "0.5")  # OME-NGFF 0.4 is zarr v2, 0.5 is zarr v3
ZARR_COMPRESSORS: tuple[str, ...] = ("blosc", "zlib")


@dataclass(frozen=True)
class ZarrSettings:
    """How a study's OME-Zarr copy is laid out on the emulated object store (docs/emulator.md)."""

    version: str  # "0.4" or "0.5"
    compressor: str  # "blosc" or "zlib" (zarr v3 stores write zlib's deflate as the gzip codec)
    naming: str  # "id": <id>.zarr; "name": <plate name>.ome.zarr (plates only, as some v0.5 stores)


@dataclass(frozen=True)
class Container:
    """One IDR study container: an OMERO Screen (screen*) or Project (experiment*)."""

    kind: str  # "screen" | "project"
    id: int
    study: str
    container: str
    description: str
    annotation_id: int
    annotations: tuple[tuple[str, str], ...]
    child_ids: tuple[int, ...]  # plate ids (screen) or dataset ids (project)
    zarr: ZarrSettings | None = None  # None: the study has no OME-Zarr copy (not converted yet)

    @property
    def name(self) -> str:
        return f"{self.study}/{self.container}"

    def annotation_values(self, key: str) -> list[str]:
        return [value for k, value in self.annotations if k == key]


@dataclass(frozen=True)
class Catalogue:
    name: str
    seed: int
    plane_limit: int
    screens: tuple[Container, ...]
    projects: tuple[Container, ...]
    plates: Mapping[int, Plate]
    wells: Mapping[int, Well]
    datasets: Mapping[int, Dataset]
    images: Mapping[int, Image]

    @property
    def containers(self) -> tuple[Container, ...]:
        return self.screens + self.projects

    def container_images(self, container: Container) -> list[Image]:
        """Every image of a container, in listing order (plates/wells/fields or datasets)."""
        if container.kind == "screen":
            ids = [
                sample.image_id
                for plate_id in container.child_ids
                for well in self.plates[plate_id].wells
                for sample in well.samples
            ]
        else:
            ids = [i for dataset_id in container.child_ids for i in self.datasets[dataset_id].image_ids]
        return [self.images[i] for i in ids]

    def experiments_csv_text(self, n_images: int = 1300) -> str:
        """An experiment list (idrcell CSV format) naming every container of this catalogue by id."""
        lines = ["study,container,id,n_images,channels,z,t"]
        for container in self.containers:
            study = container.study.replace('"', '""')
            lines.append(f'"{study}",{container.container},{container.id},{n_images},,,')
        return "\n".join(lines) + "\n"
