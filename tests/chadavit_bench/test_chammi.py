"""CHAMMI: the adapter against the official layout, the protocol against a brute-force reference,
the score formula, the export read back, and every bad input named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.datasets import DatasetFormatError, DatasetNotFoundError, chammi
from chadavit_bench.datasets.synthetic import SyntheticConfig, write_synthetic
from chadavit_bench.imaging import ImageReadError, read_planes, scale_to_unit
from chadavit_bench.protocols.chammi import chammi_score, evaluate_subdataset, nearest_neighbour
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE

# --------------------------------------------------------------------------------------- helpers


def tape(planes: np.ndarray) -> np.ndarray:
    """(c, h, w) -> (h, c w): channels side by side, as CHAMMI stores them."""
    return np.concatenate(list(planes), axis=1)


def write_meta(folder: Path, rows: list[dict], columns: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "enriched_meta.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


HPA_COLUMNS = ["file_path", "channel_width", "train_test_split", "Label", "Task_one", "Task_two",
               "Task_three", "cell_type", "ignored"]  # fmt: skip


def hpa_root(tmp_path: Path, n: int = 4, width: int = 6) -> tuple[Path, list[np.ndarray]]:
    """A 4-channel HPA with PNG tapes of known pixels; returns the data root and the stacked arrays."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "chammi" / "HPA"
    (folder / "crops").mkdir(parents=True)
    rows, stacks = [], []
    splits = ["Train", "Task_one", "Task_two", "Task_three"]
    for i in range(n):
        planes = rng.integers(0, 256, size=(4, 5, width), dtype=np.uint8)
        Image.fromarray(tape(planes)).save(folder / "crops" / f"{i}.png")
        split = splits[i % 4]
        flags = {t: str(split == t) for t in ("Task_one", "Task_two", "Task_three")}
        rows.append({"file_path": f"HPA/crops/{i}.png", "channel_width": width, "train_test_split": split,
                     "Label": f"c{i % 2}", **flags, "cell_type": f"ct{i % 3}", "ignored": "x"})  # fmt: skip
        stacks.append(planes)
    write_meta(folder, rows, HPA_COLUMNS)
    return tmp_path, stacks


# --------------------------------------------------------------------------------------- adapter


def scale_like(dataset, planes: np.ndarray) -> np.ndarray:
    """`planes` scaled by the dataset's intensity rule (whatever mode and window it has)."""
    if hasattr(dataset, "intensity"):
        return scale_to_unit(planes, dataset.intensity, dataset.window)
    return scale_to_unit(planes)


def test_png_tapes_unfold_pixel_exact_and_columns_are_read(tmp_path: Path) -> None:
    root, stacks = hpa_root(tmp_path)
    dataset = chammi.load_subdataset(root, "chammi-hpa")
    assert dataset.channel_names == ("microtubules", "protein", "nucleus", "er")
    assert dataset.tasks == ("Task_one", "Task_two", "Task_three") and dataset.complete
    for i, stacked in enumerate(stacks):
        np.testing.assert_array_equal(dataset.read(i), scale_like(dataset, stacked))
    assert [r.split for r in dataset.records] == ["Train", "Task_one", "Task_two", "Task_three"]
    assert list(dataset.task_rows("Task_three")) == [3]
    assert list(dataset.groups(range(4))) == ["ct0", "ct1", "ct2", "ct0"]
    assert dataset.class_names == ("c0", "c1") and list(dataset.labels(range(4))) == [0, 1, 0, 1]


def test_unfolding_equals_the_official_fortran_reshape() -> None:
    image = np.arange(7 * 15).reshape(7, 15)  # 3 channels of width 5
    official = np.moveaxis(np.reshape(image, (7, 5, -1), order="F"), -1, 0)
    np.testing.assert_array_equal(chammi.unfold_tape(image, 5), official)


def test_uint16_ome_tiff_tapes_unfold_pixel_exact(tmp_path: Path) -> None:
    folder = tmp_path / "chammi" / "Allen"
    (folder / "crops").mkdir(parents=True)
    planes = np.stack([np.arange(12, dtype=np.uint16).reshape(3, 4) * (k + 1) + k for k in range(3)])
    tifffile.imwrite(folder / "crops" / "a.ome.tiff", tape(planes))
    rows = [{"file_path": "Allen/crops/a.ome.tiff", "channel_width": 4, "train_test_split": split,
             "Label": "x", "Task_one": str(split == "Task_one"), "Task_two": "False"}
            for split in ("Train", "Task_one")]  # fmt: skip
    write_meta(
        folder, rows, ["file_path", "channel_width", "train_test_split", "Label", "Task_one", "Task_two"]
    )
    dataset = chammi.load_subdataset(tmp_path, "chammi-allen")
    # Pixel-exact in the file's own dtype, then scaled as every dataset's pixels are.
    path = tmp_path / "chammi" / "Allen" / "crops" / "a.ome.tiff"
    np.testing.assert_array_equal(chammi.unfold_tape(read_planes(path)[0], 4), planes)
    np.testing.assert_array_equal(dataset.read(0), scale_like(dataset, planes))


def _edit_meta(root: Path, column: str, line: int, value: str) -> None:
    path = root / "chammi" / "HPA" / "enriched_meta.csv"
    frame = pd.read_csv(path, dtype=str)
    frame.loc[line - 2, column] = value
    frame.to_csv(path, index=False)


META = "chammi/HPA/enriched_meta.csv"


def _drop_column(root: Path, column: str) -> None:
    pd.read_csv(root / META).drop(columns=column).to_csv(root / META, index=False)


@pytest.mark.parametrize(
    ("breakage", "error", "words"),
    [
        (lambda r: (r / META).unlink(), DatasetNotFoundError, ["enriched_meta.csv"]),
        (lambda r: _drop_column(r, "cell_type"), DatasetFormatError, ["cell_type"]),
        (lambda r: _edit_meta(r, "file_path", 3, "../../up.png"), DatasetFormatError, ["line 3", "up.png"]),
        (lambda r: _edit_meta(r, "file_path", 4, "/etc/passwd"), DatasetFormatError, ["line 4", "/etc"]),
        (lambda r: _edit_meta(r, "Task_two", 5, "maybe"), DatasetFormatError, ["line 5", "Task_two"]),
        (lambda r: _edit_meta(r, "channel_width", 2, "-3"), DatasetFormatError, ["line 2", "channel_width"]),
        (lambda r: _edit_meta(r, "train_test_split", 3, "Task_9"), DatasetFormatError, ["line 3", "Task_9"]),
        (lambda r: (r / "chammi/HPA/crops/2.png").unlink(), DatasetNotFoundError, ["2.png"]),
        (lambda r: _edit_meta(r, "cell_type", 5, ""), DatasetFormatError, ["line 5", "cell_type"]),
    ],
)
def test_bad_metadata_is_one_error_naming_file_and_row(tmp_path, breakage, error, words) -> None:
    root, _ = hpa_root(tmp_path)
    breakage(root)
    with pytest.raises(error) as caught:
        chammi.load_subdataset(root, "chammi-hpa")
    message = str(caught.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert "enriched_meta.csv" in message or "png" in message


def test_a_group_is_needed_only_in_the_leave_out_task(tmp_path: Path) -> None:
    root, _ = hpa_root(tmp_path)
    _edit_meta(root, "cell_type", 2, "")  # a Train row: the official evaluator never reads its group
    assert chammi.load_subdataset(root, "chammi-hpa").groups([0])[0] == ""


@pytest.mark.parametrize(
    ("breakage", "words"),
    [
        (lambda r: _edit_meta(r, "channel_width", 3, "5"), ["1.png", "line 3", "not a multiple"]),
        (lambda r: _edit_meta(r, "channel_width", 3, "3"), ["1.png", "line 3", "8 channels"]),
        (lambda r: (r / "chammi/HPA/crops/1.png").write_bytes(b"not a png"), ["1.png", "line 3"]),
    ],
)
def test_bad_image_is_one_error_naming_file_and_row(tmp_path, breakage, words) -> None:
    root, _ = hpa_root(tmp_path)
    breakage(root)
    dataset = chammi.load_subdataset(root, "chammi-hpa")
    with pytest.raises(ImageReadError) as caught:
        dataset.read(1)
    assert "\n" not in str(caught.value) and all(w in str(caught.value) for w in words), str(caught.value)


# -------------------------------------------------------------------------------------- protocol


def brute_force_predictions(x, labels, reference, queries, metric):
    """Each query's label from its nearest reference, one distance at a time (first of ties)."""
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    predictions = []
    for q in queries:
        distances = [
            float(np.sum((x[q] - x[r]) ** 2)) if metric == "l2" else -float(x[q] @ x[r]) for r in reference
        ]
        predictions.append(labels[reference[int(np.argmin(distances))]])
    return np.array(predictions)


def brute_force_macro_f1(truth, predicted) -> float:
    scores = []
    for label in np.unique(truth):
        tp = np.sum((predicted == label) & (truth == label))
        precision = tp / max(np.sum(predicted == label), 1)
        recall = tp / np.sum(truth == label)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_protocol_equals_a_brute_force_reference_with_leave_one_group_out(metric: str) -> None:
    rng = np.random.default_rng(7)
    n = 240
    labels = rng.integers(0, 5, size=n)
    x = rng.normal(size=(n, 8)) + labels[:, None] * 0.4
    x *= rng.uniform(0.3, 3.0, size=(n, 1))  # norms differ: l2 and cosine disagree
    splits = rng.choice(["Train", "Task_one", "Task_two"], size=n, p=[0.5, 0.25, 0.25])
    groups = rng.choice(["g1", "g2", "g3"], size=n)
    tasks = {
        "Task_one": np.flatnonzero(splits == "Task_one"),
        "Task_two": np.flatnonzero(splits == "Task_two"),
    }
    scores = evaluate_subdataset("CP", x, labels, list(splits), tasks, "Task_two", groups, metric)
    train = np.flatnonzero(splits == "Train")
    # Task_one: the Train rows are the reference.
    truth = labels[tasks["Task_one"]]
    predicted = brute_force_predictions(x, labels, train, tasks["Task_one"], metric)
    assert scores[0].task == "Task_one"
    assert scores[0].accuracy == pytest.approx(np.mean(truth == predicted), abs=1e-12)
    assert scores[0].f1_macro == pytest.approx(brute_force_macro_f1(truth, predicted), abs=1e-12)
    # Task_two, leave one group out: Train plus the other groups' Task_two rows; predictions pooled.
    truths, predictions = [], []
    for group in ("g1", "g2", "g3"):
        held = [q for q in tasks["Task_two"] if groups[q] == group]
        others = [q for q in tasks["Task_two"] if groups[q] != group]
        predictions.append(brute_force_predictions(x, labels, np.concatenate([train, others]), held, metric))
        truths.append(labels[held])
    truth, predicted = np.concatenate(truths), np.concatenate(predictions)
    assert scores[1].accuracy == pytest.approx(np.mean(truth == predicted), abs=1e-12)
    assert scores[1].f1_macro == pytest.approx(brute_force_macro_f1(truth, predicted), abs=1e-12)
    # ... which is not what scoring Task_two against Train alone gives (the test can tell them apart).
    plain = evaluate_subdataset("CP", x, labels, list(splits), {"Task_two": tasks["Task_two"]}, metric=metric)
    assert plain[0].accuracy != scores[1].accuracy


def test_search_is_blocked_exact_and_takes_the_first_of_ties() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(500, 16))
    reference[7] = reference[300]  # an exact tie: the first (7) wins
    queries = np.concatenate([rng.normal(size=(50, 16)), reference[300:301] + 1e-9])
    expected = [int(np.argmin(((reference - q) ** 2).sum(axis=1))) for q in queries]
    for block_bytes in (1, 4096, 2**30):
        assert list(nearest_neighbour(reference, queries, "l2", block_bytes)) == expected
    assert nearest_neighbour(reference, queries, "l2")[-1] == 7


def test_chammi_score_is_the_mean_of_the_three_ood_means() -> None:
    # ChAda-ViT's row of ChA-MAEViT Table 8 (macro-F1 x 100); its published score is 50.82.
    f1 = {("Allen", "Task_one"): 77.58, ("Allen", "Task_two"): 67.18, ("HPA", "Task_one"): 87.49,
          ("HPA", "Task_two"): 75.94, ("HPA", "Task_three"): 45.41, ("CP", "Task_one"): 83.92,
          ("CP", "Task_two"): 45.58, ("CP", "Task_three"): 21.94, ("CP", "Task_four"): 6.28}  # fmt: skip
    expected = 67.18 / 3 + (75.94 + 45.41) / 6 + (45.58 + 21.94 + 6.28) / 9
    assert chammi_score(f1) == pytest.approx(expected, abs=1e-9) and round(expected, 2) == 50.82
    del f1[("CP", "Task_four")]
    assert chammi_score(f1) is None


# ---------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def chammi_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("chammi")
    data, out = base / "data", base / "out"
    written = CliRunner().invoke(app, ["synthetic", "-o", str(data), "--image-size", "16"])
    assert written.exit_code == 0, written.output
    spec = f"{TINY_CHADAVIT}&label=tiny"
    result = CliRunner().invoke(
        app,
        ["run", "chammi", "-m", spec, "--data-root", str(data), "--out", str(out), "--img-size",
         str(TINY_IMG_SIZE), "--chammi-metric", "cosine"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return data, out


def test_synthetic_to_run_writes_official_layout_scores_and_report(chammi_run) -> None:
    data, out = chammi_run
    folder = out / "chammi" / "tiny"
    official = pd.read_csv(folder / "knn_cosine_full_results.csv")
    assert list(official.columns) == ["dataset", "task", "classifier", "accuracy", "f1_score_macro"]
    assert len(official) == 9 and set(official["dataset"]) == {"Allen", "HPA", "CP"}
    results = pd.read_csv(out / "results.csv")
    for sub in chammi.SUBDATASETS:
        meta = pd.read_csv(data / "chammi" / sub.folder / "enriched_meta.csv")
        for kind in ("cls", "tokens"):
            features = np.load(folder / "features" / sub.folder / f"{kind}.npy")
            assert features.dtype == np.float32 and len(features) == len(meta)
        # The exported CLS features, scored again from the CSV alone, give the exported numbers.
        dataset = chammi.load_subdataset(data, sub.name)
        features = np.load(folder / "features" / sub.folder / "cls.npy")
        tasks = {t: np.flatnonzero(meta[t].to_numpy()) for t in dataset.tasks}
        labels = pd.factorize(meta["Label"])[0]
        groups = meta[sub.group_column].to_numpy() if sub.group_column else None
        again = evaluate_subdataset(sub.folder, features, labels, list(meta["train_test_split"]), tasks,
                                    sub.leave_out, groups, "cosine")  # fmt: skip
        for score in again:
            row = official[(official["dataset"] == sub.folder) & (official["task"] == score.task)].iloc[0]
            assert row["f1_score_macro"] == pytest.approx(score.f1_macro, abs=1e-6)
            mine = results[(results["dataset"] == sub.name) & (results["features"] == "cls")
                           & (results["metric"] == f"f1_macro_{score.task}")]  # fmt: skip
            assert mine["value"].iloc[0] == pytest.approx(score.f1_macro, abs=1e-6)
    score_rows = results[results["metric"] == "chammi_score"]
    assert set(score_rows["features"]) == {"cls", "tokens"} and score_rows["value"].between(0, 1).all()
    assert (folder / "tokens" / "knn_cosine_full_results.csv").is_file()
    report = (out / "report.md").read_text()
    section = report[report.index("## CHAMMI") :]
    assert "cosine distance" in section and "| tiny |" in section
    assert "| ChAda-ViT | 77.58 | 67.18 |" in section and "| ResNet | 54.00 |" in section


def test_a_broken_subdataset_is_skipped_by_name_and_an_unreadable_image_writes_nothing(tmp_path) -> None:
    data = tmp_path / "data"
    write_synthetic(data, ["chammi"], SyntheticConfig(image_size=16, train_per_class=2, eval_per_class=1))
    (data / "chammi" / "HPA" / "enriched_meta.csv").write_text("file_path,Label\n")
    args = ["run", "chammi", "-m", TINY_CHADAVIT, "--data-root", str(data), "--img-size", str(TINY_IMG_SIZE)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    skipped = json.loads((tmp_path / "out" / "run.json").read_text())["skipped"]
    assert any(s["dataset"] == "chammi-hpa" and "enriched_meta.csv" in s["reason"] for s in skipped)
    scores = pd.read_csv(tmp_path / "out" / "results.csv")
    assert "chammi_score" not in set(scores["metric"])  # no score without HPA
    assert set(scores["dataset"]) == {"chammi-allen", "chammi-cp"}
    first = pd.read_csv(data / "chammi" / "CP" / "enriched_meta.csv")["file_path"].iloc[3]
    (data / "chammi" / first).write_bytes(b"garbage")
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out2")])
    message = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 1 and "error:" in message and "line 5" in message
    assert Path(first).name in message
    assert not (tmp_path / "out2" / "chammi").exists()
