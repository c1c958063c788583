"""The curated default experiment list: 79 cell-culture IDR experiments chosen from IDR's catalogue.

The paper's IDRCell100k samples 1,300 images from each of 79 IDR experiments (Bourriez et al.,
CVPR 2024). This module derives a list of the same shape (not the authors' own list: their images
can be converted with `idrcell import-hf`) from a snapshot of IDR's study catalogue, one row per
screen or experiment (`idrcell/data/idr_studies.tsv`), by a fixed rule described in
docs/experiments.md. The shipped `idrcell/data/default_experiments.csv` is its output.

The catalogue has no imaging-method column, so the spread over acquisition types uses what it
does have: screen vs. non-screen experiment, and whether images are 2D, z-stacks or time-lapses.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_LIST_NAME = "default_experiments.csv"
CATALOGUE_NAME = "idr_studies.tsv"
CSV_HEADER = ("study", "container", "id", "n_images", "channels", "z", "t")
_DIMENSIONS = re.compile(r"^\s*([\d.]+)\s*x\s*([\d.]+)\s*x\s*([\d.]+)\s*x\s*([\d.]+)\s*x\s*([\d.]+)\s*$")


@dataclass(frozen=True)
class SelectionRule:
    """What makes an experiment eligible, and how many to pick. Defaults give the shipped list."""

    count: int = 79  # experiments in IDRCell100k (Bourriez et al., CVPR 2024)
    n_images: int = 1300  # images sampled per experiment in IDRCell100k
    sample_type: str = "cell"
    min_channels: int = 1
    max_channels: int = 10  # ChAda-ViT is trained on 1 to 10 channels
    min_side: int = 224  # the model's input size: smaller images would only be upsampled
    max_side: int = 3000  # IDR's plane limit: larger planes need tiled rendering
    min_images: int = 100  # below this an experiment adds little next to 1,300-image ones


@dataclass(frozen=True)
class CatalogueRow:
    """One row of IDR's study catalogue (one screen or non-screen experiment)."""

    study: str
    container: str
    internal_id: int
    images: int
    sample_type: str
    width: float
    height: float
    depth: float
    channels: int
    timepoints: float

    @property
    def is_screen(self) -> bool:
        return self.container.startswith("screen")

    @property
    def acquisition(self) -> str:
        """A stand-in for the imaging method: screen/experiment x 2D/z-stack/time-lapse."""
        shape = "time-lapse" if self.timepoints > 1 else "z-stack" if self.depth > 1 else "2D"
        return f"{'screen' if self.is_screen else 'experiment'} {shape}"


def read_catalogue(text: str) -> list[CatalogueRow]:
    """Parse IDR's studies TSV; rows without usable dimensions or counts are left out."""
    rows = []
    for record in csv.DictReader(io.StringIO(text), delimiter="\t"):
        match = _DIMENSIONS.match(record.get("Avg. Image Dim (XYZCT)") or "")
        try:
            internal_id = int(record["Internal ID"])
            images = int(float(record["5D Images"]))
        except (KeyError, TypeError, ValueError):
            continue
        if match is None:
            continue
        width, height, depth, channels, timepoints = (float(value) for value in match.groups())
        rows.append(
            CatalogueRow(
                study=record["Study"].strip(),
                container=record["Container"].strip(),
                internal_id=internal_id,
                images=images,
                sample_type=(record.get("Sample Type") or "").strip(),
                width=width,
                height=height,
                depth=depth,
                # Averages over a study can be fractional (2.9 channels): count the typical image.
                channels=round(channels),
                timepoints=timepoints,
            )
        )
    return rows


def is_eligible(row: CatalogueRow, rule: SelectionRule) -> bool:
    return (
        row.sample_type == rule.sample_type
        and rule.min_channels <= row.channels <= rule.max_channels
        and min(row.width, row.height) >= rule.min_side
        and max(row.width, row.height) <= rule.max_side
        and row.images >= rule.min_images
    )


def select_experiments(rows: list[CatalogueRow], rule: SelectionRule = SelectionRule()) -> list[CatalogueRow]:
    """Pick `rule.count` eligible experiments greedily, spreading studies, channel counts and acquisitions.

    Each step takes the candidate whose channel count, study and acquisition type have been picked
    least so far (in that order of priority); ties go to experiments with enough images for a full
    sample (>= n_images), then to more images, then to the name. The result is in catalogue order.
    """
    candidates = [row for row in rows if is_eligible(row, rule)]
    if len(candidates) < rule.count:
        raise ValueError(f"only {len(candidates)} experiments are eligible, fewer than {rule.count}")
    per_study: Counter[str] = Counter()
    per_channels: Counter[int] = Counter()
    per_acquisition: Counter[str] = Counter()
    chosen: set[tuple[str, str]] = set()
    for _ in range(rule.count):
        best = min(
            (row for row in candidates if (row.study, row.container) not in chosen),
            key=lambda row: (
                per_channels[row.channels],
                per_study[row.study],
                per_acquisition[row.acquisition],
                row.images < rule.n_images,
                -math.log10(row.images),
                row.study,
                row.container,
            ),
        )
        chosen.add((best.study, best.container))
        per_study[best.study] += 1
        per_channels[best.channels] += 1
        per_acquisition[best.acquisition] += 1
    return [row for row in rows if (row.study, row.container) in chosen]


def experiments_csv(rows: list[CatalogueRow], n_images: int) -> str:
    """The experiment-list CSV (idrcell format) for `rows`, naming each container by its OMERO id."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow((row.study, row.container, row.internal_id, n_images, "", "", ""))
    return buffer.getvalue()


def packaged_catalogue_text() -> str:
    return resources.files("idrcell").joinpath("data", CATALOGUE_NAME).read_text(encoding="utf-8")


def derive_default_csv_text(
    catalogue: str | Path | None = None, rule: SelectionRule = SelectionRule()
) -> str:
    """Recompute the default list from a studies TSV (default: the packaged snapshot)."""
    text = packaged_catalogue_text() if catalogue is None else Path(catalogue).read_text(encoding="utf-8")
    return experiments_csv(select_experiments(read_catalogue(text), rule), rule.n_images)


def default_experiments_csv_text() -> str:
    """The shipped default experiment list (CSV text), as `idrcell experiments default` prints it."""
    return resources.files("idrcell").joinpath("data", DEFAULT_LIST_NAME).read_text(encoding="utf-8")
