"""Find an experiment's images: screen -> plates -> wells -> well samples, project -> datasets -> images.

The result, with the study's annotations, is cached as `listing.json` in the experiment's staging
folder, so that a resumed or repeated run does not list again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idrcell.atomic import atomic_write_text
from idrcell.client import IDRClient, PermanentHTTPError, ProtocolError
from idrcell.experiments import Experiment
from idrcell.sampling import Candidate

logger = logging.getLogger(__name__)

STUDY_INFO_NS = "idr.openmicroscopy.org/study/info"
# Study annotation keys copied into every sample (unknown ones stay null).
ANNOTATION_KEYS = {"imaging_method": "Imaging Method", "organism": "Organism", "cell_line": "Cell Line"}
LISTING_VERSION = 1


class ListingError(Exception):
    """The experiment cannot be found or listed (wrong id or name, or a broken answer)."""


@dataclass(frozen=True)
class ExperimentListing:
    container_id: int
    container_name: str | None
    study_info: dict[str, str | None]  # imaging_method, organism, cell_line
    candidates: tuple[Candidate, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LISTING_VERSION,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "study_info": self.study_info,
            "candidates": [c.to_json() for c in self.candidates],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentListing:
        if data.get("version") != LISTING_VERSION:
            raise ValueError("listing cache from another version")
        return cls(
            container_id=int(data["container_id"]),
            container_name=data.get("container_name"),
            study_info=dict(data["study_info"]),
            candidates=tuple(Candidate.from_json(c) for c in data["candidates"]),
        )


def _object_id(item: dict[str, Any]) -> int | None:
    value = item.get("@id")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_study_info(answer: Any, container_id: int) -> dict[str, str | None]:
    """Imaging Method, Organism and Cell Line from a map-annotation answer; missing keys are None.

    Keys may repeat on IDR (e.g. two organisms): distinct values are joined with '; ' in order.
    """
    values: dict[str, list[str]] = {name: [] for name in ANNOTATION_KEYS}
    annotations = answer.get("annotations", []) if isinstance(answer, dict) else []
    for annotation in annotations if isinstance(annotations, list) else []:
        if not isinstance(annotation, dict) or annotation.get("ns") != STUDY_INFO_NS:
            continue
        parent = (annotation.get("link") or {}).get("parent") or {}
        if isinstance(parent, dict) and parent.get("id") not in (None, container_id):
            continue
        for pair in annotation.get("values") or []:
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                continue
            key, value = pair
            value = value.strip() if isinstance(value, str) else ""
            for name, idr_key in ANNOTATION_KEYS.items():
                if key == idr_key and value and value not in values[name]:
                    values[name].append(value)
    return {name: "; ".join(found) if found else None for name, found in values.items()}


async def resolve_container(client: IDRClient, experiment: Experiment) -> tuple[int, str | None]:
    """The OMERO id and name of the experiment's Screen or Project (by id if given, else by name)."""
    collection = "screens" if experiment.kind == "screen" else "projects"
    if experiment.id is not None:
        try:
            answer = await client.get_json(f"api/v0/m/{collection}/{experiment.id}/")
        except PermanentHTTPError as error:
            raise ListingError(
                f"{experiment.omero_name}: {collection[:-1]} id {experiment.id} is not readable "
                f"on the server (HTTP {error.status}: {error.message})"
            ) from None
        data = answer.get("data") if isinstance(answer, dict) else None
        name = _text(data.get("Name")) if isinstance(data, dict) else None
        if name is not None and name != experiment.omero_name:
            logger.warning("%s id %d is named %r on the server", experiment.omero_name, experiment.id, name)
        return experiment.id, name
    everything = await client.list_all(f"api/v0/m/{collection}/")
    matches = sorted(
        object_id
        for item in everything
        if item.get("Name") == experiment.omero_name and (object_id := _object_id(item)) is not None
    )
    if not matches:
        raise ListingError(f"no {collection[:-1]} named {experiment.omero_name!r} on the server")
    if len(matches) > 1:
        raise ListingError(
            f"{len(matches)} {collection} are named {experiment.omero_name!r} (ids {matches}); "
            "give the id in the experiment list"
        )
    return matches[0], experiment.omero_name


async def _study_info(client: IDRClient, kind: str, container_id: int) -> dict[str, str | None]:
    try:
        answer = await client.get_json(
            "webclient/api/annotations/", [("type", "map"), (kind, str(container_id))]
        )
    except PermanentHTTPError as error:
        logger.warning("no study annotations for %s %d: %s", kind, container_id, error)
        answer = {}
    return parse_study_info(answer, container_id)


async def _plate_candidates(client: IDRClient, plate: dict[str, Any]) -> list[Candidate]:
    plate_id = _object_id(plate)
    if plate_id is None:
        return []
    wells = await client.list_all(f"api/v0/m/plates/{plate_id}/wells/")
    candidates = []
    for well in wells:
        well_id = _object_id(well)
        samples = well.get("WellSamples") or []
        if well_id is None or not isinstance(samples, list):
            continue
        for position, sample in enumerate(samples, start=1):
            image = sample.get("Image") if isinstance(sample, dict) else None
            image_id = _object_id(image) if isinstance(image, dict) else None
            if image_id is None:
                continue
            row, column = well.get("Row"), well.get("Column")
            candidates.append(
                Candidate(
                    image_id=image_id,
                    group_id=plate_id,
                    group_name=_text(plate.get("Name")),
                    well_id=well_id,
                    row=row if isinstance(row, int) else None,
                    column=column if isinstance(column, int) else None,
                    field=position,
                    image_name=_text(image.get("Name")),
                )
            )
    return candidates


async def _dataset_candidates(client: IDRClient, dataset: dict[str, Any]) -> list[Candidate]:
    dataset_id = _object_id(dataset)
    if dataset_id is None:
        return []
    images = await client.list_all(f"api/v0/m/datasets/{dataset_id}/images/")
    return [
        Candidate(
            image_id=image_id,
            group_id=dataset_id,
            group_name=_text(dataset.get("Name")),
            image_name=_text(image.get("Name")),
        )
        for image in images
        if (image_id := _object_id(image)) is not None
    ]


async def list_experiment(client: IDRClient, experiment: Experiment) -> ExperimentListing:
    container_id, name = await resolve_container(client, experiment)
    kind = experiment.kind
    info_task = asyncio.create_task(_study_info(client, kind, container_id))
    try:
        if kind == "screen":
            groups = await client.list_all(f"api/v0/m/screens/{container_id}/plates/")
            lister = _plate_candidates
        else:
            groups = await client.list_all(f"api/v0/m/projects/{container_id}/datasets/")
            lister = _dataset_candidates
        per_group = await asyncio.gather(*(lister(client, group) for group in groups))
    except PermanentHTTPError as error:
        info_task.cancel()
        raise ListingError(f"{experiment.omero_name}: listing failed: {error}") from None
    except ProtocolError as error:
        info_task.cancel()
        raise ListingError(
            f"{experiment.omero_name}: the server answered a malformed listing: {error}"
        ) from None
    candidates = tuple(c for group in per_group for c in group)
    return ExperimentListing(container_id, name, await info_task, candidates)


async def cached_listing(
    client: IDRClient, experiment: Experiment, cache: Path
) -> tuple[ExperimentListing, bool]:
    """The listing from `cache` if present and valid, else from the server (then cached).

    Returns (listing, True if it came from the cache).
    """
    if cache.exists():
        try:
            return ExperimentListing.from_json(json.loads(cache.read_text(encoding="utf-8"))), True
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("ignoring an unreadable listing cache %s: %s", cache, error)
    listing = await list_experiment(client, experiment)
    atomic_write_text(cache, json.dumps(listing.to_json(), sort_keys=True, ensure_ascii=False))
    return listing, False
