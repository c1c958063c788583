"""Split CSVs: a file under the dataset folder overrides the packaged reference split of the same name."""

from __future__ import annotations

import ast
import csv
from collections.abc import Iterator, Mapping
from pathlib import Path

from chadavit_bench.datasets.base import DatasetFormatError
from chadavit_bench.datasets.splits import reference_split


def split_file(folder: Path, dataset: str, filename: str) -> Path:
    """`folder/filename` when the user supplies one, else the reference split shipped with the package."""
    local = folder / filename
    return local if local.is_file() else reference_split(dataset, filename)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return [row for row in csv.reader(handle) if row]


def split_rows(
    folder: Path, dataset: str, split_files: Mapping[str, str]
) -> Iterator[tuple[str, Path, list[str]]]:
    """(split, file, row) for every row of every split's CSV, split by split, in file order."""
    for split, filename in split_files.items():
        path = split_file(folder, dataset, filename)
        for row in read_rows(path):
            yield split, path, row


def literal(text: str, path: Path, what: str) -> object:
    """Parse a Python literal written by the authors' scripts (a list or a set of strings), never eval."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise DatasetFormatError(f"{path}: cannot parse {what} {text!r}") from error
