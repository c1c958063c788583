"""The shipped default list is exactly what the documented rule derives from the packaged IDR catalogue."""

from __future__ import annotations

import csv
import random
from collections import Counter

import pytest
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.default_list import (
    SelectionRule,
    default_experiments_csv_text,
    derive_default_csv_text,
    experiments_csv,
    packaged_catalogue_text,
    read_catalogue,
    select_experiments,
)


def test_shipped_list_is_rederived_from_the_packaged_catalogue():
    shipped = default_experiments_csv_text()
    assert shipped == derive_default_csv_text()
    rows = list(csv.DictReader(shipped.splitlines()))
    assert list(rows[0]) == ["study", "container", "id", "n_images", "channels", "z", "t"]
    assert len(rows) == 79
    assert len({(r["study"], r["container"]) for r in rows}) == 79
    # Screen and Project ids are separate OMERO tables: an id is unique per kind only.
    assert len({(r["container"].startswith("screen"), r["id"]) for r in rows}) == 79
    assert {r["n_images"] for r in rows} == {"1300"}
    catalogue = {(r.study, r.container): r for r in read_catalogue(packaged_catalogue_text())}
    chosen = [catalogue[(r["study"], r["container"])] for r in rows]
    assert all(
        row.sample_type == "cell" and str(row.internal_id) == r["id"]
        for row, r in zip(chosen, rows, strict=True)
    )
    assert all(1 <= row.channels <= 10 and max(row.width, row.height) <= 3000 for row in chosen)
    channel_counts = Counter(row.channels for row in chosen)
    assert len(channel_counts) >= 5 and max(channel_counts.values()) <= 20  # spread, no dominant count
    assert len({row.acquisition for row in chosen}) >= 5
    assert len({row.study for row in chosen}) >= 60


def test_selection_ignores_row_order_and_reports_too_few_candidates():
    rows = read_catalogue(packaged_catalogue_text())
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    picked = {(r.study, r.container) for r in select_experiments(rows)}
    assert picked == {(r.study, r.container) for r in select_experiments(shuffled)}
    with pytest.raises(ValueError, match="eligible"):
        select_experiments(rows, SelectionRule(count=500))
    fewer = select_experiments(rows, SelectionRule(count=10, max_channels=2))
    assert len(fewer) == 10 and all(r.channels <= 2 for r in fewer)
    assert experiments_csv(fewer, 50).count("\n") == 11


def test_cli_prints_the_paper_list_and_the_fetchable_default():
    result = CliRunner().invoke(app, ["experiments", "paper"])
    assert result.exit_code == 0 and result.output == default_experiments_csv_text()
    default = CliRunner().invoke(app, ["experiments", "default"])
    rows = default.output.splitlines()
    # the paper-era rows with a known OME-Zarr copy (data/zarr_studies.csv), in the same order
    assert default.exit_code == 0 and rows[0] == result.output.splitlines()[0] and len(rows) == 1 + 10
    assert all(row in result.output.splitlines() for row in rows)
    assert any(row.startswith("idr0001-graml-sysgro,screenA,") for row in rows)
