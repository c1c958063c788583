"""The small commands: `synthetic` writes loadable layouts, `datasets` says what is found and missing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.datasets import discover


def test_synthetic_then_datasets(tmp_path: Path) -> None:
    runner = CliRunner()
    written = runner.invoke(
        app, ["synthetic", "-o", str(tmp_path / "data"), "--image-size", "16", "--seed", "3"]
    )
    assert written.exit_code == 0, written.output
    found, missing = discover(tmp_path / "data")
    assert (
        set(found)
        == {"bloodmnist", "cyclops", "bbbc048", "nfkb", "bbbc021", "bray", "cells"}
        | {"chammi-allen", "chammi-hpa", "chammi-cp"}
        and not missing
    )
    assert found["cyclops"].read(0).shape == (2, 16, 16)

    (tmp_path / "data" / "bloodmnist" / "bloodmnist.npz").unlink()
    listing = runner.invoke(app, ["datasets", "--data-root", str(tmp_path / "data")])
    assert listing.exit_code == 0, listing.output
    text = " ".join(listing.output.split())
    assert "cyclops │ found │ 153" in text
    assert "bloodmnist │ missing" in text


def test_data_root_defaults_to_the_environment_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CHADAVIT_DATA", raising=False)
    unset = CliRunner().invoke(app, ["datasets"])
    # No data root and no default: a usage error (exit 2), not "Datasets under None" and exit 0.
    assert unset.exit_code == 2 and "no data root" in " ".join(unset.output.split())
    monkeypatch.setenv("CHADAVIT_DATA", str(tmp_path))
    listing = CliRunner().invoke(app, ["datasets"])
    text = " ".join(listing.output.split())
    assert listing.exit_code == 0 and "no data root" not in text and "bloodmnist │ missing" in text
