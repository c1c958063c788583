"""The image manifest of `idrcell import-images`: a CSV or parquet table with one row per image.

Columns are spelled as in chadavit-bench's manifest (`chadavit_bench.datasets.manifest`), so one
file can serve both: `channels` (required: the channel files in order, or one file holding every
channel), `channel_names`, `label`, `split`, `group`, `key`. The importer adds `channel_width` (a
tape image), `layout` (`chw` or `hwc` for a one-file stack) and `window_start`, `window_end` (one
number per channel, or one for all). A list cell is a JSON list, a Python list literal, a
`;`-separated string or (parquet) a list column.

Why a second parser rather than the bench's: the bench package depends on torch (through
chadavit-model) and pandas, the builder on neither, and neither package may depend on the other
(docs/builder.md, "import-images"). tests/project/test_manifest_spelling.py checks that both read
the same list spellings the same way.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_SUFFIXES = (".csv", ".parquet")
REQUIRED_COLUMN = "channels"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, and the row where there is one."""


@dataclass(frozen=True)
class ManifestRow:
    """One row as text: every cell a string, a list of strings, or None when blank."""

    number: int  # 0-based, as the bench's messages count rows
    cells: dict[str, Any]

    def text(self, column: str) -> str | None:
        value = self.cells.get(column)
        if value is None:
            return None
        if isinstance(value, list):
            raise ManifestError(f"row {self.number}: the {column} cell is a list, expected one value")
        return value


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _cell_text(value: Any) -> Any:
    """A parquet value as the text a CSV would hold (whole floats as integers), lists as lists."""
    if _is_blank(value):
        return None
    if isinstance(value, list | tuple):
        return [str(_cell_text(v)) for v in value if not _is_blank(v)]
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_list(value: Any, where: str, column: str) -> tuple[str, ...]:
    """A list cell in any accepted spelling as a tuple of strings (the bench's `parse_list` rules)."""
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | dict)):
        return tuple(str(v) for v in value)  # a list column (a numpy array when read by pandas)
    if _is_blank(value):
        return ()
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise ManifestError(f"{where}: cannot parse the {column} cell {text[:80]!r}") from None
        if not isinstance(parsed, list | tuple):
            raise ManifestError(f"{where}: the {column} cell {text[:80]!r} is not a list")
        return tuple(str(v) for v in parsed)
    return tuple(part.strip() for part in text.split(";") if part.strip())


def read_manifest(path: Path) -> list[ManifestRow]:
    """Every row of a CSV (UTF-8, header line) or parquet manifest, cells as text."""
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ManifestError(f"{path}: a manifest must be a .csv or .parquet file")
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        if path.suffix.lower() == ".parquet":
            rows = pq.read_table(path).to_pylist()
        else:
            text = path.read_text(encoding="utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    except (OSError, pa.ArrowException, csv.Error) as error:
        raise ManifestError(f"{path}: cannot be read as a {path.suffix[1:]} table ({error})") from None
    if not rows:
        raise ManifestError(f"{path}: the manifest has no rows")
    if REQUIRED_COLUMN not in rows[0]:
        raise ManifestError(f"{path}: a manifest needs a `channels` column (the channel files)")
    result = []
    for number, row in enumerate(rows):
        if None in row:  # csv.DictReader puts a row's extra cells under the key None
            raise ManifestError(f"{path}: row {number} has more cells than the header has columns")
        result.append(ManifestRow(number, {str(k): _cell_text(v) for k, v in row.items()}))
    return result
