"""Results remember how they were made: image size, intensity, protocol, seeds and model checksum.

A run at another image size into a folder of results adds rows beside the earlier ones; tables,
figures and `compare` then name the setting instead of mixing the numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.results import COLUMNS, MEASURE, Row, read_results, to_frame
from chadavit_bench.testing import TINY_CHADAVIT, TINY_ONECHANNEL


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def knn(root: Path, out: Path, img_size: int, *models: str):
    model_args = [arg for m in models for arg in ("-m", m)]
    return invoke(
        "run", "knn", "--quick", "--dataset", "cyclops", "--data-root", str(root), "--out", str(out),
        "--img-size", str(img_size), "--workers", "1", "--seeds", "2", *model_args,
    )  # fmt: skip


def test_two_image_sizes_in_one_folder_are_kept_apart(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = knn(synthetic_root, out, 32, TINY_CHADAVIT, TINY_ONECHANNEL)
    assert first.exit_code == 0, first.output
    assert first.output.strip().splitlines()[-1] == f"report: {out / 'report.html'}"
    second = knn(synthetic_root, out, 16, TINY_CHADAVIT)
    assert second.exit_code == 0, second.output

    results = pd.read_parquet(out / "results.parquet")
    assert list(results.columns) == list(COLUMNS)
    chadavit = results[results["model"] == "random:chadavit_petit"]
    assert sorted(chadavit["img_size"].unique()) == [16, 32]  # the 32 px rows were not replaced
    assert set(results["seeds"]) == {2} and results["protocol"].nunique() == 1

    # Each model label in the summary names its image size: no cell averages 16 and 32 px.
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["model"]) == {
        "random:chadavit_petit · 16 px",
        "random:chadavit_petit · 32 px",
        "onechannel_vit_tiny · 32 px",
    }
    assert (summary.groupby("model")["img_size"].nunique() == 1).all()
    report = (out / "report.md").read_text()
    assert "made under different settings" in report
    assert "| benchmark | random:chadavit_petit · 16 px | random:chadavit_petit · 32 px |" in report

    # compare refuses to guess which setting is meant, and refuses a pair made differently.
    ambiguous = invoke("compare", str(out), "random:chadavit_petit", "onechannel_vit_tiny")
    assert ambiguous.exit_code == 2
    assert "has results under 2 settings" in " ".join(ambiguous.output.split())
    mixed = invoke("compare", str(out), "random:chadavit_petit · 16 px", "onechannel_vit_tiny")
    assert mixed.exit_code == 2
    assert "different settings (img_size 16 vs 32)" in " ".join(mixed.output.split())
    same = invoke("compare", str(out), "random:chadavit_petit · 32 px", "onechannel_vit_tiny")
    assert same.exit_code == 0, same.output


def test_a_table_from_before_settings_were_recorded_reads_as_unrecorded(tmp_path: Path) -> None:
    old = to_frame([Row("m", "cyclops", "knn", "cls", 1.0, 0, "accuracy", 0.5)])[list(MEASURE)]
    tmp_path.mkdir(exist_ok=True)
    old.to_parquet(tmp_path / "results.parquet", index=False)
    frame = read_results(tmp_path)
    assert frame is not None and list(frame.columns) == list(COLUMNS)
    assert frame.loc[0, "intensity"] == "unrecorded" and frame.loc[0, "img_size"] == 0


def test_per_dataset_intensity_modes_label_only_what_differs_within_a_dataset() -> None:
    from chadavit_bench.compare import check_same_settings
    from chadavit_bench.results import Settings, summarise

    def rows(model: str, modes: dict[str, str]) -> pd.DataFrame:
        frames = [
            to_frame(
                [Row(model, name, "knn", "cls", 1.0, 0, "accuracy", 0.5)], Settings(32, mode, "p", 5, "c")
            )
            for name, mode in modes.items()
        ]
        return pd.concat(frames, ignore_index=True)

    paper = {"bloodmnist": "dtype", "cyclops": "clip255"}  # --protocol paper: one mode per dataset
    same = summarise(pd.concat([rows("a", paper), rows("b", paper)], ignore_index=True))
    assert set(same["model"]) == {"a", "b"}  # no label suffix: each dataset was read one way
    check_same_settings(same, "a", "b")  # and compare accepts the pair
    mixed = summarise(pd.concat([rows("a", paper), rows("b", {**paper, "cyclops": "dataset"})]))
    assert "b · intensity=dataset" in set(mixed["model"])
