"""`idrcell import-chammi` on a tiny folder in CHAMMI's layout (written here): the chosen split with
labels, groups, sub-datasets and channel names; tapes unfolded pixel-exact; bad layouts named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from tests.idrcell.test_import_images import expected, samples, snapshot
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.verify import verify_dataset

runner = CliRunner()
WIDTH = {"Allen": 48, "HPA": 40, "CP": 32}
CHANNELS = {"Allen": 3, "HPA": 4, "CP": 5}
TASKS = {"Allen": ["Task_one", "Task_two"], "HPA": ["Task_one", "Task_two", "Task_three"],
         "CP": ["Task_one", "Task_two", "Task_three", "Task_four"]}  # fmt: skip


def write_chammi(root: Path, rows_per_subset: int = 6) -> dict[tuple[str, int], np.ndarray]:
    """CHAMMI's layout: SUB/enriched_meta.csv and SUB/crops/ tapes; returns (sub, row) -> tape."""
    rng = np.random.default_rng(11)
    tapes = {}
    for sub, n_channels in CHANNELS.items():
        (root / sub / "crops").mkdir(parents=True)
        width = WIDTH[sub]
        lines = []
        for row in range(rows_per_subset):
            if sub == "Allen":  # Allen's crops are 16-bit OME-TIFF, the others 8-bit PNG
                tape = rng.integers(0, 3000, (width + 4, width * n_channels), dtype=np.uint16)
                name = f"{sub}/crops/{row}.ome.tiff"
                tifffile.imwrite(root / name, tape)
            else:
                tape = rng.integers(0, 256, (width, width * n_channels), dtype=np.uint8)
                name = f"{sub}/crops/r{row}.png"
                Image.fromarray(tape).save(root / name)
            tapes[(sub, row)] = tape
            split = "Train" if row % 2 == 0 else TASKS[sub][1 + row % (len(TASKS[sub]) - 1)]
            line = {
                "file_path": name,
                "ID": f"id{row}",
                "channel_width": str(width),
                "train_test_split": split,
                "Label": f"{sub.lower()}-class-{row % 3}",
            }
            line.update({task: str(task == split) for task in TASKS[sub]})
            if sub == "HPA":
                line["cell_type"] = ["U-2 OS", "HeLa"][row % 2]
            if sub == "CP":
                line["Plate"] = f"BR0000{row % 2}"
            lines.append(line)
        with open(root / sub / "enriched_meta.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
            writer.writeheader()
            writer.writerows(lines)
    return tapes


def invoke(*args: str):
    result = runner.invoke(app, ["import-chammi", *args])
    return result, [line for line in result.stderr.splitlines() if line.strip()]


def test_train_split_of_the_three_subsets_with_labels_and_channel_names(tmp_path: Path) -> None:
    tapes = write_chammi(tmp_path / "CHAMMI")
    out = tmp_path / "out"
    result, _ = invoke(str(tmp_path / "CHAMMI"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert verify_dataset(out).ok
    found = samples(out)
    assert sorted(found) == sorted(f"CHAMMI_{sub}_{row}" for sub in CHANNELS for row in (0, 2, 4))
    names = {"Allen": ["nucleus", "membrane", "protein"], "HPA": ["microtubules", "protein", "nucleus", "er"],
             "CP": ["nucleus", "er", "rna", "golgi", "mito"]}  # fmt: skip
    for key, (meta, planes) in found.items():
        _, sub, row = key.split("_")
        tape, width = tapes[(sub, int(row))], WIDTH[sub]
        assert (meta["dataset"], meta["split"], meta["label"]) == (
            sub,
            "Train",
            f"{sub.lower()}-class-{int(row) % 3}",
        )
        assert [c["label"] for c in meta["channels"]] == names[sub]
        assert meta["group"] == {"Allen": None, "HPA": "U-2 OS", "CP": "BR00000"}[sub]
        assert meta["cell_line"] == ("U-2 OS" if sub == "HPA" else None)
        assert meta["image_name"] == (
            f"{sub}/crops/{row}.ome.tiff" if sub == "Allen" else f"{sub}/crops/r{row}.png"
        )
        for k, plane in enumerate(planes):
            channel = tape[:, k * width : (k + 1) * width]  # CHAMMI's Fortran-order unfolding
            # bench windows: 8-bit pixels as they are, 16-bit by the channel's min and max
            window = (0.0, 255.0) if tape.dtype == np.uint8 else (float(channel.min()), float(channel.max()))
            np.testing.assert_array_equal(plane, expected(channel, window), err_msg=f"{key} channel {k}")
    # Another split, one sub-dataset: only its rows; and the same import twice gives the same bytes.
    result, _ = invoke(
        str(tmp_path / "CHAMMI"), "--out", str(tmp_path / "hpa"), "--split", "all", "--subset", "HPA"
    )
    assert result.exit_code == 0
    assert sorted(samples(tmp_path / "hpa")) == [f"CHAMMI_HPA_{row}" for row in range(6)]
    invoke(str(tmp_path / "CHAMMI"), "--out", str(tmp_path / "again"))
    assert snapshot(tmp_path / "again") == snapshot(out)


def test_the_bench_root_holding_chammi_is_accepted(tmp_path: Path) -> None:
    write_chammi(tmp_path / "root" / "chammi", rows_per_subset=2)
    result, _ = invoke(str(tmp_path / "root"), "--out", str(tmp_path / "out"), "--subset", "CP")
    assert result.exit_code == 0 and sorted(samples(tmp_path / "out")) == ["CHAMMI_CP_0"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_meta", "HPA/enriched_meta.csv: no such file"),
        ("no_column", "CP/enriched_meta.csv: no column(s) ['Plate']"),
        ("outside", "Allen/enriched_meta.csv line 2: ../secret.png leaves the manifest's folder"),
        ("width", "Allen/enriched_meta.csv line 2: channel_width 'wide' is not a positive whole number"),
    ],
)
def test_a_broken_layout_is_one_line_and_writes_nothing(tmp_path: Path, damage: str, message: str) -> None:
    root = tmp_path / "CHAMMI"
    write_chammi(root, rows_per_subset=2)
    if damage == "no_meta":
        (root / "HPA" / "enriched_meta.csv").unlink()
    else:
        sub = "CP" if damage == "no_column" else "Allen"
        meta = root / sub / "enriched_meta.csv"
        lines = list(csv.DictReader(open(meta, newline="")))  # noqa: SIM115
        if damage == "no_column":
            for line in lines:
                del line["Plate"]
        elif damage == "outside":
            lines[0]["file_path"] = "../secret.png"
            Image.fromarray(np.zeros((8, 24), np.uint8)).save(tmp_path / "secret.png")
        else:
            lines[0]["channel_width"] = "wide"
        with open(meta, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
            writer.writeheader()
            writer.writerows(lines)
    result, lines = invoke(str(root), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_a_tape_of_the_wrong_width_is_a_named_skip(tmp_path: Path) -> None:
    root = tmp_path / "CHAMMI"
    write_chammi(root, rows_per_subset=4)
    Image.fromarray(np.zeros((40, 150), np.uint8)).save(root / "HPA" / "crops" / "r0.png")  # 150 = 3.75 x 40
    Image.fromarray(np.zeros((40, 120), np.uint8)).save(
        root / "HPA" / "crops" / "r2.png"
    )  # 3 channels, not 4
    result, lines = invoke(str(root), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert [line.split(":")[0] for line in lines] == ["skipped CHAMMI_HPA_0", "skipped CHAMMI_HPA_2"]
    assert "width 150 is not a multiple of channel_width 40" in lines[0]
    assert "3 channels but 4 channel_names" in lines[1]
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["counts"]["samples"] == 4 and verify_dataset(tmp_path / "out").ok
