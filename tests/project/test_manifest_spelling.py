"""One manifest for both packages: the builder's parser (no torch, no pandas) reads every list
spelling of a cell exactly as chadavit-bench's does (docs/builder.md, "import-images")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chadavit_bench.datasets.base import DatasetFormatError
from chadavit_bench.datasets.manifest import parse_list as bench_parse_list
from idrcell.manifest import ManifestError
from idrcell.manifest import parse_list as builder_parse_list

CELLS = [
    '["a.tif", "b dir/c.png"]',  # JSON
    "['a.tif', 'b.tif']",  # a Python literal
    "a.tif;b.tif; c.tif ",  # separated by ;
    "one.tif",
    ["x.png", "y.png"],  # a parquet list column
    np.array(["x.png", "y.png"]),
    "",
    None,
    float("nan"),
    "[1, 2.5]",
]


@pytest.mark.parametrize("cell", CELLS, ids=range(len(CELLS)))
def test_both_parsers_read_a_cell_alike(cell: object) -> None:
    assert builder_parse_list(cell, "m.csv", "channels") == bench_parse_list(cell, Path("m.csv"), "channels")


def test_both_refuse_a_list_that_does_not_parse() -> None:
    with pytest.raises(ManifestError, match="cannot parse the channels cell"):
        builder_parse_list("[a.tif, ", "m.csv", "channels")
    with pytest.raises(DatasetFormatError, match="cannot parse the channels cell"):
        bench_parse_list("[a.tif, ", Path("m.csv"), "channels")
