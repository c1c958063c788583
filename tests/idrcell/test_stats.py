"""`idrcell stats`: the counts of a dataset, and one line naming the file when the dataset is damaged.

A damaged dataset is a usage error (exit 2): the folder named on the command line cannot be
described and nothing was done.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.import_images import import_images

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three images of 1, 2 and 3 channels imported as one dataset (read-only for the tests)."""
    folder = tmp_path_factory.mktemp("stats")
    rng = np.random.default_rng(0)
    rows = ["key,channels"]
    for image in range(3):
        files = [f"image{image}_{channel}.png" for channel in range(image + 1)]
        for name in files:
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / name)
        rows.append(f'image{image},"{";".join(files)}"')
    (folder / "cells.csv").write_text("\n".join(rows) + "\n")
    import_images(folder / "cells.csv", folder / "out")
    return folder / "out"


def stats(path: Path):
    return runner.invoke(app, ["stats", str(path), "--json"])


def test_stats_counts_samples_channels_and_channel_counts(dataset: Path) -> None:
    result = stats(dataset)
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["samples"] == 3 and numbers["channels"] == 6
    assert numbers["experiments"] == {"cells/images": {"samples": 3, "channels": 6}}
    assert numbers["channel_counts"] == {"1": 1, "2": 1, "3": 1}
    assert numbers["imaging_methods"] == {"unknown": 3}


def _json(text: str) -> Callable[[Path], None]:
    return lambda out: (out / "dataset.json").write_text(text)


def _set_info(key: str, value: object) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        info = json.loads((out / "dataset.json").read_text())
        info[key] = value
        (out / "dataset.json").write_text(json.dumps(info))

    return damage


def _folder(name: str) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        (out / name).unlink()
        (out / name).mkdir()

    return damage


def _index_column(name: str, values: pa.Array) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        table = pq.read_table(out / "index.parquet")
        table = table.set_column(table.schema.get_field_index(name), name, values)
        pq.write_table(table, out / "index.parquet")

    return damage


def _index_rows(count: int) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        pq.write_table(pq.read_table(out / "index.parquet").slice(0, count), out / "index.parquet")

    return damage


DAMAGES = {
    "dataset.json a list": (_json("[1, 2]"), "dataset.json holds a JSON list, not an object"),
    "dataset.json not JSON": (_json("{'index': "), "dataset.json is not readable JSON"),
    "dataset.json missing": (lambda out: (out / "dataset.json").unlink(), "dataset.json does not exist"),
    "dataset.json a directory": (_folder("dataset.json"), "dataset.json is a directory, not a file"),
    "index a string": (_set_info("index", "x"), "dataset.json: 'index' is 'x', not an object"),
    "index rows a string": (
        _set_info("index", {"rows": "many"}),
        "not an object with a whole number of 'rows'",
    ),
    "index.parquet missing": (lambda out: (out / "index.parquet").unlink(), "index.parquet does not exist"),
    "index.parquet a directory": (_folder("index.parquet"), "index.parquet is a directory, not a file"),
    "index.parquet garbage": (
        lambda out: (out / "index.parquet").write_bytes(b"PAR1 not parquet"),
        "index.parquet is not a readable index",
    ),
    "n_channels as text": (
        _index_column("n_channels", pa.array(["1", "2", "3"])),
        "index.parquet: 'n_channels' holds string, not whole numbers",
    ),
    "study empty": (
        _index_column("study", pa.array([None, "cells", "cells"], pa.string())),
        "index.parquet: column 'study' has empty values",
    ),
    "index of fewer rows": (_index_rows(2), "index.parquet holds 2 rows, dataset.json says 3"),
}


@pytest.mark.parametrize("case", DAMAGES)
def test_a_damaged_dataset_is_one_line_naming_the_file_and_exit_2(
    dataset: Path, tmp_path: Path, case: str
) -> None:
    damage, expected = DAMAGES[case]
    out = tmp_path / "out"
    shutil.copytree(dataset, out)
    damage(out)
    result = stats(out)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(out) in lines[0] and expected in lines[0], lines[0]


def test_stats_of_a_file_is_a_usage_error(dataset: Path) -> None:
    result = stats(dataset / "dataset.json")
    assert result.exit_code == 2, result.output
    assert "is not a directory; give the dataset folder" in result.output
