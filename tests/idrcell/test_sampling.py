"""Balanced sampling: prefixes spread evenly over plates and wells; seeded and order-independent."""

from __future__ import annotations

import random
from collections import Counter

from idrcell.sampling import Candidate, balanced_order


def screen_candidates() -> list[Candidate]:
    """3 plates with 4, 6 and 2 wells; fields per well vary from 1 to 3."""
    candidates, image_id, well_id = [], 1000, 0
    for plate_id, n_wells in ((1, 4), (2, 6), (3, 2)):
        for well in range(n_wells):
            well_id += 1
            for field in range(1, 1 + 1 + well % 3):
                image_id += 1
                candidates.append(
                    Candidate(image_id, plate_id, f"plate{plate_id}", well_id, well // 3, well % 3, field)
                )
    return candidates


def test_every_prefix_is_balanced_over_plates_and_wells() -> None:
    candidates = screen_candidates()
    order = balanced_order(candidates, seed=7)
    assert sorted(c.image_id for c in order) == sorted(c.image_id for c in candidates)
    wells_of_plate = {p: {c.well_id for c in candidates if c.group_id == p} for p in (1, 2, 3)}
    images_of_plate = Counter(c.group_id for c in candidates)
    for n in range(1, len(order) + 1):
        prefix = order[:n]
        per_plate = Counter(c.group_id for c in prefix)
        # Plates that still hold unsampled images are never more than one image apart.
        open_counts = [per_plate[p] for p in (1, 2, 3) if per_plate[p] < images_of_plate[p]]
        assert not open_counts or max(open_counts) - min(open_counts) <= 1, (n, per_plate)
        # Within a plate, no well gets a second field before every well of the plate has one.
        for plate, wells in wells_of_plate.items():
            per_well = Counter(c.well_id for c in prefix if c.group_id == plate)
            if max(per_well.values(), default=0) >= 2:
                assert set(per_well) == wells, (n, plate)


def test_twelve_images_from_three_plates_take_four_from_each() -> None:
    order = balanced_order(screen_candidates(), seed=0)
    assert Counter(c.group_id for c in order[:6]) == {1: 2, 2: 2, 3: 2}


def test_the_order_is_seeded_and_ignores_listing_order() -> None:
    candidates = screen_candidates()
    shuffled = list(candidates)
    random.Random(1).shuffle(shuffled)
    assert balanced_order(candidates, 3) == balanced_order(shuffled, 3)
    assert balanced_order(candidates, 3) != balanced_order(candidates, 4)


def test_an_image_listed_twice_is_sampled_once() -> None:
    candidates = screen_candidates()
    twice = [*candidates, Candidate(candidates[0].image_id, 9, "other plate", 999, 0, 0, 1)]
    order = balanced_order(twice, 0)
    assert len(order) == len(candidates)
    assert len({c.image_id for c in order}) == len(order)


def test_project_images_spread_over_datasets() -> None:
    candidates = [Candidate(100 + i, 1 + i % 2, f"dataset{1 + i % 2}") for i in range(9)]  # 5 + 4 images
    order = balanced_order(candidates, 11)
    assert [c.group_id for c in order[:8]].count(1) == 4
    assert len(order) == 9
