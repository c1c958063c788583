"""`--intensity`: the uint16-vs-uint8 toy of the adoption issue, end to end.

Two classes whose only difference is a 3x brighter second channel, written once as 8-bit PNGs and
once as uint16 TIFFs. Per-image min-max scaling (the old rule for every non-uint8 file) made the two
classes the same images: chance from the TIFFs while the PNGs reached 100 %. The default `dataset`
mode keeps the difference; `minmax` still erases it, on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.testing import TINY_CHADAVIT

SIZE = 32


def write_toy(root: Path, seed: int = 0, per_class: tuple[int, int] = (12, 6)) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rows: dict[str, list[dict]] = {"png": [], "tif": []}
    for split, count in zip(("train", "val"), per_class, strict=True):
        for label in (0, 1):
            for i in range(count):
                cy, cx = rng.uniform(10, 22, 2)
                blob = np.clip(1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(5, 9) ** 2, 0, 1)
                base = rng.uniform(0.2, 0.3)
                planes = [
                    base * blob * (0.7 + 0.3 * rng.random((SIZE, SIZE))) * (3.0 if c and label else 1.0)
                    for c in (0, 1)
                ]
                for ext in rows:
                    names = [f"{ext}/{split}_{label}_{i}_c{c}.{ext}" for c in (0, 1)]
                    for name, plane in zip(names, planes, strict=True):
                        (root / name).parent.mkdir(parents=True, exist_ok=True)
                        if ext == "png":
                            Image.fromarray(np.round(plane * 255).astype(np.uint8)).save(root / name)
                        else:  # 14-bit data in a 16-bit file, as microscopes write it
                            tifffile.imwrite(root / name, np.round(plane * 16380).astype(np.uint16))
                    rows[ext].append({"channels": json.dumps(names), "label": label, "split": split})
    paths = {}
    for ext, table in rows.items():
        paths[ext] = root / f"toy_{ext}.csv"
        pd.DataFrame(table).to_csv(paths[ext], index=False)
    return paths


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_toy(tmp_path_factory.mktemp("toy"))


def linear_accuracy(toy: dict[str, Path], out: Path, *intensity: str) -> dict[str, float]:
    result = CliRunner().invoke(
        app,
        [
            "run-all", "--quick", "--tasks", "linear", "--manifest", str(toy["png"]), "--manifest",
            str(toy["tif"]), "-o", str(out), "--img-size", str(SIZE), "--workers", "1", *intensity,
            "-m", TINY_CHADAVIT,
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out / "results.parquet")
    rows = rows[(rows["metric"] == "accuracy") & (rows["regime"] == 1.0) & (rows["features"] == "cls")]
    assert set(rows["intensity"]) == {intensity[-1] if intensity else "dataset"}  # recorded per row
    return rows.groupby("dataset")["value"].mean().to_dict()


def test_a_3x_brighter_channel_survives_the_default_scaling_of_uint16_files(toy, tmp_path: Path) -> None:
    default = linear_accuracy(toy, tmp_path / "default")
    erased = linear_accuracy(toy, tmp_path / "minmax", "--intensity", "minmax")
    assert default["toy_png"] >= 0.8 and default["toy_tif"] >= 0.8, default
    assert erased["toy_tif"] <= 0.7 and erased["toy_png"] <= 0.7, erased  # the phenotype is gone
