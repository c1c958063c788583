"""How many channels of the default 79-experiment list get a canonical name (docs/model.md).

Two sources of channel labels are available offline:
- the emulator: a catalogue with one study per experiment of `idrcell experiments paper`, each with
  the experiment's channel count from IDR's study table, and labels drawn as the emulator draws
  them (its pool of label spellings typical of IDR studies);
- the real IDR: the imgData labels kept as a test fixture (tests/chadavit/data/idr_channel_labels.json).

Usage: python scripts/channel_coverage.py [--seed 0] [--top 10]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from chadavit.channels import UNKNOWN, canonical_name
from idrcell.default_list import packaged_catalogue_text, read_catalogue, select_experiments
from idrcell.emulator.catalogue_build import build_catalogue

REAL_LABELS = (
    Path(__file__).resolve().parent.parent / "tests" / "chadavit" / "data" / "idr_channel_labels.json"
)


def emulator_labels(seed: int) -> list[str]:
    """One label per channel of each paper-list experiment, as the emulator would serve them."""
    rows = select_experiments(read_catalogue(packaged_catalogue_text()))
    studies = [
        {
            "study": row.study,
            "container": row.container,
            "id": row.internal_id,
            "plates": 1,
            "wells": [1, 1],
            "fields": [1, 1],
            "image": {"width": 256, "height": 256, "channels": row.channels, "pixels_type": "uint16"},
        }
        if row.is_screen
        else {
            "study": row.study,
            "container": row.container,
            "id": row.internal_id,
            "datasets": 1,
            "images": [1, 1],
            "image": {"width": 256, "height": 256, "channels": row.channels, "pixels_type": "uint16"},
        }
        for row in rows
    ]
    catalogue = build_catalogue(
        {"schema": "idrcell-emulator-catalogue-v1", "name": "paper", "studies": studies}, seed
    )
    labels = []
    for container in catalogue.containers:
        first = catalogue.container_images(container)[0]  # a study keeps one channel set
        labels += [channel.label for channel in first.channels]
    return labels


def report(name: str, labels: list[str], top: int) -> dict[str, object]:
    names = [canonical_name(label) for label in labels]
    named = sum(n != UNKNOWN for n in names)
    unmapped = Counter(label for label, n in zip(labels, names, strict=True) if n == UNKNOWN)
    print(f"{name}: {named} of {len(labels)} channels named ({100 * named / max(len(labels), 1):.1f}%)")
    for label, count in unmapped.most_common(top):
        print(f"  unmapped: {label!r} x {count}")
    return {"named": named, "channels": len(labels), "unmapped": unmapped.most_common(top)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="emulator catalogue seed")
    parser.add_argument("--top", type=int, default=10, help="unmapped labels to list")
    args = parser.parse_args()
    report("emulator, paper list", emulator_labels(args.seed), args.top)
    report("real IDR responses", json.loads(REAL_LABELS.read_text())["labels"], args.top)


if __name__ == "__main__":
    main()
