"""Which experiments of a list have a known OME-Zarr copy (data/zarr_studies.csv: public facts, 2026).

A folder `<study id><letter>` covers that one container; a v0.5 folder named by the study id alone
covers the study's first container (`screenA`/`experimentA`): a guess, see docs/idr-api.md.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

from idrcell.experiments import Experiment
from idrcell.zarr_resolve import container_letter, study_id


def known_zarr_folders() -> dict[str, list[str]]:
    """folder -> the versions it is known in, e.g. {"idr0062A": ["0.4", "0.5"]}."""
    text = resources.files("idrcell").joinpath("data").joinpath("zarr_studies.csv").read_text("utf-8")
    folders: dict[str, list[str]] = {}
    for row in csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")):
        folders.setdefault(row["folder"], []).append(row["version"])
    return folders


def zarr_coverage(experiments: list[Experiment]) -> dict[str, str | None]:
    """experiment name -> "v0.4 idr0001A" style note of its known copy, or None."""
    folders = known_zarr_folders()
    result: dict[str, str | None] = {}
    for experiment in experiments:
        sid, letter = study_id(experiment.study), container_letter(experiment.container)
        notes = [f"v{v} {sid}{letter}" for v in folders.get(sid + letter, [])]
        if letter == "A":
            notes += [f"v{v} {sid}" for v in folders.get(sid, [])]
        result[experiment.name] = ", ".join(notes) or None
    return result


def fetchable_default_csv_text() -> str:
    """The default list since the IDR's move to OME-Zarr: the paper-era rows with a known copy.

    The 2026 IDR renders no pixels (render_image answers 403), so only experiments with an OME-Zarr
    copy can be fetched from it; the paper-era list stays available as `idrcell experiments paper`.
    """
    from idrcell.default_list import default_experiments_csv_text
    from idrcell.experiments import experiments_to_csv, parse_experiments

    paper = parse_experiments(default_experiments_csv_text(), source="the paper-era list")
    covered = zarr_coverage(paper)
    return experiments_to_csv([e for e in paper if covered[e.name]])
