"""Balanced, seeded sampling order of an experiment's images.

The stager walks `balanced_order` front to back and keeps the first `n_images` usable images; an
image skipped for a recorded reason is replaced by the next one in the order (the top-up). Because
the order interleaves plates (or datasets) round-robin, and inside each plate its wells round-robin,
any prefix of the order spreads evenly over plates and wells: no well gets a second field before
every well of its plate has one, and no plate gets ahead of another by more than one image.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """An image found by listing a screen (plate, well, field) or a project (dataset)."""

    image_id: int
    group_id: int  # the plate id for screens, the dataset id for projects
    group_name: str | None = None
    well_id: int | None = None  # None for project images
    row: int | None = None  # 0-based, as OMERO stores it
    column: int | None = None
    field: int | None = None  # 1-based position among the well's samples, as IDR numbers fields
    image_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)

    @property
    def sort_key(self) -> tuple[int, int, int, int]:
        return (self.group_id, -1 if self.well_id is None else self.well_id, self.field or 0, self.image_id)


def _round_robin(sequences: Sequence[Sequence[T]]) -> list[T]:
    """Take one item from each sequence in turn until all are exhausted."""
    merged: list[T] = []
    longest = max((len(s) for s in sequences), default=0)
    for position in range(longest):
        merged.extend(s[position] for s in sequences if position < len(s))
    return merged


def balanced_order(candidates: Iterable[Candidate], seed: int) -> list[Candidate]:
    """Every distinct image once, in a seeded order whose prefixes are balanced over plates and wells.

    The result depends only on the set of candidates and the seed, not on the order the server
    listed them in.
    """
    unique: dict[int, Candidate] = {}
    for candidate in sorted(candidates, key=lambda c: c.sort_key):
        unique.setdefault(candidate.image_id, candidate)  # never two samples of the same image
    groups: dict[int, dict[int, list[Candidate]]] = {}
    for candidate in unique.values():
        # Project images have no well: each image is its own cell, so a dataset is shuffled flat.
        cell = candidate.well_id if candidate.well_id is not None else -candidate.image_id - 1
        groups.setdefault(candidate.group_id, {}).setdefault(cell, []).append(candidate)
    rng = random.Random(seed)
    group_ids = sorted(groups)
    rng.shuffle(group_ids)
    per_group: list[list[Candidate]] = []
    for group_id in group_ids:
        cells = groups[group_id]
        cell_ids = sorted(cells)
        rng.shuffle(cell_ids)
        fields_per_cell = []
        for cell_id in cell_ids:
            fields = list(cells[cell_id])
            rng.shuffle(fields)
            fields_per_cell.append(fields)
        per_group.append(_round_robin(fields_per_cell))
    return _round_robin(per_group)
