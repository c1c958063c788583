"""Regenerate idrcell's curated default experiment list from the packaged IDR study catalogue.

Usage: python scripts/make_default_experiments.py [STUDIES_TSV]
With a TSV argument (e.g. a newer studies.tsv from github.com/IDR/idr.openmicroscopy.org), it is
first copied over the packaged snapshot, so the shipped list and its source always agree.
The rule itself lives in idrcell/default_list.py and is described in docs/experiments.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from idrcell.atomic import atomic_write_bytes, atomic_write_text
from idrcell.default_list import CATALOGUE_NAME, DEFAULT_LIST_NAME, derive_default_csv_text

DATA = Path(__file__).resolve().parents[1] / "packages" / "idrcell-builder" / "src" / "idrcell" / "data"


def main(arguments: list[str]) -> int:
    if len(arguments) > 1:
        print(__doc__, file=sys.stderr)
        return 2
    if arguments:
        source = Path(arguments[0])
        if not source.is_file():
            print(f"error: {source} is not a file", file=sys.stderr)
            return 2
        atomic_write_bytes(DATA / CATALOGUE_NAME, source.read_bytes())
    text = derive_default_csv_text(DATA / CATALOGUE_NAME)
    atomic_write_text(DATA / DEFAULT_LIST_NAME, text)
    print(f"wrote {DATA / DEFAULT_LIST_NAME} ({text.count(chr(10)) - 1} experiments)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
