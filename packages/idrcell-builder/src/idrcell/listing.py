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

from idrcell.answers import (
    MalformedAnswer,
    as_dict,
    object_id,
    optional_dict,
    optional_int,
    optional_list,
    optional_text,
)
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
    # Items of the listing left out because their shape was wrong (e.g. a plate whose @id is a
    # string): how many, and the first few reasons, so an empty listing can say why it is empty.
    dropped: int = 0
    dropped_examples: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LISTING_VERSION,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "study_info": self.study_info,
            "candidates": [c.to_json() for c in self.candidates],
            "dropped": self.dropped,
            "dropped_examples": list(self.dropped_examples),
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
            dropped=int(data.get("dropped", 0)),
            dropped_examples=tuple(str(e) for e in data.get("dropped_examples", [])),
        )

    def describe_dropped(self) -> str:
        """`3 malformed items were left out (e.g. ...)`, or "" when none was."""
        if not self.dropped:
            return ""
        return f"{self.dropped} malformed item(s) were left out (e.g. {'; '.join(self.dropped_examples)})"


class _Dropped:
    """Counts the listing's malformed items and keeps the first few reasons."""

    KEEP = 3

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[str] = []

    def add(self, error: MalformedAnswer) -> None:
        self.count += 1
        if len(self.examples) < self.KEEP:
            self.examples.append(str(error))


def _label(item: Any, kind: str) -> str:
    """`plate 'P1'` (or `plate #3`): how to name an item in a message."""
    name = item.get("Name") if isinstance(item, dict) else None
    return f"{kind} {name!r}" if isinstance(name, str) else f"a {kind}"


def parse_study_info(answer: Any, container_id: int) -> dict[str, str | None]:
    """Imaging Method, Organism and Cell Line from a map-annotation answer; missing keys are None.

    Keys may repeat on IDR (e.g. two organisms): distinct values are joined with '; ' in order.
    A malformed annotation is left out with a warning naming what was wrong.
    """
    values: dict[str, list[str]] = {name: [] for name in ANNOTATION_KEYS}
    try:
        annotations = optional_list(
            as_dict(answer, "the annotations answer").get("annotations"), "annotations"
        )
    except MalformedAnswer as error:
        logger.warning("ignoring the study annotations of container %d: %s", container_id, error)
        annotations = []
    for position, annotation in enumerate(annotations):
        where = f"annotation {position}"
        try:
            annotation = as_dict(annotation, where)
            if annotation.get("ns") != STUDY_INFO_NS:
                continue
            link = optional_dict(annotation.get("link"), f"{where}: link")
            parent = optional_dict(link.get("parent"), f"{where}: link.parent")
            pairs = optional_list(annotation.get("values"), f"{where}: values")
        except MalformedAnswer as error:
            logger.warning("ignoring a study annotation of container %d: %s", container_id, error)
            continue
        if parent.get("id") not in (None, container_id):
            continue
        for pair in pairs:
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
        name = optional_text(data.get("Name")) if isinstance(data, dict) else None
        if name is not None and name != experiment.omero_name:
            logger.warning("%s id %d is named %r on the server", experiment.omero_name, experiment.id, name)
        return experiment.id, name
    everything = await client.list_all(f"api/v0/m/{collection}/")
    matches = []
    for item in everything:
        if item.get("Name") != experiment.omero_name:
            continue
        try:
            matches.append(object_id(item, f"{collection[:-1]} {experiment.omero_name!r}"))
        except MalformedAnswer as error:
            raise ListingError(f"{experiment.omero_name}: {error}") from None
    matches.sort()
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
    except (PermanentHTTPError, ProtocolError) as error:
        logger.warning("no study annotations for %s %d: %s", kind, container_id, error)
        answer = {}
    return parse_study_info(answer, container_id)


async def _plate_candidates(client: IDRClient, plate: dict[str, Any], dropped: _Dropped) -> list[Candidate]:
    try:
        plate_id = object_id(plate, _label(plate, "plate"))
    except MalformedAnswer as error:
        dropped.add(error)
        return []
    wells = await client.list_all(f"api/v0/m/plates/{plate_id}/wells/")
    candidates = []
    for well in wells:
        where = f"{_label(plate, 'plate')}: {_label(well, 'well')}"
        try:
            well_id = object_id(well, where)
            samples = optional_list(well.get("WellSamples"), f"{where}: WellSamples")
        except MalformedAnswer as error:
            dropped.add(error)
            continue
        for position, sample in enumerate(samples, start=1):
            try:
                image = as_dict(
                    as_dict(sample, f"{where}: sample {position}").get("Image"), f"{where}: image"
                )
                image_id = object_id(image, f"{where}: image")
            except MalformedAnswer as error:
                dropped.add(error)
                continue
            candidates.append(
                Candidate(
                    image_id=image_id,
                    group_id=plate_id,
                    group_name=optional_text(plate.get("Name")),
                    well_id=well_id,
                    row=optional_int(well.get("Row")),
                    column=optional_int(well.get("Column")),
                    field=position,
                    image_name=optional_text(image.get("Name")),
                )
            )
    return candidates


async def _dataset_candidates(
    client: IDRClient, dataset: dict[str, Any], dropped: _Dropped
) -> list[Candidate]:
    try:
        dataset_id = object_id(dataset, _label(dataset, "dataset"))
    except MalformedAnswer as error:
        dropped.add(error)
        return []
    candidates = []
    for image in await client.list_all(f"api/v0/m/datasets/{dataset_id}/images/"):
        try:
            image_id = object_id(image, f"{_label(dataset, 'dataset')}: {_label(image, 'image')}")
        except MalformedAnswer as error:
            dropped.add(error)
            continue
        candidates.append(
            Candidate(
                image_id=image_id,
                group_id=dataset_id,
                group_name=optional_text(dataset.get("Name")),
                image_name=optional_text(image.get("Name")),
            )
        )
    return candidates


async def list_experiment(client: IDRClient, experiment: Experiment) -> ExperimentListing:
    container_id, name = await resolve_container(client, experiment)
    kind = experiment.kind
    info_task = asyncio.create_task(_study_info(client, kind, container_id))
    dropped = _Dropped()
    try:
        if kind == "screen":
            groups = await client.list_all(f"api/v0/m/screens/{container_id}/plates/")
            lister = _plate_candidates
        else:
            groups = await client.list_all(f"api/v0/m/projects/{container_id}/datasets/")
            lister = _dataset_candidates
        per_group = await asyncio.gather(*(lister(client, group, dropped) for group in groups))
    except PermanentHTTPError as error:
        info_task.cancel()
        raise ListingError(f"{experiment.omero_name}: listing failed: {error}") from None
    except ProtocolError as error:
        info_task.cancel()
        raise ListingError(
            f"{experiment.omero_name}: the server answered a malformed listing: {error}"
        ) from None
    candidates = tuple(c for group in per_group for c in group)
    listing = ExperimentListing(
        container_id, name, await info_task, candidates, dropped.count, tuple(dropped.examples)
    )
    if dropped.count:
        logger.warning("%s: %s", experiment.omero_name, listing.describe_dropped())
    return listing


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
    atomic_write_text(
        cache, json.dumps(listing.to_json(), sort_keys=True, ensure_ascii=False, allow_nan=False)
    )
    return listing, False
